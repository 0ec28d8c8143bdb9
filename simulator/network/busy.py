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
the pieces in order and settles the records that start before every piece still to come — no
record yet unseen can come before them — keeping each link's greatest end settled so far, and
holds the others for the next piece. A piece's settled records are sorted by start and swept by
a compiled loop (:func:`~simulator.network.kernels.sweep_piece`): one pass over the records
besides the first, a sort of each piece, and memory for the records held — those that start
after the least start of a later piece (a step's worth of messages where the records are nearly
in order). Where nothing is held and a piece comes in order of start, all of it before the
pieces to come (:func:`~simulator.network.kernels.ordered_below`: the homogeneous fast mode's
ring records, piece after piece), it is swept as it came — the arrays the general path would
have built, without building them. The loop replaced a vectorized sweep (rows sorted by link,
a running maximum by doubling) that gave the same floats in 8× the time (0.57 s of a 1.5 s
homogeneous TP4 run; docs/performance.md, *Stop 82*); that sweep is the tests' reference
(:mod:`simulator.testing.busy_reference`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from simulator.network.kernels import ordered_below, sweep_piece


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
    after, (flat, offset, count), out, top = sweep_start(routes, records, nlinks)
    held_route, held_start, held_end = np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    for piece, (rid, start, end) in enumerate(records()):
        r = rid.astype(np.int64, copy=False)
        if not held_start.size and ordered_below(start, after[piece]):
            # nothing held and the piece in order, all before the pieces to come: every row
            # settled, in the order it came (what the general path's arrays would be)
            s, e, order = start, end, np.arange(len(start))
        else:
            r = np.concatenate((held_route, r))
            s = np.concatenate((held_start, start))
            e = np.concatenate((held_end, end))
            now = s < after[piece]
            later = ~now
            held_route, held_start, held_end = r[later], s[later], e[later]
            r, s, e = r[now], s[now], e[now]
            order = np.argsort(s, kind="stable")
        part = np.zeros(nlinks)  # the piece's overlaps, added to the total at once
        sweep_piece(r, s, e, order, flat, offset, count, top, part)
        out += part
    return out


def sweep_start(routes: list[tuple[int, ...]], records: Callable[[], Iterable[tuple]],
                nlinks: int) -> tuple[np.ndarray, tuple, np.ndarray, np.ndarray]:
    """What a sweep starts from (a first pass over ``records()``): per piece the least start of
    the pieces after it [s] (:func:`_settle_before`), the routes' links as arrays
    (:func:`route_table`), each link's overlaps (0.0) and greatest end so far (−inf) [s]."""
    after = _settle_before([float(start.min()) if len(start) else np.inf
                            for _, start, _ in records()])
    return after, route_table(routes), np.zeros(nlinks), np.full(nlinks, -np.inf)


def route_table(routes: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each route's links as one array: ``(links, where each route's start, how many)``."""
    count = np.array([len(links) for links in routes], np.int64)
    offset = np.concatenate(([0], np.cumsum(count)[:-1])).astype(np.int64)
    flat = np.array([k for links in routes for k in links], np.int64)
    return flat, offset, count
