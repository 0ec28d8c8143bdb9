"""The sparse selector's array code before its loops were compiled: the tests' reference.

:mod:`workloads.sparse_kernels` does in compiled loops what :mod:`workloads.sparse` once did with
whole-array numpy passes (sort-based deduplication, renewal by a running maximum of flat
indices). This module keeps that array code, unchanged, so the tests can hold the kernels to it
on random inputs: the same random streams must give the same selections, bit for bit. It is not
used by the simulator.
"""

from __future__ import annotations

import numpy as np

from workloads.sparse import SparseSelector, _zipf
from workloads.sparse_kernels import PRIME

__all__ = ["ArraySelector", "array_selector", "first_distinct", "gumbel_keys", "gumbel_top",
           "last_renewal", "oversampled"]


class ArraySelector(SparseSelector):
    """A :class:`~workloads.sparse.SparseSelector` that samples with the array code below in
    place of the compiled kernels (the tests' reference; ``benchmarks/bench_sparse.py``'s
    baseline)."""

    def _oversampled(self, rng, avail, pop, foc, n_layers: int, k: int):
        return oversampled(self, rng, avail, pop, foc, n_layers, k)

    def _gumbel_top(self, rng, logw, valid, n_layers: int, k: int) -> np.ndarray:
        return gumbel_top(self, rng, logw, valid, n_layers, k)


def array_selector(sel: SparseSelector) -> ArraySelector:
    """``sel``'s knobs on an :class:`ArraySelector`."""
    return ArraySelector(**{f: getattr(sel, f) for f in sel.__dataclass_fields__})


def oversampled(sel, rng, avail, pop, foc, n_layers: int, k: int):
    """Fast path: draw with replacement, dedupe in draw order, keep the first k."""
    qn = len(avail)
    one = qn == 1  # the common case: index per-query arrays by broadcasting, not gathers
    m = int(np.ceil(k * sel.oversample)) + 4
    shape = (qn, n_layers, m)
    # which slots draw afresh (the rest keep the previous layer's draw): draw only those
    renew = sel._renew_mask(rng, shape)
    qi = (np.zeros(np.count_nonzero(renew), np.int64) if one and renew is not None else
          np.repeat(np.arange(qn), n_layers * m if renew is None else  # each draw's query
                    np.count_nonzero(renew.reshape(qn, -1), axis=1)))
    u = rng.random((3, len(qi)))
    comp = u[0]
    fresh = (u[1] * (avail if one else avail[qi])).astype(np.int64)  # uniform draws
    p_pop = sel.popular_fraction
    if p_pop > 0:
        rb = sel.region_blocks
        regions = -(-pop // rb)
        q = slice(None) if one else qi  # one query: its (1,) arrays broadcast, no gathers
        use = ((comp < p_pop) & (regions[q] > 0)).nonzero()[0]
        q = q if one else qi[use]
        rmod = np.maximum(regions, 1)[q]
        if len(use):
            cdf = _zipf(sel.zipf_s, int(regions.max()))[0]
            rank = np.searchsorted(cdf, u[1, use] * cdf[rmod - 1], side="right")
            rank = np.minimum(rank, rmod - 1)
            region = (rank * (PRIME % rmod) + sel.salt % rmod) % rmod
            start = region * rb
            length = np.minimum(rb, pop[q] - start)
            fresh[use] = start + (u[2, use] * length).astype(np.int64)
    if foc is not None:  # one of the query's own (valid) entries, uniformly
        own = [row[row >= 0] for row in foc]
        nf = np.array([len(row) for row in own], np.int64)
        use = ((comp >= p_pop) & (comp < p_pop + sel.focus_fraction)).nonzero()[0]
        q = np.zeros(len(use), np.int64) if one else qi[use]
        has = nf[q] > 0  # none valid: the draw stays uniform
        use, q = use[has], q[has]
        col = (u[2, use] * nf[q]).astype(np.int64)
        fresh[use] = [own[i][c] for i, c in zip(q.tolist(), col.tolist(), strict=True)]
    if renew is None:
        rows = fresh.reshape(-1, m)
    else:  # each slot takes the draw of its last renewing layer (flat index, forward-filled)
        cand = np.empty(qn * n_layers * m, dtype=np.int64)
        np.place(cand, renew.ravel(), fresh)
        rows = cand[last_renewal(renew)].reshape(-1, m)
    got, ok_rows = first_distinct(rows, k)
    ok_q = ok_rows.reshape(qn, n_layers).all(axis=1)
    return got.reshape(qn, n_layers, k), ok_q


def gumbel_keys(sel: SparseSelector, rng, logw: np.ndarray, valid: np.ndarray,
                n_layers: int) -> np.ndarray:
    """The exact path's negated keys after its weights, ``(Q, n_layers, A)``, as the array code
    drew and built them (noise for every layer and block, then persisted by the mask)."""
    qn, amax = logw.shape
    noise = rng.gumbel(size=(qn, n_layers, amax))
    renew = sel._renew_mask(rng, noise.shape)
    if renew is not None:
        noise = noise.ravel()[last_renewal(renew)]
    keys = np.add(logw[:, None, :], noise, out=noise)
    finite = np.isfinite(keys)
    if not finite.all():
        keys = np.where(finite, keys, np.where(valid[:, None, :], -1e300, -np.inf))
    return np.negative(keys, out=keys)


def gumbel_top(sel: SparseSelector, rng, logw: np.ndarray, valid: np.ndarray, n_layers: int,
               k: int) -> np.ndarray:
    """The exact path's picks after its weights, ``(Q, n_layers, k)``, unsorted."""
    keys = gumbel_keys(sel, rng, logw, valid, n_layers)
    return np.argpartition(keys, k - 1, axis=2)[:, :, :k].astype(np.int64)


def first_distinct(rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's first ``k`` distinct values in column order, ``(R, k)`` (zeros for rows with
    fewer), and which rows had ``k``; values are non-negative ints."""
    R, m = rows.shape  # sort each row by (value, column), packed in one integer key
    cb = max((m - 1).bit_length(), 1)
    dt = np.int32 if (int(rows.max(initial=0)) + 1) << cb <= 2**31 else np.int64
    key = rows.astype(dt) << cb
    key |= np.arange(m, dtype=dt)
    key.sort(axis=1)
    val = key >> cb
    first = np.empty((R, m), dtype=bool)
    first[:, 0] = True
    np.not_equal(val[:, 1:], val[:, :-1], out=first[:, 1:])
    pos = (key & ((1 << cb) - 1)) + np.arange(0, R * m, m)[:, None]
    keep = np.empty((R, m), dtype=bool)
    keep.ravel()[pos] = first  # pos: a permutation of the row's slots
    rank_kept = np.cumsum(keep, axis=1)
    chosen = keep & (rank_kept <= k)
    ok_rows = rank_kept[:, -1] >= k
    good = slice(None) if ok_rows.all() else np.flatnonzero(ok_rows)
    got = np.zeros((R, k), dtype=np.int64)
    got[good] = rows[good][chosen[good]].reshape(-1, k)
    return got, ok_rows


def last_renewal(renew: np.ndarray) -> np.ndarray:
    """Per slot of a ``(Q, layers, M)`` renewal mask (layer 0 all True): its last renewal's
    flat index."""
    src = np.where(renew, np.arange(renew.size).reshape(renew.shape), 0)
    np.maximum.accumulate(src, axis=1, out=src)
    return src
