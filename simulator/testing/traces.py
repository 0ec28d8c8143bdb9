"""Hypothesis strategies and naive oracles for request traces.

Strategies build small but *valid* traces (sorted arrivals, positive lengths,
``len(block_ids) == ceil(input_tokens / block_tokens)``) whose block ids come from a small
vocabulary and often share prefixes, so cache-hit properties have something to bite on; some
requests carry commutative spans. The oracles recompute hit rates the slow, obvious way (a
set of seen prefix tuples, a set of seen ids) to check :mod:`workloads.spans`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

__all__ = [
    "naive_hits",
    "request_traces",
    "sparse_selectors",
    "trace_block_sizes",
]

#: Block sizes used by generated traces [tokens]: the engine page, an odd one, Mooncake's.
trace_block_sizes = st.sampled_from([16, 64, 512])


@st.composite
def request_traces(draw, max_requests: int = 12, max_blocks: int = 12, vocab: int = 20,
                   block_tokens: st.SearchStrategy[int] | None = None) -> pd.DataFrame:
    """A valid trace (see the module docstring). Block ids are drawn from ``range(vocab)``; a
    request often copies a prefix of an earlier one, and may mark commutative spans."""
    from workloads.schema import make_trace

    bt = draw(block_tokens if block_tokens is not None else trace_block_sizes)
    n = draw(st.integers(1, max_requests))
    gaps = draw(st.lists(st.floats(0, 5, allow_nan=False), min_size=n, max_size=n))
    blocks, spans, inputs, outputs = [], [], [], []
    for i in range(n):
        nb = draw(st.integers(1, max_blocks))
        ids = draw(st.lists(st.integers(0, vocab - 1), min_size=nb, max_size=nb))
        if i and draw(st.booleans()):  # share a prefix with an earlier request
            src = blocks[draw(st.integers(0, i - 1))]
            k = draw(st.integers(1, len(src)))
            ids = list(src[: min(k, nb)]) + ids[min(k, nb) :]
        cuts = sorted(set(draw(st.lists(st.integers(0, nb), max_size=4))))
        pairs = [(a, b) for a, b in zip(cuts[0::2], cuts[1::2], strict=False) if a < b]
        spans.append(np.array([x for p in pairs for x in p], dtype=np.int64))
        blocks.append(ids)
        inputs.append((nb - 1) * bt + draw(st.integers(1, bt)))
        outputs.append(draw(st.integers(1, 64)))
    return make_trace(arrival_at=np.cumsum(gaps), input_tokens=inputs, output_tokens=outputs,
                      block_ids=blocks, block_tokens=bt, spans=spans, source="strategy")


@st.composite
def sparse_selectors(draw, kinds=("dsa", "nsa", "dense")):
    """A :class:`workloads.sparse.SparseSelector` with random but valid knobs."""
    from workloads.sparse import SparseSelector

    pop = draw(st.floats(0, 1))
    return SparseSelector(
        kind=draw(st.sampled_from(list(kinds))),
        top_k_tokens=draw(st.sampled_from([64, 256, 512, 2048])),
        block_tokens=draw(st.sampled_from([16, 64, 128])),
        recent_tokens=draw(st.sampled_from([0, 64, 128, 512])),
        region_blocks=draw(st.integers(1, 32)),
        zipf_s=draw(st.floats(0, 2)),
        popular_fraction=pop,
        focus_fraction=draw(st.floats(0, 1 - pop)),
        layer_correlation=draw(st.floats(0, 0.95)),
        salt=draw(st.integers(0, 1000)),
    )


def naive_hits(df: pd.DataFrame) -> tuple[list[bool], list[bool], list[bool]]:
    """Slow oracle: per block reference (row order), (reuse, prefix hit, position-independent
    hit), against everything seen in *earlier* requests."""
    seen_ids: set[int] = set()
    seen_prefixes: set[tuple[int, ...]] = set()
    reuse, prefix, pi = [], [], []
    for ids, sp in zip(df["block_ids"], df["spans"], strict=True):
        ids = [int(x) for x in ids]
        in_span = [False] * len(ids)
        for a, b in zip(sp[0::2], sp[1::2], strict=True):
            for j in range(int(a), int(b)):
                in_span[j] = True
        for j, b in enumerate(ids):
            r = b in seen_ids
            p = tuple(ids[: j + 1]) in seen_prefixes
            reuse.append(r)
            prefix.append(p)
            pi.append(p or (in_span[j] and r))
        seen_ids.update(ids)
        seen_prefixes.update(tuple(ids[: j + 1]) for j in range(len(ids)))
    return reuse, prefix, pi
