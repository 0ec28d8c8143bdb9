"""Quiet layer slots composed ahead of the clock, where nothing due before them can reach them.

Under a policy that routes, the fast engine composes each layer slot of a step at its start,
once every SimPy event due before it has run (``FastRun._slot_start``): a slot with nothing to
exchange (a *quiet* slot: the home's own attention, then projections + FFN) must queue behind
any routed query another GPU's step put on this GPU's stream before it, and start later by
what other steps pushed this step's earlier items back (its *debt*). That costs an event per
slot whenever another GPU's event falls before it — on the Mooncake trace with every layer,
nearly every slot of every step: ~60 events per decode token, where ``adaptive`` makes few
rounds at all.

:class:`Lookahead` tells a GPU's step how far it may compose its quiet slots *now*, without
those events, and get the very items and times it would have got by waiting for them. The
events a quiet slot waits for matter to it in two ways only:

1. **a routed kernel put on its stream** before its start. Only a slot with rounds puts a kernel
   on another GPU's stream (a route round's attention on its owner), and it is composed no
   earlier than its *planned* start: every run's slots are composed in order of their planned
   starts, because a GPU with a slot not yet composed always has an event pending no later
   than that slot's start, which holds back every slot planned after it (its own
   ``_slot_start`` waits while ``env.peek()`` is earlier). So each GPU publishes a lower
   bound on the planned start of its next slot with rounds (:meth:`Lookahead.plan`,
   :meth:`Lookahead.rounds_done`): its present position plus the least time the slots before
   it can take — a quiet slot its attention and projections + FFN, a slot with rounds its
   projections + FFN, each times its folding, less a margin for rounding. A GPU waiting for a
   request composes nothing before one enters
   (:meth:`~simulator.engine.arrivals.Arrivals.next_entry_at`), and a woken one not yet
   running counts as now. A quiet slot planned before the earliest of these bounds (and before
   the run's duration, past which nothing is composed) meets the same stream whenever it is
   composed: nothing can be put before it any more, and whatever comes later is issued after
   it and queues behind it, as it would have;
2. **its debt**: another step's item issued before one of this step's own items elsewhere (a
   routed kernel on an owner's stream, a bulk message on a link) pushes it back. An item
   issued by now can no longer be pushed (new items are never issued in the past, and one
   issued at the same time goes behind it), so a step composes ahead only once every item of
   its rounds so far is issued: by the start of the slot after the last slot with rounds
   (:attr:`Lookahead.foreign_at`). Its debt then cannot grow before the slots it composes.

Nothing else a quiet slot does is seen by another GPU early: a policy reads an owner's stream
as the work issued by the round's start (``Calendar.free_at``), which a later-issued item does
not change; a calendar's pruning of items ended before now changes no answer. So the records
are the same as with an event per slot — tested run against run (``tests/test_engine_fast_ahead.py``)
— only the SimPy event count falls. Under a policy that never routes, no other GPU's kernel
reaches a stream at all (the quiet slots of its decode steps are chained already), and a
prefill-only step's layers are composed at once. Not for a ``[deployment]``'s instances, whose
ranks step together (:mod:`simulator.engine.fast_instances`).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
from simpy.events import NORMAL, Timeout

_INF = float("inf")
#: Relative and absolute margins taken off a published bound, for the rounding of the sums the
#: slots' starts are computed with [1, s].
_REL, _ABS = 1e-9, 1e-6
#: Above this many GPUs the bound (a pass over every GPU) is not looked for: a large cluster's
#: earliest bound is nearly always now.
MAX_GPUS = 256
#: Under a policy that routes, steps of fewer layer slots than this publish no bounds and
#: compose no quiet slot ahead: their few slots' events cost less than the bookkeeping.
MIN_SLOTS = 16


class Lookahead:
    """The bounds quiet slots are composed ahead by (see the module docstring).

    Args:
        env: the run's environment.
        n_gpus: the run's GPUs.
        routes: whether the policy may route (else no GPU's kernel reaches another's stream).
        until: when the run's clock stops [s] (its duration; ``inf``: when the work does).
        entry: the run's :class:`~simulator.engine.arrivals.Arrivals`.
        wake: the serving loops' wake events, per GPU (``None``: the loop is not waiting).
        on: whether to look ahead at all (off: every bound is ``-inf``).
        slots: the layer slots of a step (fewer than :data:`MIN_SLOTS`: under a policy that
            routes, no bounds are published and every bound is ``-inf``).
    """

    def __init__(self, env, n_gpus: int, routes: bool, until: float, entry, wake: list,
                 on: bool = True, slots: int = MIN_SLOTS) -> None:
        self.env, self.G, self.routes, self.until = env, n_gpus, routes, until
        self.entry, self.wake = entry, wake
        self.on = on
        # under a policy that routes, each GPU publishes its bounds — bookkeeping a step of few
        # slots (folded layers) or a large cluster does not pay back (docs/performance.md)
        self.publish = on and routes and slots >= MIN_SLOTS and n_gpus <= MAX_GPUS
        #: per GPU: a lower bound on the planned start of its next slot with rounds [s]
        #: (-inf until it publishes one: a GPU between steps is bounded by now)
        self.route_at = [-_INF] * n_gpus
        #: per GPU: by when every item its step's rounds put elsewhere is issued [s]
        self.foreign_at = [0.0] * n_gpus
        # per GPU, its step's: slots with rounds (in order) and holder groups per slot; the
        # next of those slots not composed yet; the slot it composes next and when that starts
        # [s]; the least time of the slots before each slot [s] (None: every slot has rounds);
        # a lower bound on its end [s]
        self._rounds: list[list[int]] = [[] for _ in range(n_gpus)]
        self._groups: list[list] = [[] for _ in range(n_gpus)]
        self._pos = [0] * n_gpus
        self._slot = [0] * n_gpus
        self._at = [-_INF] * n_gpus
        self._before: list[list[float] | None] = [None] * n_gpus
        self._end_at = [-_INF] * n_gpus

    def bound(self, g: int) -> float:
        """Until when [s] GPU ``g`` may compose its next quiet slots now: ``-inf`` where it
        may not (its own items elsewhere can still be pushed back, or a GPU woken by an entry
        has not run yet)."""
        if not self.on or self.foreign_at[g] > self.env._now:
            return -_INF
        t = self.until
        if not self.routes:
            return t
        if not self.publish:
            return -_INF
        e = self.entry.next_entry_at()
        if e < t:
            t = e
        wake, route_at, pos, rounds = self.wake, self.route_at, self._pos, self._rounds
        for h in range(self.G):
            w = wake[h]
            if w is not None:  # waiting for a request: nothing before one enters
                if w.triggered and h != g:  # one has, not yet run: it may route now
                    return -_INF
                continue
            x = route_at[h]
            if x < t and h != g:  # a slot with rounds before t: the first to reach g (none
                # left: its end, where its next step may)
                t = self._reach(h, g, t) if pos[h] < len(rounds[h]) else x
        return t

    def _reach(self, h: int, g: int, t: float) -> float:
        """The least start [s] of GPU ``h``'s next slot that may put a kernel on GPU ``g``'s
        stream or read it — a slot with a group ``g`` holds, else (its next step's may) its
        step's end — if before ``t`` [s], else ``t``."""
        before, at, first = self._before[h], self._at[h], self._slot[h]
        groups = self._groups[h]
        rounds = self._rounds[h]
        for i in range(self._pos[h], len(rounds)):
            r = rounds[i]
            lb = at - _ABS if before is None else at + (before[r] - before[first]) - _ABS
            if lb >= t:
                return t
            for grp in groups[r]:
                if grp[0] == g:
                    return lb
        end = self._end_at[h]
        return end if end < t else t

    def plan(self, g: int, start_at: float, quiet_time: np.ndarray, rounds_time: float,
             slot_layers: np.ndarray, rounds: list[int], groups: list) -> None:
        """GPU ``g``'s decode step starts at ``start_at`` [s]: each slot takes at least
        ``quiet_time`` [s] (its attention and projections + FFN) or, with rounds (the slots
        ``rounds``, in order; ``groups``: each slot's holder groups), ``rounds_time`` [s],
        times its folding ``slot_layers``; publish the bounds on its slots with rounds and its
        end."""
        if not self.publish:
            return
        self._rounds[g], self._groups[g], self._pos[g] = rounds, groups, 0
        if len(rounds) == len(slot_layers):  # every slot has rounds: each bounds the next
            self._before[g] = None
            self._publish(g, 0, start_at, start_at - _ABS, start_at - _ABS)
            return
        span = quiet_time * slot_layers
        if not rounds:  # only its end is asked for
            self._before[g] = None
            end = start_at + float(span.sum()) * (1.0 - _REL) - _ABS
            self._publish(g, 0, start_at, end, end)
            return
        span[rounds] = rounds_time * slot_layers[rounds]
        before = np.zeros(len(span) + 1)
        np.cumsum(span, out=before[1:])
        before = self._before[g] = (before * (1.0 - _REL)).tolist()
        self._publish(g, 0, start_at, start_at + before[rounds[0]] - _ABS,
                      start_at + before[-1] - _ABS)

    def rounds_done(self, g: int, s: int, next_at: float) -> None:
        """GPU ``g`` composed its slot ``s`` with rounds; the next slot starts at ``next_at``
        [s] (every item of the slot's rounds is issued by then): publish the bounds on its
        later slots with rounds and its end."""
        self.foreign_at[g] = next_at
        if not self.publish:
            return
        rounds = self._rounds[g]
        i = self._pos[g] = bisect_right(rounds, s)
        before = self._before[g]
        if before is None:  # the next slot has rounds too
            self._publish(g, s + 1, next_at, next_at - _ABS, next_at - _ABS)
            return
        nxt = rounds[i] if i < len(rounds) else len(before) - 1
        base = next_at - before[s + 1] - _ABS
        self._publish(g, s + 1, next_at, base + before[nxt], base + before[-1])

    def prefill(self, g: int, start_at: float, step_time: float) -> None:
        """GPU ``g`` runs a prefill-only step of at least ``step_time`` [s] from ``start_at``
        [s] (no rounds): publish its end as the bound."""
        if self.publish:
            self._rounds[g], self._pos[g] = [], 0
            end = start_at + step_time * (1.0 - _REL) - _ABS
            self._publish(g, 0, start_at, end, end)

    def _publish(self, g: int, slot: int, at: float, route_at: float, end_at: float) -> None:
        self._slot[g], self._at[g] = slot, at
        self.route_at[g], self._end_at[g] = route_at, end_at


def quiet_slots(run, g: int, at: float, busy: list[float], folds: list[int],
                kernels: list[int], first: int, stop: int):
    """Slots ``first`` to ``stop - 1`` of GPU ``g``'s step in fast-engine run ``run`` from
    ``at`` [s], each one item of ``busy`` [s] (``kernels``, folding ``folds``), on a stream
    other GPUs' routed kernels may share: composed at once as far as nothing due before them can
    reach them (``run.ahead``), else each after the events due before it (``run._slot_start``);
    a generator, returning when the next slot starts [s]."""
    env, cal, ahead, debt = run.env, run.cal[g], run.ahead, run.debt
    bound = ahead.bound(g)
    q = first
    while q < stop:
        if at < bound and debt[g] <= 0.0:  # those starting before the bound, at once
            at, k = cal.chain_until(at, busy[q:stop], folds[q:stop], g, kernels[q:stop], bound)
            q += k
            continue
        was = env._now
        at = yield from run._slot_start(g, at, False)
        if env._now != was:  # others ran: their bounds moved
            bound = ahead.bound(g)
        # one item: what cal.chain makes of it (its folded layers after it)
        end = cal.reserve(at, busy[q], g, folds[q], kernels[q])
        at = end + (end - at) * (folds[q] - 1)
        q += 1
    return at


class GpuTimeout(Timeout):
    """A timeout of GPU ``gpu``'s serving loop that, among events due at the same instant, comes
    after every other kind and after those of lower-numbered GPUs: its order there does not
    depend on when it was scheduled (SimPy's own tie-break), which composing ahead changes."""

    def __init__(self, env, delay: float, gpu: int) -> None:
        if delay < 0:
            raise ValueError(f"negative delay {delay}")
        self.env = env
        self.callbacks = []
        self._value = None
        self._delay = delay
        self._ok = True
        env.schedule(self, NORMAL + 1 + gpu, delay)
