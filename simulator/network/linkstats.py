"""Link accounting for the Fabric: per-link bytes, busy time, and the load timeline.

The Fabric tells :class:`LinkStats` a link's new summed rate (its *load* [B/s]) whenever a
re-filling changes it. Between two changes a link's load is constant, so its bytes are load × time
and it is busy while the load is positive; totals are brought up to date lazily (at the next
change, or when asked). Every change point (link, time, load) is also kept, compactly (three
``array`` columns), so :meth:`LinkStats.timeline` can bin utilization over time exactly at any
bin width after the run.

Lone flows (:mod:`simulator.network.lone`) are kept apart, one record per flow, not per link: (route
id, start, end, bytes) in four ``array`` columns, where a route id names the tuple of links the
flow crossed (:meth:`LinkStats.route`). A link never carries a lone flow and a class at once,
so its totals and timeline are the sum of the two parts, each computed on its own: bytes per
route summed by ``bincount`` then spread over the route's links. That is 24 bytes per message
instead of two change points per link, which keeps long replays' link records small.

Traffic classes (:mod:`simulator.network.traffic`): a lone flow's record carries its tag, and a
flow that shared links adds one record when it ends — (route, tag, when it joined a class, end,
the bytes it had left then) — so bytes per link and class are exact (sums over routes spread
over their links), and bytes per class over time spread each record's bytes evenly over its
interval (exact for lone flows, an even spread for the shared part of the others).

Long runs: :meth:`LinkStats.spill`, called between iterations, moves the record columns into
:class:`~simulator.spill.Spill` columns once they are long (a temporary file), and the totals
and timeline are computed over the records in pieces of :data:`PIECE_ROWS` rows (load change
points: :data:`CHANGE_ROWS`), so neither the records nor the arithmetic on them need memory in
proportion to the run. A batch of records an engine timed itself (:meth:`LinkStats.intervals`,
at least :data:`BULK_ROWS`) is held as the arrays it came in, between the moved-on rows and the
``array`` rows; the pieces are cut at the same rows wherever the records are kept, so where they
are changes no sum.
"""

from __future__ import annotations

from array import array

import numpy as np
import pandas as pd

from simulator.network.binning import bin_edges, spread
from simulator.network.busy import overlap_per_link
from simulator.network.lone_tables import Kept, route_bins, route_sums
from simulator.network.traffic import TRAFFIC_CLASSES
from simulator.spill import Spill

#: Columns of :meth:`LinkStats.timeline` (``link_timeline``) and of
#: :meth:`LinkStats.class_timeline` (``class_timeline``), with their dtypes: a run with no bin
#: to show (no time passed, or no traffic) gets the same columns, without rows.
LINK_TIMELINE_COLUMNS: dict[str, str] = {
    "src": "str", "dst": "str", "kind": "str", "start_at": "float64", "end_at": "float64",
    "bytes": "float64", "utilization": "float64"}
CLASS_TIMELINE_COLUMNS: dict[str, str] = {
    "kind": "str", "traffic_class": "str", "start_at": "float64", "end_at": "float64",
    "bytes": "float64", "utilization": "float64"}


