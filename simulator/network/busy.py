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

Per link the records are swept in order of start with the running maximum of the ends before
each: a record starting before that maximum overlaps the union so far by ``min(end, max) −
start``, any order among equal starts giving the same union. The records are kept in pieces
(:meth:`LinkStats._pieces`), in the order they came, not by start, so the sweep needs a link's
records sorted together: links are taken in groups of at most :data:`SWEEP_ROWS` (link, record)
rows, each group reading the pieces once more, so memory stays bounded however long the run
(one link with more rows than that is a group of its own). Cost: a pass over the records per
group, and a sort of each group's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

#: (link, record) rows sorted at once: bounds the sweep's temporary arrays (~60 B a row).
SWEEP_ROWS = 1 << 21


def _groups(per_link: np.ndarray, rows: int) -> list[np.ndarray]:
    """Links with records, in groups of at most ``rows`` (link, record) rows (in link order)."""
    groups: list[np.ndarray] = []
    cur: list[int] = []
    have = 0
    for link in np.flatnonzero(per_link).tolist():
        n = int(per_link[link])
        if cur and have + n > rows:
            groups.append(np.array(cur, np.int64))
            cur, have = [], 0
        cur.append(link)
        have += n
    if cur:
        groups.append(np.array(cur, np.int64))
    return groups


def _sweep(link: np.ndarray, start: np.ndarray, end: np.ndarray, nlinks: int) -> np.ndarray:
    """Per link (``nlinks`` of them): the time [s] records (``link``, ``start``, ``end``) on
    it overlap the union of those that start before them (in any order among equal starts)."""
    order = np.lexsort((start, link))
    link, start, end = link[order], start[order], end[order]
    # the running maximum of the ends within each link's run of rows, exactly: on the ends'
    # ranks, offset per link so that no link's maximum reaches into the next link's rows
    ends, code = np.unique(end, return_inverse=True)
    _, pos = np.unique(link, return_inverse=True)
    key = pos.astype(np.int64) * len(ends) + code.astype(np.int64)
    run_max = np.maximum.accumulate(key)
    first = np.ones(len(link), bool)
    first[1:] = link[1:] != link[:-1]
    at = run_max[:-1] - pos[1:].astype(np.int64) * len(ends)  # rank of the max before a row
    at[first[1:]] = 0  # a link's first row has none before it (below)
    before = np.empty(len(link))
    before[1:] = ends[at]
    before[first] = -np.inf
    over = np.maximum(np.minimum(end, before) - start, 0.0)
    return np.bincount(link, over, nlinks)


def overlap_per_link(routes: list[tuple[int, ...]], records: Callable[[], Iterable[tuple]],
                     nlinks: int, rows: int | None = None) -> np.ndarray:
    """Per link: how long [s] the records crossing it overlap one another — their summed times
    less the length of their union (0.0 where none overlap).

    ``routes``: each route id's links; ``records()``: the records, afresh on each call, in
    pieces ``(route ids, starts [s], ends [s])``; ``rows``: the (link, record) rows sorted at
    once (None: :data:`SWEEP_ROWS`)."""
    nr = len(routes)
    out = np.zeros(nlinks)
    per_route = np.zeros(nr, np.int64)
    for rid, _, _ in records():
        per_route += np.bincount(rid, minlength=nr)
    per_link = np.zeros(nlinks, np.int64)
    for rid, links in enumerate(routes):
        per_link[list(links)] += per_route[rid]
    for group in _groups(per_link, SWEEP_ROWS if rows is None else rows):
        inside = np.zeros(nlinks, bool)
        inside[group] = True
        # each route's links in the group, as a flat list with offsets
        mine = [[k for k in links if inside[k]] for links in routes]
        count = np.array([len(m) for m in mine], np.int64)
        offset = np.concatenate(([0], np.cumsum(count)[:-1]))
        flat = np.array([k for m in mine for k in m], np.int64)
        parts: list[tuple[np.ndarray, ...]] = []
        for rid, start, end in records():
            n = count[rid]  # rows of each record in the group (none: not read further)
            rep = np.repeat(np.arange(len(rid)), n)
            # the k-th row of a record takes the k-th of its route's links in the group
            k = np.arange(len(rep)) - np.repeat(np.cumsum(n) - n, n)
            parts.append((flat[offset[rid][rep] + k], start[rep], end[rep]))
        if parts:
            link, start, end = (np.concatenate(x) for x in zip(*parts, strict=True))
            out += _sweep(link, start, end, nlinks)
    return out
