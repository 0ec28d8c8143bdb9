"""Work calendars for the fast engine: GPU compute streams and links that take reservations ahead.

The exact engine advances SimPy to each message and kernel, so a GPU stream there is a FIFO whose
kernels are issued *now* (:class:`simulator.gpu.streams.Stream`). The fast engine computes a whole
decode step at its start, so the kernels of the step's later layers — on the home stream and on
the owners it routes to — are issued at known *future* times, and other GPUs' steps, computed
later, may issue kernels at earlier times on the same stream. A :class:`Calendar` is a FIFO
server in *issue-time* order that accepts such reservations out of order:

- it keeps the issued work ``(issue_at, duration)`` sorted by issue time, and each item's FIFO end
  ``end_j = max(issue_j, end_{j-1}) + duration_j`` (a work-conserving single server);
- :meth:`Calendar.reserve` inserts an item (after those with the same issue time), returns its end,
  and pushes the later items' ends back as FIFO service demands (stopping where an idle gap
  absorbs the shift).

So the calendar is always the FIFO schedule of every item known so far. What it approximates:
a step's times are fixed when it is composed, so an item pushed back by work reserved later
with an *earlier* issue time does not move the rest of its step. The push is charged instead:
each item carries the GPU whose step issued it and the folding of its layer slot (a slot that
stands for ``L`` layers waits its own time ``L`` times over, so a delay in it costs ``L`` times
as much), and the largest of its items' whole pushes (every push an item received since it was
reserved, ``end0``) × folding is the running step's *debt*, which the step takes over at its
next slot with rounds or waits out when it ends (:mod:`simulator.engine.fast`). Alone, or when
steps do not overlap on a resource, the calendar gives exactly the FIFO times (the lone-request
contract).

The same calendar serves links: a message puts ``bytes / line rate`` seconds of work on each link
it crosses (see :mod:`simulator.engine.fast_links`; :func:`reserve_each` reserves on a path's
links in one pass). :meth:`Calendar.chain_until` reserves a run of a prefill-only step's layers
at once. Both give the very items and floats one :meth:`Calendar.reserve` per item would (the
speed pass in docs/performance.md).

Items that ended before the present are dropped from the front now and then (a new item is never
issued in the past), keeping the lists short.
"""

from __future__ import annotations

from bisect import bisect_right
from heapq import heappop, heappush

import simpy

_INF = float("inf")
#: Items ended before now kept before the front of a calendar is cut off.
_PRUNE = 64


