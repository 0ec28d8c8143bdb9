"""The lone records' tables per route, kept for the reports that read them.

The Fabric's reports at a run's end — the links table, the bytes by class, the link and class
timelines (:class:`~simulator.network.linkstats.LinkStats`) — each go over every lone-flow
record, and a fast run keeps millions of them (5.4 M ring messages in the homogeneous TP4
benchmark). Two of the passes serve two reports each: :func:`route_sums` (bytes and times per
route for the links table, bytes per route and class for the bytes by class) and
:func:`route_bins` (bytes per route and bin for the link timeline, per route, class and bin for
the class timeline, one :func:`~simulator.network.binning.spread_keys` pass per piece).
:class:`Kept` holds each result until a record or a route is added or the bins change. Each
table is the same floats as a pass of its own: pieces are read in the same order, each piece's
sums start from zero and are added to the totals piece after piece, and within a piece every
cell gets the same additions (``np.bincount``'s, :func:`~simulator.network.binning.spread`'s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from simulator.network.binning import spread_keys
from simulator.network.kernels import lone_sums

#: Cells of the per route, class and bin table kept beside the per-route one (above it, the
#: class timeline makes its own pass: the table would be as large as routes × classes × bins).
KEEP_CELLS = 1 << 22


def route_sums(pieces: Iterable[tuple], nr: int, nt: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The records' bytes [B] and summed times [s] per route, and bytes per route and class
    (``route × nt + tag``) [B], from ``pieces`` of (route id, tag, start [s], end [s], bytes
    [B]): each piece summed by one compiled pass (:func:`~simulator.network.kernels.lone_sums`),
    added to the totals piece after piece."""
    totals = np.zeros(nr), np.zeros(nr), np.zeros(nr * nt)
    for rid, tag, start, end, nbytes in pieces:
        piece = np.zeros(nr), np.zeros(nr), np.zeros(nr * nt)
        lone_sums(rid, tag, start, end, nbytes, nt, *piece)
        for total, part in zip(totals, piece, strict=True):
            total += part
    return totals


def route_bins(pieces: Iterable[tuple], nr: int, nt: int, edges_at: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """The records' bytes per route and bin (bins between ``edges_at`` [s]), and per route,
    class and bin (rows ``route × nt + tag``; None above :data:`KEEP_CELLS` cells), from
    ``pieces`` as :func:`route_sums` takes them: both keyings of a piece in one pass."""
    nbins = len(edges_at) - 1
    classes = nr * nt * nbins <= KEEP_CELLS
    per_route = np.zeros((nr, nbins))
    per_class = np.zeros((nr * nt, nbins)) if classes else None
    for rid, tag, start, end, nbytes in pieces:
        route = rid.astype(np.int64)
        keys = [(route, nr)] + ([(route * nt + tag, nr * nt)] if classes else [])
        got = spread_keys(keys, start, end, nbytes, edges_at)
        per_route[got[0][0]] += got[0][1]
        if classes:
            per_class[got[1][0]] += got[1][1]
    return per_route, per_class


class Kept:
    """Results kept under a key (the records and routes then, the bins): :meth:`get` computes
    one only when its key changed since."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple] = {}

    def get(self, name: str, key, compute: Callable[[], tuple]) -> tuple:
        """``name``'s result for ``key``: kept, or ``compute()`` (then kept)."""
        got = self._kept.get(name)
        if got is None or got[0] != key:
            got = self._kept[name] = (key, compute())
        return got[1]


__all__ = ["KEEP_CELLS", "Kept", "route_bins", "route_sums"]
