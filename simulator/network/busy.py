"""A link's busy time from records that may overlap: the union of their intervals, not the sum.

The Fabric's own lone flows are alone on their links by construction, so a link's busy time is
the sum of their times. An engine that times its messages itself (the fast engine, the pool
loops' fast modes) hands :class:`~simulator.network.linkstats.LinkStats` records that may cross
one link at the same time — a phase's messages sharing a NIC, small messages taking the closed
form beside a bulk one — and the sum counts their common time once per message. A link is busy
while anything crosses it (docs/records.md), so :func:`overlap_per_link` finds, per link, the
time such records overlap one another (their summed times less the length of their union), and
the link's busy time is the sum less that. Where nothing overlaps it is 0.0 exactly, so a link
whose records never overlap keeps its busy time to the bit.

Per link the records are swept in order of start with the greatest end before each: a record
starting before that end overlaps the union so far by ``min(end, greatest) − start``, any order
among equal starts giving the same union. The records come in pieces
(:meth:`LinkStats._pieces`) in the order they were handed over, which is nearly, not exactly, the
order of their starts (an engine composes a step's messages ahead of its clock, or records a
phase when it is done). So a first pass finds each piece's least start; the sweep then takes
the pieces in order and settles the (link, record) rows that start before every piece still to
come — no row yet unseen can come before them — keeping each link's greatest end settled so far,
and holds the others for the next piece. One pass over the records besides the first, a sort of
each piece's rows, and memory for the rows held: those that start after the least start of a
later piece (a step's worth of messages where the records are nearly in order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

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


def _settle_before(least: list[float]) -> np.ndarray:
    """Per piece, from each piece's least start [s] (``least``): the least start of the pieces
    after it (inf after the last) — the rows that start before it are settled with that piece."""
    return np.append(np.minimum.accumulate(np.array(least)[::-1])[::-1][1:], np.inf)


def overlap_per_link(routes: list[tuple[int, ...]], records: Callable[[], Iterable[tuple]],
                     nlinks: int) -> np.ndarray:
    """Per link: how long [s] the records crossing it overlap one another — their summed times
    less the length of their union (0.0 where none overlap).

    ``routes``: each route id's links; ``records()``: the records, afresh on each call and in
    the same pieces each time, as ``(route ids, starts [s], ends [s])``."""
    after = _settle_before([float(start.min()) if len(start) else np.inf
                            for _, start, _ in records()])
    count = np.array([len(links) for links in routes], np.int64)
    offset = np.concatenate(([0], np.cumsum(count)[:-1])).astype(np.int64)
    flat = np.array([k for links in routes for k in links], np.int64)
    out = np.zeros(nlinks)
    top = np.full(nlinks, -np.inf)
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