class Calendar:
    """A FIFO server of work items issued at known times, reserved in any order (see the
    module docstring). Times and durations in seconds."""

    __slots__ = ("env", "at", "dur", "end", "end0", "own", "fold", "debts", "done_busy",
                 "cut_busy", "items", "last_end", "settle")

    def __init__(self, env: simpy.Environment, debts: list[float] | None = None) -> None:
        self.env = env
        self.at: list[float] = []  # issue times, ascending
        self.dur: list[float] = []
        self.end: list[float] = []  # FIFO ends, non-decreasing
        self.end0: list[float] = []  # each item's end when it was reserved (before any push)
        self.own: list[int] = []  # the GPU whose step issued each item (-1: none)
        self.fold: list[int] = []  # how many times a delay of the item delays its step
        self.debts = debts  # per GPU: the most an item of its running step was pushed back [s]
        self.done_busy = 0.0  # work counted without an item (account) [s]
        # work of the items cut off the front, added one by one in issue order: the same sum
        # however the cuts fall (when a reserve prunes depends on the clock it is made at) [s]
        self.cut_busy = 0.0
        self.items = 0
        self.last_end = 0.0  # when the last known item ends [s] (0: idle)
        # called with a GPU whose debt a push just raised (None: nobody to tell;
        # simulator.engine.fast_laid)
        self.settle = None

    def free_at(self, at: float) -> float:
        """When the work issued at or before ``at`` [s] is done (``-inf`` if none is known)."""
        i = bisect_right(self.at, at)
        return self.end[i - 1] if i else -_INF

    def shared_end(self, at: float, duration: float) -> float:
        """When an item of ``duration`` [s] issued at ``at`` [s] would end if the server were
        shared equally among the known items from their issue (processor sharing) instead of
        serving them FIFO [s] (:func:`processor_sharing_end`; items cut off the front are not
        counted). Reserves nothing."""
        return processor_sharing_end(self.at, self.dur, at, duration)

    def idle(self, start: float, end: float) -> bool:
        """No known work runs in ``[start, end)`` [s]."""
        if self.last_end <= start:
            return True
        ends = self.end
        i = bisect_right(ends, start)
        return i == len(ends) or ends[i] - self.dur[i] >= end

    def reserve(self, at: float, duration: float, owner: int = -1, fold: int = 1,
                kernels: int = 1) -> float:
        """Issue ``duration`` [s] of work at ``at`` [s] (>= now) for GPU ``owner``'s step
        (-1: none); returns when it ends [s]. Items of *other* GPUs' steps it pushes back are
        charged to those steps (``debts``): the push times the item's ``fold`` — a delay in a
        layer slot standing for ``fold`` folded layers delays its step ``fold`` times over.
        ``kernels`` counts the kernels the item stands for (back-to-back ones issued at once)."""
        at_l, end_l = self.at, self.end
        n = len(at_l)
        if n > _PRUNE and end_l[0] <= self.env._now:
            self._prune()
            n = len(at_l)
        self.items += kernels
        if not n or at >= at_l[-1]:  # the common case: issued after everything known
            prev = end_l[-1] if n else -_INF
            e = (prev if prev > at else at) + duration
            at_l.append(at)
            self.dur.append(duration)
            end_l.append(e)
            self.end0.append(e)
            self.own.append(owner)
            self.fold.append(fold)
            if e > self.last_end:
                self.last_end = e
            return e
        return self._insert(at, duration, owner, fold, n)

    def _insert(self, at: float, duration: float, owner: int, fold: int, n: int) -> float:
        """:meth:`reserve` of an item issued before the last known one (``n`` items kept)."""
        at_l, end_l = self.at, self.end
        i = bisect_right(at_l, at)
        prev = end_l[i - 1] if i else -_INF
        e = (prev if prev > at else at) + duration
        at_l.insert(i, at)
        dur_l = self.dur
        dur_l.insert(i, duration)
        end_l.insert(i, e)
        end0_l = self.end0
        end0_l.insert(i, e)
        own_l, fold_l = self.own, self.fold
        own_l.insert(i, owner)
        fold_l.insert(i, fold)
        debts = self.debts
        last = e
        for j in range(i + 1, n + 1):  # later items: FIFO behind the new one
            a = at_l[j]
            new = (last if last > a else a) + dur_l[j]
            if new == end_l[j]:
                break
            o = own_l[j]
            if debts is not None and o >= 0 and o != owner:
                push = (new - end0_l[j]) * fold_l[j]  # all pushes so far, not this one's
                if push > debts[o]:
                    debts[o] = push
                    if self.settle is not None:
                        self.settle(o)
            end_l[j] = last = new
        if end_l[-1] > self.last_end:
            self.last_end = end_l[-1]
        return e

    def take_back(self, n: int, kernels: int, last_end: float) -> None:
        """Remove the last ``n`` items (``kernels`` kernels in all): ones a GPU's step laid
        ahead (:mod:`simulator.engine.fast_laid`), which no other item has been reserved after
        and none has ended; ``last_end``: the calendar's last end before they were laid [s]."""
        for lst in (self.at, self.dur, self.end, self.end0, self.own, self.fold):
            del lst[-n:]
        self.items -= kernels
        self.last_end = max(last_end, self.end[-1]) if self.end else last_end

    def chain_until(self, at: float, busy: list[float], folds: list[int], owner: int,
                    kernels: list[int], until: float, as_clock: bool = True,
                    issued: list[float] | None = None) -> tuple[float, int]:
        """:meth:`reserve` ``busy[i]`` [s] (``kernels[i]`` kernels, folding ``folds[i]``) for
        ``owner``'s step, one after another from ``at`` [s], while they are issued before
        ``until`` [s]: item ``i + 1`` is issued when item ``i``'s folded layers are done (its
        end + (end − issue)·(fold − 1), rounded as the exact engine's clock:
        :func:`folded_next`; with ``as_clock`` False as the fast engine's decode loop rounds
        it, ``end + (end − issue)·(fold − 1)``). Returns ``(when the next item would be issued
        [s], how many were reserved)``; ``issued`` (if given) gets each item's issue time. The
        same items and times as one :meth:`reserve` per item (items of positive duration, as
        every step's are: one of 0 s issued at now could be cut by a later reserve's pruning
        and is kept here; the counters and times are the same either way)."""
        at_l, end_l = self.at, self.end
        n = len(at_l)
        if n and at < at_l[-1]:  # items known after the first: one reserve each
            k = 0
            for d, fold, kk in zip(busy, folds, kernels, strict=True):
                if at >= until:
                    break
                e = self.reserve(at, d, owner, fold, kk)
                if issued is not None:
                    issued.append(at)
                at = (at + ((e - at) + (e - at) * (fold - 1)) if as_clock  # folded_next
                      else e + (e - at) * (fold - 1))
                k += 1
            return at, k
        # every item goes after everything known: reserve's common case for each, computed
        # here and appended at once. The one prune reserve would make on the way (the front
        # ended, the calendar grown past _PRUNE) cuts the same items (the new ones end after
        # now) and leaves the times alone (an item cut ended by now, before ``at``)
        prev = end_l[-1] if at_l else -_INF
        ats, ends = [], []
        for d, fold in zip(busy, folds, strict=True):
            if at >= until:
                break
            e = (prev if prev > at else at) + d
            ats.append(at)
            ends.append(e)
            prev = e
            at = (at + ((e - at) + (e - at) * (fold - 1)) if as_clock  # folded_next
                  else e + (e - at) * (fold - 1))
        k = len(ends)
        if issued is not None:
            issued.extend(ats)
        if k:
            if n and end_l[0] <= self.env._now and n + k - 1 > _PRUNE:
                self._prune()
            if k < len(busy):
                busy, folds, kernels = busy[:k], folds[:k], kernels[:k]
            self.items += sum(kernels)
            at_l.extend(ats)
            self.dur.extend(busy)
            end_l.extend(ends)
            self.end0.extend(ends)
            self.own.extend([owner] * k)
            self.fold.extend(folds)
            if prev > self.last_end:
                self.last_end = prev
        return at, k

    def account_each(self, busy: list[float], kernels: int, end: float) -> None:
        """:meth:`account` of several items at once: ``busy`` [s] each (added one by one, in
        order, as that many calls would), ``kernels`` in all, the last ending at ``end`` [s]."""
        done_busy = self.done_busy
        for b in busy:
            done_busy += b
        self.done_busy = done_busy
        self.items += kernels
        if end > self.last_end:
            self.last_end = end

    def account(self, busy: float, kernels: int, end: float) -> None:
        """Count ``kernels`` kernels of ``busy`` [s] in all, ending by ``end`` [s], that no
        one else can queue behind or before (a stream only its own GPU uses): no item kept."""
        self.done_busy += busy
        self.items += kernels
        if end > self.last_end:
            self.last_end = end

    def _prune(self) -> None:
        now = self.env._now
        k = bisect_right(self.end, now)
        if k:
            cut = self.cut_busy
            for d in self.dur[:k]:
                cut += d
            self.cut_busy = cut
            del self.at[:k], self.dur[:k], self.end[:k], self.end0[:k], self.own[:k], self.fold[:k]

    def busy_until(self, now: float) -> float:
        """Work done by ``now`` [s] (items still running count up to now): the items' work
        added one by one in issue order, then the work counted without items."""
        busy = self.cut_busy
        for d, e in zip(self.dur, self.end, strict=True):
            start = e - d
            if e <= now:
                busy += d
            elif start < now:
                busy += now - start
        return self.done_busy + busy


