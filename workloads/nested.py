"""Nested generation: ``n`` inner generations whose outputs commute, then an outer judge.

The span-query paper's second non-chat workload (Castro et al., "Using Span Queries to Optimize
for Cache and Attention Locality", arXiv 2511.02749; inference-time scaling, best-of-n with a
judge). A *query* arrives (Poisson, ``request_rate``) and issues:

- ``candidates`` **inner** calls, all with the prompt ``[ system | task ]`` (the task padded to a
  page boundary, so each answer starts on a fresh page). At temperature 0 they all generate the
  same answer (same length, same content); above 0 each draws its own.
- one **judge** call, placed after the longest answer would be done (open loop:
  ``call_overhead_time + longest × decode_time_per_token``), whose prompt is
  ``[ system | task | answer₁ | … | answerₙ | judge question ]`` — each answer a commutative
  span (their order does not matter to the judge).

What the judge's answer blocks are decides what a server can reuse. With ``reuse_generated``
(the default), an answer's blocks are the very KV pages the engine kept when the inner call
generated it (``workloads.selections.generated_block_id`` of the inner request and its context
positions): a span-aware server reuses every answer (the span paper's point), a prefix cache
only the first one (it sits right after ``[system | task]``, where its inner call wrote it),
no reuse none. At temperature 0 the ``n`` answers are one answer repeated: the judge's spans are
the same pages ``n`` times. Without ``reuse_generated`` the answers are new text to the judge
(fresh ids — repeated ``n`` times at temperature 0, so span reuse computes one copy).

``session_id`` is the query; the judge's ``parent_id`` is the query's last inner call. Everything
random comes from the passed ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from workloads.context import BlockIds, check_params, length, lognormal, positive_int
from workloads.schema import FlatBlocks, make_trace
from workloads.selections import generated_block_id

__all__ = ["NestedParams", "generate_nested"]


@dataclass(frozen=True)
class NestedParams:
    """Best-of-n queries with a judge (modelling choices, not measurements).

    Attributes:
        duration_time: arrival window of queries [s].
        request_rate: queries per second (each makes ``candidates + 1`` calls).
        candidates: inner generations per query (``n``).
        temperature: sampling temperature; 0 makes the ``n`` answers identical.
        system_tokens: shared instructions [tokens].
        task_tokens: mean task (problem statement) [tokens], lognormal.
        answer_tokens: mean inner answer [tokens], lognormal.
        judge_tokens: the judge's question after the answers [tokens].
        judge_output_tokens: the judge's verdict [tokens].
        reuse_generated: the judge's answer spans are the inner calls' generated KV pages.
        length_sigma: lognormal sigma of task and answer lengths.
        call_overhead_time, decode_time_per_token: place the judge after the answers [s],
            [s/token].
        block_tokens: tokens per block (the engine's page).
    """

    duration_time: float = 60.0
    request_rate: float = 0.2
    candidates: int = 8
    temperature: float = 0.7
    system_tokens: int = 256
    task_tokens: int = 512
    answer_tokens: int = 256
    judge_tokens: int = 64
    judge_output_tokens: int = 16
    reuse_generated: bool = True
    length_sigma: float = 0.5
    call_overhead_time: float = 0.5
    decode_time_per_token: float = 0.02
    block_tokens: int = 64

    def __post_init__(self) -> None:
        check_params(self, positive=("duration_time", "request_rate", "candidates",
                                     "task_tokens", "answer_tokens", "judge_tokens",
                                     "judge_output_tokens", "block_tokens"),
                     non_negative=("temperature", "system_tokens", "length_sigma",
                                   "call_overhead_time", "decode_time_per_token"))

    def to_dict(self) -> dict:
        """The parameters as a plain dict."""
        return asdict(self)

    def expected_size(self) -> tuple[float, float]:
        """Expected (requests, block references), for refusing a workload too large to hold:
        ``candidates + 1`` calls a query, each reading the system prompt and the task (rounded
        up to whole blocks: + 0.5 on average); the judge also reads every answer and its
        question."""
        bt = self.block_tokens
        queries = self.request_rate * self.duration_time
        calls = self.candidates + 1.0
        prompt = -(-self.system_tokens // bt) + self.task_tokens / bt + 0.5
        judge = self.candidates * (self.answer_tokens / bt + 0.5) + -(-self.judge_tokens // bt)
        return queries * calls, queries * (calls * prompt + judge)


def generate_nested(rng: np.random.Generator, params: NestedParams | None = None,
                    ) -> pd.DataFrame:
    """A request trace of best-of-n queries with a judge (see the module docstring)."""
    p = params or NestedParams()
    bt = p.block_tokens
    ids = BlockIds()
    system = ids.take(-(-p.system_tokens // bt))
    rows: list[dict] = []  # creation order; a judge's "answers" are (row, blocks) of inners
    t = rng.exponential(1.0 / p.request_rate)
    query = 0
    while t < p.duration_time:
        task_len = length(rng, p.task_tokens, p.length_sigma)
        prompt = np.concatenate([system, ids.take(-(-task_len // bt))])
        if p.temperature == 0:
            answers = np.full(p.candidates, positive_int(lognormal(rng, p.answer_tokens,
                                                                   p.length_sigma)))
        else:
            answers = positive_int(lognormal(rng, p.answer_tokens, p.length_sigma,
                                             size=p.candidates))
        first = len(rows)
        for a in answers:
            rows.append(dict(at=t, query=query, parent=-1, blocks=prompt, answers=None,
                             out=int(a)))
        judge_at = t + p.call_overhead_time + int(answers.max()) * p.decode_time_per_token
        same = p.temperature == 0
        rows.append(dict(at=judge_at, query=query, parent=len(rows) - 1, blocks=prompt,
                         out=p.judge_output_tokens,
                         answers=[(first if same else first + i, int(a))
                                  for i, a in enumerate(answers)],
                         question=ids.take(-(-p.judge_tokens // bt))))
        query += 1
        t += rng.exponential(1.0 / p.request_rate)

    at = np.asarray([r["at"] for r in rows], dtype=np.float64)
    order = np.argsort(at, kind="stable")
    new_id = np.empty(len(order), dtype=np.int64)
    new_id[order] = np.arange(len(order), dtype=np.int64)
    fresh: dict[int, np.ndarray] = {}  # inner row -> its answer's ids when not reused
    blocks, spans, inputs = [], [], []
    for r in rows:
        if r["answers"] is None:
            blocks.append(r["blocks"])
            spans.append(np.zeros(0, dtype=np.int64))
            inputs.append(len(r["blocks"]) * bt)  # page-aligned: the answer starts a page
            continue
        parts, cuts = [r["blocks"]], []
        pos = len(r["blocks"])
        for inner, answer in r["answers"]:
            nb = -(-answer // bt)
            if p.reuse_generated:
                span = generated_block_id(new_id[inner], np.arange(len(r["blocks"]),
                                                                    len(r["blocks"]) + nb))
            else:
                span = fresh.setdefault(inner, ids.take(nb))
            parts.append(np.asarray(span, dtype=np.int64))
            cuts += [pos, pos + nb]
            pos += nb
        parts.append(r["question"])
        blocks.append(np.concatenate(parts))
        spans.append(np.asarray(cuts, dtype=np.int64))
        inputs.append((pos + len(r["question"]) - 1) * bt + (p.judge_tokens - 1) % bt + 1)
    df = make_trace(
        arrival_at=at[order], request_id=np.arange(len(order), dtype=np.int64),
        session_id=np.asarray([rows[i]["query"] for i in order], dtype=np.int64),
        parent_id=np.asarray([new_id[rows[i]["parent"]] if rows[i]["parent"] >= 0 else -1
                              for i in order], dtype=np.int64),
        input_tokens=np.asarray(inputs, dtype=np.int64)[order],
        output_tokens=np.asarray([rows[i]["out"] for i in order], dtype=np.int64),
        block_ids=FlatBlocks.from_lists([blocks[i] for i in order]), block_tokens=bt,
        spans=[spans[i] for i in order], source="nested-generation generator")
    df.attrs["params"] = p.to_dict()
    return df
