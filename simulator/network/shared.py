"""Shared flows: the Fabric's flows that share links, their max-min rates, completions and timer.

A flow that shares bandwidth (one that started on links other flows use, or a lone flow that
something came to share, :mod:`simulator.network.lone`) lives in :class:`SharedFlows`, a part the
:class:`~simulator.network.fabric.Fabric` holds; it goes back to the Fabric, through the
``complete`` callable it was given, when its last byte arrives.

Flows with the same (src, dst) share a path and a cap, so max-min gives them the same rate: they
form one *class* (:class:`~simulator.network.flows.FlowClass`), a weighted flow in the filling. A
class keeps a lazy service counter ``S(t) = s_ref + rate × (t − t_ref)`` (bytes each member
received since the class began); a member finishes when ``S`` reaches its ``target`` (kept in a
heap). An arrival or departure re-fills only the connected component (classes linked through
shared links) of the change; other rates cannot change. The filling
(:mod:`simulator.network.maxmin`) is progressive (the common level rises to the next saturating
link or per-flow cap; those flows freeze), with scratch arrays indexed by link and a linear scan
(small components) or a heap (large ones) for the next bottleneck. One SimPy timer waits for the
earliest completion over a heap of per-class predictions (a plain minimum while one component
holds every flow); a generation counter makes superseded timers and predictions no-ops. Flows
whose finish times lie within :data:`REL_TOL` (relative) of the timer finish together, in
flow-id order; remaining bytes never go negative. After each filling a link's new load is what
the filling took from it (:meth:`~simulator.network.linkstats.LinkStats.update`).
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heapify, heappop, heappush

import simpy

from simulator.network.flows import Flow, FlowClass, FlowState, Route
from simulator.network.linkstats import LinkStats
from simulator.network.maxmin import MaxMin

#: Completions within this relative distance of the timer's time finish together [1].
REL_TOL = 1e-12
_INF = float("inf")


class SharedFlows:
    """The flow classes on the links, their predicted completions and the one timer.

    Args:
        env: the simulation's environment.
        cap: line rate [B/s] of each directed link, by link index.
        stats: the fabric's link statistics (the links' loads after each filling).
        complete: ``complete(flow, now)`` — a flow's last byte arrived at ``now`` [s] (the
            Fabric's ``_complete``).
    """

    def __init__(self, env: simpy.Environment, cap: list[float], stats: LinkStats,
                 complete: Callable[[Flow, float], None]) -> None:
        self.env = env
        self._cap = cap
        self._stats = stats
        self._complete = complete
        #: the flow classes on each link (class id → class); read by the lone flows
        self.link_classes: list[dict[int, FlowClass]] = [{} for _ in cap]
        self._maxmin = MaxMin(cap, self.link_classes)
        self._res = self._maxmin.res  # residual capacity per link after a filling [B/s]
        self._classes: dict[tuple[str, str], FlowClass] = {}
        self._heap: list = []  # (predicted finish [s], class id, gen, FlowClass)
        self._heap_ok = True  # False while one component holds every class (no heap kept)
        self._first_at = _INF  # earliest predicted finish when the heap is not kept [s]
        self._timer_at = _INF
        self._timer_gen = 0
        self._next_cid = 0

    # -- flow classes --------------------------------------------------------------------------

    def join(self, flow: Flow, nbytes: float, now: float) -> None:
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
            self.link_classes[link][c.cid] = c
        return c

    def _drop_class(self, c: FlowClass) -> None:
        del self._classes[c.key]
        for link in c.links:
            del self.link_classes[link][c.cid]
        c.gen = -1

    # -- max-min fair rates --------------------------------------------------------------------

    def reallocate(self, links) -> None:
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
                    c.set_rate(r, now)
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
                    c.set_rate(r, now)
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

    def probe(self, src: str, dst: str, route: Route) -> float:
        """The rate [B/s] one more flow from ``src`` to ``dst`` (on ``route``) would get now;
        the classes' rates and predictions are left as they were."""
        c = self._classes.get((src, dst))
        temp = c is None
        if temp:
            c = FlowClass(-1, (src, dst), route, self.env.now)
            for link in c.links:
                self.link_classes[link][-1] = c
        c.n += 1
        try:
            self._maxmin.fill(c.links)
            return c.new_rate
        finally:
            c.n -= 1
            if temp:
                for link in c.links:
                    del self.link_classes[link][-1]

    def sharing_time(self, links, nbytes: float, now: float) -> float:
        """How much longer [s] ``nbytes`` [B] sent now over ``links`` would take than alone, if
        each link were shared equally among its flows as they finish (processor sharing): on
        each link, the bytes its flows have left, each counted up to ``nbytes`` (a flow that
        outlasts the new one shares the link with it throughout, one that ends sooner only
        until it ends), over the link's line rate; the most over ``links``. Reads only."""
        worst = 0.0
        for link in links:
            left = 0.0
            for c in self.link_classes[link].values():
                s_now = c.s_ref + c.rate * (now - c.t_ref)
                for target, _, _ in c.heap:
                    r = target - s_now
                    if r > 0.0:
                        left += r if r < nbytes else nbytes
            t = left / self._cap[link]
            if t > worst:
                worst = t
        return worst

    def states(self, now: float) -> list[FlowState]:
        """The flows sharing bandwidth at ``now`` [s], by flow id (rate, remaining bytes)."""
        return [FlowState(fid, f.src, f.dst, rate, left, f.route.info.edges)
                for fid, f, rate, left in self.under_way(now)]

    def under_way(self, now: float) -> list[tuple]:
        """``(flow id, flow, rate [B/s], bytes left [B])`` of each flow sharing bandwidth at
        ``now`` [s], by flow id."""
        out = []
        for c in self._classes.values():
            s_now = c.s_ref + c.rate * (now - c.t_ref)
            for target, fid, f in c.heap:
                out.append((fid, f, c.rate, max(target - s_now, 0.0)))
        out.sort(key=lambda x: x[0])
        return out

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
            self.reallocate(c.links)
        else:
            links: dict[int, None] = {}
            for c in touched:
                c.dirty = True
                links.update(dict.fromkeys(c.links))
                if c.n == 0:
                    self._drop_class(c)
            self.reallocate(list(links))
        finished.sort(key=lambda f: f.fid)
        for f in finished:
            self._complete(f, now)
