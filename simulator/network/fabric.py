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

Speed. Flows with the same (src, dst) share a path and a cap, so max-min gives them the same rate:
they form one *class*, a weighted flow in the filling. A class keeps a lazy service counter ``S(t) =
s_ref + rate × (t − t_ref)`` (bytes each member received since the class began); a member finishes
when ``S`` reaches its ``target`` (kept in a heap). An arrival or departure re-fills only the
connected component (classes linked through shared links) of the change; other rates cannot change.
The filling (:mod:`simulator.network.maxmin`) is progressive (the common level rises to the next
saturating link or per-flow cap; those flows freeze), with scratch arrays indexed by link and a
linear scan (small components) or a heap (large ones) for the next bottleneck. One SimPy timer waits
for the earliest completion over a heap of per-class predictions (a plain minimum while one
component holds every flow); a generation counter makes superseded timers and predictions no-ops.
Flows whose finish times lie within :data:`REL_TOL` (relative) of the timer finish together, in
flow-id order; remaining bytes never go negative.

Fast path (the common case in the engine: a few flows on mostly idle links): when the links of a
change carry at most one class and it is alone on all its links, its rate is ``min(cap, bottleneck /
n)`` without the filling — the same floats the filling computes. A caller may pass ``then`` to
:meth:`Fabric.transfer` to be called back at the last byte instead of getting an event (one SimPy
event less per message). Faster still, a message whose links are idle when it is sent is a *lone
flow* (:mod:`simulator.network.lone`): its whole life is known then, so it takes one event and no
filling, and becomes an ordinary flow only if something comes to share its links. Link accounting
(bytes, busy time, the load timeline) lives in :mod:`simulator.network.linkstats`."""

from __future__ import annotations

from functools import reduce
from heapq import heapify, heappop, heappush
from numbers import Real
from operator import add

import networkx as nx
import numpy as np
import pandas as pd
import simpy

from simulator import hardware
from simulator.errors import UserError
from simulator.network.flows import Flow, FlowClass, FlowState, Route, TransferRecord
from simulator.network.linkstats import LinkStats
from simulator.network.lone import LoneFlows
from simulator.network.maxmin import MaxMin
from simulator.network.paths import PathCache, PathInfo
from simulator.network.traffic import OTHER, TRAFFIC_CLASSES

#: Completions within this relative distance of the timer's time finish together [1].
REL_TOL = 1e-12
_INF = float("inf")


#: Integers up to this size are exact in float64, and so is every sum of them below it.
_EXACT_INTEGERS = float(2 ** 53)


def fold_sum(start: float, values) -> float:
    """``start + v₀ + v₁ + …`` added left to right in float64 (as ``+=`` in a loop would).
    Where every partial sum is an exact integer — ``start`` and the values non-negative
    integers and their sum below 2⁵³, as byte counts are — the order cannot change the result,
    and numpy adds an array at once; otherwise one Python addition after another."""
    if isinstance(values, np.ndarray) and values.size and float(start).is_integer() \
            and start >= 0.0:
        total = float(values.sum())
        if (start + total < _EXACT_INTEGERS and values.min() >= 0.0
                and bool((values == np.floor(values)).all())):
            return start + total
    return reduce(add, values.tolist() if isinstance(values, np.ndarray) else values, start)


class Fabric:
    """Max-min fair fluid network over a ``networkx.DiGraph`` (edge attrs bandwidth, latency).

    Args:
        env: the simulation's environment.
        graph: directed topology; every edge needs ``bandwidth`` [B/s] > 0, ``latency`` [s] >= 0.
        stack: ``"ideal"``, ``"nccl"``, ``"ibgda"`` or a :class:`~simulator.hardware.StackSpec`.
        ecmp: spread equal-cost paths by a stable hash (see :mod:`simulator.network.paths`).

    Counters: ``bytes_sent`` (at ``transfer``), ``bytes_delivered`` and ``flows_completed``;
    per traffic class (a transfer's ``tag``, :mod:`simulator.network.traffic`)
    ``sent_by_class`` and ``delivered_by_class`` (lists indexed by tag) [B].
    """

    def __init__(self, env: simpy.Environment, graph: nx.DiGraph, stack="ideal",
                 ecmp: bool = False) -> None:
        self.env = env
        self.graph = graph
        self.stack = hardware.stack(stack)
        self.paths = PathCache(graph, ecmp=ecmp)
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
        n = len(self._edges)
        kinds = [graph.edges[e].get("kind", "") for e in self._edges]
        self._stats = LinkStats(self._edges, kinds, self._cap)
        self._link_classes: list[dict[int, FlowClass]] = [{} for _ in range(n)]
        self._lone = LoneFlows(self, env, self._link_classes, self._stats)
        self._maxmin = MaxMin(self._cap, self._link_classes)
        self._res = self._maxmin.res  # residual capacity per link after a filling [B/s]
        self._routes: dict[tuple[str, str], Route] = {}
        self._classes: dict[tuple[str, str], FlowClass] = {}
        self._heap: list = []  # (predicted finish [s], class id, gen, FlowClass)
        self._heap_ok = True  # False while one component holds every class (no heap kept)
        self._first_at = _INF  # earliest predicted finish when the heap is not kept [s]
        self._timer_at = _INF
        self._timer_gen = 0
        self._next_fid = 0
        self._next_cid = 0
        self.bytes_sent = 0.0
        self.bytes_delivered = 0.0
        self.flows_completed = 0
        self.sent_by_class = [0.0] * len(TRAFFIC_CLASSES)
        self.delivered_by_class = [0.0] * len(TRAFFIC_CLASSES)
        self._link_routes: dict[tuple[str, str, float], Route] = {}

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
            self.bytes_sent += nbytes
            self.sent_by_class[tag] += nbytes
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
        self.bytes_sent += nbytes
        self.sent_by_class[tag] += nbytes
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
        self.bytes_sent += nbytes
        if counted is None or counted == nbytes:
            self.sent_by_class[tag] += nbytes
            done = then
        else:
            self.sent_by_class[tag] += counted
            extra = counted - nbytes

            def done(rec, then=then) -> None:
                self.delivered_by_class[tag] += extra  # _deliver counted nbytes
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
        self.bytes_delivered += nbytes
        self.delivered_by_class[tag] += nbytes
        self.flows_completed += 1
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
        self._join(flow, flow.nbytes, now)
        self._reallocate(flow.route.links)

    def _join(self, flow: Flow, nbytes: float, now: float) -> None:
        """Add ``flow`` with ``nbytes`` [B] left to its class (the caller re-fills)."""
        key = (flow.src, flow.dst)
        c = self._classes.get(key)
        if c is None:
            c = self._new_class(key, flow.route, now)
        s_now = c.s_ref + c.rate * (now - c.t_ref)
        heappush(c.heap, (s_now + nbytes, flow.fid, flow))
        c.n += 1
        c.dirty = True
        flow.joined_at = now
        flow.class_bytes = nbytes

    def _new_class(self, key: tuple[str, str], route: Route, now: float) -> FlowClass:
        c = FlowClass(self._next_cid, key, route, now)
        self._next_cid += 1
        self._classes[key] = c
        for link in c.links:
            self._link_classes[link][c.cid] = c
        return c

    def _drop_class(self, c: FlowClass) -> None:
        del self._classes[c.key]
        for link in c.links:
            del self._link_classes[link][c.cid]
        c.gen = -1

    # -- max-min fair rates --------------------------------------------------------------------

    def _reallocate(self, links) -> None:
        """Re-fill the component of ``links``, update predictions, link loads and the timer."""
        now = self.env._now
        comp, comp_links = self._maxmin.fill(links)
        if len(comp) == len(self._classes):
            # One component holds every active flow (common under load): the earliest
            # completion is a plain minimum over it, and no heap needs to be kept.
            self._heap_ok = False
            first_at = _INF
            for c in comp:
                r = c.new_rate
                if r != c.rate:
                    c.s_ref += c.rate * (now - c.t_ref)
                    c.t_ref = now
                    c.rate = r
                    c.t_next = c.t_ref + (c.heap[0][0] - c.s_ref) / r if r > 0.0 else _INF
                elif c.dirty:
                    c.t_next = c.t_ref + (c.heap[0][0] - c.s_ref) / r if r > 0.0 else _INF
                c.dirty = False
                if c.t_next < first_at:
                    first_at = c.t_next
            self._first_at = first_at
        else:
            heap = self._heap
            if not self._heap_ok:
                self._heap = heap = [(c.t_next, c.cid, c.gen, c) for c in self._classes.values()]
                heapify(heap)
                self._heap_ok = True
            for c in comp:
                r = c.new_rate
                if r != c.rate:
                    c.s_ref += c.rate * (now - c.t_ref)
                    c.t_ref = now
                    c.rate = r
                elif not c.dirty:
                    continue
                c.dirty = False
                c.gen += 1
                c.t_next = t_next = (c.t_ref + (c.heap[0][0] - c.s_ref) / r if r > 0.0
                                     else _INF)
                heappush(heap, (t_next, c.cid, c.gen, c))
            if len(heap) > 64 and len(heap) > 8 * len(self._classes):
                self._heap = heap = [e for e in heap if e[2] == e[3].gen]
                heapify(heap)
        # Link accounting: a link's new load is what the filling took from it.
        self._stats.update(comp_links, self._res, now)
        self._arm_timer()

    # -- completions ---------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._heap_ok:
            heap = self._heap
            while heap and heap[0][2] != heap[0][3].gen:
                heappop(heap)
            t = heap[0][0] if heap else _INF
        else:
            t = self._first_at
        if t != self._timer_at:
            self._set_timer(t, self.env._now)

    def _set_timer(self, t: float, now: float) -> None:
        self._timer_at = t
        self._timer_gen += 1
        if t < _INF:
            gen = self._timer_gen
            self.env.timeout(t - now if t > now else 0.0).callbacks.append(
                lambda _e: self._on_timer(gen))

    def _on_timer(self, gen: int) -> None:
        if gen != self._timer_gen:
            return  # superseded
        self._timer_at = _INF
        now = self.env._now
        heap = self._heap if self._heap_ok else []
        finished: list[Flow] = []
        touched: list[FlowClass] = []
        if not self._heap_ok:
            near = now * (1.0 + 1e-9)
            for c in self._classes.values():
                if c.t_next <= near:
                    s_now = c.s_ref + c.rate * (now - c.t_ref)
                    tol = c.rate * now * REL_TOL
                    if c.heap[0][0] - s_now <= tol:
                        while c.heap and c.heap[0][0] - s_now <= tol:
                            finished.append(heappop(c.heap)[2])
                            c.n -= 1
                        touched.append(c)
        while heap:
            _, _, g, c = heap[0]
            if g != c.gen:
                heappop(heap)
                continue
            s_now = c.s_ref + c.rate * (now - c.t_ref)
            tol = c.rate * now * REL_TOL
            if c.heap[0][0] - s_now > tol:
                break
            heappop(heap)
            c.gen += 1
            while c.heap and c.heap[0][0] - s_now <= tol:
                finished.append(heappop(c.heap)[2])
                c.n -= 1
            touched.append(c)
        if not finished:
            self._arm_timer()
            return
        if len(touched) == 1:
            c = touched[0]
            c.dirty = True
            if c.n == 0:
                self._drop_class(c)
            self._reallocate(c.links)
        else:
            links: dict[int, None] = {}
            for c in touched:
                c.dirty = True
                links.update(dict.fromkeys(c.links))
                if c.n == 0:
                    self._drop_class(c)
            self._reallocate(list(links))
        finished.sort(key=lambda f: f.fid)
        for f in finished:
            self._complete(f, now)

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
    def link_bandwidth(self) -> list[float]:
        """Line rate [B/s] of each directed link, by link index (read-only by convention)."""
        return self._cap

    def record_messages(self, route_ids, started_at, finished_at, nbytes, tags=None,
                        counted=None, totals=None) -> None:
        """Account messages whose timing an engine computed itself (sequences of equal length):
        each carried ``nbytes`` [B] of traffic class ``tags`` (:mod:`simulator.network.traffic`;
        None: ``other``) over the links of its route id (:meth:`message_route`,
        :meth:`link_route`) from ``started_at`` to ``finished_at`` [s] — one lone-flow record
        each (counters, per class, link totals and timeline). ``counted`` [B] is what each adds
        to the per-class counters (None: ``nbytes``; an aggregate on one link counts its share of
        the payload, as :meth:`transfer_link`'s ``counted``). ``totals`` [B]: when the messages
        are several calls' worth, put end to end, each call's byte total (the run's totals grow
        by each in turn, as so many calls would add them; None: one call). Schedules nothing."""
        n = len(route_ids)
        if tags is None:
            tags = [OTHER] * n
        if counted is None:
            counted = nbytes
        if not (len(started_at) == len(finished_at) == len(nbytes) == len(tags)
                == len(counted) == n):
            # before any counter moves: a refused call leaves the accounting as it was
            raise ValueError("record_messages: route_ids, started_at, finished_at, nbytes, "
                             "tags and counted need one entry per message")
        if totals is None:  # sums in message order (an array's values as Python floats: the
            # same additions)
            totals = (float(sum(nbytes.tolist() if isinstance(nbytes, np.ndarray) else nbytes)),)
        for total in totals:
            self.bytes_sent += total
            self.bytes_delivered += total
        self.flows_completed += n
        if isinstance(tags, np.ndarray):
            one = n > 0 and bool((tags == tags[0]).all())
        else:  # a list or tuple
            one = n > 0 and tags.count(tags[0]) == n
        if one:  # one class: the same additions in the same order, at once
            tag = int(tags[0])
            sent, delivered = self.sent_by_class[tag], self.delivered_by_class[tag]
            self.sent_by_class[tag] = fold_sum(sent, counted)
            self.delivered_by_class[tag] = self.sent_by_class[tag] if delivered == sent and \
                type(delivered) is type(sent) else fold_sum(delivered, counted)
        else:
            for tag, b in zip(tags, counted, strict=True):
                self.sent_by_class[tag] += b
                self.delivered_by_class[tag] += b
        self._stats.intervals(route_ids, started_at, finished_at, nbytes, tags)

    def record_sent(self, nbytes: float, tag: int = OTHER) -> None:
        """Account ``nbytes`` [B] of class ``tag`` sent by an engine that timed them itself and
        whose delivery lies beyond the run's end (counted as sent, not delivered)."""
        self.bytes_sent += nbytes
        self.sent_by_class[tag] += nbytes

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
        route = self._route(src, dst)
        if self._lone.materialize(route.links, self.env.now):  # lone flows there count
            self._reallocate(route.links)
        c = self._classes.get((src, dst))
        temp = c is None
        if temp:
            c = FlowClass(-1, (src, dst), route, self.env.now)
            for link in c.links:
                self._link_classes[link][-1] = c
        c.n += 1
        try:
            self._maxmin.fill(c.links)
            return c.new_rate
        finally:
            c.n -= 1
            if temp:
                for link in c.links:
                    del self._link_classes[link][-1]

    def flows(self) -> list[FlowState]:
        """The flows sharing bandwidth now, by flow id, with rate [B/s] and remaining bytes."""
        self._lone.settle()
        now = self.env.now
        out = []
        for c in self._classes.values():
            s_now = c.s_ref + c.rate * (now - c.t_ref)
            for target, fid, f in c.heap:
                out.append(FlowState(fid, f.src, f.dst, c.rate, max(target - s_now, 0.0),
                                     f.route.info.edges))
        out.sort(key=lambda s: s.flow_id)
        return out

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
        of its route."""
        self._lone.settle()
        return self._stats.by_class()

    def class_timeline(self, bin_time: float) -> pd.DataFrame:
        """Bytes per link kind, traffic class and time bin over [0, env.now] (long format:
        kind, traffic_class, start_at, end_at [s], bytes [B], utilization = bytes / (the
        kind's summed line rate × bin length)); see :mod:`simulator.network.traffic`."""
        self._lone.settle()
        return self._stats.class_timeline(bin_time, self.env.now)

    def link_timeline(self, bin_time: float) -> pd.DataFrame:
        """Utilization per link per time bin over [0, env.now] (long format).

        Columns: src, dst, kind, start_at, end_at [s], bytes [B], utilization (bytes /
        (bandwidth × bin length)); the last bin ends at ``env.now``.
        """
        self._lone.settle()
        return self._stats.timeline(bin_time, self.env.now)
