"""Compiled loops of the sparse selector (:mod:`workloads.sparse`): the work between its draws.

:class:`~workloads.sparse.SparseSelector` draws its random numbers with numpy — the same calls,
shapes and order as ever, so a seed gives the same selections — and hands them to these numba
kernels, which do in one pass per query what took a dozen array passes (each ~50k elements for
16 decode steps of 61 layers) and the sort-based deduplication:

- :func:`oversampled_picks` — the fast path: each candidate slot of each layer takes a fresh
  draw where the renewal mask says so (else it keeps the previous layer's), a fresh draw is a
  mixture component (uniform over the older blocks, a Zipf-popular region of the repository,
  or the focus set) picked by the first of its three uniforms, and each layer keeps its first
  ``k`` distinct candidates in slot order (a stamp per block value instead of a sort);
- :func:`gumbel_keys` — the exact path's keys: ``-(log weight + Gumbel noise)`` with each
  block's noise persisting across layers where the renewal mask says so, and non-finite keys
  replaced as the exact path requires (numpy's ``argpartition`` then takes the top k). The
  noise is numpy's own Gumbel transform of the same uniforms, computed only for the draws that
  are kept (under a layer correlation of 0.7, three in ten): the logarithms were most of the
  path's cost.

Each kernel computes the very floats and integers the array code did (the same products,
truncations, binary search and additions), so the selections are bit-identical: the tests hold
the kernels to the array version (:mod:`simulator.testing.sparse_reference`) on random inputs.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Multiplier of the rank → region bijection of :mod:`workloads.sparse`; prime, larger than any
#: region count we meet (Knuth's multiplicative-hash constant).
PRIME = 2654435761

#: :func:`gumbel_keys`' renewal mask when every layer draws its own noise (an empty array).
NO_MASK = np.zeros((0, 0, 0), dtype=np.bool_)


@numba.njit(cache=True, nogil=True)
def _search_right(cdf: np.ndarray, x: float) -> int:
    """``np.searchsorted(cdf, x, side="right")``: the number of entries ≤ ``x``."""
    lo, hi = 0, len(cdf)
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def oversampled_picks(renew, u, avail, pop, foc, nf, cdf, p_pop, p_mix, region_blocks, salt, k):
    """The oversampled path's picks (see the module docstring).

    Args:
        renew: bool ``(Q, L, M)``: which candidate slots draw afresh at each layer (layer 0:
            all).
        u: float64 ``(3, R)``: three uniforms per renewing slot, in the mask's C order.
        avail, pop: int64 ``(Q,)``: each query's older blocks and its repository's length
            (≤ ``avail``) [blocks].
        foc: int64 ``(Q, F)``: each query's focus blocks first (its ``nf[q]`` valid entries,
            in order), then padding.
        nf: int64 ``(Q,)``: each query's valid focus entries (0: its focus draws are
            uniform).
        cdf: the cumulative Zipf weights of ranks ``1..max regions``.
        p_pop, p_mix: the popular share and the popular + focus share of draws.
        region_blocks: blocks per popularity region; salt: which regions are hot.
        k: distinct blocks to keep per layer.

    Returns:
        ``(picks, ok)``: int64 ``(Q, L, k)`` each layer's first ``k`` distinct candidates in
        slot order (rows of a query short of ``k``: undefined), and bool ``(Q,)`` whether
        every layer of the query found ``k``.
    """
    qn, n_layers, m = renew.shape
    picks = np.zeros((qn, n_layers, k), np.int64)
    ok = np.ones(qn, np.bool_)
    # the row that last kept each block value (values are < avail; + 1: u·avail rounded up)
    seen = np.full(avail.max() + 1, -1, np.int64)
    cur = np.zeros(m, np.int64)
    n_draws = u.shape[1]
    fresh = np.zeros(n_draws + 1, np.int64)  # each renewal's draw (+ one never kept)
    t0 = 0  # the query's first renewal
    stamp = 0
    for q in range(qn):
        t1 = t0  # past its last
        for layer in range(n_layers):
            for j in range(m):
                t1 += renew[q, layer, j]
        # the query's draws, one after another (each a mixture component by its first uniform)
        a = avail[q]
        rb_q = (pop[q] + region_blocks - 1) // region_blocks  # the repository's regions
        prime_mod = PRIME % rb_q if rb_q > 0 else 0
        salt_mod = salt % rb_q if rb_q > 0 else 0
        for t in range(t0, t1):
            comp = u[0, t]
            v = np.int64(u[1, t] * a)
            if p_pop > 0 and comp < p_pop and rb_q > 0:
                # u < 1, so the rank is below rb_q (the array code's cap never bound)
                rank = _search_right(cdf, u[1, t] * cdf[rb_q - 1])
                start = ((rank * prime_mod + salt_mod) % rb_q) * region_blocks
                length = min(region_blocks, pop[q] - start)
                v = start + np.int64(u[2, t] * length)
            elif p_pop <= comp < p_mix and nf[q] > 0:  # one of the query's own entries
                v = foc[q, np.int64(u[2, t] * nf[q])]
            fresh[t] = v
        # each slot takes the next draw where it renews, else keeps its own (a select, not a
        # branch: the mask is random); then the layer's first k distinct
        t = t0
        for layer in range(n_layers):
            for j in range(m):
                r = renew[q, layer, j]
                f = fresh[t]
                cur[j] = f if r else cur[j]
                t += r
            got = 0
            for j in range(m):
                v = cur[j]
                if seen[v] != stamp:
                    seen[v] = stamp
                    picks[q, layer, got] = v
                    got += 1
                    if got == k:
                        break
            stamp += 1
            if got < k:
                ok[q] = False
        t0 = t1
    return picks, ok


@numba.njit(cache=True, nogil=True)
def gumbel_keys(logw, valid, uniforms, renew):
    """The exact path's negated keys, float64 ``(Q, L, A)`` (see the module docstring).

    Args:
        logw: float64 ``(Q, A)``: log mixture weight per older block (−inf: none).
        valid: bool ``(Q, A)``: the query's older blocks.
        uniforms: float64 ``(Q, L, A)``: the uniforms ``Generator.gumbel`` would have turned
            into each layer's noise (``Generator.random`` gives the same doubles); only those
            the renewal mask keeps are turned, as ``−log(−log(1 − u))``.
        renew: bool ``(Q, L, A)``: which blocks' noise is drawn afresh at each layer (layer
            0: all); an empty array: every layer's own noise.

    Returns:
        ``−(logw + the persisting noise)``, or where that is not finite, 1e300 for a valid
        block and +inf otherwise.
    """
    qn, n_layers, amax = uniforms.shape
    keys = np.empty_like(uniforms)
    persist = renew.size > 0
    for q in range(qn):
        for b in range(amax):
            lw = logw[q, b]
            finite = np.isfinite(lw)
            fill = 1e300 if valid[q, b] else np.inf
            cur = 0.0
            for layer in range(n_layers):
                if layer == 0 or not persist or renew[q, layer, b]:
                    # numpy's random_gumbel(loc=0, scale=1), to the bit (it redraws u = 0,
                    # which has probability 2**-53; here it gives an infinite key instead)
                    cur = 0.0 - 1.0 * math.log(-math.log(1.0 - uniforms[q, layer, b]))
                if finite:
                    x = lw + cur
                    keys[q, layer, b] = -x if np.isfinite(x) else fill
                else:
                    keys[q, layer, b] = fill
    return keys