def folded_next(at: float, end: float, fold: int) -> float:
    """When the next layer slot starts [s] after a slot issued at ``at`` [s] whose item ends at
    ``end`` [s] and stands for ``fold`` layers: ``end + (end − at)·(fold − 1)``, rounded as the
    exact engine's clock reaches it — ``now + delay`` with :meth:`simulator.gpu.streams.Stream.
    after`'s ``delay = end − now + (end − now)·(fold − 1)`` issued at ``now = at``. The two
    roundings differ by an ulp now and then, and a routed kernel that waits behind the owner's
    prefill layer and folds that wait multiplies a difference in its slot's start by
    ``−(fold − 1)`` (about −20 with 3 slots): seven such collisions took one ulp to 5.5e-8 s
    (6.7e-7 of the step), and after a 1e-10 change of kernel times to 8e-6 of a step, past the
    1e-6 contract (tests/test_engine_fast_collisions.py). Inlined in
    :meth:`Calendar.chain_until`."""
    return at + ((end - at) + (end - at) * (fold - 1))


def processor_sharing_end(ats: list[float], durs: list[float], at: float,
                          duration: float) -> float:
    """When a job of ``duration`` [s] of work issued at ``at`` [s] ends on a unit-rate server
    shared equally among the jobs present (egalitarian processor sharing: on one link, the
    Fabric's max-min shares of uncapped flows), with jobs of ``durs`` [s] issued at ``ats``
    [s] (ascending). The new job goes after those issued at the same time."""
    k = bisect_right(ats, at)
    arrivals = [*zip(ats[:k], durs[:k], strict=True), (at, duration),
                *zip(ats[k:], durs[k:], strict=True)]
    heap: list[tuple[float, int]] = []  # (service at which a present job is done, index)
    served = 0.0  # service each present job has received since the first arrival
    now = arrivals[0][0]
    i, n = 0, len(arrivals)
    while True:
        nxt = arrivals[i][0] if i < n else _INF
        done = now + (heap[0][0] - served) * len(heap) if heap else _INF
        if nxt <= done:  # an arrival: the present jobs' shares shrink from then on
            if heap:
                served += (nxt - now) / len(heap)
            now = nxt
            heappush(heap, (served + arrivals[i][1], i))
            i += 1
        else:  # the job with the least work left is done
            served, j = heappop(heap)
            now = done
            if j == k:
                return now


