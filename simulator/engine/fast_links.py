"""Messages of the fast engine: closed-form times, max-min among a step's own flows, calendars
for other steps' bulk traffic.

The exact engine sends every message through the :class:`~simulator.network.Fabric` (max-min
fair fluid flows, one SimPy event per message). The fast engine times a *phase* of a layer's
rounds at once — the messages one home GPU sends at the same stage of one layer (the queries or
fetch requests, then the answers or blocks) — without events:

1. Each message waits its stack overhead + path latency (``delay``), then flows.
2. **The step's own messages**: a phase's messages that share links share them max-min fairly
   with per-flow caps, exactly as the Fabric would (progressive filling between arrivals and
   completions, :func:`~simulator.engine.fast_sharing.max_min_finish`; memoized by the phase's
   shape); a message alone on its path takes ``delay + bytes / min(cap, bottleneck)`` — the
   closed form. A phase of hundreds of messages (a deployment instance's ranks together) is
   filled in batches (:func:`~simulator.engine.fast_sharing.batched_max_min_finish`), or, if
   every message is µs-scale, shared per link (:func:`~simulator.engine.fast_sharing.
   shared_finish`). Those functions, pure and without routes, are
   :mod:`simulator.engine.fast_sharing`; this module routes, memoizes, reserves and records.
3. **Other steps' traffic**: a *bulk* message (its bytes take more than :attr:`Links.SMALL_TIME`
   on its path alone: fetched blocks, large batches' queries) puts ``bytes / line rate`` seconds
   of work on every link it crosses, each link a
   :class:`~simulator.engine.fast_streams.Calendar` served FIFO in start order. Where known work
   overlaps its uncontended transfer it ends when the slowest of its links has carried it —
   never before its uncontended end. Bytes are conserved at each link's line rate (the fluid
   model's drain), with FIFO service in place of max-min sharing; a message that starts earlier
   than work already known pushes that work back, and the steps it belongs to are charged the
   delay (times their slot's folding), as on GPU streams. A *small* message (a query, an
   answer, a fetch request: a few µs of wire time) is neither delayed by nor delays other
   steps' traffic: under max-min sharing a message of wire time ``w`` among ``n`` flows is
   slowed by at most ``(n − 1)·w`` and slows each of the others by at most ``w``, which is small
   next to the per-message overhead and latency that dominate such messages. An expert-parallel
   all-to-all's aggregate on a link with known work ends with its processor share of that
   work where this is sooner than FIFO (:meth:`Links.aggregate`).
4. **What an observing policy sees** (``idle``, ``extra_time``: the
   :class:`~simulator.policies.observed.LinkLoad` ``adaptive`` reads): the calendars' FIFO wait
   for a bulk message. The homes of a phase all start at once (one GPU's step, or one
   micro-batch of an instance's ranks), so no policy decides beside flows of its own phase
   already in flight.

5. **Links that never decide a time** (``dominated``): a link ``A`` whose every message also
   crosses a link ``B`` no faster than ``A`` (every route through ``A`` goes through ``B``) keeps
   no calendar. Fed a subset of ``B``'s messages, each with no more work, ``A``'s FIFO queue is
   never longer than ``B``'s: each message ends on ``A`` no later than on ``B`` and is pushed
   back there no more than on ``B`` (an earlier message adds less work, and ``A`` idles at
   least as long between), and ``A`` is idle wherever ``B`` is (the workload is monotone in the
   arrivals and their sizes, and rounding is monotone too). So a message's end, whether it was
   alone, what an observing policy reads and the debts charged are the same without ``A``'s
   calendar (:mod:`simulator.engine.dominance`; tested). On a DGX pair, an inter-node
   message's PCIe hops (64 GB/s, behind a 50 GB/s NIC carrying exactly their traffic) are
   dropped: four calendars of eight. Found among the routes between the run's GPUs where there
   are at most :attr:`Links.DOMINANCE_PAIRS` of them, else from the graph's neighbours (a
   1,024-GPU fat tree: 4,096 of its 10,304 links), and not for a deployment, whose all-to-all
   loads single links (:meth:`Links.aggregate`).

Every message is recorded on the Fabric's link accounting (:meth:`Fabric.record_messages`), so
``links``, ``link_timeline``, the records by traffic class and the fabric's byte counters hold
the fast engine's traffic too (a link's busy time is the union of the messages crossing it:
:mod:`simulator.network.busy`).
A run cut at its duration (``until``) holds what the Fabric would hold when its clock stops
there: a step is composed ahead of the clock, so a message that ends at or after ``until`` is
counted as sent only (:meth:`Fabric.record_sent`) if it was issued before, and not at all if
it was issued later.
"""

