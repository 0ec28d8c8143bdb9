"""Compiled max-min filling of a phase's own flows (:func:`simulator.engine.fast_sharing.max_min_finish`).

A phase of a few flows that share links — a home's routed queries or fetch requests to several
owners over its own NVLink, the answers coming back — is timed by progressive filling, re-filled
at every start and completion. It runs for every phase whose shape has not been seen (the answers
of a routed slot start at the owners' kernel ends, which seldom repeat: 17 % of the default
scenario's phases under `route`). In Python, with dicts and sets per filling, a phase of two
flows with staggered starts took 12.3 µs, of eight 101 µs, of sixteen 317 µs; compiled, 5.2, 8.8
and 15.7 µs (`timeit`, docs/performance.md, *Stop 59*).

:func:`max_min_kernel` is that algorithm on arrays, operation for operation — the same sums,
products, quotients and comparisons on the same values, so the same floats (IEEE arithmetic with
no reassociation; a minimum does not depend on the order it is taken in):

- flows start in order of ``(start, index)``; at each start and completion the rates are filled:
  the common level of the unfrozen flows rises by the least of each used link's residual over its
  unfrozen flows and each unfrozen flow's room to its cap; flows at their cap, and every unfrozen
  flow on a link left with no residual (``<= 1e-12`` of its line rate), freeze;
- a flow ends when what is left of it is at most ``1e-9`` of its bytes.

The links a phase uses are numbered locally (a phase uses a handful of the fabric's links), so
the work arrays are the phase's size, not the fabric's. The Python version is kept as the tests'
reference (:mod:`simulator.testing.sharing_reference`), which
``tests/test_engine_fast_calendar.py`` holds this one to, float for float.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def max_min_kernel(flows, paths, line):
    """When each flow ends [s] under max-min sharing with per-flow caps, re-filled at every
    start and completion (see the module docstring). ``flows`` holds the ``n`` flows' starts
    [s], then their bytes [B], then their caps [B/s]; ``paths`` each flow's number of links
    followed by those links (indices into ``line``, line rates [B/s]) — two arrays, so a call
    converts little. At least one flow."""
    n = len(flows) // 3
    starts = flows[:n]
    nbytes = flows[n : 2 * n]
    caps = flows[2 * n :]
    finish = np.zeros(n)
    # flow i's links are local[first[i]:stop[i]]: the phase's links, numbered in order of
    # first use
    first = np.empty(n, np.int64)
    stop = np.empty(n, np.int64)
    ids = np.empty(len(paths), np.int64)
    local = np.empty(len(paths), np.int64)
    m = 0
    at = 0
    for i in range(n):
        first[i] = at + 1
        stop[i] = at + 1 + paths[at]
        for w in range(first[i], stop[i]):
            x = paths[w]
            j = 0
            while j < m and ids[j] != x:
                j += 1
            if j == m:
                ids[m] = x
                m += 1
            local[w] = j
        at = stop[i]
    rates_line = np.empty(m)
    for j in range(m):
        rates_line[j] = line[ids[j]]
    # flows in order of (start, index): an insertion sort, stable
    order = np.arange(n)
    for a in range(1, n):
        i = order[a]
        b = a - 1
        while b >= 0 and starts[order[b]] > starts[i]:
            order[b + 1] = order[b]
            b -= 1
        order[b + 1] = i
    left = nbytes.copy()
    rate = np.zeros(n)
    res = np.empty(m)
    # unfrozen active flows per link: 0 between fillings (a flow counted on its links is taken
    # off them when it freezes, and a filling ends when every flow has frozen)
    cnt = np.zeros(m, np.int64)
    free = np.zeros(n, np.bool_)
    frozen = np.zeros(n, np.bool_)
    active = np.empty(n, np.int64)
    na = 0
    k = 0
    t = starts[order[0]]
    while k < n or na:
        while k < n and starts[order[k]] <= t:
            active[na] = order[k]
            na += 1
            k += 1
        if na == 0:
            t = starts[order[k]]
            continue
        # progressive filling of the active flows' rates (a link without an unfrozen flow,
        # cnt 0, takes no part)
        for a in range(na):
            i = active[a]
            for w in range(first[i], stop[i]):
                j = local[w]
                res[j] = rates_line[j]
                cnt[j] += 1
            rate[i] = 0.0
            free[i] = True
        n_free = na
        while n_free:
            inc = np.inf
            for j in range(m):
                if cnt[j] > 0:
                    v = res[j] / cnt[j]
                    if v < inc:
                        inc = v
            for a in range(na):
                i = active[a]
                if free[i]:
                    v = caps[i] - rate[i]
                    if v < inc:
                        inc = v
            for a in range(na):
                i = active[a]
                frozen[i] = False
                if free[i]:
                    rate[i] += inc
                    if caps[i] - rate[i] <= 1e-12 * caps[i]:
                        frozen[i] = True
            for j in range(m):
                if cnt[j] > 0:
                    res[j] -= inc * cnt[j]
            for j in range(m):
                if cnt[j] > 0 and res[j] <= 1e-12 * rates_line[j]:
                    for a in range(na):
                        i = active[a]
                        if free[i]:
                            for w in range(first[i], stop[i]):
                                if local[w] == j:
                                    frozen[i] = True
            for a in range(na):
                i = active[a]
                if frozen[i] and free[i]:
                    free[i] = False
                    n_free -= 1
                    for w in range(first[i], stop[i]):
                        cnt[local[w]] -= 1
        step = np.inf
        for a in range(na):
            i = active[a]
            v = left[i] / rate[i]
            if v < step:
                step = v
        nxt = starts[order[k]] if k < n else np.inf
        if t + step <= nxt:
            t_new = t + step
            still = 0
            for a in range(na):
                i = active[a]
                left[i] -= rate[i] * step
                if left[i] <= 1e-9 * nbytes[i]:
                    finish[i] = t_new
                else:
                    active[still] = i
                    still += 1
            na = still
            t = t_new
        else:
            dt = nxt - t
            for a in range(na):
                i = active[a]
                left[i] -= rate[i] * dt
            t = nxt
    return finish
