"""Which experts tokens pick and where the experts live: popularity (uniform, Zipf or a table),
EPLB-style placement of experts and their replicas on the ranks, and top-k sampling without
replacement in proportion to the popularity (:mod:`simulator.costmodel.moe` uses them).

**EPLB placement** (:func:`place_experts`, after deepseek-ai/eplb: "replicate heavy-loaded
experts and heuristically pack the duplicated experts to GPUs"): each redundant slot goes to the
expert with the highest expected load per replica; replicas are then packed heaviest first onto
the rank with the least expected load that still has a free slot.
"""

from __future__ import annotations

import numpy as np


def popularity(kind, experts: int, rng: np.random.Generator,
               zipf_exponent: float = 1.0) -> np.ndarray:
    """Each expert's probability of being picked (sums to 1): ``"uniform"``, ``"zipf"`` (the
    expert of popularity rank ``i`` ∝ ``1 / i^s``, ranks given to the experts in a random order
    drawn from ``rng``) or a table of weights."""
    if isinstance(kind, str) and kind == "uniform":
        return np.full(experts, 1.0 / experts)
    if isinstance(kind, str) and kind == "zipf":
        w = 1.0 / np.arange(1, experts + 1, dtype=float) ** zipf_exponent
        w = w[rng.permutation(experts).argsort()]  # expert e has popularity rank perm⁻¹(e)
        return w / w.sum()
    w = np.asarray(kind, float)
    return w / w.sum()


def place_experts(probs: np.ndarray, ranks: int, slots: int) -> np.ndarray:
    """EPLB-style placement (see the module docstring): the expert in each of the ``ranks ×
    slots`` slots, shape ``(ranks, slots)``; ``ranks × slots − E`` slots hold replicas."""
    e = len(probs)
    total = ranks * slots
    count = np.ones(e, np.int64)
    for _ in range(total - e):  # each redundant slot to the heaviest expert per replica
        count[int(np.argmax(probs / count))] += 1
    items = np.repeat(np.arange(e), count)
    load = probs[items] / count[items]
    order = np.lexsort((items, -load))  # heaviest first, then by expert id
    out = np.full((ranks, slots), -1, np.int64)
    fill = np.zeros(ranks, np.int64)
    rank_load = np.zeros(ranks)
    for i in order.tolist():
        open_ = fill < slots
        cand = np.flatnonzero(open_)
        r = int(cand[np.argmin(rank_load[cand])])  # least loaded, lowest index on ties
        out[r, fill[r]] = items[i]
        fill[r] += 1
        rank_load[r] += load[i]
    return out


def sample_topk(rng: np.random.Generator, cdf: np.ndarray, tokens: int, k: int) -> np.ndarray:
    """``k`` distinct experts for each of ``tokens`` tokens, (tokens, k): draws in proportion to
    the popularity (cumulative ``cdf``) with the repeats skipped, which is sampling without
    replacement in proportion to the weights (Plackett–Luce); ``2k`` draws per token at a time,
    the few tokens short of ``k`` distinct drawn again."""
    E = len(cdf)
    if k > E:
        raise ValueError(f"top-{k} of {E} experts")
    m = max(2 * k, k + 4)
    out = np.empty((tokens, k), np.int64)
    todo = np.arange(tokens)
    while len(todo):
        u = rng.random((len(todo), m)) * cdf[-1]
        draws = np.minimum(np.searchsorted(cdf, u, side="right"), E - 1)
        order = np.argsort(draws, axis=1, kind="stable")
        sd = np.take_along_axis(draws, order, axis=1)
        first_sorted = np.ones(sd.shape, bool)
        first_sorted[:, 1:] = sd[:, 1:] != sd[:, :-1]
        first = np.zeros(sd.shape, bool)
        np.put_along_axis(first, order, first_sorted, axis=1)
        count = np.cumsum(first, axis=1)
        ok = count[:, -1] >= k
        rows = np.flatnonzero(ok)
        take = first[rows] & (count[rows] <= k)
        out[todo[rows]] = draws[rows][take].reshape(-1, k)
        todo = todo[~ok]
    return out
