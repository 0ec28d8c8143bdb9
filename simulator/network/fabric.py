"""Fabric: max-min fair fluid flows on a topology graph, clocked by SimPy.

Message model. ``transfer(src, dst, nbytes)`` first waits the stack's per-message overhead plus
the path latency (the flow takes no bandwidth then; ``started_at`` marks its end), then the flow
shares bandwidth with the other flows until its last byte is delivered (``finished_at``). Rates
are max-min fair over the flow's directed links (progressive filling), and each flow's rate is
also capped at ``efficiency × bottleneck line rate`` of its stack (no cap with ``ideal``). With no
contention a message takes exactly :meth:`Fabric.message_time` — the closed form the cost model
uses. A same-GPU transfer completes at once (local copies are free: the GPU model charges them);
a zero-byte transfer costs overhead + latency only. This is SimGrid's CM02 model with
cross-traffic off.

How measured round trips become overheads (:data:`simulator.hardware.STACKS`): overhead =
RTT / 2 − latency of the path it was measured on, so a small message's simulated one-way time
equals the measurement. Lamina §6.3 measured 33.0 µs (GPU-initiated, ``ibgda``) and 66.6 µs
(``nccl``) GPU↔GPU round trips over 400G RoCE on a path of 2.2 µs modelled latency: overheads
14.3 µs and 31.1 µs per message; their 45.7 and 35.5 GB/s of the 50 GB/s line become the
efficiencies 0.914 and 0.71.

Fast path (the common case in the engine: a few flows on mostly idle links): when the links of a
change carry at most one class and it is alone on all its links, its rate is ``min(cap, bottleneck /
n)`` without the filling — the same floats the filling computes. A caller may pass ``then`` to
:meth:`Fabric.transfer` to be called back at the last byte instead of getting an event (one SimPy
event less per message). Faster still, a message whose links are idle when it is sent is a *lone
flow* (:mod:`simulator.network.lone`): its whole life is known then, so it takes one event and no
filling, and becomes an ordinary flow only if something comes to share its links.

Parts. The flows that share bandwidth — their classes, the max-min filling over a changed
component, the predicted completions and the one timer — are a part the Fabric holds
(:mod:`simulator.network.shared`); so are the lone flows (:mod:`simulator.network.lone`), the
counters and the accounting of messages an engine timed itself
(:mod:`simulator.network.accounts`), and the link records behind the DataFrames
(:mod:`simulator.network.linkstats`). The Fabric itself validates the topology, builds routes,
issues transfers and delivers them."""

from __future__ import annotations

from numbers import Real

import networkx as nx
import numpy as np
import pandas as pd
import simpy

from simulator import hardware
from simulator.errors import UserError
from simulator.network.accounts import AccountField, Accounts
from simulator.network.accounts import fold_sum as fold_sum  # its home before accounts.py
from simulator.network.flows import Flow, FlowState, Route, TransferRecord
from simulator.network.linkstats import LinkStats
from simulator.network.lone import LoneFlows
from simulator.network.paths import PathCache, PathInfo
from simulator.network.shared import REL_TOL as REL_TOL  # its home before shared.py
from simulator.network.shared import SharedFlows
from simulator.network.traffic import OTHER

_INF = float("inf")


