"""Structured agentic sessions: sessions → user turns → LLM calls → tool calls.

The shape follows what GitHub Copilot's agent traces record (Azure/AzurePublicDataset,
``GitHubCopilotCodingAgentDataset2026.md`` and its dataset card, CC-BY; Liu et al., "Agentic
Coding in the Wild", arXiv 2608.00101): a *session* is a conversation of user *turns*; in a turn
the agent loops — an LLM call, then a *batch* of tool calls its response asked for (run in
parallel), then the next call on the grown context — until a call answers without tools.

- **Context.** The agent's prompt is its growing context (:class:`workloads.context.Context`):
  ``[system prompt | repository instructions | user message | output | tool results | …]``,
  carried over from turn to turn. Each call's prompt is a prefix of the next call's.
- **Files are spans.** A ``read`` tool call inserts a repository file as a commutative span:
  the file has the same block ids wherever and by whomever it is read (two sub-agents reading
  it share its KV under span reuse, not under prefix reuse). A file the session edited is read
  as a new version (fresh ids, private to the session). Other tools (``edit``, terminal, search)
  return private text.
- **Sub-agents.** A tool batch may instead *spawn* ``k`` sub-agents that run in parallel, each
  in a fresh context ``[sub-agent system prompt | instructions | task]`` with its own loop (no
  further spawning); the batch ends when the last one answers (join), and their answers are
  the tool results appended to the parent's context.
- **Time.** A call takes ``call_overhead_time + output × decode_time_per_token``; a batch takes
  its slowest tool (lognormal durations); user think time separates turns. Arrivals are
  open-loop (placed by these estimates, not by the simulated server).
- **Compaction.** Before a call whose context exceeds ``compact_tokens``, a summarizing call
  runs on the whole context (its output: ``summary_tokens``), and the context is replaced by
  ``[system | instructions | summary]`` — a new ``context_id``, whose ``parent_id`` is the
  summarizing call.

Columns: ``session_id`` is the user session; ``turn_id`` the turn; ``context_id`` the agent
context (main agent, a sub-agent, or the main agent after a compaction); ``parent_id`` the call
that started the context (the spawning call or the summarizing call; none for a session's first
context); ``tool_calls`` the tool calls the response made. Everything random comes from the
``numpy.random.Generator`` passed in (same seed, same trace). The fitted preset is
:mod:`workloads.presets`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from workloads.context import BlockIds, Context, length, lognormal, positive_int
from workloads.schema import FlatBlocks, make_trace

__all__ = ["SessionParams", "generate_sessions"]


@dataclass(frozen=True)
class SessionParams:
    """Knobs of the session generator. Defaults are the ``copilot_2026`` fit
    (:mod:`workloads.presets` says which numbers are published and which are assumed).

    Attributes:
        sessions: sessions to generate (Poisson arrivals at ``session_rate``); 0 = every
            session that starts within ``duration_time``.
        session_rate: session starts per second.
        duration_time: start window when ``sessions`` is 0 [s].
        turns_mean: mean user turns per session (geometric, at least 1).
        batches_mean: mean tool batches per turn of the main agent (geometric, at least 0).
        tools_per_batch_mean: mean tool calls per ordinary batch (1 + Poisson).
        spawn_fraction: share of the main agent's batches that spawn sub-agents.
        subagents_mean: mean sub-agents per spawning batch (1 + Poisson).
        subagent_batches_mean: mean tool batches of a sub-agent's loop (geometric, >= 0).
        read_fraction, edit_fraction: shares of tool calls that read a file / edit one (the
            rest are terminal, search and other tools with private output).
        system_tokens: the main agent's system prompt and tool schemas, shared by all [tokens].
        subagent_system_tokens: the sub-agents' shared system prompt [tokens].
        instructions_tokens: mean repository instructions, shared per repository [tokens].
        task_tokens: mean task a sub-agent is given [tokens].
        user_tokens_mean: mean user message (with attached context) per turn [tokens].
        output_tokens_mean: mean completion per call [tokens].
        tool_tokens_mean: mean output of a non-read tool [tokens].
        edit_tokens_mean: mean result of an edit [tokens].
        summary_tokens: the compaction summary [tokens].
        compact_tokens: a context longer than this is compacted before the next call [tokens].
        length_sigma: lognormal sigma of all lengths above.
        n_repos, repo_zipf_s: repositories and the Zipf exponent of their popularity.
        repo_tokens, repo_size_sigma: mean repository size [tokens] and lognormal spread.
        file_tokens, file_sigma: mean file size [tokens] and lognormal spread (files are whole
            blocks, so they can be shared as pages).
        file_zipf_s: Zipf exponent of which files get read (a few central files, a long tail).
        call_overhead_time: time to first token assumed when placing the next call [s].
        decode_time_per_token: generation time used to place the next call [s/token].
        tool_time_mean, tool_time_sigma: mean tool duration [s] and its lognormal sigma.
        think_time_mean, think_time_sigma: mean user think time between turns [s], sigma.
        block_tokens: tokens per block (64: the engine's page).
    """

    sessions: int = 200
    session_rate: float = 0.5
    duration_time: float = 600.0
    turns_mean: float = 3.95
    batches_mean: float = 5.4
    tools_per_batch_mean: float = 1.12
    spawn_fraction: float = 0.02
    subagents_mean: float = 2.0
    subagent_batches_mean: float = 4.0
    read_fraction: float = 0.4
    edit_fraction: float = 0.2
    system_tokens: int = 12_288
    subagent_system_tokens: int = 4_096
    instructions_tokens: int = 1_024
    task_tokens: int = 600
    user_tokens_mean: float = 2_000.0
    output_tokens_mean: float = 425.0
    tool_tokens_mean: float = 16_000.0
    edit_tokens_mean: float = 300.0
    summary_tokens: int = 3_000
    compact_tokens: int = 150_000
    length_sigma: float = 0.8
    n_repos: int = 50
    repo_zipf_s: float = 1.0
    repo_tokens: int = 400_000
    repo_size_sigma: float = 0.8
    file_tokens: int = 6_000
    file_sigma: float = 1.0
    file_zipf_s: float = 1.0
    call_overhead_time: float = 1.0
    decode_time_per_token: float = 0.02
    tool_time_mean: float = 3.0
    tool_time_sigma: float = 1.2
    think_time_mean: float = 60.0
    think_time_sigma: float = 1.0
    block_tokens: int = 64

    def __post_init__(self) -> None:
        positive = ("session_rate", "duration_time", "turns_mean", "tools_per_batch_mean",
                    "subagents_mean", "output_tokens_mean", "compact_tokens", "n_repos",
                    "repo_tokens", "file_tokens", "block_tokens", "summary_tokens")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name, value in asdict(self).items():
            if name not in positive and isinstance(value, int | float) and not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name in ("turns_mean", "tools_per_batch_mean", "subagents_mean"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("spawn_fraction", "read_fraction", "edit_fraction"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be <= 1, got {getattr(self, name)}")
        if self.read_fraction + self.edit_fraction > 1:
            raise ValueError("read_fraction + edit_fraction must be <= 1")
        if self.summary_tokens + self.system_tokens >= self.compact_tokens:
            raise ValueError("compact_tokens must exceed system_tokens + summary_tokens")

    def to_dict(self) -> dict:
        """The parameters as a plain dict."""
        return asdict(self)

    def expected_size(self) -> tuple[float, float]:
        """Expected (requests, block references), both counted short, for refusing a workload
        too large to hold (never one that would fit): a turn's calls (one, one after each tool
        batch, and each spawned sub-agent's own loop) without compactions, each reading only
        its system prompt (a context's growth is left out: the references are a lower bound,
        about a tenth of a trace's)."""
        bt = self.block_tokens
        sessions = self.sessions or self.session_rate * self.duration_time
        main = self.turns_mean * (1.0 + self.batches_mean)
        sub = (self.turns_mean * self.batches_mean * self.spawn_fraction * self.subagents_mean
               * (1.0 + self.subagent_batches_mean))
        refs = main * -(-self.system_tokens // bt) + sub * -(-self.subagent_system_tokens // bt)
        return sessions * (main + sub), sessions * refs


def _blocks(tokens: int, bt: int) -> int:
    return -(-int(tokens) // bt)


class _Repo:
    """A repository: instruction blocks, and files as whole-block id arrays with popularity."""

    def __init__(self, rng: np.random.Generator, ids: BlockIds, p: SessionParams,
                 size_tokens: float) -> None:
        bt = p.block_tokens
        # none: no block (a length is at least one token)
        instr = length(rng, p.instructions_tokens, p.length_sigma) if p.instructions_tokens else 0
        self.instructions = ids.take(_blocks(instr, bt))
        nb = max(_blocks(size_tokens, bt), 1)
        lens = positive_int(lognormal(rng, p.file_tokens / bt, p.file_sigma, size=nb))
        cuts = np.cumsum(lens)
        blocks = ids.take(nb)
        self.files = np.split(blocks, cuts[cuts < nb])
        w = (np.arange(len(self.files)) + 1.0) ** -p.file_zipf_s  # ranks 1, 2, …
        self.cum = np.cumsum(w[rng.permutation(len(self.files))])
        self.cum /= self.cum[-1]

    def pick(self, rng: np.random.Generator) -> int:
        return int(min(np.searchsorted(self.cum, rng.random(), side="right"),
                       len(self.files) - 1))


class _Rows:
    """The calls emitted so far (creation order), as column lists."""

    def __init__(self) -> None:
        self.cols: dict[str, list] = {k: [] for k in (
            "arrival_at", "session_id", "parent_id", "input_tokens", "output_tokens", "repo_id",
            "turn_id", "context_id", "tool_calls")}
        self.blocks: list[np.ndarray] = []
        self.spans: list[np.ndarray] = []
        self.padding = 0

    def emit(self, ctx: Context, **values) -> int:
        blocks, tokens, spans = ctx.snapshot()
        self.blocks.append(blocks)
        self.spans.append(spans)
        for k, v in values.items():
            self.cols[k].append(v)
        self.cols["input_tokens"].append(tokens)
        self.padding += ctx.padding
        return len(self.blocks) - 1


class _Session:
    """One session's generation: its main loop over turns, sub-agents, compactions."""

    def __init__(self, gen: _Generator, sid: int, repo: int) -> None:
        self.g, self.sid, self.repo = gen, sid, repo
        self.versions: dict[int, np.ndarray | None] = {}  # file -> edited version's ids

    def run(self, at: float) -> None:
        g, p, rng = self.g, self.g.p, self.g.rng
        ctx, cid = self._fresh(main=True), self.g.new_context()
        parent = -1
        for turn in range(int(rng.geometric(1.0 / p.turns_mean))):
            ctx.add_private(g.length(p.user_tokens_mean))
            batches = int(rng.geometric(1.0 / (p.batches_mean + 1.0))) - 1
            at, ctx, cid, parent, _ = self._loop(ctx, cid, parent, at, turn, batches, True)
            at += float(lognormal(rng, p.think_time_mean, p.think_time_sigma))

    def _fresh(self, main: bool) -> Context:
        g = self.g
        ctx = Context(g.ids, g.p.block_tokens)
        ctx.add_shared(g.system if main else g.sub_system)
        ctx.add_shared(g.repos[self.repo].instructions)
        return ctx

    def _call(self, ctx, cid, parent, at, turn, out, tools) -> int:
        return self.g.rows.emit(ctx, arrival_at=at, session_id=self.sid, parent_id=parent,
                                output_tokens=out, repo_id=self.repo, turn_id=turn,
                                context_id=cid, tool_calls=tools)

    def _loop(self, ctx, cid, parent, at, turn, batches, main):
        """An agent loop of ``batches`` tool batches and a final answer; returns the state and
        the answer's length."""
        g, p, rng = self.g, self.g.p, self.g.rng
        for b in range(batches + 1):
            if ctx.tokens > p.compact_tokens:  # summarize, then continue on the summary
                row = self._call(ctx, cid, parent, at, turn, p.summary_tokens, 0)
                at += g.call_time(p.summary_tokens)
                ctx, cid, parent = self._fresh(main), g.new_context(), row
                ctx.add_private(p.summary_tokens)
            out = g.length(p.output_tokens_mean)
            if b == batches:
                self._call(ctx, cid, parent, at, turn, out, 0)
                ctx.add_private(out)
                return at + g.call_time(out), ctx, cid, parent, out
            spawn = main and rng.random() < p.spawn_fraction
            extra = p.subagents_mean if spawn else p.tools_per_batch_mean
            n_tools = 1 + int(rng.poisson(extra - 1.0))
            row = self._call(ctx, cid, parent, at, turn, out, n_tools)
            at += g.call_time(out)
            ctx.add_private(out)
            if spawn:
                at = self._spawn(ctx, row, at, turn, n_tools)
            else:
                at = self._tools(ctx, at, n_tools)
        raise AssertionError("unreachable")

    def _spawn(self, ctx: Context, row: int, at: float, turn: int, k: int) -> float:
        """``k`` sub-agents in parallel from ``at``; their answers join the parent's context."""
        g, p, rng = self.g, self.g.p, self.g.rng
        ends, answers = [], []
        for _ in range(k):
            sub = self._fresh(main=False)
            sub.add_private(g.length(p.task_tokens))
            batches = int(rng.geometric(1.0 / (p.subagent_batches_mean + 1.0))) - 1
            end, *_, answer = self._loop(sub, g.new_context(), row, at, turn, batches, False)
            ends.append(end)
            answers.append(answer)
        for a in answers:
            ctx.add_private(a)
        return max(ends)

    def _tools(self, ctx: Context, at: float, n: int) -> float:
        """A batch of ``n`` ordinary tool calls: results appended, the slowest one's time."""
        g, p, rng = self.g, self.g.p, self.g.rng
        repo = g.repos[self.repo]
        kind = rng.random(n)
        for u in kind:
            if u < p.read_fraction:
                f = repo.pick(rng)
                if f in self.versions:  # edited here: a version only this session has
                    if self.versions[f] is None:
                        self.versions[f] = g.ids.take(len(repo.files[f]))
                    ctx.add_span(self.versions[f])
                else:
                    ctx.add_span(repo.files[f])
            elif u < p.read_fraction + p.edit_fraction:
                self.versions[repo.pick(rng)] = None  # its next read is a new version
                ctx.add_private(g.length(p.edit_tokens_mean))
            else:
                ctx.add_private(g.length(p.tool_tokens_mean))
        return at + float(np.max(lognormal(rng, p.tool_time_mean, p.tool_time_sigma, size=n)))


class _Generator:
    """Shared state of one generation: parameters, stream, ids, repositories, rows."""

    def __init__(self, rng: np.random.Generator, p: SessionParams) -> None:
        self.rng, self.p = rng, p
        bt = p.block_tokens
        self.ids = BlockIds()
        self.system = self.ids.take(_blocks(p.system_tokens, bt))
        self.sub_system = self.ids.take(_blocks(p.subagent_system_tokens, bt))
        sizes = lognormal(rng, p.repo_tokens, p.repo_size_sigma, size=p.n_repos)
        self.repos = [_Repo(rng, self.ids, p, s) for s in sizes]
        w = np.arange(1, p.n_repos + 1, dtype=np.float64) ** -p.repo_zipf_s
        self.repo_weights = w / w.sum()
        self.rows = _Rows()
        self.contexts = 0

    def new_context(self) -> int:
        self.contexts += 1
        return self.contexts - 1

    def length(self, mean: float) -> int:
        return length(self.rng, mean, self.p.length_sigma) if mean else 0

    def call_time(self, out: int) -> float:
        return self.p.call_overhead_time + out * self.p.decode_time_per_token

    def arrivals(self) -> np.ndarray:
        p, rng = self.p, self.rng
        if p.sessions:
            return np.cumsum(rng.exponential(1.0 / p.session_rate, size=p.sessions))
        times, t = [], rng.exponential(1.0 / p.session_rate)
        while t < p.duration_time:
            times.append(t)
            t += rng.exponential(1.0 / p.session_rate)
        return np.asarray(times)


def generate_sessions(rng: np.random.Generator, params: SessionParams | None = None,
                      ) -> pd.DataFrame:
    """A request trace of structured agentic sessions (see the module docstring).

    ``attrs`` carries ``params`` and ``padding_tokens`` (prompt tokens that pad shared segments
    and spans to page boundaries, summed over calls).
    """
    p = params or SessionParams()
    g = _Generator(rng, p)
    for sid, start in enumerate(g.arrivals()):
        repo = int(rng.choice(p.n_repos, p=g.repo_weights))
        _Session(g, sid, repo).run(float(start))
    c = g.rows.cols
    arrival = np.asarray(c["arrival_at"], dtype=np.float64)
    order = np.argsort(arrival, kind="stable")  # ties: creation order
    new_id = np.empty(len(order), dtype=np.int64)
    new_id[order] = np.arange(len(order), dtype=np.int64)
    parent = np.asarray(c["parent_id"], dtype=np.int64)
    parent = np.where(parent >= 0, new_id[np.maximum(parent, 0)], -1)

    def col(name):
        return np.asarray(c[name], dtype=np.int64)[order]

    df = make_trace(
        arrival_at=arrival[order], request_id=np.arange(len(order), dtype=np.int64),
        session_id=col("session_id"), parent_id=parent[order], input_tokens=col("input_tokens"),
        output_tokens=col("output_tokens"),
        block_ids=FlatBlocks.from_lists([g.rows.blocks[i] for i in order]),
        block_tokens=p.block_tokens, repo_id=col("repo_id"),
        spans=[g.rows.spans[i] for i in order], turn_id=col("turn_id"),
        context_id=col("context_id"), tool_calls=col("tool_calls"), source="session generator")
    df.attrs["params"] = p.to_dict()
    df.attrs["padding_tokens"] = g.rows.padding
    return df
