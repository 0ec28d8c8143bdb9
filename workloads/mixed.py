"""A mixed fleet on one cluster: sub-agents over a shared repository, private long-context
sessions and a background of short chats — where no one option is right for every round.

Three populations share the cluster, each from its own random stream:

- **sub-agents** (:mod:`workloads.agentic`, one repository): every agent reads the same
  repository blocks, which live on whichever GPU prefilled them first — a *hot owner* whose
  blocks many queries select again and again (high reuse of a fetched copy), and whose compute
  stream is busy with its own prefills and decodes;
- **private long-context sessions**: a long document (lognormal around ``private_tokens``) read
  over a few turns, each turn appending its answer and the user's next message. Without session
  affinity (``private_affinity = False``, the default: a load balancer sends every call to the
  least-loaded GPU) a turn usually runs on another GPU than the one that prefilled the document
  and the earlier turns, and reads that KV remotely — a *cold owner* that only this session uses,
  for the few hundred decode steps of one answer (little reuse);
- **short chats**: short single-turn prompts and answers (Poisson), local to their GPU; they add
  load and fill batches.

Block ids are disjoint between populations; arrivals are merged in time order (ties keep the
order sub-agents, private, chats). ``session_id`` separates agents, sessions (each turn its own
without affinity) and chats; ``repo_id`` is the repository for sub-agents, none otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from workloads.agentic import AgenticParams, generate_agentic, task_arrivals
from workloads.context import BlockIds, length
from workloads.schema import FlatBlocks, make_trace


@dataclass(frozen=True)
class MixedFleetParams:
    """The three populations (defaults: a small fleet that simulates in about a minute).

    Attributes:
        duration_time: window in which tasks, sessions and chats arrive [s].
        subagents: sub-agents per task.
        task_rate: sub-agent tasks per second.
        repo_tokens: the shared repository [tokens] (exactly: no size spread).
        agent_turns_mean: mean turns per sub-agent (geometric, ≥ 1).
        agent_output_tokens_mean: mean tokens a sub-agent generates per turn.
        agent_tool_tokens_mean: mean tool-result tokens appended per sub-agent turn.
        private_rate: private sessions starting per second.
        private_tokens: mean document of a private session [tokens] (lognormal).
        private_turns_mean: mean turns per private session (geometric, ≥ 1).
        private_output_tokens_mean: mean tokens generated per private turn.
        private_user_tokens_mean: mean tokens of the user's next message [tokens].
        private_think_time_mean: mean time between an answer and the next turn [s].
        private_affinity: keep a session's turns on one GPU (its KV then stays local).
        chat_rate: short chats per second.
        chat_tokens_mean: mean chat prompt [tokens].
        chat_output_tokens_mean: mean chat answer [tokens].
        length_sigma: lognormal sigma of every length above.
        decode_time_per_token: generation time used to place a session's next turn [s/token].
        block_tokens: tokens per block.
    """

    duration_time: float = 60.0
    subagents: int = 16
    task_rate: float = 0.05
    repo_tokens: int = 65_536
    agent_turns_mean: float = 2.0
    agent_output_tokens_mean: float = 100.0
    agent_tool_tokens_mean: float = 512.0
    private_rate: float = 0.2
    private_tokens: int = 16_384
    private_turns_mean: float = 3.0
    private_output_tokens_mean: float = 200.0
    private_user_tokens_mean: float = 256.0
    private_think_time_mean: float = 5.0
    private_affinity: bool = False
    chat_rate: float = 0.5
    chat_tokens_mean: float = 1_024.0
    chat_output_tokens_mean: float = 128.0
    length_sigma: float = 0.5
    decode_time_per_token: float = 0.02
    block_tokens: int = 64

    def __post_init__(self) -> None:
        positive = ("duration_time", "subagents", "repo_tokens", "agent_turns_mean",
                    "agent_output_tokens_mean", "private_tokens", "private_turns_mean",
                    "private_output_tokens_mean", "chat_tokens_mean", "chat_output_tokens_mean",
                    "block_tokens")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("task_rate", "private_rate", "chat_rate", "agent_tool_tokens_mean",
                        "private_user_tokens_mean", "private_think_time_mean", "length_sigma",
                        "decode_time_per_token")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.agent_turns_mean < 1 or self.private_turns_mean < 1:
            raise ValueError("agent_turns_mean and private_turns_mean must be >= 1")

    def to_dict(self) -> dict:
        """The parameters as a plain dict."""
        return asdict(self)

    def agentic(self) -> AgenticParams:
        """The sub-agent population as the agentic generator's parameters."""
        return AgenticParams(
            duration_time=self.duration_time, task_rate=max(self.task_rate, 1e-9), n_repos=1,
            repo_tokens=self.repo_tokens, repo_size_sigma=0.0,
            repo_min_tokens=min(self.repo_tokens, 100_000), subagents=self.subagents,
            turns_mean=self.agent_turns_mean, output_tokens_mean=self.agent_output_tokens_mean,
            tool_tokens_mean=self.agent_tool_tokens_mean, length_sigma=self.length_sigma,
            decode_time_per_token=self.decode_time_per_token, block_tokens=self.block_tokens)

    def expected_size(self) -> tuple[float, float]:
        """Expected (requests, block references), for refusing a workload too large to hold."""
        a_req, a_refs = self.agentic().expected_size() if self.task_rate > 0 else (0.0, 0.0)
        bt = self.block_tokens
        p_req = self.private_rate * self.duration_time * self.private_turns_mean
        # a session's turn t (0, 1, …) reads its document and t answers and user messages;
        # over geometric turns of mean μ a turn's mean t is μ − 1 (as the sub-agents'); every
        # prompt is rounded up to whole blocks (+ 0.5 on average)
        grown = (self.private_turns_mean - 1.0) * (self.private_output_tokens_mean
                                                   + self.private_user_tokens_mean)
        p_refs = p_req * ((self.private_tokens + grown) / bt + 0.5)
        c_req = self.chat_rate * self.duration_time
        return (a_req + p_req + c_req,
                a_refs + p_refs + c_req * (self.chat_tokens_mean / bt + 0.5))