def empty_timeline(columns: dict[str, str]) -> pd.DataFrame:
    """A timeline of no bin: ``columns`` (name → dtype), no rows."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


#: Records kept in ``array`` columns before :meth:`LinkStats.spill` moves them on.
SPILL_ROWS = 1 << 20
#: A batch of :meth:`LinkStats.intervals` records this long is kept as it is (not copied into
#: the ``array`` columns, which copy themselves whole each time they outgrow their allocation).
BULK_ROWS = 1 << 15
#: Records gone over at once for totals and the timeline: bounds the temporary arrays, and keeps
#: them small — a fresh large temporary costs a page fault per page on every pass (measured:
#: 1 << 16 rows made the timelines of 5.4 M records 2× faster than 1 << 22).
PIECE_ROWS = 1 << 16
#: Load change points gone over at once for the timeline: each piece loops over the links it
#: holds, so small pieces cost a loop per link per piece (measured: 10,000 links and 5 M change
#: points took 10.3 s in pieces of 1 << 16, 1.3 s in pieces of 1 << 22).
CHANGE_ROWS = 1 << 22

#: The record columns (``array`` attributes of :class:`LinkStats`) and their numpy dtypes.
_COLUMNS = {"tl_link": np.int32, "tl_at": np.float64, "tl_load": np.float64,
            "lo_route": np.int32, "lo_start": np.float64, "lo_end": np.float64,
            "lo_bytes": np.float64, "lo_tag": np.int8,
            "sh_route": np.int32, "sh_tag": np.int8, "sh_start": np.float64,
            "sh_end": np.float64, "sh_bytes": np.float64}
#: The lone flows' columns, in :meth:`LinkStats.intervals`'s argument order.
_LONE = ("lo_route", "lo_start", "lo_end", "lo_bytes", "lo_tag")
#: The lone flows' columns in :meth:`LinkStats._tagged`'s order.
_TAGGED = ("lo_route", "lo_tag", "lo_start", "lo_end", "lo_bytes")


class LinkStats:
    """Accounting of the directed links ``edges`` (with ``kinds`` and line rates ``cap`` [B/s])."""

    def __init__(self, edges: list[tuple[str, str]], kinds: list[str], cap: list[float]) -> None:
        n = len(edges)
        self.edges, self.kinds, self.cap = edges, kinds, cap
        self.load = [0.0] * n  # current summed rate per link [B/s]
        self.acc_at = [0.0] * n  # when each link's bytes/busy were last brought up to date [s]
        self.nbytes = [0.0] * n  # [B] up to acc_at
        self.busy = [0.0] * n  # [s] up to acc_at
        # change points of the link loads (link, at [s], new load [B/s]): 20 B each, for long runs
        self.tl_link, self.tl_at, self.tl_load = array("i"), array("d"), array("d")
        # lone flows: route id, start [s], end [s], bytes [B]
        self.routes: list[tuple[int, ...]] = []
        self._route_ids: dict[tuple[int, ...], int] = {}
        self.lo_route, self.lo_start, self.lo_end, self.lo_bytes = (
            array("i"), array("d"), array("d"), array("d"))
        self.lo_tag = array("b")  # the lone flows' traffic classes
        # batches of lone flows (intervals() of at least BULK_ROWS), each as its five columns
        # (_LONE): after the moved-on rows, before the array rows
        self._held: list[tuple[np.ndarray, ...]] = []
        # flows that shared links, when they end: route id, tag, joined at [s], end [s], bytes
        self.sh_route, self.sh_tag = array("i"), array("b")
        self.sh_start, self.sh_end, self.sh_bytes = array("d"), array("d"), array("d")
        self._spills: dict[str, Spill] | None = None  # the columns' older rows, once long
        # whether an engine timed records itself (intervals()): they may overlap on a link
        self.timed = False
        self._kept = Kept()  # the lone records' tables per route (_lone_sums, _lone_spread)

    def spill(self, rows: int | None = None, spill_bytes: int | None = None) -> None:
        """Move the record columns on (to :class:`~simulator.spill.Spill` columns, with
        ``spill_bytes``) if either holds at least ``rows`` (default :data:`SPILL_ROWS`)
        records in memory. Changes no total or timeline."""
        rows = SPILL_ROWS if rows is None else rows
        lone = len(self.lo_route) + sum(len(b[0]) for b in self._held)
        if len(self.tl_link) < rows and lone < rows and len(self.sh_route) < rows:
            return
        if self._spills is None:
            self._spills = {name: Spill(dt, spill_bytes) for name, dt in _COLUMNS.items()}
        for batch in self._held:  # before the array rows, which came after them
            for name, values in zip(_LONE, batch, strict=True):
                self._spills[name].add(values)
        self._held = []
        for name, values in zip(_COLUMNS, self._take(tuple(_COLUMNS)), strict=True):
            self._spills[name].add(values)

    def _take(self, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        """The ``array`` rows of columns ``names``, copied out, the columns emptied (in place:
        bound ``append`` methods stay valid)."""
        out = tuple(np.frombuffer(getattr(self, n), dtype=_COLUMNS[n]).copy() for n in names)
        for n in names:
            del getattr(self, n)[:]
        return out

    def _pieces(self, names: tuple[str, ...], rows: int | None = None):
        """The records of columns ``names`` (all lone-flow, all shared-flow or all change-point
        ones) in order, as tuples of ``rows`` rows (default :data:`PIECE_ROWS`; the last one
        shorter): the moved-on rows, the batches held, then the ``array`` rows, read where they
        are. A piece is cut at the same rows however the records were handed over or moved on,
        so neither changes a sum."""
        size = PIECE_ROWS if rows is None else rows
        segments = []
        if self._spills is not None:
            segments.append([self._spills[n].array() for n in names])
        if names[0] in _LONE:
            segments += [[batch[_LONE.index(n)] for n in names] for batch in self._held]
        segments.append([np.frombuffer(getattr(self, n), dtype=_COLUMNS[n]) for n in names])
        parts: list[tuple[np.ndarray, ...]] = []  # of the piece being filled
        have = 0
        for cols in segments:
            n = len(cols[0])
            a = 0
            while a < n:
                take = min(size - have, n - a)
                part = tuple(c[a:a + take] for c in cols)
                a += take
                if take == size:  # a whole piece inside one segment: as it is
                    yield part
                    continue
                parts.append(part)
                have += take
                if have == size:
                    yield tuple(np.concatenate(x) for x in zip(*parts, strict=True))
                    parts, have = [], 0
        if len(parts) == 1:
            yield parts[0]
        elif parts:
            yield tuple(np.concatenate(x) for x in zip(*parts, strict=True))

    def route(self, links: tuple[int, ...]) -> int:
        """The id of the route crossing ``links`` (registered on first use)."""
        rid = self._route_ids.get(links)
        if rid is None:
            rid = self._route_ids[links] = len(self.routes)
            self.routes.append(links)
        return rid

    def update(self, links, res: list[float], now: float) -> None:
        """At ``now`` [s], each of ``links`` has unused capacity ``res[link]`` [B/s]: its load is
        ``cap − res``. Records the links whose load changed."""
        cap, load, acc = self.cap, self.load, self.acc_at
        add_link, add_at, add_load = self.tl_link.append, self.tl_at.append, self.tl_load.append
        for link in links:
            x = cap[link] - res[link]
            old = load[link]
            if x != old:
                if old > 0.0:
                    dt = now - acc[link]
                    if dt > 0.0:
                        self.nbytes[link] += old * dt
                        self.busy[link] += dt
                acc[link] = now
                load[link] = x
                add_link(link)
                add_at(now)
                add_load(x)

    def interval(self, route: int, start: float, end: float, nbytes: float,
                 tag: int = 0) -> None:
        """The links of ``route`` (an id from :meth:`route`), carrying nothing else then, carried
        ``nbytes`` [B] of traffic class ``tag`` at a constant rate over [start, end] [s] (a lone
        flow)."""
        self.lo_route.append(route)
        self.lo_start.append(start)
        self.lo_end.append(end)
        self.lo_bytes.append(nbytes)
        self.lo_tag.append(tag)

    def shared(self, route: int, tag: int, start: float, end: float, nbytes: float) -> None:
        """A flow of class ``tag`` on ``route`` that shared links carried ``nbytes`` [B] over
        [start, end] [s] (since it joined a flow class); for the records by class only (its
        bytes are in the load change points already)."""
        self.sh_route.append(route)
        self.sh_tag.append(tag)
        self.sh_start.append(start)
        self.sh_end.append(end)
        self.sh_bytes.append(nbytes)

    def _tagged(self, extra: tuple = (), lone: bool = True):
        """Per record of both kinds (``lone``: the lone flows' too), in pieces: (route id, tag,
        start [s], end [s], bytes [B]); then ``extra``, one more piece of such columns (flows
        under way, not recorded)."""
        if lone:
            yield from self._pieces(_TAGGED)
        yield from self._pieces(("sh_route", "sh_tag", "sh_start", "sh_end", "sh_bytes"))
        if extra:
            yield extra

    def by_class(self, extra: tuple = ()) -> pd.DataFrame:
        """Bytes per directed link and traffic class: src, dst, kind, traffic_class, bytes [B]
        (non-zero rows, links in order, classes in tag order); ``extra``: records of flows
        under way (:meth:`_tagged`)."""
        nr, nt = len(self.routes), len(TRAFFIC_CLASSES)
        per = self._lone_sums()[2].copy()  # the lone records', then the others' (_tagged)
        for rid, tag, _, _, nbytes in self._tagged(extra, lone=False):
            per += np.bincount(rid.astype(np.int64) * nt + tag, nbytes, nr * nt)
        per_link = self._lone_per_link(per.reshape(nr, nt))
        rows = [(u, v, self.kinds[i], TRAFFIC_CLASSES[t], float(per_link[i, t]))
                for i, (u, v) in enumerate(self.edges) for t in range(nt) if per_link[i, t] > 0]
        return pd.DataFrame(rows, columns=["src", "dst", "kind", "traffic_class", "bytes"])

    def class_timeline(self, bin_time: float, now: float, extra: tuple = ()) -> pd.DataFrame:
        """Bytes per link kind, traffic class and bin of ``bin_time`` [s] over [0, now] (long
        format: kind, traffic_class, start_at, end_at, bytes, utilization = bytes / (summed line
        rate of the kind's links × bin length)); classes and kinds that carried nothing are left
        out."""
        now, edges_at = bin_edges("class_timeline", bin_time, now)
        nbins = len(edges_at) - 1
        nr, nt = len(self.routes), len(TRAFFIC_CLASSES)
        lone = self._lone_spread(edges_at)[1]  # the lone records' (if kept), then the others'
        per = lone.copy() if lone is not None else np.zeros((nr * nt, nbins))
        for rid, tag, start, end, nbytes in self._tagged(extra, lone=lone is None):
            keys, rows = spread(rid.astype(np.int64) * nt + tag, start, end, nbytes, edges_at,
                                nr * nt)
            per[keys] += rows
        per_link = self._lone_per_link(per.reshape(nr, nt, nbins))
        kinds = sorted(set(self.kinds))
        kind_arr = np.array(self.kinds)
        cap = np.array(self.cap)
        length = np.diff(edges_at)
        frames = []
        for kind in kinds:
            sel = kind_arr == kind
            by_tag = per_link[sel].sum(axis=0)  # (nt, nbins)
            bw = float(cap[sel].sum())
            for t in range(nt):
                if not by_tag[t].any():
                    continue
                with np.errstate(invalid="ignore", divide="ignore"):
                    util = np.where(length > 0, by_tag[t] / (bw * length), 0.0)
                frames.append(pd.DataFrame({
                    "kind": kind, "traffic_class": TRAFFIC_CLASSES[t],
                    "start_at": edges_at[:-1], "end_at": edges_at[1:],
                    "bytes": by_tag[t], "utilization": util}))
        if not frames:
            return empty_timeline(CLASS_TIMELINE_COLUMNS)
        return pd.concat(frames, ignore_index=True)

    def intervals(self, routes, starts, ends, nbytes, tags) -> None:
        """Many :meth:`interval` records at once (sequences of route ids, starts, ends [s],
        bytes [B] and traffic classes). A batch of at least :data:`BULK_ROWS` numpy arrays is
        kept as it is (the caller leaves them unchanged). Such records may cross a link at
        the same time: its busy time is then their union (:mod:`~simulator.network.busy`)."""
        self.timed = True
        if isinstance(routes, np.ndarray) and len(routes) >= BULK_ROWS:
            if len(self.lo_route):  # rows recorded before come first
                self._held.append(self._take(_LONE))
            self._held.append(tuple(np.ascontiguousarray(v, _COLUMNS[n]) for n, v in
                                    zip(_LONE, (routes, starts, ends, nbytes, tags), strict=True)))
            return
        for column, values in ((self.lo_route, routes), (self.lo_start, starts),
                               (self.lo_end, ends), (self.lo_bytes, nbytes), (self.lo_tag, tags)):
            if isinstance(values, np.ndarray):  # the same values, copied once as bytes
                raw = np.ascontiguousarray(values, column.typecode)
                column.frombytes(memoryview(raw).cast("B"))
            else:
                column.extend(values)

    def _lone_key(self) -> tuple[int, int]:
        """(routes, lone records) now: what the kept lone tables (:mod:`lone_tables`) hold for."""
        spilled = len(self._spills["lo_route"]) if self._spills is not None else 0
        return len(self.routes), len(self.lo_route) + sum(len(b[0]) for b in self._held) + spilled

    def _lone_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The lone records' bytes [B] and summed times [s] per route, and bytes per route and
        class [B] (:func:`~simulator.network.lone_tables.route_sums`), kept."""
        nr, nt = len(self.routes), len(TRAFFIC_CLASSES)
        return self._kept.get("sums", self._lone_key(),
                              lambda: route_sums(self._pieces(_TAGGED), nr, nt))

    def _lone_spread(self, edges_at: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The lone records' bytes per route and bin, and per route, class and bin (or None)
        (:func:`~simulator.network.lone_tables.route_bins`), kept for these bins."""
        nr, nt = len(self.routes), len(TRAFFIC_CLASSES)
        return self._kept.get("bins", (self._lone_key(), edges_at.tobytes()),
                              lambda: route_bins(self._pieces(_TAGGED), nr, nt, edges_at))

    def _lone_per_link(self, per_route: np.ndarray) -> np.ndarray:
        """Spread per-route sums (last axis: anything) over the routes' links."""
        out = np.zeros((len(self.edges),) + per_route.shape[1:])
        for rid, links in enumerate(self.routes):
            out[list(links)] += per_route[rid]
        return out

    def frame(self, now: float) -> pd.DataFrame:
        """Per directed link: src, dst, kind, bandwidth [B/s], bytes [B], busy_time [s] (the time
        it carried anything: lone records that overlap count their common time once) and
        utilization (time-weighted mean of load / bandwidth over [0, now])."""
        per_bytes, per_busy, _ = self._lone_sums()
        lone_bytes = self._lone_per_link(per_bytes)
        lone_busy = self._lone_per_link(per_busy)
        if self.timed:  # records an engine timed may overlap: count their common time once
            lone_busy -= overlap_per_link(self.routes, lambda: self._pieces(_LONE[:3]),
                                          len(self.edges))
        rows = []
        for i, (u, v) in enumerate(self.edges):
            dt = now - self.acc_at[i]
            x = self.load[i]
            nbytes = self.nbytes[i] + x * dt + lone_bytes[i]
            busy = self.busy[i] + (dt if x > 0.0 else 0.0) + lone_busy[i]
            bw = self.cap[i]
            util = nbytes / (bw * now) if now > 0 else 0.0
            rows.append((u, v, self.kinds[i], bw, nbytes, busy, util))
        return pd.DataFrame(rows, columns=["src", "dst", "kind", "bandwidth", "bytes",
                                           "busy_time", "utilization"])

    def timeline(self, bin_time: float, now: float) -> pd.DataFrame:
        """Utilization per link per time bin of ``bin_time`` [s] over [0, now] (long format).

        Columns: src, dst, kind, start_at, end_at [s], bytes [B], utilization (bytes /
        (bandwidth × bin length)); the last bin ends at ``now``.
        """
        now, edges_at = bin_edges("link_timeline", bin_time, now)
        nbins = len(edges_at) - 1
        nl = len(self.edges)
        cum = self._changes_cum(edges_at)
        nbytes = np.diff(cum, axis=1) + self._lone_bins(edges_at)
        length = np.diff(edges_at)
        bw = np.array(self.cap)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            util = np.where(length > 0, nbytes / (bw * length), 0.0)
        return pd.DataFrame({
            "src": np.repeat([u for u, _ in self.edges], nbins),
            "dst": np.repeat([v for _, v in self.edges], nbins),
            "kind": np.repeat(self.kinds, nbins),
            "start_at": np.tile(edges_at[:-1], nl),
            "end_at": np.tile(edges_at[1:], nl),
            "bytes": nbytes.ravel(),
            "utilization": util.ravel(),
        })

    def _changes_cum(self, edges_at: np.ndarray) -> np.ndarray:
        """Bytes each link carried by each of ``edges_at`` [s] under its load changes (classes;
        lone flows apart). A link's bytes are piecewise linear in time, with a kink at each of
        its change points; the change points are taken in time order, :data:`CHANGE_ROWS` at a
        time, each link carrying its last point (time, load, bytes) over to the next piece."""
        nl = len(self.edges)
        cum = np.zeros((nl, len(edges_at)))
        last_at, last_load, last_b = np.zeros(nl), np.zeros(nl), np.zeros(nl)
        for piece_link, piece_at, piece_load in self._pieces(("tl_link", "tl_at", "tl_load"),
                                                             CHANGE_ROWS):
            order = np.argsort(piece_link, kind="stable")  # by link, time order kept
            link, at, load = piece_link[order], piece_at[order], piece_load[order]
            links, starts = np.unique(link, return_index=True)
            for k, i, j in zip(links.tolist(), starts.tolist(), [*starts[1:].tolist(), len(link)],
                               strict=True):
                p_at = np.concatenate(([last_at[k]], at[i:j]))
                p_load = np.concatenate(([last_load[k]], load[i:j]))  # load from each point on
                p_b = np.concatenate(([last_b[k]], last_b[k] + np.cumsum(p_load[:-1]
                                                                         * np.diff(p_at))))
                lo = np.searchsorted(edges_at, p_at[0], side="left")
                hi = np.searchsorted(edges_at, p_at[-1], side="right")
                cum[k, lo:hi] = np.interp(edges_at[lo:hi], p_at, p_b)
                last_at[k], last_load[k], last_b[k] = p_at[-1], p_load[-1], p_b[-1]
        for k in range(nl):  # after a link's last change point its load holds
            lo = np.searchsorted(edges_at, last_at[k], side="right")
            cum[k, lo:] = last_b[k] + last_load[k] * (edges_at[lo:] - last_at[k])
        return cum

    def _lone_bins(self, edges_at: np.ndarray) -> np.ndarray:
        """Bytes of lone flows per link per bin (bins between ``edges_at`` [s]), each flow's
        bytes split over the bins it overlaps in proportion to the overlap."""
        return self._lone_per_link(self._lone_spread(edges_at)[0])

