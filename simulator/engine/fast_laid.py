"""Quiet layer slots laid on a GPU's calendar at once, taken back when something reaches them first.

Under a policy that may route (``route`` among its ``options``), another GPU's routed kernel can
land on a GPU's compute stream between two of its layers. So the fast engine composes each quiet
slot of such a decode step (one with nothing to exchange) at its own start: after the events due
before it, and later by the debt the step ran up (``FastRun._slot_start``, the slot-by-slot loop;
stop 40). That is a SimPy event per slot wherever another event is due first. On the Mooncake
prefix under ``adaptive``, which routes nothing there, it was 25 events per decode token and half
of the run.

:class:`LaidSlots` is a part the fast engine's run holds (``run.laid``). It composes a run of quiet
slots at once instead: the very items and floats the slot-by-slot loop would reserve
(:meth:`LaidSlots.lay`). It keeps what it laid while the GPU waits for its next slot with rounds
or for its step's end.

When the slot-by-slot loop composes a slot planned at ``at_q``:

- at once, where no event is due before ``at_q`` or ``at_q`` is now;
- else at its own timeout at ``at_q``. Such a timeout comes, at one instant, after every other kind
  of event and after the lower-numbered GPUs' timeouts (:class:`~simulator.engine.clock.GpuTimeout`).

What composing a quiet slot reads is the GPU's calendar (the items issued by ``at_q``) and its
debt. Three things can change those, or read what the laid slots put there, before the loop would
get to a slot:

1. another GPU's routed kernel reserved on this GPU's stream (:meth:`LaidSlots.routed_onto`,
   from :class:`~simulator.engine.fast_slots.SlotComposer`);
2. a push that raises the GPU's debt: one of its items on a link or stream pushed back
   (the calendars' ``settle`` hook is :meth:`LaidSlots.settle`);
3. a policy reading the stream's queued work at or after a laid slot's start
   (:meth:`LaidSlots.free_at`).

Each calls :meth:`LaidSlots.settle` first. It takes back the laid items the slot-by-slot loop would
not have composed yet:

- every one planned after now;
- one planned at now, where its timeout would come after the event being run.

It then interrupts the GPU's process, which composes them slot by slot from the first one taken
back.

Why that is the loop's schedule: whatever happens at time ``t`` was caused by events, and one of
them was due at or before ``t`` at every earlier moment. So the loop could not have composed a
slot planned after ``t`` before it (it would have waited for that event), and it had composed
every slot planned before ``t``. The records are the slot-by-slot loop's, bit for bit
(tests/test_engine_fast_laid.py; ``benchmarks/same_records.py --engine fast``). A SimPy event per
slot is left only where something reached the slots.

One tie is not told apart: an event at ``t`` that is not a GPU's timeout is taken to come
before every GPU's timeout at ``t``, as one pending at the instant's start does. One *scheduled
during* the instant by a higher-numbered GPU's timeout comes after this GPU's, so a laid slot
planned at exactly that float instant would be taken back though the loop had composed it: a
query that event routes onto the stream would then be timed as if it came first, its wait
charged to its step as a debt. No run in the tests or in ``same_records.py`` reaches it.

Runs of fewer than :data:`MIN_SLOTS` layer slots a step do not lay. A GPU that a routed kernel
reached during its last decode step does not lay its next one
(:meth:`LaidSlots.may_lay`): an owner routed to step after step would have its slots taken back
step after step. Not for a ``[deployment]``'s instances, which compose their ranks'
steps themselves (:mod:`simulator.engine.fast_instances`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from heapq import heappop, heappush

from simulator.engine.clock import GpuTimeout

_INF = float("inf")

#: Steps of fewer layer slots do not lay (``FastRun.lay``): with about one quiet slot a step
#: there is an event or less to save, and the bookkeeping cost more — ``cluster_1024`` (two
#: slots a step) under ``adaptive`` took 1.0–1.6 % longer with it (stop 86, two pairs).
MIN_SLOTS = 4


class LaidSlots:
    """The quiet slots a fast-engine run has laid ahead on its GPUs' calendars (see the module
    docstring).

    Args:
        run: the :class:`~simulator.engine.fast.FastRun` whose calendars and processes these
            are.
    """

    def __init__(self, run) -> None:
        self.run = run
        #: per GPU: another GPU's routed kernel reached its stream since its step began
        self.routed = [False] * run.G
        # per GPU, while it waits after laying: (its process, the first slot laid, each laid
        # item's planned start [s], each one's kernels, how many the slot-by-slot loop would
        # have composed when they were laid, the calendar's last end before them [s])
        self.laid: list[tuple | None] = [None] * run.G
        # (a laid item's planned start [s], GPU, its laying's number, the item's index): the
        # slot-by-slot loop's next timeout of each GPU that has laid, lazily kept (:meth:`due`)
        self._due: list[tuple[float, int, int, int]] = []
        self._layings = 0

    def may_lay(self, g: int) -> bool:
        """Whether GPU ``g``'s decode step beginning now may lay its quiet slots: no routed
        kernel reached its stream during its last step. Only how often slots are taken back
        depends on it, never a result."""
        routed = self.routed[g]
        self.routed[g] = False
        return not routed

    def lay(self, g: int, first: int, stop: int, attn: list[float], na_layer: float,
            at: float, until: float) -> tuple[float, int]:
        """Lay GPU ``g``'s quiet slots ``first`` to ``stop - 1`` from ``at`` [s] on its
        calendar, slot ``q`` its attention ``attn[q]`` [s] (none when 0) and projections + FFN
        ``na_layer`` [s], while they start before ``until`` [s]; returns ``(when the next slot
        starts [s], the next slot)``. The items and floats of the slot-by-slot loop, which they
        stand for until :meth:`settle`."""
        run = self.run
        env = run.env
        cal = run.cal[g]
        before = cal.last_end
        mine = attn[first:stop]
        kernels = [2 if a else 1 for a in mine]
        issues: list[float] = []
        at, k = cal.chain_until(at, [a + na_layer for a in mine],
                                run.slot_layers_list[first:stop], g, kernels, until,
                                as_clock=False, issued=issues)
        # the loop composes these at once: planned at now, or before the next event is due
        now, due = env.now, env.peek()
        lead = 0
        for x in issues:
            if not (x <= now or x < due):
                break
            lead += 1
        ks = kernels[:k]
        if len(issues) > lead:
            self._layings += 1
            self.laid[g] = (env.active_process, first, issues, ks, lead, before, self._layings)
            heappush(self._due, (issues[lead], g, self._layings, lead))
        return at, first + k

    def due(self) -> float:
        """The earliest instant ≥ now [s] at which a GPU that has laid would have a timeout of
        the slot-by-slot loop pending (inf: none). Another GPU's loop that decides whether to
        wait for the events due before a slot (``FastRun._slot_start``) counts these: they
        would be due in the slot-by-slot loop, and waiting where nothing is due changes no
        result."""
        now = self.run.env.now
        heap = self._due
        while heap:
            t, g, n, i = heap[0]
            laid = self.laid[g]
            if laid is None or laid[6] != n:  # reached or settled since
                heappop(heap)
                continue
            if t >= now:
                return t
            heappop(heap)  # composed by now in the loop: its next one
            issues = laid[2]
            j = bisect_left(issues, now, i)
            if j < len(issues):
                heappush(heap, (issues[j], g, n, j))
        return _INF

    def reached(self, g: int) -> None:
        """GPU ``g``'s process got to what it laid (the next slot with rounds, or its step's
        end): nothing is left to take back."""
        self.laid[g] = None

    def settle(self, g: int) -> None:
        """Take back the items GPU ``g`` laid that the slot-by-slot loop would not have composed
        by now, and interrupt its process to compose them (module docstring); nothing if it
        has laid none."""
        laid = self.laid[g]
        if laid is None:
            return
        self.laid[g] = None
        proc, first, issues, ks, lead, before, _ = laid
        now = self.run.env.now
        i = bisect_right(issues, now)
        if i > lead and issues[i - 1] == now and self._before(g):
            i -= 1
        if i < lead:
            i = lead
        if i < len(issues):
            self.run.cal[g].take_back(len(issues) - i, sum(ks[i:]), before)
            proc.interrupt((first + i, issues[i]))

    def routed_onto(self, g: int) -> None:
        """Another GPU's routed kernel is about to be reserved on GPU ``g``'s stream."""
        self.routed[g] = True
        self.settle(g)

    def free_at(self, g: int, at: float) -> float:
        """When the work issued on GPU ``g``'s stream by ``at`` [s] (≥ now) is done [s], as the
        slot-by-slot loop's calendar has it: a laid item planned by ``at`` that the loop would
        not have composed yet is taken back first."""
        laid = self.laid[g]
        if laid is not None:
            issues = laid[2]
            i = bisect_left(issues, self.run.env.now)
            if i < len(issues) and issues[i] <= at:
                self.settle(g)
        return self.run.cal[g].free_at(at)

    def _before(self, g: int) -> bool:
        """The event being run comes before GPU ``g``'s timeout at this instant: a timeout of a
        lower-numbered GPU, or any other kind of event (which comes before every GPU's, save
        one scheduled during the instant after it: the module docstring's one tie)."""
        proc = self.run.env.active_process
        if proc is None:
            return True
        ev = proc._target  # the event that resumed it (processed: no callbacks left)
        if ev.callbacks is None and type(ev) is GpuTimeout:
            return ev.gpu < g
        return True