def _poisson_times(rng: np.random.Generator, rate: float, duration: float) -> np.ndarray:
    if rate <= 0:
        return np.zeros(0)
    return task_arrivals(rng, AgenticParams(duration_time=duration, task_rate=rate))


def _private(rng: np.random.Generator, p: MixedFleetParams, fresh_ids: BlockIds) -> dict:
    """The private sessions' rows (block ids from ``fresh_ids``)."""
    bt, sig = p.block_tokens, p.length_sigma
    rows: dict[str, list] = {k: [] for k in ("arrival_at", "session", "input", "output",
                                             "blocks")}
    for s, start in enumerate(_poisson_times(rng, p.private_rate, p.duration_time)):
        tokens = length(rng, p.private_tokens, sig)
        ids = fresh_ids.take(-(-tokens // bt))
        at = float(start)
        for turn in range(int(rng.geometric(1.0 / p.private_turns_mean))):
            out = length(rng, p.private_output_tokens_mean, sig)
            rows["arrival_at"].append(at)
            rows["session"].append((s, turn))
            rows["input"].append(tokens)
            rows["output"].append(out)
            rows["blocks"].append(ids)
            user = length(rng, p.private_user_tokens_mean, sig) \
                if p.private_user_tokens_mean else 0
            think = (rng.exponential(p.private_think_time_mean)
                     if p.private_think_time_mean else 0.0)
            at += out * p.decode_time_per_token + think
            kept = tokens // bt  # full blocks keep their ids: the next turn extends this prompt
            tokens += out + user
            ids = np.concatenate([ids[:kept], fresh_ids.take(-(-tokens // bt) - kept)])
    return rows


def generate_mixed_fleet(rng: np.random.Generator,
                         params: MixedFleetParams | None = None) -> pd.DataFrame:
    """A request trace of the mixed fleet described by ``params`` (see the module docstring).

    ``attrs`` carries ``params`` and ``population`` (per request: ``"subagent"``,
    ``"private"`` or ``"chat"``, in the trace's order).
    """
    p = params or MixedFleetParams()
    bt = p.block_tokens
    agent_rng, private_rng, chat_rng = rng.spawn(3)
    parts = []  # (arrival, session, parent, input, output, blocks, repo, spans, population)
    if p.task_rate > 0:
        a = generate_agentic(agent_rng, p.agentic())
        ids = a["block_ids"].tolist()
        for i in range(len(a)):
            parent = a["parent_id"].iloc[i]
            parts.append((float(a["arrival_at"].iloc[i]), ("a", int(a["session_id"].iloc[i])),
                          -1 if pd.isna(parent) else int(parent), int(a["input_tokens"].iloc[i]),
                          int(a["output_tokens"].iloc[i]), ids[i], 0, a["spans"].iloc[i],
                          "subagent", i))
        first = int(max((int(x.max()) for x in ids if len(x)), default=-1)) + 1
    else:
        first = 0
    fresh_ids = BlockIds(first)  # private sessions', then chats' blocks
    pr = _private(private_rng, p, fresh_ids)
    for at, (s, turn), inp, out, blocks in zip(pr["arrival_at"], pr["session"], pr["input"],
                                               pr["output"], pr["blocks"], strict=True):
        key = ("p", s) if p.private_affinity else ("p", s, turn)
        parts.append((at, key, -1, inp, out, blocks, -1, np.zeros(0, np.int64), "private", -1))
    for i, at in enumerate(_poisson_times(chat_rng, p.chat_rate, p.duration_time)):
        tokens = length(chat_rng, p.chat_tokens_mean, p.length_sigma)
        out = length(chat_rng, p.chat_output_tokens_mean, p.length_sigma)
        blocks = fresh_ids.take(-(-tokens // bt))
        parts.append((float(at), ("c", i), -1, tokens, out, blocks, -1, np.zeros(0, np.int64),
                      "chat", -1))
    order = sorted(range(len(parts)), key=lambda k: (parts[k][0], k))
    sessions: dict[tuple, int] = {}
    new_index = {}  # a sub-agent trace row → its row here (parents)
    for row, k in enumerate(order):
        if parts[k][9] >= 0:
            new_index[parts[k][9]] = row
        sessions.setdefault(parts[k][1], len(sessions))
    rows = [parts[k] for k in order]
    df = make_trace(
        arrival_at=[r[0] for r in rows],
        session_id=[sessions[r[1]] for r in rows],
        parent_id=[new_index[r[2]] if r[2] >= 0 else -1 for r in rows],
        input_tokens=[r[3] for r in rows],
        output_tokens=[r[4] for r in rows],
        block_ids=FlatBlocks.from_lists([r[5] for r in rows]),
        block_tokens=bt,
        repo_id=[r[6] for r in rows],
        spans=[r[7] for r in rows],
        source="mixed fleet generator",
    )
    df.attrs["params"] = p.to_dict()
    df.attrs["population"] = [r[8] for r in rows]
    return df