class Fabric:
    """Max-min fair fluid network over a ``networkx.DiGraph`` (edge attrs bandwidth, latency).

    Args:
        env: the simulation's environment.
        graph: directed topology; every edge needs ``bandwidth`` [B/s] > 0, ``latency`` [s] >= 0.
        stack: ``"ideal"``, ``"nccl"``, ``"ibgda"`` or a :class:`~simulator.hardware.StackSpec`.
        ecmp: spread equal-cost paths by a stable hash (see :mod:`simulator.network.paths`).
        paths: a :class:`~simulator.network.paths.PathCache` of ``graph`` (with ``ecmp``) to
            share, e.g. the cost model's, so each path is found once for both (None: a new one).

    Counters: ``bytes_sent`` (at ``transfer``), ``bytes_delivered`` and ``flows_completed``;
    per traffic class (a transfer's ``tag``, :mod:`simulator.network.traffic`)
    ``sent_by_class`` and ``delivered_by_class`` (lists indexed by tag) [B]; they live in the
    fabric's :class:`~simulator.network.accounts.Accounts`.

    ``until`` [s] (default ``inf``; the engine sets its ``[engine] duration``): when the run's
    clock stops. A message sent ahead with a ``delay_time`` whose issue falls at or after it is
    never issued in the run, and is not counted as sent (until stop 71 it was: a run cut inside
    an all-to-all's fixed time, or while an owner computed a routed query, counted that
    exchange or answer as sent, where the fast engine did not).
    """

    bytes_sent = AccountField()
    bytes_delivered = AccountField()
    flows_completed = AccountField()
    sent_by_class = AccountField()
    delivered_by_class = AccountField()

    def __init__(self, env: simpy.Environment, graph: nx.DiGraph, stack="ideal",
                 ecmp: bool = False, paths: PathCache | None = None) -> None:
        self.env = env
        self.graph = graph
        self.stack = hardware.stack(stack)
        if paths is not None and (paths.graph is not graph or paths.ecmp != ecmp):
            raise ValueError("Fabric: a shared PathCache must be of the same graph and ecmp")
        self.paths = PathCache(graph, ecmp=ecmp) if paths is None else paths
        self._edges: list[tuple[str, str]] = sorted(graph.edges)
        self._index = {e: i for i, e in enumerate(self._edges)}
        self._cap: list[float] = []
        for u, v in self._edges:
            data = graph.edges[u, v]
            bw, lat = data.get("bandwidth"), data.get("latency", 0.0)
            if not (isinstance(bw, Real) and not isinstance(bw, bool) and 0 < bw < _INF):
                raise UserError(f"topology edge {u!r} -> {v!r}: field 'bandwidth' must be a "
                                f"positive finite number of B/s, got {bw!r}; fix the edge")
            if not (isinstance(lat, Real) and not isinstance(lat, bool) and 0 <= lat < _INF):
                raise UserError(f"topology edge {u!r} -> {v!r}: field 'latency' must be >= 0 s, "
                                f"got {lat!r}; fix the edge")
            self._cap.append(float(bw))
        kinds = [graph.edges[e].get("kind", "") for e in self._edges]
        self._stats = LinkStats(self._edges, kinds, self._cap)
        self._accounts = Accounts(self._stats)
        self._shared = SharedFlows(env, self._cap, self._stats, self._complete)
        self._lone = LoneFlows(self, env, self._shared, self._stats)
        self._routes: dict[tuple[str, str], Route] = {}
        self._next_fid = 0
        self._link_routes: dict[tuple[str, str, float], Route] = {}
        self.until = _INF  # the run's clock stops then [s] (see the class docstring)

    def _sent(self, issued: float, nbytes: float, tag: int, counted: float | None = None) -> None:
        """Account a message issued at ``issued`` [s] as sent (``Accounts.record_sent``) unless
        that is at or after ``until``: issued after the clock stops, it is never sent."""
        if issued < self.until:
            self._accounts.record_sent(nbytes, tag, counted)

    # -- closed form ---------------------------------------------------------------------------

    def path(self, src: str, dst: str) -> PathInfo:
        """The (deterministic) path a message from ``src`` to ``dst`` follows."""
        return self.paths(src, dst)

    def message_time(self, src: str, dst: str, nbytes: float) -> float:
        """Uncontended time of one message [s]: overhead + path latency + nbytes / (eff × bottleneck).

        Zero for ``src == dst``. Under no contention the simulated ``finished_at − issued_at``
        equals this (up to float rounding).
        """
        if src == dst:
            self.paths(src, dst)
            return 0.0
        info = self.paths(src, dst)
        eff = self.stack.efficiency(info.inter_node)
        t = self.stack.overhead_time(info.inter_node) + info.latency_time
        return t + float(nbytes) / (eff * info.bottleneck_bandwidth) if nbytes else t

    def _route(self, src: str, dst: str) -> Route:
        r = self._routes.get((src, dst))
        if r is None:
            info = self.paths(src, dst)
            eff = self.stack.efficiency(info.inter_node)
            cap = eff * info.bottleneck_bandwidth if eff < 1.0 else _INF
            delay = self.stack.overhead_time(info.inter_node) + info.latency_time
            links = tuple(self._index[e] for e in info.edges)
            r = Route(info, links, delay, cap, min(self._cap[i] for i in links),
                       self._stats.route(links))
            self._routes[(src, dst)] = r
        return r

    # -- transfers -----------------------------------------------------------------------------

    def transfer(self, src: str, dst: str, nbytes: float, then=None,
                 delay_time: float = 0.0, tag: int = 0) -> simpy.Event | None:
        """Send ``nbytes`` [B] from ``src`` to ``dst``; the event fires when the last byte arrives.

        Its value is a :class:`TransferRecord`. With ``then`` (a callable), no event is made:
        ``then(record)`` is called when the last byte arrives (``None`` is returned) — one SimPy
        event less per message, for callers that chain callbacks. ``delay_time`` [s] >= 0 issues
        the message that much later (as if ``transfer`` were called then; e.g. at the known end
        of a kernel) without an event of its own. ``tag`` names the traffic class
        (:mod:`simulator.network.traffic`; default ``other``). Raises :class:`UserError` for a
        negative or non-finite size and :class:`~simulator.network.paths.NoPathError` for
        unknown/unreachable nodes.
        """
        nbytes = float(nbytes)
        if not 0.0 <= nbytes < _INF:
            raise UserError(f"transfer {src!r} -> {dst!r}: nbytes must be a finite number >= 0 "
                            f"bytes, got {nbytes!r}")
        if not 0.0 <= delay_time < _INF:
            raise UserError(f"transfer {src!r} -> {dst!r}: delay_time must be a finite number "
                            f">= 0 s, got {delay_time!r}")
        env = self.env
        now = env.now
        issued = now + delay_time if delay_time else now
        fid = self._next_fid
        self._next_fid = fid + 1
        if then is None:
            done = ret = env.event()
        else:
            done, ret = then, None
        if src == dst:
            self.paths(src, dst)  # checks that the node exists
            self._sent(issued, nbytes, tag)
            rec = TransferRecord(src, dst, nbytes, issued, issued, issued, fid)
            if delay_time:
                env.timeout(delay_time).callbacks.append(
                    lambda _e: self._deliver(done, rec, nbytes, tag))
                return ret
            if ret is None:  # a local copy completes at once, but never inside the caller
                done = env.event()
                done.callbacks.append(lambda e: then(e.value))
            self._deliver(done, rec, nbytes, tag)
            return ret
        route = self._route(src, dst)
        self._sent(issued, nbytes, tag)
        wait = delay_time + route.delay_time
        if ret is None and nbytes == 0.0 and wait <= 0.0:
            done = env.event()  # it would complete at once: never inside the caller
            done.callbacks.append(lambda e: then(e.value))
        flow = Flow(fid, src, dst, nbytes, issued, now + wait if wait > 0.0 else now, done,
                    route, tag)
        if nbytes > 0.0 and self._lone.idle(route.links):
            self._lone.reserve(flow, now)  # alone on idle links: one event, no filling
        elif wait > 0.0:
            env.timeout(wait).callbacks.append(lambda _e: self._start(flow))
        else:
            self._start(flow)
        return ret

    def transfer_link(self, u: str, v: str, nbytes: float, then, *, efficiency: float = 1.0,
                      delay_time: float = 0.0, tag: int = 0,
                      counted: float | None = None) -> None:
        """Carry ``nbytes`` [B] over the one directed link ``u → v`` (an aggregate: the bytes
        many messages put on that link), at most ``efficiency`` × its line rate and its max-min
        share; no stack overhead and no latency (the caller charges those). ``then(record)``
        is called at the last byte; ``delay_time`` [s] as for :meth:`transfer`. ``counted``
        [B] is what the flow adds to the per-class counters (default ``nbytes``: the messages
        behind an aggregate cross several links, and count once). Used by the expert-parallel
        all-to-all (:mod:`simulator.engine.exchange`), which puts one such flow on every link
        it loads."""
        nbytes = float(nbytes)
        if not 0.0 <= nbytes < _INF:
            raise UserError(f"transfer_link {u!r} -> {v!r}: nbytes must be a finite number >= 0 "
                            f"bytes, got {nbytes!r}")
        if not 0.0 < efficiency <= 1.0:
            raise UserError(f"transfer_link {u!r} -> {v!r}: efficiency must be in (0, 1], got "
                            f"{efficiency!r}")
        key = (u, v, efficiency)
        route = self._link_routes.get(key)
        if route is None:
            if (u, v) not in self._index:
                raise UserError(f"transfer_link: {u!r} -> {v!r} is not a link of the topology")
            i = self._index[(u, v)]
            bw, lat = self._cap[i], float(self.graph.edges[u, v].get("latency", 0.0))
            info = PathInfo((u, v), ((u, v),), lat, bw,
                            any(self.graph.nodes[n].get("kind") == "nic" for n in (u, v)))
            route = self._link_routes[key] = Route(
                info, (i,), 0.0, efficiency * bw if efficiency < 1.0 else _INF, bw,
                self._stats.route((i,)))
        fid = self._next_fid
        self._next_fid = fid + 1
        now = self.env.now
        issued = now + delay_time if delay_time else now
        acct = self._accounts
        self._sent(issued, nbytes, tag, counted)
        if counted is None or counted == nbytes:
            done = then
        else:
            extra = counted - nbytes

            def done(rec, then=then) -> None:
                acct.delivered_by_class[tag] += extra  # _deliver counted nbytes
                then(rec)
        if nbytes == 0.0 and delay_time <= 0.0:
            cb = done
            done = self.env.event()  # it would complete at once: never inside the caller
            done.callbacks.append(lambda e: cb(e.value))
        # flows of one link and efficiency form one class of their own (never a transfer's)
        flow = Flow(fid, f"{u}|{efficiency!r}", v, nbytes, issued, issued, done, route, tag)
        if nbytes > 0.0 and self._lone.idle(route.links):
            self._lone.reserve(flow, now)  # alone on idle links: one event, no filling
        elif delay_time > 0.0:
            self.env.timeout(delay_time).callbacks.append(lambda _e: self._start(flow))
        else:
            self._start(flow)

    def _deliver(self, done, rec: TransferRecord, nbytes: float, tag: int = 0) -> None:
        self._accounts.delivered(nbytes, tag)
        if type(done) is simpy.Event:
            done.succeed(rec)
        else:
            done(rec)

    def _start(self, flow: Flow) -> None:
        now = self.env.now
        if flow.nbytes == 0.0:
            self._deliver(flow.done, TransferRecord(flow.src, flow.dst, 0.0, flow.issued_at,
                                                    flow.started_at, now, flow.fid), 0.0)
            return
        self._lone.materialize(flow.route.links, now)  # lone flows there share from now on
        self._shared.join(flow, flow.nbytes, now)
        self._shared.reallocate(flow.route.links)

    def _complete(self, f: Flow, now: float, shared: bool = True) -> None:
        if shared:  # its bytes since it joined a class (a lone flow's are recorded apart)
            self._stats.shared(f.route.sid, f.tag, f.joined_at, now, f.class_bytes)
        rec = TransferRecord(f.src, f.dst, f.nbytes, f.issued_at, f.started_at, now, f.fid)
        self._deliver(f.done, rec, f.nbytes, f.tag)

    # -- messages timed outside the Fabric (the fast engine) ------------------------------------

    def message_route(self, src: str, dst: str) -> tuple[float, float, tuple[int, ...], int]:
        """``(delay_time [s], lone rate [B/s], link indices, route id)`` of a message from
        ``src`` to ``dst`` (``src != dst``): overhead + latency, the rate a flow alone on its
        links gets (``min(cap, bottleneck)``), the directed links it crosses (indices into
        :attr:`link_bandwidth`) and its id for :meth:`record_messages`."""
        route = self._route(src, dst)
        rate = route.cap if route.cap <= route.bneck else route.bneck
        return route.delay_time, rate, route.links, route.sid

    def link_route(self, u: str, v: str) -> tuple[int, int]:
        """``(link index, route id)`` of the one directed link ``u → v``: an aggregate flow an
        engine timed itself on that link alone is recorded with the route id
        (:meth:`record_messages`)."""
        if (u, v) not in self._index:
            raise UserError(f"link_route: {u!r} -> {v!r} is not a link of the topology")
        i = self._index[(u, v)]
        return i, self._stats.route((i,))

    @property
    def link_index(self) -> dict[tuple[str, str], int]:
        """Each directed link's index by its ``(from, to)`` nodes (read-only by convention)."""
        return self._index

    @property
    def link_bandwidth(self) -> list[float]:
        """Line rate [B/s] of each directed link, by link index (read-only by convention)."""
        return self._cap

    def record_messages(self, route_ids, started_at, finished_at, nbytes, tags=None,
                        counted=None, totals=None) -> None:
        """Account messages whose timing an engine computed itself, on routes from
        :meth:`message_route` or :meth:`link_route`: counters, per class, link totals and
        timeline (:meth:`Accounts.record_messages
        <simulator.network.accounts.Accounts.record_messages>` says how). Schedules nothing."""
        self._accounts.record_messages(route_ids, started_at, finished_at, nbytes, tags,
                                       counted, totals)

    def record_sent(self, nbytes: float, tag: int = OTHER, counted: float | None = None) -> None:
        """Account ``nbytes`` [B] of class ``tag`` sent by an engine that timed them itself and
        whose delivery lies beyond the run's end (counted as sent, not delivered). ``counted``
        [B]: what the per-class counter adds instead (an aggregate's share of the payload, as
        :meth:`record_messages`' ``counted``; None: ``nbytes``)."""
        self._accounts.record_sent(nbytes, tag, counted)

    def record_on_wire(self, route_ids, started_at, until: float, nbytes, tags) -> None:
        """Link records (totals, timeline, per class) of messages an engine timed itself that
        are still on the wire at the run's end ``until`` [s]: each moved ``nbytes`` [B] (so far)
        from ``started_at`` [s] on its route id, as the Fabric records a flow under way when its
        clock stops (:meth:`links_frame` settles it). No counter moves: such a message is sent
        (:meth:`record_sent`), not delivered. Schedules nothing."""
        self._stats.intervals(list(route_ids), list(started_at), [until] * len(route_ids),
                              list(nbytes), list(tags))

    # -- introspection -------------------------------------------------------------------------

    def idle(self, src: str, dst: str) -> bool:
        """True if no flow (shared or lone) uses a link of the path from ``src`` to ``dst`` now;
        read-only, unlike :meth:`fair_share` (a new flow there would run at the path's rate)."""
        if src == dst:
            return True
        return self._lone.idle(self._route(src, dst).links)

    def fair_share(self, src: str, dst: str) -> float:
        """The rate [B/s] a new flow from ``src`` to ``dst`` would get now (``inf`` if same GPU)."""
        if src == dst:
            self.paths(src, dst)
            return _INF
        route = self._shared_route(src, dst)
        return self._shared.probe(src, dst, route)

    def sharing_time(self, src: str, dst: str, nbytes: float) -> float:
        """How much longer [s] a new flow of ``nbytes`` [B] from ``src`` to ``dst`` would take
        now than alone if each link of its path were shared equally among the flows on it as
        they finish (:meth:`SharedFlows.sharing_time
        <simulator.network.shared.SharedFlows.sharing_time>`: a flow about to end costs it
        little, one that outlasts it its equal share throughout); 0 on one GPU. Lone flows on
        the path are materialized first, as by :meth:`fair_share`."""
        if src == dst:
            return 0.0
        return self._shared.sharing_time(self._shared_route(src, dst).links, nbytes,
                                         self.env.now)

    def _shared_route(self, src: str, dst: str) -> Route:
        """The route from ``src`` to ``dst``, its lone flows materialized first (they count
        among the flows a newcomer shares with: :meth:`fair_share`, :meth:`sharing_time`)."""
        route = self._route(src, dst)
        if self._lone.materialize(route.links, self.env.now):
            self._shared.reallocate(route.links)
        return route

    def flows(self) -> list[FlowState]:
        """The flows sharing bandwidth now, by flow id, with rate [B/s] and remaining bytes."""
        self._lone.settle()
        return self._shared.states(self.env.now)

    def spill_records(self) -> None:
        """Move long link records on to temporary files (:meth:`LinkStats.spill`); call now
        and then, between iterations, in long runs. Changes no result."""
        self._stats.spill()

    def links_frame(self) -> pd.DataFrame:
        """Per directed link: src, dst, kind, bandwidth [B/s], bytes [B], busy_time [s] and
        utilization (time-weighted mean of load / bandwidth over [0, env.now])."""
        self._lone.settle()
        return self._stats.frame(self.env.now)

    def links_by_class(self) -> pd.DataFrame:
        """Bytes per directed link and traffic class (long format: src, dst, kind,
        traffic_class, bytes [B]; only non-zero rows). Exact: a flow's bytes cross every link
        of its route; a flow still sharing links now counts its bytes so far, as the link
        totals do (a run cut by its duration)."""
        self._lone.settle()
        return self._stats.by_class(self._under_way())

    def class_timeline(self, bin_time: float) -> pd.DataFrame:
        """Bytes per link kind, traffic class and time bin over [0, env.now] (long format:
        kind, traffic_class, start_at, end_at [s], bytes [B], utilization = bytes / (the
        kind's summed line rate × bin length)); see :mod:`simulator.network.traffic`."""
        self._lone.settle()
        return self._stats.class_timeline(bin_time, self.env.now, self._under_way())

    def _under_way(self) -> tuple:
        """The class records of the flows sharing links now, as :meth:`_complete` would write
        them were they to end now: (route ids, tags, joined at [s], now [s], bytes moved since
        [B]) as arrays, or ``()`` if none. Nothing is recorded: a report asked for before the
        run's end sees them again, moved further, later."""
        now = self.env.now
        rows = [(f.route.sid, f.tag, f.joined_at, now, f.class_bytes - left)
                for _, f, _, left in self._shared.under_way(now)]
        if not rows:
            return ()
        rid, tag, start, end, nbytes = zip(*rows, strict=True)
        return (np.array(rid, np.int64), np.array(tag, np.int64), np.array(start, float),
                np.array(end, float), np.array(nbytes, float))

    def link_timeline(self, bin_time: float) -> pd.DataFrame:
        """Utilization per link per time bin over [0, env.now] (long format).

        Columns: src, dst, kind, start_at, end_at [s], bytes [B], utilization (bytes /
        (bandwidth × bin length)); the last bin ends at ``env.now``.
        """
        self._lone.settle()
        return self._stats.timeline(bin_time, self.env.now)