def reserve_each(cals, at: float, until: float, nbytes: float, spbs, owner: int,
                 fold: int) -> tuple[float, bool]:
    """``cal.reserve(at, nbytes · spb, owner, fold)`` on each calendar of ``cals`` (distinct;
    ``spbs``: seconds per byte on each); returns the latest end [s] and whether every calendar
    was idle in ``[at, until)`` before (:meth:`Calendar.idle`; each checked before its own
    reservation, which no other calendar's touches)."""
    last = -_INF
    alone = True
    for c, spb in zip(cals, spbs, strict=True):
        if alone and not c.idle(at, until):
            alone = False
        e = c.reserve(at, nbytes * spb, owner, fold)
        if e > last:
            last = e
    return last, alone


class FastStream:
    """A GPU compute stream of the fast engine: a :class:`Calendar` with the interface the
    serving loop uses (:meth:`run`, :meth:`issue`, ``busy_time``, ``kernels_run``)."""

    __slots__ = ("env", "cal", "gpu")
    #: :meth:`issue` returns the kernel's end.
    predicts = True

    def __init__(self, env: simpy.Environment, debts: list[float] | None = None,
                 gpu: int = -1) -> None:
        self.env = env
        self.cal = Calendar(env, debts)
        self.gpu = gpu

    def issue(self, duration: float) -> float:
        """Queue a kernel of ``duration`` [s] now (for this GPU); returns its end [s]."""
        return self.cal.reserve(self.env.now, duration, self.gpu)

    def run(self, duration: float) -> simpy.Event:
        """An event at the end of a kernel of ``duration`` [s] issued now."""
        return self.env.timeout(self.issue(duration) - self.env.now)

    @property
    def busy_time(self) -> float:
        """Kernel time run so far [s]."""
        return self.cal.busy_until(self.env.now)

    @property
    def kernels_run(self) -> int:
        """Kernels issued so far."""
        return self.cal.items