from __future__ import annotations

import numpy as np

from simulator.engine.dominance import dominated_links, funnel_links
from simulator.engine.fast_sharing import (
    batched_max_min_finish,
    max_min_finish,
    shared_finish,
)
from simulator.engine.fast_streams import Calendar, reserve_each
from simulator.network.traffic import OTHER

_INF = float("inf")


class Links:
    """The fast engine's view of the fabric: routes, per-link busy periods, accounting.

    Args:
        env: the run's environment (periods before now are dropped).
        fabric: the run's :class:`~simulator.network.Fabric` (routes, line rates, accounting).
        debts: per GPU, its running step's debt (:mod:`simulator.engine.fast_streams`).
        until: when the run's clock stops [s] (its duration; ``inf``: when the work does).
    """

    #: Message records kept before they go to the Fabric's link accounting at once.
    FLUSH = 4096
    #: Messages whose bytes take at most this long on their path alone [s] leave no work on
    #: the link calendars (see the module docstring).
    SMALL_TIME = 5e-6
    #: Phases of more messages than this that share links are timed by batched max-min
    #: filling (:func:`~simulator.engine.fast_sharing.batched_max_min_finish`; µs-scale
    #: messages only: per-link processor sharing, :func:`~simulator.engine.fast_sharing.
    #: shared_finish`) instead of a filling per completion, whose cost grows as
    #: the square of the messages (0.3–1.9 s for ~590 fetches here). Only a deployment's
    #: instance, whose ranks' messages form one phase, reaches it.
    EXACT_SHARE = 48

    #: Routes between the GPUs (ordered pairs) at most this many for the links no message's
    #: time depends on to be found among the routes (:func:`~simulator.engine.dominance.
    #: dominated_links`; each pair is routed once); above, from the graph's neighbours
    #: (:func:`~simulator.engine.dominance.funnel_links`).
    DOMINANCE_PAIRS = 20_000

    def __init__(self, env, fabric, debts: list[float] | None = None,
                 until: float = float("inf"), endpoints: list[str] | None = None) -> None:
        self.fabric = fabric
        self.until = until
        self.line = fabric.link_bandwidth
        # the same rates as an array: the compiled filling reads them without a conversion
        self._line_rates = np.asarray(self.line, float)
        self.cal = [Calendar(env, debts) for _ in self.line]
        # links that keep no calendar: ``endpoints`` are every end a message can have (None:
        # unknown, or single links loaded directly — every link keeps its calendar)
        self.dominated: frozenset[int] = frozenset()
        if endpoints:
            pairs = len(endpoints) * (len(endpoints) - 1)
            self.dominated = (dominated_links if pairs <= self.DOMINANCE_PAIRS
                              else funnel_links)(fabric, endpoints)
        self._routes: dict[tuple[str, str], tuple] = {}
        self._link_ids: dict[tuple[str, str], tuple[int, int]] = {}
        self._shared: dict[tuple, list[float]] = {}  # own max-min ends, by phase shape
        self.contended = 0  # messages timed against other steps' traffic
        self.messages = 0
        self._rec: list[tuple] = []  # (route id, start, end, bytes, class) per message

    def route(self, src: str, dst: str) -> tuple:
        """``(delay [s], lone rate [B/s], links, the calendars of those not dominated, seconds per
        byte on each of those, route id, links as a set, the pair's number)`` of messages from
        ``src`` to ``dst`` (cached; the number, one per ``(src, dst)``, keys the memo)."""
        r = self._routes.get((src, dst))
        if r is None:
            delay, rate, links, sid = self.fabric.message_route(src, dst)
            timed = [i for i in links if i not in self.dominated]  # links keeping a calendar
            r = self._routes[(src, dst)] = (delay, rate, links,
                                            tuple(self.cal[i] for i in timed),
                                            tuple(1.0 / self.line[i] for i in timed), sid,
                                            frozenset(links), len(self._routes))
        return r

    def one(self, src: str, dst: str, nbytes: float, issued_at: float, owner: int = -1,
            fold: int = 1, tag: int = OTHER) -> tuple[float, float]:
        """Time one message of traffic class ``tag`` sent alone at its stage for GPU ``owner``'s
        step (a layer slot standing for ``fold`` layers): ``(started_at, finished_at)`` [s]."""
        r = self._routes.get((src, dst))
        if r is None:
            r = self.route(src, dst)
        s = issued_at + r[0]
        wire = nbytes / r[1]
        e = s + wire
        if wire > self.SMALL_TIME:
            e = self._bulk(r, s, e, nbytes, owner, fold)
        if e < self.until:  # its record (route id, start, end, bytes, class) kept for the Fabric
            rec = self._rec
            rec.append((r[5], s, e, nbytes, tag))
            if len(rec) >= self.FLUSH:
                self.flush()
        else:
            self._late(nbytes, tag, issued_at)
        return s, e

    # -- the load a policy sees (simulator.policies.observed.LinkLoad) -------------------------

    def idle(self, src: str, dst: str, at: float) -> bool:
        """No work known on the path's links that a message sent at ``at`` [s] would wait
        for."""
        r = self._routes.get((src, dst))
        if r is None:
            r = self.route(src, dst)
        s = at + r[0]
        for c in r[3]:  # noqa: SIM110 (a loop, not all(generator): asked twice a round)
            if c.last_end > s and c.free_at(s) > s:
                return False
        return True

    def extra_time(self, src: str, dst: str, nbytes: float, at: float) -> float:
        """How much longer ``nbytes`` [B] sent at ``at`` [s] take than on an idle path [s]: the
        FIFO wait for work already issued on the path's busiest link (0 for a small message,
        which waits for no one there)."""
        r = self.route(src, dst)
        if nbytes / r[1] > self.SMALL_TIME:
            s = at + r[0]
            wait = max(c.free_at(s) for c in r[3]) - s if r[3] else 0.0
            if wait > 0.0:
                return wait
        return 0.0

    def _bulk(self, r: tuple, s: float, e: float, nbytes: float, owner: int,
              fold: int) -> float:
        """Put a bulk message's work on its links' calendars; returns when it ends [s] (``e``
        if its links are idle then, else the slowest link's FIFO end, at least ``e``)."""
        # every link's work reserved, each link checked idle before its own reservation (the
        # others' do not touch its calendar)
        f, alone = reserve_each(r[3], s, e, nbytes, r[4], owner, fold)
        if alone:  # the closed form
            return e
        self.contended += 1
        return f if f > e else e

    def phase(self, msgs: list[tuple[str, str, float, float]], owner: int = -1,
              fold: int = 1, tags: list[int] | None = None) -> list[tuple[float, float]]:
        """Time messages ``(src, dst, bytes, issued_at)`` (of traffic classes ``tags``; None:
        ``other``) sent at one stage of a layer slot of GPU ``owner``'s step; returns
        ``(started_at, finished_at)`` each [s] and reserves the work of the bulk ones on the
        links."""
        if tags is None:
            tags = [OTHER] * len(msgs)
        if len(msgs) == 1:
            return [self.one(*msgs[0], owner, fold, tags[0])]
        routes, starts, ends = self._own_times(msgs)
        small, until, rec = self.SMALL_TIME, self.until, self._rec
        for i, m in enumerate(msgs):
            r = routes[i]
            e = ends[i]
            if m[2] / r[1] > small:
                e = ends[i] = self._bulk(r, starts[i], e, m[2], owner, fold)
            if e < until:  # kept for the Fabric, as in one()
                rec.append((r[5], starts[i], e, m[2], tags[i]))
                if len(rec) >= self.FLUSH:
                    self.flush()
            else:
                self._late(m[2], tags[i], m[3])
        return list(zip(starts, ends, strict=True))

    def aggregate(self, links: list[tuple[str, str]], loads: list[float],
                  rates: list[float], start_at: float, owner: int = -1, fold: int = 1,
                  tag: int = OTHER, payload: float | None = None) -> float:
        """Time one aggregate flow per directed link (an all-to-all's bytes on each link it
        loads, as :meth:`Fabric.transfer_link <simulator.network.Fabric.transfer_link>`):
        ``loads[i]`` [B] on ``links[i]`` from ``start_at`` [s], at most ``rates[i]`` [B/s];
        returns when the last ends [s]. Each puts ``bytes / line rate`` of work on its link's
        calendar. Alone on idle links it ends at ``start_at + load / rate``, the closed form.
        With work known on its link at its start, it ends with its processor share of the link
        among the known items from their issue
        (:meth:`~simulator.engine.fast_streams.Calendar.shared_end`: on one link, the Fabric's
        max-min among uncapped flows) or FIFO behind that work, whichever is sooner, never
        before its capped lone time. An all-to-all is µs-scale traffic that a bulk message's
        FIFO queue would hold back by all of that message, where the Fabric gives it its share
        at once. The payload (default the loads' sum) counts once in the per-class counters,
        spread over the links in proportion to their loads."""
        fabric = self.fabric
        share = 1.0 if payload is None else payload / float(sum(loads))
        end = start_at
        until = self.until
        sids, starts, ends, carried = [], [], [], []
        for (u, v), load, rate in zip(links, loads, rates, strict=True):
            key = (u, v)
            lr = self._link_ids.get(key)
            if lr is None:
                lr = self._link_ids[key] = fabric.link_route(u, v)
            i, sid = lr
            e = start_at + load / rate
            cal = self.cal[i]
            wire = load / self.line[i]
            # work known on the link at the start: the load's share of it among that work's
            # flows (processor sharing), if sooner than its end FIFO behind it
            shared = cal.shared_end(start_at, wire) if cal.free_at(start_at) > start_at \
                else _INF
            f = cal.reserve(start_at, wire, owner, fold)
            if f > e:
                self.contended += 1
                if shared < f:
                    f = shared
                if f > e:
                    e = f
            if e > end:
                end = e
            if e >= until:  # still on the wire when the clock stops
                if start_at < until:
                    fabric.record_sent(load, tag, load * share)
                continue
            sids.append(sid)
            starts.append(start_at)
            ends.append(e)
            carried.append(load)
        self.messages += len(sids)
        if sids:
            fabric.record_messages(sids, starts, ends, carried, [tag] * len(sids),
                                   [x * share for x in carried])
        return end

    def _own_times(self, msgs: list[tuple[str, str, float, float]]
                   ) -> tuple[list[tuple], list[float], list[float]]:
        """Routes, starts and ends [s] of messages ``(src, dst, bytes, issued_at)`` sent as one
        phase, among themselves alone: each starts after its delay and, where they share links,
        they share them max-min (:meth:`_share`); else each ends at its lone time."""
        get = self._routes.get
        routes = [get((m[0], m[1])) or self.route(m[0], m[1]) for m in msgs]
        starts = [m[3] + r[0] for m, r in zip(msgs, routes, strict=True)]
        if _disjoint(routes):
            return routes, starts, [s + m[2] / r[1]
                                    for m, r, s in zip(msgs, routes, starts, strict=True)]
        return routes, starts, self._share(msgs, routes, starts)  # max-min among them

    def _share(self, msgs, routes, starts) -> list[float]:
        """Max-min ends [s] of one phase's own messages (memoized by the phase's shape); above
        :attr:`EXACT_SHARE` messages, batched filling (:func:`batched_max_min_finish`), or
        per-link processor sharing (:func:`shared_finish`) when every message is µs-scale."""
        if len(msgs) > self.EXACT_SHARE:
            args = (starts, [m[2] for m in msgs], [r[1] for r in routes],
                    [r[2] for r in routes], self.line)
            if all(m[2] / r[1] <= self.SMALL_TIME for m, r in zip(msgs, routes, strict=True)):
                return shared_finish(*args)  # µs-scale messages: per-link sharing suffices
            return batched_max_min_finish(*args)
        t0 = min(starts)
        # the phase's shape: per message its pair, bytes and start after the first
        key = tuple([(r[7], m[2], s - t0) for m, r, s in zip(msgs, routes, starts, strict=True)])
        got = self._shared.get(key)
        if got is None:
            if len(self._shared) > 100_000:
                self._shared.clear()
            ends = max_min_finish(starts, [m[2] for m in msgs], [r[1] for r in routes],
                                  [r[2] for r in routes], self._line_rates)
            got = self._shared[key] = [e - t0 for e in ends]
        return [t0 + x for x in got]

    def _late(self, nbytes: float, tag: int, issued_at: float) -> None:
        """Count a message still on the wire when the clock stops as sent only, if it was
        issued by then (at ``issued_at`` [s]); it keeps no record."""
        if issued_at < self.until:
            self.fabric.record_sent(nbytes, tag)

    def flush(self) -> None:
        """Hand the kept message records to the Fabric's link accounting."""
        rec = self._rec
        self.messages += len(rec)
        if rec:
            self.fabric.record_messages(*zip(*rec, strict=True))
            rec.clear()


def _disjoint(routes) -> bool:
    """No two routes share a directed link."""
    seen: frozenset[int] = routes[0][6]
    for r in routes[1:]:
        if not seen.isdisjoint(r[6]):
            return False
        seen = seen | r[6]
    return True
