"""The busy-time sweep on numpy arrays, before it was compiled: a reference.

:func:`simulator.network.busy.overlap_per_link` sweeps each piece of records with the compiled
:func:`~simulator.network.kernels.sweep_piece`. This module keeps the vectorized sweep it
replaced (each piece's (link, record) rows sorted by link, then start; the greatest end before
each row as a running maximum by doubling; the overlaps summed per link by ``bincount``),
unchanged, so the tests can hold the two to each other bit for bit. It is not used by the
simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from simulator.network.busy import sweep_start

__all__ = ["numpy_overlap_per_link"]

#: Link indices below this sort as ``uint16`` (numpy's radix sort, ~6x a 64-bit stable sort).
_SMALL_LINKS = 1 << 16


def _run_starts(link: np.ndarray) -> np.ndarray:
    """Per row of ``link`` (sorted): whether it opens its link's run of rows."""
    return np.r_[True, link[1:] != link[:-1]] if len(link) else np.zeros(0, bool)


def _greatest_before(link: np.ndarray, end: np.ndarray, top: np.ndarray,
                     first: np.ndarray) -> np.ndarray:
    """Per row (rows sorted by link, then start; ``first`` from :func:`_run_starts`): the
    greatest end [s] before it on its link — of the rows before it here and ``top`` (each
    link's greatest end settled earlier, or −inf). A running maximum within each link's run,
    by doubling (only maxima of the values: exact)."""
    n = len(link)
    before = np.empty(n)
    before[1:] = end[:-1]
    before[first] = top[link[first]]
    run = np.cumsum(first)
    d = 1
    while d < n:
        same = run[d:] == run[:-d]
        if not same.any():  # no two rows this far apart share a run, nor any farther
            break
        np.maximum(before[d:], np.where(same, before[:-d], -np.inf), out=before[d:])
        d *= 2
    return before


def numpy_overlap_per_link(routes: list[tuple[int, ...]],
                           records: Callable[[], Iterable[tuple]], nlinks: int) -> np.ndarray:
    """:func:`~simulator.network.busy.overlap_per_link` on numpy arrays: per link, how long
    [s] the records crossing it overlap one another."""
    after, (flat, offset, count), out, top = sweep_start(routes, records, nlinks)
    held_link, held_start, held_end = np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    for piece, (rid, start, end) in enumerate(records()):
        n = count[rid]
        rep = np.repeat(np.arange(len(rid)), n)
        # a record's k-th row takes the k-th link of its route
        k = np.arange(len(rep)) - np.repeat(np.cumsum(n) - n, n)
        link = np.concatenate((held_link, flat[offset[rid][rep] + k]))
        s = np.concatenate((held_start, start[rep]))
        e = np.concatenate((held_end, end[rep]))
        now = s < after[piece]
        held_link, held_start, held_end = link[~now], s[~now], e[~now]
        link, s, e = link[now], s[now], e[now]
        order = np.argsort(s, kind="stable")
        key = link[order].astype(np.uint16) if nlinks <= _SMALL_LINKS else link[order]
        order = order[np.argsort(key, kind="stable")]
        link, s, e = link[order], s[order], e[order]
        first = _run_starts(link)
        over = np.maximum(np.minimum(e, _greatest_before(link, e, top, first)) - s, 0.0)
        out += np.bincount(link, over, nlinks)
        runs = np.flatnonzero(first)  # each link's greatest end settled so far
        top[link[runs]] = np.maximum(top[link[runs]], np.maximum.reduceat(e, runs))
    return out
