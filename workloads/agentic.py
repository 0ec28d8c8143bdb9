"""Agentic coding workload: tasks fan out to sub-agents that read one shared repository.

A *task* arrives (Poisson, or bursty with gamma inter-arrival times). It picks a repository by a
Zipf law over ``n_repos`` repositories (a few hot repositories, a long tail), and an orchestrator
request plans the work; then ``subagents`` sub-agents start (staggered) and each runs a few
*turns*. Every prompt is laid out as

    [ system prompt | repository | private context ]

- the **system prompt** (instructions and tool schemas) is the same for every request;
- the **repository** is the same blocks for every request of every task on that repository —
  identical ids, so they can be shared — split into *files*, each a commutative span
  (``spans`` column): with ``file_order="per_agent"`` every sub-agent lays the files out in its
  own order (same blocks, different positions: a prefix cache loses, span reuse does not);
- the **private context** is the agent's own instruction plus, turn after turn, its previous
  outputs and tool results; the full blocks of the previous turn keep their ids (the agent's
  own prefix), the rest are new.

The next turn arrives after the previous one's output was generated (``output_tokens ×
decode_time_per_token``) and a tool ran (think time, lognormal). ``parent_id`` of a sub-agent's
requests is its orchestrator request; ``session_id`` identifies the agent. Everything random
comes from the ``numpy.random.Generator`` passed in, so the same seed gives the same trace
(and byte-identical Parquet).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from workloads.context import BlockIds, length, lognormal, positive_int
from workloads.schema import FlatBlocks, make_trace


@dataclass(frozen=True)
class AgenticParams:
    """A coding-agent fleet. Defaults are plausible, not measured; the reason for each:

    Attributes:
        duration_time: window in which tasks arrive [s] (5 min: enough tasks for steady
            sharing, small enough to simulate quickly).
        task_rate: tasks per second (0.05: one task every 20 s for a small team's fleet).
        arrival: ``"poisson"`` or ``"bursty"`` (gamma inter-arrivals, ``burst_cv`` coefficient
            of variation; 3: people launch agents in bursts, e.g. after a CI failure).
        n_repos: repositories (4: one team's services).
        repo_zipf_s: Zipf exponent of repository popularity (1.0: one repo gets ~half the
            tasks, as a team's main codebase does).
        repo_tokens: mean repository size [tokens] (256 Ki = 262,144: a mid-sized codebase
            packed into context; the issue's range is ~100k-1M tokens; the engine's default
            scenario uses exactly this with 32 sub-agents).
        repo_size_sigma: lognormal spread of repository sizes (0.5), clipped to
            ``[repo_min_tokens, repo_max_tokens]`` (100k-1M); 0 makes every repo exactly
            ``repo_tokens`` (rounded up to whole blocks).
        file_tokens: mean file size [tokens] (2,048: a few hundred lines of code).
        file_order: ``"fixed"`` (every agent reads the files in repository order) or
            ``"per_agent"`` (each sub-agent in its own order).
        subagents: sub-agents per task (8: a typical parallel fan-out of a coding orchestrator;
            32 is expressible).
        turns_mean: mean turns per sub-agent (6; geometric, at least 1: read, edit, test loops).
        system_tokens: shared system prompt and tool schemas [tokens] (8,192: agent harnesses
            ship long instructions and tool definitions).
        task_tokens: mean private instruction per agent [tokens] (1,024).
        output_tokens_mean: mean tokens generated per turn (400: a tool call plus reasoning).
        tool_tokens_mean: mean tool-result tokens appended per turn (1,500: file excerpts, test
            output).
        think_time_mean: mean tool-call time between turns [s] (3 s: running grep/tests takes
            seconds); lognormal with ``think_time_sigma`` (1.0: a long tail of slow tools).
        spawn_time_mean: mean stagger of sub-agent starts after the plan [s] (0.5 s).
        decode_time_per_token: generation time used to place the next turn [s/token] (0.02:
            ~50 tokens/s per stream).
        length_sigma: lognormal sigma of output/tool/task lengths (0.8).
        block_tokens: tokens per block (64: the engine's FlashMLA page, so no refinement).
        causal: False (the default, as the earlier tables were measured): every request enters
            at its nominal time above, even if the call it depends on has not finished — a
            sub-agent may then start before its orchestrator's plan (and its repository's
            KV) exists. True: the trace says whom each request follows (``after_id``,
            ``after_time``): a sub-agent enters its spawn stagger after its orchestrator's call
            *finishes*, a turn its think time after the previous turn finishes, and the engine
            keeps to it; ``arrival_at`` stays the nominal schedule (the same draws either way).
    """

    duration_time: float = 300.0
    task_rate: float = 0.05
    arrival: str = "poisson"
    burst_cv: float = 3.0
    n_repos: int = 4
    repo_zipf_s: float = 1.0
    repo_tokens: int = 262_144
    repo_size_sigma: float = 0.5
    repo_min_tokens: int = 100_000
    repo_max_tokens: int = 1_000_000
    file_tokens: int = 2_048
    file_order: str = "fixed"
    subagents: int = 8
    turns_mean: float = 6.0
    system_tokens: int = 8_192
    task_tokens: int = 1_024
    output_tokens_mean: float = 400.0
    tool_tokens_mean: float = 1_500.0
    think_time_mean: float = 3.0
    think_time_sigma: float = 1.0
    spawn_time_mean: float = 0.5
    decode_time_per_token: float = 0.02
    length_sigma: float = 0.8
    block_tokens: int = 64
    causal: bool = False

    def __post_init__(self) -> None:
        positive = ("duration_time", "task_rate", "n_repos", "repo_tokens", "file_tokens",
                    "subagents", "turns_mean", "task_tokens", "output_tokens_mean",
                    "block_tokens", "repo_min_tokens", "repo_max_tokens", "burst_cv")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("repo_zipf_s", "repo_size_sigma", "system_tokens", "tool_tokens_mean",
                        "think_time_mean", "think_time_sigma", "spawn_time_mean",
                        "decode_time_per_token", "length_sigma")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.arrival not in ("poisson", "bursty"):
            raise ValueError(f"arrival must be 'poisson' or 'bursty', got {self.arrival!r}")
        if self.file_order not in ("fixed", "per_agent"):
            raise ValueError(f"file_order must be 'fixed' or 'per_agent', got {self.file_order!r}")
        if self.turns_mean < 1:
            raise ValueError("turns_mean must be >= 1")
        if self.repo_min_tokens > self.repo_max_tokens:
            raise ValueError("repo_min_tokens must be <= repo_max_tokens")
        if not isinstance(self.causal, bool):
            raise ValueError(f"causal must be true or false, got {self.causal!r}")

    def to_dict(self) -> dict:
        """The parameters as a plain dict (for Parquet metadata and reports)."""
        return asdict(self)

    def expected_size(self) -> tuple[float, float]:
        """Expected (requests, block references) of the trace, known before generating it.

        ``task_rate × duration_time`` tasks of one plan and ``subagents × turns_mean`` turns;
        each prompt reads the system prompt, a repository and a private context growing by
        ``output + tool`` tokens a turn (tests/test_workloads_sizes.py holds this to the mean
        of generated traces). The repositories' own blocks count as references too.
        For refusing a workload that cannot fit in memory, not for statistics.
        """
        bt = self.block_tokens
        tasks = self.task_rate * self.duration_time
        agent_requests = tasks * self.subagents * self.turns_mean  # one a sub-agent turn
        requests = tasks + agent_requests
        repo = float(self.repo_tokens)
        if self.repo_size_sigma > 0:
            repo = min(max(repo, self.repo_min_tokens), self.repo_max_tokens)
        shared = -(-self.system_tokens // bt) + repo / bt  # blocks every prompt reads
        # a private part: the instruction (rounded up to whole blocks: + 0.5 on average), and
        # on a sub-agent's turn t (0, 1, …) t turns of output and tool results; over geometric
        # turns of mean μ a turn's mean t is E[T(T − 1) / 2] / E[T] = μ − 1
        grown = (self.turns_mean - 1.0) * (self.output_tokens_mean + self.tool_tokens_mean)
        private = requests * (self.task_tokens / bt + 0.5) + agent_requests * grown / bt
        return requests, requests * shared + private + self.n_repos * repo / bt


def task_arrivals(rng: np.random.Generator, p: AgenticParams) -> np.ndarray:
    """Task arrival times in ``[0, duration_time)`` [s], sorted."""
    expected = p.task_rate * p.duration_time
    n_draw = int(expected + 10 * np.sqrt(expected + 1) * max(1.0, p.burst_cv) + 16)
    times = np.zeros(0)
    start = 0.0
    while True:
        if p.arrival == "poisson":
            gaps = rng.exponential(1.0 / p.task_rate, size=n_draw)
        else:
            shape = 1.0 / p.burst_cv**2
            gaps = rng.gamma(shape, 1.0 / (p.task_rate * shape), size=n_draw)
        t = start + np.cumsum(gaps)
        times = np.concatenate([times, t[t < p.duration_time]])
        if t[-1] >= p.duration_time:
            return times
        start = float(t[-1])


def generate_agentic(rng: np.random.Generator, params: AgenticParams | None = None,
                     ) -> pd.DataFrame:
    """A request trace of the agentic coding fleet described by ``params`` (see module doc).

    ``attrs`` carries ``params`` (the parameters), ``repo_blocks`` (blocks per repository) and
    ``system_blocks`` (the shared system prompt's blocks, which lead every prompt).
    """
    p = params or AgenticParams()
    bt = p.block_tokens
    ids = BlockIds()
    sys_blocks = ids.take(-(-p.system_tokens // bt)) if p.system_tokens else ids.take(0)
    sys_tokens = len(sys_blocks) * bt  # the system prompt is padded to whole blocks

    sizes = lognormal(rng, p.repo_tokens, p.repo_size_sigma, size=p.n_repos)
    if p.repo_size_sigma > 0:
        sizes = np.clip(sizes, p.repo_min_tokens, p.repo_max_tokens)
    repo_blocks_n = -(-np.rint(sizes).astype(np.int64) // bt)
    repos = []  # per repo: list of per-file block-id arrays
    for nb in repo_blocks_n:
        blocks = ids.take(int(nb))
        lens = positive_int(lognormal(rng, p.file_tokens / bt, 1.0, size=int(nb)))
        cuts = np.cumsum(lens)
        cuts = cuts[cuts < nb]
        repos.append(np.split(blocks, cuts))
    weights = np.arange(1, p.n_repos + 1, dtype=np.float64) ** -p.repo_zipf_s
    weights /= weights.sum()

    rows: dict[str, list] = {k: [] for k in ("arrival_at", "session_id", "parent_id",
                                             "input_tokens", "output_tokens", "repo_id",
                                             "after_id", "after_time")}
    block_rows: list[np.ndarray] = []
    span_rows: list[np.ndarray] = []
    session = 0

    def emit(at, sess, parent, private_tokens, private_ids, out, repo, files,
             after=-1, gap=0.0):
        layout = [sys_blocks, *files, private_ids]
        block_rows.append(np.concatenate(layout))
        lens = np.array([len(f) for f in files], dtype=np.int64)
        starts = len(sys_blocks) + np.concatenate([[0], np.cumsum(lens)[:-1]])
        span_rows.append(np.stack([starts, starts + lens], axis=1).ravel())
        rows["arrival_at"].append(at)
        rows["session_id"].append(sess)
        rows["parent_id"].append(parent)
        rows["input_tokens"].append(sys_tokens + int(lens.sum()) * bt + private_tokens)
        rows["output_tokens"].append(out)
        rows["repo_id"].append(repo)
        rows["after_id"].append(after)
        rows["after_time"].append(gap)
        return len(block_rows) - 1

    for task_at in task_arrivals(rng, p):
        repo = int(rng.choice(p.n_repos, p=weights))
        files = repos[repo]
        plan_tokens = length(rng, p.task_tokens, p.length_sigma)
        plan_out = length(rng, p.output_tokens_mean, p.length_sigma)
        root = emit(task_at, session, -1, plan_tokens, ids.take(-(-plan_tokens // bt)),
                    plan_out, repo, files)
        session += 1
        ready_at = task_at + plan_out * p.decode_time_per_token
        for _ in range(p.subagents):
            order = (rng.permutation(len(files)) if p.file_order == "per_agent"
                     else np.arange(len(files)))
            agent_files = [files[i] for i in order]
            gap = rng.exponential(p.spawn_time_mean) if p.spawn_time_mean else 0.0
            at, after = ready_at + gap, root
            turns = int(rng.geometric(1.0 / p.turns_mean))
            private = length(rng, p.task_tokens, p.length_sigma)
            private_ids = ids.take(-(-private // bt))
            for turn in range(turns):
                out = length(rng, p.output_tokens_mean, p.length_sigma)
                after = emit(at, session, root, private, private_ids, out, repo, agent_files,
                             after, gap)
                if turn == turns - 1:
                    break
                tool = (length(rng, max(p.tool_tokens_mean, 1.0), p.length_sigma)
                        if p.tool_tokens_mean else 0)
                think = lognormal(rng, p.think_time_mean, p.think_time_sigma)  # 0: none
                at, gap = at + out * p.decode_time_per_token + think, think
                kept = private // bt  # full blocks of this turn's private context keep their ids
                private += out + tool
                private_ids = np.concatenate(
                    [private_ids[:kept], ids.take(-(-private // bt) - kept)])
            session += 1

    arrival = np.asarray(rows["arrival_at"], dtype=np.float64)
    order = np.argsort(arrival, kind="stable")  # ties: creation order
    new_id = np.empty(len(order), dtype=np.int64)
    new_id[order] = np.arange(len(order), dtype=np.int64)
    parent = np.asarray(rows["parent_id"], dtype=np.int64)
    parent = np.where(parent >= 0, new_id[np.maximum(parent, 0)], -1)
    follows = {}
    if p.causal:
        after = np.asarray(rows["after_id"], dtype=np.int64)
        follows = {"after_id": np.where(after >= 0, new_id[np.maximum(after, 0)], -1)[order],
                   "after_time": np.asarray(rows["after_time"], dtype=np.float64)[order]}
    df = make_trace(
        arrival_at=arrival[order],
        request_id=np.arange(len(order), dtype=np.int64),
        session_id=np.asarray(rows["session_id"], dtype=np.int64)[order],
        parent_id=parent[order],
        input_tokens=np.asarray(rows["input_tokens"], dtype=np.int64)[order],
        output_tokens=np.asarray(rows["output_tokens"], dtype=np.int64)[order],
        block_ids=FlatBlocks.from_lists([block_rows[i] for i in order]),
        block_tokens=bt,
        repo_id=np.asarray(rows["repo_id"], dtype=np.int64)[order],
        spans=[span_rows[i] for i in order],
        source="agentic generator",
        **follows,
    )
    df.attrs["params"] = p.to_dict()
    df.attrs["repo_blocks"] = [int(n) for n in repo_blocks_n]
    df.attrs["system_blocks"] = len(sys_blocks)
    return df
