"""Compiled loops of the network's accounting: the busy-time sweep, the timelines' bytes per
bin and the byte counters' sum — each the same floats as the numpy or Python code it replaced.

**The busy-time sweep** (:func:`sweep_piece`, for
:func:`simulator.network.busy.overlap_per_link`). A piece's settled records are visited in
order of start (ties in the order they were handed over) and each crosses its route's links in
turn: on each link the record overlaps the union so
far by ``min(end, greatest end before it) − start`` where that is positive, and the link's
greatest end becomes the larger of the two. Per link this visits the rows in the order the
vectorized sweep it replaced sorted them (by link, then start, stable) and takes the same
``min``, ``−`` and ``max`` of the same values, so the greatest ends are the same and each link's
overlaps are added to the piece's sum in the same order — the same floats (a maximum does not
depend on the order it is taken in; additions of 0.0 for rows that do not overlap leave a sum
unchanged). :func:`ordered_below` tells a piece that needs no sort and holds nothing back.
The numpy sweep is kept as the tests' reference (:mod:`simulator.testing.busy_reference`),
which ``tests/test_network_busy.py`` holds this one to, bit for bit.

**Sums per route** (:func:`lone_sums`, for the lone records' bytes and times per route and
bytes per route and class, :meth:`~simulator.network.linkstats.LinkStats.frame` and
:meth:`~simulator.network.linkstats.LinkStats.by_class`): each record added to its bin in
order, as ``np.bincount`` adds weights — three counts from one pass over a piece.

**A sum in order** (:func:`fold_add`, for :func:`simulator.network.accounts.fold_sum`): one
float64 addition after another, left to right — what ``+=`` in a Python loop gives (no
reassociation: numba compiles without fast-math), where numpy's ``sum`` adds pairwise.

**Bytes per bin** (:func:`spread_rows`, for :func:`simulator.network.binning.spread`): the
records within one bin first, then the straddling ones' parts, record after record and bin
after bin — the additions of the loop oracle ``tests/test_hot_paths.py`` holds it to; each
time's bin found by walking from the previous record's (:func:`_edges_up_to`).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def sweep_piece(route, start, end, order, flat, offset, count, top, part):
    """Add to ``part[link]`` how long [s] the records ``order`` (indices into ``route``,
    ``start``, ``end``: route ids, starts and ends [s]; in order of start) overlap the union of
    those before them on each link, and raise ``top[link]`` (each link's greatest end so far
    [s], −inf for none) to their ends. Route ``r``'s links are ``flat[offset[r]:offset[r] +
    count[r]]``."""
    for i in order:
        s = start[i]
        e = end[i]
        r = route[i]
        for j in range(offset[r], offset[r] + count[r]):
            link = flat[j]
            greatest = top[link]
            over = (e if e < greatest else greatest) - s
            if over > 0.0:
                part[link] += over
            if e > greatest:
                top[link] = e


@numba.njit(cache=True, nogil=True)
def ordered_below(start, limit):
    """Whether ``start`` is in non-decreasing order with every value below ``limit``."""
    for i in range(len(start)):
        if not start[i] < limit or (i and start[i] < start[i - 1]):
            return False
    return True


@numba.njit(cache=True, nogil=True)
def lone_sums(route, tag, start, end, nbytes, ntags, by_route, busy, by_class):
    """Add each record's bytes ``nbytes`` [B] to ``by_route[route]`` and
    ``by_class[route × ntags + tag]``, and its time ``end − start`` [s] to ``busy[route]``,
    record after record: ``np.bincount``'s additions, for three counts in one pass."""
    for i in range(len(route)):
        r = route[i]
        b = nbytes[i]
        by_route[r] += b
        busy[r] += end[i] - start[i]
        by_class[r * ntags + tag[i]] += b


@numba.njit(cache=True, nogil=True)
def fold_add(start, values):
    """``start + values[0] + values[1] + …`` added left to right (float64)."""
    total = start
    for v in values:
        total += v
    return total


@numba.njit(cache=True, nogil=True)
def _edges_up_to(edges_at, x, j, inclusive):
    """How many of ``edges_at`` (sorted) are ``<= x`` (``inclusive``) or ``< x``: numpy's
    ``searchsorted(edges_at, x, "right" / "left")``, walked from ``j`` (the answer for a nearby
    time: records come nearly in order of time, so the walk is a step or two)."""
    n = len(edges_at)
    if inclusive:
        while j < n and edges_at[j] <= x:
            j += 1
        while j > 0 and edges_at[j - 1] > x:
            j -= 1
    else:
        while j < n and edges_at[j] < x:
            j += 1
        while j > 0 and edges_at[j - 1] >= x:
            j -= 1
    return j


@numba.njit(cache=True, nogil=True)
def spread_rows(row, start, end, nbytes, edges_at, out):
    """Add each record's ``nbytes`` [B] to ``out[j, row[i, j]]`` for each table ``j`` (``out``:
    tables × rows × bins between ``edges_at`` [s]; ``row``: records × tables): a record within
    one bin all there, the records that straddle bin edges after them, each over its bins in
    proportion to the overlap, record after record and bin after bin (the additions
    :func:`~simulator.network.binning.spread` documents) — each table the same additions as
    alone. A time's bin is ``searchsorted(edges_at, t) − 1`` clipped to the bins (``right``
    for a start, ``left`` for an end)."""
    nbins = len(edges_at) - 1
    n, tables = row.shape
    first = np.empty(n, np.int64)
    last = np.empty(n, np.int64)
    js = 0
    je = 0
    for i in range(n):
        js = _edges_up_to(edges_at, start[i], js, True)
        je = _edges_up_to(edges_at, end[i], je, False)
        f = min(max(js - 1, 0), nbins - 1)
        g = min(max(je - 1, 0), nbins - 1)
        first[i] = f
        last[i] = g
        if f >= g:
            for j in range(tables):
                out[j, row[i, j], f] += nbytes[i]
    for i in range(n):
        if first[i] < last[i]:
            s, e = start[i], end[i]
            for b in range(first[i], last[i] + 1):
                overlap = min(edges_at[b + 1], e) - max(edges_at[b], s)
                for j in range(tables):
                    out[j, row[i, j], b] += nbytes[i] * overlap / (e - s)
