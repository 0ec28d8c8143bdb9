"""The Lamina loop's fast mode: a micro-batch's layer slots composed without their events.

The exact loop (:mod:`simulator.disaggregation.lamina`) runs each (folded) layer slot of a
micro-batch as SimPy events: the slice segment on the slice's FIFO stream, the query (then K/V)
flows to every attention GPU on the :class:`~simulator.network.Fabric`, the attention kernels in
lockstep, the return flows, the folded round-trip latency — some 20 events per slot with four
attention GPUs. :class:`SlotComposer` computes the same slot without events:

- the slice and attention streams are :class:`~simulator.engine.fast_streams.Calendar`
  objects (FIFO in issue order, reservations accepted out of order), one item per kernel the
  exact loop issues;
- each stage's flows (a *phase*) are timed by :class:`PhaseLinks`: the closed form
  (:meth:`Fabric.message_time <simulator.network.Fabric.message_time>`) while no two of them and
  no other micro-batch's flow in flight share a link; otherwise max-min fair sharing with
  per-flow caps (:func:`~simulator.engine.fast_sharing.max_min_finish`, the Fabric's progressive
  filling) over the phase and every phase still in flight that shares a link with it,
  transitively. A phase composed earlier that the newcomer slows is moved later and the delay
  charged to its micro-batch (below). Messages reach the Fabric's link accounting once done.

**The ordering problem.** Micro-batches share slices, attention GPUs and links every layer, and
the exact loop serves each resource first come, first served, in the order the micro-batches
*arrive* at it. A micro-batch that reserved its whole iteration at its start would hold places in
every later slot's queue ahead of micro-batches that arrive there earlier; a calendar would push
its items back when those arrive (charged as a debt), but not the rest of its iteration, so in the
staggered regime — where every slot of one micro-batch waits behind another's — an iteration
composed ahead would come out as if run alone (up to ``n`` times too fast). So :func:`iteration`
composes as far ahead as nothing else can act — up to SimPy's next event: a micro-batch running
alone composes its whole iteration and waits one timeout; while others run it issues each stage
of a slot (slice segment, first flows, attention with the K/V flows, return flows) when it is
due, so every kernel and flow is issued in the exact loop's order and every phase meets the
flows really in flight. A phase in flight that a newcomer slows is moved later and its
micro-batch waits out the delay before its next stage. (Composing a whole slot at its start —
fewer events — let a slot's later stages be issued before other micro-batches' earlier ones:
on the four-micro-batch stress row of ``benchmarks/bench_lamina.py`` TBT p99 came out 5.8 %
high, against 0.00 % stage by stage.)

What is exact: a micro-batch alone (every iteration and request time to float rounding), and
interleaved micro-batches as long as no phase is re-timed. What is approximated: a re-timed
phase in flight is re-simulated from its start with the phases still in flight only (not those
already done), and never moved earlier; a micro-batch waits out the largest push-back of its
stage's items, not their sum over successive pushes; work composed ahead while alone that a
newcomer then pushes back delays that micro-batch by the push, not its later stages. A link's
busy time is the union of the messages that cross it, as the Fabric's (messages of a phase
crossing it at once count their common time once: :mod:`simulator.network.busy`); bytes, link
totals and utilization are the exact loop's. ``tests/test_lamina_fast.py`` and
``benchmarks/bench_lamina.py`` hold it to the exact loop.

A run cut by ``[engine] duration`` keeps what the exact loop would have at the cut: kernels
issued before it, messages delivered before it (those in flight counted sent, not delivered).
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np

from simulator.disaggregation.staggered import Plan
from simulator.engine.fast_sharing import max_min_finish
from simulator.engine.fast_streams import Calendar
from simulator.network.traffic import OTHER

_INF = float("inf")
#: Message records kept before they go to the Fabric's link accounting at once.
_FLUSH = 4096


class _Phase:
    """One micro-batch's messages of one stage of a slot, issued together: their starts
    (issue + delay) [s], bytes, lone rates [B/s], links, route ids and (current) ends [s]."""

    __slots__ = ("owner", "issued_at", "starts", "nbytes", "caps", "links", "sids", "ends",
                 "linkset", "last")

    def __init__(self, owner, issued_at, starts, nbytes, caps, links, sids, ends,
                 linkset) -> None:
        self.owner, self.issued_at = owner, issued_at
        self.starts, self.nbytes, self.caps = starts, nbytes, caps
        self.links, self.sids, self.ends = links, sids, ends
        self.linkset = linkset
        self.last = max(ends)


class PhaseLinks:
    """The Lamina flows' times without the Fabric's events: max-min fair sharing (with per-flow
    caps, :func:`~simulator.engine.fast_sharing.max_min_finish`, as the Fabric fills rates) among
    a phase's own messages and every message still in flight that shares a link with them,
    transitively (other micro-batches' phases issued before or composed ahead). A phase alone
    on its links takes the closed form (:meth:`Fabric.message_time
    <simulator.network.Fabric.message_time>`). A phase already composed that the newcomer
    slows is moved later and the delay (how much its last message moved) charged to its
    micro-batch's debt, waited out before that micro-batch's next stage. Messages go to the
    Fabric's link accounting once done; those still in flight at the run's end (``until``
    [s]) count as sent if issued before it, and their links carry the bytes moved by then
    (as the Fabric's records of a flow under way when its clock stops)."""

    def __init__(self, env, fabric, debts: list[float], until: float) -> None:
        self.env, self.fabric = env, fabric
        # line rates [B/s], an array: the compiled filling reads them without a conversion
        self._line_rates = np.asarray(fabric.link_bandwidth, float)
        self.debts = debts
        self.until = until
        self.open: list[_Phase] = []
        self.mine = [0] * len(debts)  # open phases per micro-batch
        self._rec: tuple[list, list, list, list] = ([], [], [], [])
        self._late = 0.0
        self._wire: list[tuple[int, float, float]] = []  # (route id, start [s], bytes moved)
        self._routes: dict[tuple[str, str], tuple] = {}
        self._memo: dict[tuple, tuple[float, ...]] = {}
        self.shared = 0  # phases timed together with others' messages

    def _route(self, src: str, dst: str) -> tuple:
        r = self._routes.get((src, dst))
        if r is None:
            delay, rate, links, sid = self.fabric.message_route(src, dst)
            r = self._routes[(src, dst)] = (delay, rate, links, sid, frozenset(links))
        return r

    def shape(self, msgs: list[tuple[str, str, float]]) -> tuple:
        """What a phase of messages ``(src, dst, bytes)`` needs each time it is issued: per
        message its delay [s], bytes, lone rate [B/s], links, route id and wire time [s];
        the links it uses; and, when two of them share a link, their max-min ends among
        themselves relative to the issue time [s] (None: none shares; the closed form)."""
        routes = [self._route(a, b) for a, b, _ in msgs]
        nbytes = [x for _, _, x in msgs]
        caps = [r[1] for r in routes]
        links = [r[2] for r in routes]
        delays = [r[0] for r in routes]
        linkset: frozenset[int] = frozenset().union(*(r[4] for r in routes))
        own = None
        if sum(len(r[4]) for r in routes) != len(linkset):
            key = tuple((r[3], b, d) for r, b, d in zip(routes, nbytes, delays, strict=True))
            own = self._memo.get(key)
            if own is None:
                if len(self._memo) > 100_000:
                    self._memo.clear()
                own = self._memo[key] = max_min_finish(delays, nbytes, caps, links, self._line_rates)
        return (delays, nbytes, caps, links, [r[3] for r in routes],
                [b / c for b, c in zip(nbytes, caps, strict=True)], linkset, own)

    def phase(self, shape: tuple, at: float, owner: int) -> float:
        """The messages of ``shape`` (:meth:`shape`) issued at ``at`` [s] for micro-batch
        ``owner``; returns when the last arrives [s]."""
        now = self.env.now
        if self.open and self.open[0].last <= now:
            self._retire(now)
        delays, nbytes, caps, links, sids, wires, linkset, own = shape
        starts = [at + d for d in delays]
        # the owner's own earlier phases ended before this one's issue: only others' can meet it
        group = (self._touching(linkset, min(starts)) if len(self.open) > self.mine[owner]
                 else None)
        if not group:
            if own is None:  # the closed form
                ends = [s + w for s, w in zip(starts, wires, strict=True)]
            else:
                ends = [at + e for e in own]
        else:
            ends = self._together(group, starts, nbytes, caps, links)
        ph = _Phase(owner, at, starts, nbytes, caps, links, sids, ends, linkset)
        self.open.append(ph)
        self.mine[owner] += 1
        return ph.last

    def _touching(self, linkset: frozenset, t0: float) -> list[_Phase]:
        """Open phases still in flight after ``t0`` [s] that share a link with ``linkset``,
        or with one of them, and so on."""
        group: list[_Phase] = []
        left = [p for p in self.open if p.last > t0]
        grown = True
        while grown and left:
            grown = False
            rest = []
            for p in left:
                if not linkset.isdisjoint(p.linkset):
                    group.append(p)
                    linkset = linkset | p.linkset
                    grown = True
                else:
                    rest.append(p)
            left = rest
        return group

    def _together(self, group: list[_Phase], starts, nbytes, caps, links) -> list[float]:
        """Max-min ends [s] of a phase's messages with ``group``'s; moves the group's ends
        later where the newcomer slows them (charging their micro-batches), never earlier."""
        self.shared += 1
        n = len(starts)
        s, b, c, lk = list(starts), list(nbytes), list(caps), list(links)
        for p in group:
            s += p.starts
            b += p.nbytes
            c += p.caps
            lk += p.links
        ends = max_min_finish(s, b, c, lk, self._line_rates)
        k = n
        debts = self.debts
        for p in group:
            moved = False
            for i, old in enumerate(p.ends):
                new = ends[k + i]
                if new > old:
                    p.ends[i] = new
                    moved = True
            k += len(p.ends)
            if moved:
                last = max(p.ends)
                pushed = last - p.last  # the phase ends this much later
                p.last = last
                if pushed > debts[p.owner]:
                    debts[p.owner] = pushed
        return ends[:n]

    def _retire(self, now: float) -> None:
        """Account the phases done by ``now`` [s]."""
        done = [p for p in self.open if p.last <= now]
        self.open = [p for p in self.open if p.last > now]
        self._record(done)
        if len(self._rec[0]) >= _FLUSH:
            self._flush()

    def _record(self, phases: list[_Phase]) -> None:
        """Keep the phases' messages for the Fabric's accounting (delivered before the run's
        end; those still in flight then count as sent if issued before it)."""
        sids, starts, ends, nbytes = self._rec
        until = self.until
        mine = self.mine
        for p in phases:
            mine[p.owner] -= 1
            if p.last < until:
                sids += p.sids
                starts += p.starts
                ends += p.ends
                nbytes += p.nbytes
                continue
            for sid, s, e, x in zip(p.sids, p.starts, p.ends, p.nbytes, strict=True):
                if e < until:
                    sids.append(sid)
                    starts.append(s)
                    ends.append(e)
                    nbytes.append(x)
                elif p.issued_at < until:
                    self._late += x
                    if s < until:  # on the wire at the end: the bytes moved by then (evenly
                        # over its time: its lone rate, or its equal share of a shared link)
                        self._wire.append((sid, s, x * (until - s) / (e - s)))

    def _flush(self) -> None:
        if self._rec[0]:
            self.fabric.record_messages(*self._rec)
            for x in self._rec:
                x.clear()

    def close(self) -> None:
        """Account every phase left (at the run's end)."""
        self._record(self.open)
        self.open = []
        self._flush()
        if self._late:
            self.fabric.record_sent(self._late)
            self._late = 0.0
        if self._wire:
            sids, starts, moved = zip(*self._wire, strict=True)
            self.fabric.record_on_wire(sids, starts, self.until, moved, [OTHER] * len(sids))
            self._wire = []


class CalendarStream:
    """A GPU stream of the fast mode, as :class:`~simulator.gpu.streams.Stream` reports it:
    ``busy_time`` (kernel time run by now) and ``kernels_run`` (kernels issued before the
    run's end ``until`` [s])."""

    __slots__ = ("cal", "until")

    def __init__(self, env, debts: list[float], until: float) -> None:
        self.cal = Calendar(env, debts)
        self.until = until

    @property
    def busy_time(self) -> float:
        """Kernel time run so far [s]."""
        return self.cal.busy_until(self.cal.env.now)

    @property
    def kernels_run(self) -> int:
        """Kernels issued before the run's end."""
        cal = self.cal
        return cal.items - (len(cal.at) - bisect_left(cal.at, self.until))


class SlotComposer:
    """The fast mode's calendars and its one operation: time a micro-batch's layer slot.

    Args:
        env: the run's environment.
        fabric: the run's Fabric (routes, link accounting).
        slices: model slices (``K``); attention: the attention GPUs' names.
        micro_batches: micro-batches (owners of the calendars' items, for their debts).
        early_q: attention starts when the query lands; K and V follow (the spec's field).
        rt0: one round trip's latency between the pools [s] (a folded slot's extra hops).
        until: the run's end [s] (``inf``: none).
    """

    def __init__(self, env, fabric, slices: int, attention: list[str], micro_batches: int,
                 early_q: bool, rt0: float, until: float) -> None:
        self.debts = [0.0] * micro_batches
        self.slice_streams = [CalendarStream(env, self.debts, until) for _ in range(slices)]
        self.att_streams = [CalendarStream(env, self.debts, until) for _ in attention]
        self.links = PhaseLinks(env, fabric, self.debts, until)
        self.names = attention
        self.early_q = early_q
        self.rt0 = rt0
        self.pushed = 0  # slots found pushed back when their micro-batch came to them

    def _shape(self, flows: list[tuple], x: np.ndarray, m: float, out: bool) -> tuple | None:
        """The phase of per-attention-GPU bytes ``x`` over ``flows`` (those with bytes; None
        if none), as :meth:`PhaseLinks.shape`."""
        names = self.names
        if out:
            msgs = [(a, names[i], m * x[i] * f) for a, i, f in flows if x[i] > 0]
        else:
            msgs = [(names[i], b, m * x[i] * f) for i, b, f in flows if x[i] > 0]
        return self.links.shape(msgs) if msgs else None

    def _slot_shape(self, p: Plan, kind: tuple, m: float, out: list[tuple],
                    back: list[tuple]) -> tuple:
        """Plan ``p``'s slots of ``kind`` (folding, slice, next slice) as the fast mode needs
        them (kept in the plan's cache):
        ``(attention work per GPU [s] or None, first phase, second phase, return phase)``;
        ``None`` phases carry no bytes, and no first or second phase ends the slot at its
        segment, as in the exact loop."""
        key = ("fast", kind)
        got = p.cache.get(key)
        if got is None:
            early = self.early_q and p.q.sum() > 0
            first = p.q if early else p.q + p.kv
            work = [m * p.t_att[i] if p.batch[i] else None for i in range(len(self.names))]
            got = p.cache[key] = (work, self._shape(out, first, m, True),
                                  self._shape(out, p.kv, m, True) if early else None,
                                  self._shape(back, p.ret, m, False))
        return got

    def stages(self, j: int, k: int, p: Plan, kind: tuple, m: float, at: float, ring: float,
               out: list[tuple], back: list[tuple]):
        """Micro-batch ``j``'s slot of ``m`` layers on slice ``k`` (of ``kind``: folding,
        slice, next slice), started at ``at`` [s] (>= now; nothing issued after it may run before it) —
        :meth:`_Lamina._slot <simulator.disaggregation.lamina._Lamina._slot>`'s stages, each
        issued when the one before is done. A generator: it yields when its next stage is due
        [s] and is sent when that stage is issued (the same time, or later by a push-back of
        the stage before); it returns when the slot ends [s]."""
        t = self.slice_streams[k].cal.reserve(at, m * p.model_layer + ring, j)
        work, first, second, back_ph = self._slot_shape(p, kind, m, out, back)
        if first is None and second is None:
            return t
        links = self.links
        if first is not None:
            t = yield t
            t = links.phase(first, t, j)
        t = yield t
        t2 = t
        for w, cal in zip(work, self.att_streams, strict=True):
            if w is not None:
                e = cal.cal.reserve(t, w, j)
                if e > t2:
                    t2 = e
        if second is not None:
            e = links.phase(second, t, j)
            if e > t2:
                t2 = e
        if back_ph is not None:
            t2 = yield t2
            t2 = links.phase(back_ph, t2, j)
        if m > 1:
            t2 += (m - 1.0) * self.rt0
        return t2

    def settle(self, j: int) -> float:
        """The most an item of micro-batch ``j``'s open slot was pushed back by work reserved
        since [s], cleared (the time its slot ends later than composed)."""
        d = self.debts[j]
        if d > 0.0:
            self.debts[j] = 0.0
            self.pushed += 1
        return d


def iteration(run, j: int, p: Plan, overhead: float):
    """Micro-batch ``j``'s iteration of plan ``p`` on ``run`` (a fast-mode
    :class:`~simulator.disaggregation.lamina._Lamina`), from now, after the host ``overhead``
    [s]: a SimPy process body that ends when the exact loop's iteration would. Each slot's
    stages are composed ahead while no other event comes before the next one is due, else
    issued when due (see the module docstring); push-backs are waited out before the next."""
    env, comp = run.env, run.composer
    m_all, K, rings = run.m_float, run.K, run.slice_rings
    comp.settle(j)
    t = env.now + overhead
    slots = len(m_all)
    for s in range(slots):
        m = m_all[s]
        while t > env.now and env.peek() <= t:  # another process acts first: go there
            yield env.timeout(t - env.now)
            t += comp.settle(j)
        out, back = run.planner.pairs(s)
        k = s % K
        kind = (m, k, ((s + 1) % slots) % K)
        stages = comp.stages(j, k, p, kind, m, t, rings[k].time(m, p.allreduce_bytes), out,
                             back)
        try:
            t = next(stages)
            while True:  # each stage issued when due, or later by a push-back waited out
                while t > env.now and env.peek() <= t:
                    yield env.timeout(t - env.now)
                    t += comp.settle(j)
                t = stages.send(t)
        except StopIteration as stop:
            t = stop.value
    while t > env.now:
        yield env.timeout(t - env.now)
        t += comp.settle(j)
