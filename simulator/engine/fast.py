"""The fast engine: whole decode steps computed at once, about one SimPy event per GPU decode step.

The exact engine (:mod:`simulator.engine.exact`) advances SimPy to every message and every layer
of a decode step; the SimPy floor (docs/performance.md) bounds how fast that can go. The fast
engine shares everything else with it — it *is* an exact-engine run (:class:`FastRun` subclasses
its ``_Run``) with a different way of advancing time:

- the same serving loop (:func:`~simulator.engine.gpu_loop.gpu_loop`: the
  :class:`~simulator.engine.scheduler.Scheduler` and
  :class:`~simulator.engine.admission.Admission` objects — admission, chunked prefill, preemption,
  growth and retirement are the same code), the same KV directory and copies, the same
  selections and block locations (:class:`~simulator.engine.locate.StepData`, the same random
  streams) — except that a query whose whole context is local to its home is not drawn (its
  step is the same for every draw; its copy hits are estimated and its blocks' last uses kept
  more coarsely: :mod:`simulator.engine.locate`, ``count_local_contexts``), so from the first
  such step on a GPU its draws, and the run's records, are no longer the exact engine's draw
  for draw — the same policy asked the same question per (home, owner, layer slot) with the same
  :class:`~simulator.policies.Round`, the same closed-form phases (:class:`CostModel` over the
  run's kernel-time object ``self.kernels``), the same records and :class:`Result`;
- **time**: a decode step's layers are composed at the step's start — per layer slot, the rounds'
  messages (:mod:`simulator.engine.fast_links`), the owners' attention kernels, the home's
  kernels (local attention, merges, fetched-block attention, recompute, projections + FFN), in
  the exact engine's order and sizes — and the step ends at one SimPy timeout (a slot with rounds
  waits for the events due before it starts, below). GPU streams are
  :class:`~simulator.engine.fast_streams.Calendar`\\ s that accept kernels issued at future times.
  This module lays out the step (which slots wait for events, the debts); a slot with rounds
  is composed by the run's :class:`~simulator.engine.fast_slots.SlotComposer` (``compose``),
  and quiet slots on a stream only their GPU uses are counted by its
  :class:`~simulator.engine.fast_quiet.QuietSlots` (``quiet``).

What is approximated, and only under contention between steps of different GPUs (a lone request,
or steps that do not overlap on a stream or link, get the exact engine's times to float rounding;
the tests hold it to 1e-6) or under HBM pressure (which blocks a full HBM gives up first follows
last uses, which a local context keeps more coarsely — above):

- **owner and home streams**: FIFO in issue order over every kernel known when a step is
  composed (:class:`~simulator.engine.fast_streams.Calendar`). A step's times are fixed when it
  is composed; a kernel of another GPU's step composed *later* but issued *earlier* pushes its
  kernels back in the calendar without moving the rest of the step, so the step is charged
  the push instead — times its layer slot's folding, as a delay in a folded slot costs the
  exact engine — as a *debt*: the most any of its items was pushed in all. A slot with rounds
  is composed only once the events due before its start have run (``_slot_start``: an event
  of its own only when another is due first), and starts later by the debt its earlier slots
  ran up, so its rounds meet the owners' queues where the push put them — behind the next
  layer of an owner's prefill, say, as on the exact engine (stop 32; until then the push was
  only added at the step's end, and the later slots kept their composed times). Under a policy
  that routes, a slot with nothing to exchange is composed the same way (stop 40): pushed by a
  routed query, an owner's slot moves its later slots, where a chain composed at the step's
  start kept them in place and the next query met a kernel the exact engine had moved (since stop
  86 such slots are laid at once and taken back when anything reaches them first: the same
  records, fewer events; :mod:`simulator.engine.fast_laid`). A debt run up
  after the last slot with rounds is waited out at the step's end (a second SimPy event,
  counted in ``extras["pushed_steps"]``). The GPUs' events at one instant come in GPU order
  (:class:`~simulator.engine.clock.GpuTimeout`), however they were scheduled. A step on a
  stream only its own GPU uses (the vector path of ``fetch`` and ``local``, and their
  prefill-only steps) is composed at once and pays its links' debts at its end;
- **links**: a step's own concurrent messages share links max-min fairly, as in the Fabric;
  against other steps' traffic a message is served FIFO on each link's work calendar (bytes
  conserved at the line rate) instead of max-min fair sharing, with the same debts (a
  deployment's all-to-all takes its processor share of a busy link instead, where sooner:
  :meth:`~simulator.engine.fast_links.Links.aggregate`);
- **the end of a run cut at its duration**: steps composed past the cut leave only what ended
  before it in the records (rounds, MoE layers, messages; a message on the wire counts as
  sent), as the exact engine's records hold;
- a copy a round fetches is entered in the directory when its step is composed (stamped with
  the round's end); only the home's own later steps read it, so no step sees it early.

A policy that observes the run (``observes``: ``adaptive``) gets the same counters as on the
exact engine (:class:`~simulator.policies.observed.Observed`) — for a query not drawn, its picks
per holder and its stability estimated from its finding's layers (:mod:`simulator.engine.locate`;
since stop 64: until then such a policy's queries were all drawn). For it the engine advances to
the start of each layer slot that has rounds (one event per such slot, not per step), so the
policy decides knowing every kernel and message issued by then, as on the exact engine: the owner's
load is the stream calendar's work issued by the round's start, the links' load the link
calendars' (:meth:`~simulator.engine.fast_links.Links.extra_time`: the FIFO wait, where the
exact engine re-prices at the live max-min share). A copy a round makes is counted when its
slot is composed, as it is entered in the directory.

What it does not support falls back to the exact engine, counted in the summary
(``engine_fallback``): ``exact_streams`` (the SimPy-resource streams are the exact engine's
cross-check), policies that read the live fabric (``needs_live_rates``: the fast engine's
messages are not Fabric flows), and Lamina's pool loop (``disaggregated``). The homogeneous
loop has a fast mode of its own (whole steps composed where the rings' links are unshared,
:mod:`simulator.disaggregation.homogeneous`), which the runner asks for instead.
:func:`unsupported` names the reason; :func:`simulator.runner.run` does the fallback. A
``[deployment]``'s instances, whose ranks step together through every MoE layer's all-to-all,
compose each instance's whole step at once (:mod:`simulator.engine.fast_instances`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from simpy import Interrupt

from simulator.engine.clock import GpuTimeout
from simulator.engine.exact import _Run
from simulator.engine.fast_instances import FastInstanceLoop
from simulator.engine.fast_laid import MIN_SLOTS, LaidSlots
from simulator.engine.fast_links import Links
from simulator.engine.fast_quiet import QuietSlots
from simulator.engine.fast_slots import SlotComposer
from simulator.engine.fast_streams import FastStream, folded_next
from simulator.engine.results import Result
from simulator.errors import UserError
from simulator.policies import Policy

__all__ = ["ENGINES", "check_engine", "simulate", "unsupported"]

#: Steps of at least this many layer slots sum their quiet layers as arrays (fewer: a loop is
#: cheaper than the array calls).
VECTOR_SLOTS = 16

#: The decode-loop engine's modes (``[engine] mode``, ``run(..., engine=)``).
ENGINES: tuple[str, ...] = ("exact", "fast")


def check_engine(mode: str) -> str:
    """``mode`` if it names an engine; a :class:`UserError` naming the choices otherwise."""
    if mode not in ENGINES:
        raise UserError(f"engine {mode!r}: give one of {', '.join(ENGINES)}")
    return mode


def unsupported(policy: Policy, *, exact_streams: bool = False) -> str | None:
    """Why the fast engine cannot run ``policy`` this way (one line), or None if it can."""
    if policy.loop is not None and policy.loop not in ("homogeneous", "disaggregated"):
        return f"policy {policy.name!r} runs its own decode loop (no fast mode yet)"
    if exact_streams:
        return "exact_streams cross-checks the exact engine's streams"
    if policy.needs_live_rates:
        return (f"policy {policy.name!r} reads the live fabric (needs_live_rates); the fast "
                "engine's messages are not Fabric flows")
    return None


def simulate(scenario, policy: Policy, seed: int, trace: pd.DataFrame, *,
             progress: Callable[[int, int], None] | None = None, topology=None,
             check_invariants: bool = False) -> Result:
    """Replay ``trace`` on ``scenario``'s cluster under ``policy`` with the fast engine.

    Arguments as :func:`simulator.engine.exact.simulate`; raises ``ValueError`` for what
    :func:`unsupported` names (:func:`simulator.runner.run` falls back before that).
    """
    why = unsupported(policy)
    if why:
        raise ValueError(f"fast engine: {why}")
    res = FastRun(scenario, policy, seed, trace, progress, topology=topology,
                  check_invariants=check_invariants).execute()
    return res


class FastRun(_Run):
    """One fast-engine run: an exact-engine run whose decode steps are composed at once (see
    the module docstring). Not reusable: build, ``execute`` once."""

    engine_name = "fast"
    #: Contexts wholly local to their home are not drawn (:mod:`simulator.engine.locate`). Off,
    #: the fast engine draws every selection as the exact engine does, draw for draw — how the
    #: tests that compare the engines step for step under HBM pressure isolate the timing.
    count_local_contexts = True
    #: A ``[deployment]``'s instances step on the fast engine's calendars too.
    instance_loop = FastInstanceLoop
    #: Under a policy that never routes, a prefill-only step's layers are composed at once
    #: (off: each waits for the events due before it — the same records, more events).
    chain_prefill = True
    #: Under a policy that may route, a decode step's quiet slots are laid on its GPU's
    #: calendar at once, and taken back if something reaches them first (off: each waits for
    #: the events due before it — the same records, more events; simulator/engine/fast_laid.py).
    chain_unrouted = True

    def __init__(self, scenario, policy: Policy, seed: int, trace: pd.DataFrame,
                 progress: Callable[[int, int], None] | None, *, topology=None,
                 check_invariants: bool = False) -> None:
        super().__init__(scenario, policy, seed, trace, progress, topology=topology,
                         check_invariants=check_invariants)
        # per GPU: how far other steps' later-computed kernels pushed its running step back [s]
        self.debt = [0.0] * self.G
        self.pushed_steps = 0
        self.streams = [FastStream(self.env, self.debt, g) for g in range(self.G)]
        self.cal = [s.cal for s in self.streams]
        until = scenario.engine.duration
        # a deployment's all-to-all loads single links: every link keeps its calendar there
        self.links = Links(self.env, self.fabric, self.debt,
                           float("inf") if until is None else until,
                           endpoints=self.names if self.deploy is None else None)
        if self.observed is not None:  # an observing policy sees the link calendars' load
            self.observed.links = self.links
        # a policy that never routes puts no other GPU's kernel on a home stream: quiet slots
        # then need no calendar (their kernels are only counted)
        self.chain_quiet = "route" not in policy.options
        # quiet slots laid ahead, taken back if anything reaches them first (fast_laid.py)
        self.laid = LaidSlots(self)
        self.lay = (self.chain_unrouted and not self.chain_quiet and self.deploy is None
                    and self.S >= MIN_SLOTS)
        if self.lay:
            for c in (*self.cal, *self.links.cal):
                c.settle = self.laid.settle
        self.compose = SlotComposer(self)  # the slots with rounds
        self.quiet = QuietSlots(self)  # quiet slots on a stream only their GPU uses
        self._no_groups: list = [()] * self.S  # a step without rounds: no slot has groups
        # contexts wholly local are not drawn (simulator/engine/locate.py), where what the
        # draws feed besides the step can be counted without them
        self.steps.local_counts = (self.count_local_contexts and self.replay is None
                                   and self.dir.k == 1)

    # -- one decode step -----------------------------------------------------------------------

    def _decode(self, g: int, reqs: list[int], iteration: int, na_layer: float | None,
                start_at: float):
        """One decode step of ``reqs`` on GPU ``g`` from ``start_at`` [s], composed at once;
        one SimPy event at its end, more where another GPU's event falls before a slot with
        rounds (:meth:`_slot_start`) or a debt is left to wait out (:meth:`_pay_debt`)."""
        env = self.env
        self.debt[g] = 0.0
        colocated = self.policy.colocated
        drawn, dense, valid, n_quiet, q_quiet = self.steps.select_split(g, reqs, colocated)
        if na_layer is None:
            na_layer = self.costs.na(g, len(reqs))
        observing = self.observed is not None
        if not drawn and observing:
            self._observe_split(g, reqs, drawn, valid)
        if not drawn and self.chain_quiet and self.cal[g].last_end <= start_at:
            # every context local, on a stream only this GPU uses: every slot alike
            at = self.quiet.uniform(g, n_quiet, q_quiet, na_layer, start_at)
            yield GpuTimeout(env, at - env.now, g)
            return
        if not drawn:  # every query's context local: its count in every slot (locate.py)
            groups = self._no_groups
            n_arr = np.full(self.S, n_quiet, np.int64)
            q_arr = np.full(self.S, q_quiet, np.int64)
        else:
            self.dir.touch(g, dense[valid], env.now)
            local, groups = self.steps.locate_for(g, dense, valid, colocated)
            if observing:
                self._observe_split(g, reqs, drawn, valid)
            if len(drawn) == 1:  # one query: its local blocks per slot, and whether any
                n_arr = local[0].sum(axis=1)
                q_arr = (n_arr > 0).astype(n_arr.dtype)
            else:
                n_arr = local.sum(axis=(0, 2))
                q_arr = local.any(axis=2).sum(axis=0)
            if q_quiet:
                n_arr, q_arr = n_arr + n_quiet, q_arr + q_quiet
        at = start_at
        cal = self.cal[g]
        own_stream = self.chain_quiet and cal.last_end <= at
        if own_stream and self.S >= VECTOR_SLOTS and not observing:
            # no kernel but this GPU's own can be on its stream: the layers with nothing to
            # exchange are summed as arrays, without calendar items
            at = self.quiet.stretches(g, iteration, groups, n_arr, q_arr, na_layer, at)
            yield GpuTimeout(env, at - env.now, g)
            return
        n_local, q_local = n_arr.tolist(), q_arr.tolist()
        slot_layers = self.slot_layers_list
        if not own_stream:  # every slot's items on the calendar: the quiet ones' sizes at once
            attn = self.quiet.attention_table(g, n_arr, q_arr).tolist()
        # on a stream no routed kernel of another GPU has reached yet, the quiet slots are laid
        # at once and taken back if anything reaches them first (simulator/engine/fast_laid.py)
        lay = self.lay and self.laid.may_lay(g)
        bounds = [*(i for i, grp in enumerate(groups) if grp), self.S]
        b = prev = 0
        while True:
            s = bounds[b]
            if s > prev and own_stream:  # only this GPU's kernels on its stream: counted,
                # no item
                at = self.quiet.run_slots(g, prev, s, n_local, q_local, na_layer, at)
            elif s > prev and lay:
                at, prev = self.laid.lay(g, prev, s, attn, na_layer, at, self.links.until)
            if s > prev and not own_stream:
                # quiet slots on a stream other GPUs' routed kernels share: each composed at its
                # start, after the events due before it and later by the debt the step's
                # earlier items ran up, as a slot with rounds is — on the exact engine a slot
                # starts when the one before ends, so a routed kernel that pushed one moves
                # the rest of the step (also right for a stream still busy under a policy
                # that never routes, which no run was found to reach)
                for q in range(prev, s):
                    at = yield from self._slot_start(g, at, False)
                    # one item: its folded layers after it
                    a, fold = attn[q], slot_layers[q]
                    end = cal.reserve(at, a + na_layer, g, fold, 2 if a else 1)
                    at = end + (end - at) * (fold - 1)
            try:
                if s < self.S:
                    at = yield from self._slot_start(g, at, observing)
                else:
                    yield GpuTimeout(env, at - env.now, g)
            except Interrupt as back:  # laid slots taken back: composed one by one from there
                prev, at = back.cause
                lay = False
                continue
            if lay:
                self.laid.reached(g)
            if s == self.S:
                break
            at = self.compose.slot(g, s, iteration, groups[s], n_local[s], q_local[s],
                                   na_layer, at)
            prev = s + 1
            b += 1
        yield from self._pay_debt(g)

    def _observe_split(self, g: int, reqs: list[int], drawn: list[int],
                       valid: np.ndarray | None) -> None:
        """:meth:`_observe` of a step whose queries not in ``drawn`` were not drawn (their
        contexts local: :mod:`simulator.engine.locate`): their picks per holder are the
        findings' estimates (``StepData.local_away``), all of them copy hits, and their share
        of the context the selector's count over it, as a drawn query's is."""
        if len(drawn) == len(reqs):
            self._observe(g, reqs, valid)
            return
        steps = self.steps
        local_away = steps.local_away
        if drawn:  # the drawn queries' counts, from the compiled pass, and the estimates
            if steps.away is not None:  # (None: a colocated policy, nothing away from home)
                steps.away = steps.away + local_away
                steps.owner_copy_hits = steps.owner_copy_hits + local_away
        else:  # (Observed.step copies what it keeps: one array serves as both)
            steps.away = steps.owner_copy_hits = local_away
        # each query's selected (block, slot) pairs: drawn, or its finding's count per slot
        sums = valid.sum(axis=(1, 2)).tolist() if drawn else []
        drawn_picks = dict(zip(drawn, sums, strict=True))
        picked = np.array([drawn_picks[r] if r in drawn_picks else steps.local_count(r) * self.S
                           for r in reqs], np.int64)
        self._observe(g, reqs, None, picked)

    def _slot_start(self, g: int, at: float, observing: bool):
        """When GPU ``g``'s next slot with rounds starts [s], planned for ``at`` [s]: the slot
        is composed once every event due before ``at`` has run — so its rounds meet the owners'
        queues and the links as other GPUs' steps left them, as on the exact engine — and
        starts later by what those steps pushed this step's earlier items back (the debt,
        :mod:`simulator.engine.fast_streams`), which it takes over from the step's end. A
        SimPy event only when another event is due first (or for an observing policy, which
        decides at the slot's start); none for a GPU alone."""
        env = self.env
        while True:
            if at > env.now and (observing or env.peek() <= at or self.lay
                                 and self.laid.due() <= at):
                yield GpuTimeout(env, at - env.now, g)
            pushed = self.debt[g]
            if pushed <= 0.0:
                return at
            # the earlier items are issued before ``at``: nothing composed from now on can
            # push them again, so the debt is settled here
            self.debt[g] = 0.0
            at += pushed

    def _pay_debt(self, g: int):
        """Wait out GPU ``g``'s debt, if a later-computed kernel pushed its running step back
        (a second event for that step only), and clear it."""
        if self.debt[g] > 0.0:
            self.pushed_steps += 1
            debt, self.debt[g] = self.debt[g], 0.0
            yield GpuTimeout(self.env, debt, g)

    def _prefill_layers(self, g: int, layer_time: float):
        """The exact engine's prefill-only step on GPU ``g``'s calendar, layer slot by slot:
        each slot composed as a slot with rounds is (:meth:`_slot_start`: after the events
        due before it, later by what pushed the earlier slots back), so a routed kernel that
        delays one layer delays the layers after it, as on the exact engine; one event at the
        end, a second for a debt the last slot ran up. Under a policy that never routes the
        layers are chained at once (the same items: ``chain_prefill``)."""
        env = self.env
        self.debt[g] = 0.0
        cal = self.cal[g]
        at = env.now
        folds = self.slot_layers_list
        first = 0
        if self.chain_prefill and self.chain_quiet:
            # no GPU routes, so no other kernel can reach this stream, and this step has no
            # items elsewhere to be pushed back: no event due before a layer can change it —
            # composed at once, up to the run's end (past it nothing is composed)
            at, first = cal.chain_until(at, [layer_time] * self.S, folds, g, [1] * self.S,
                                        self.links.until)
        for layers in folds[first:]:
            at = yield from self._slot_start(g, at, False)
            end = cal.reserve(at, layer_time, g, layers)
            at = folded_next(at, end, layers)  # the exact engine's floats (Stream.after)
        yield GpuTimeout(env, at - env.now, g)
        yield from self._pay_debt(g)

    def _free_at(self, g: int, at: float) -> float:
        """When the work issued on GPU ``g``'s stream calendar by ``at`` [s] is done [s]."""
        if self.lay:
            return self.laid.free_at(g, at)
        return self.cal[g].free_at(at)

    def _finish_run(self) -> None:
        self.links.flush()

    def execute(self) -> Result:
        res = super().execute()
        res.extras.update(pushed_steps=self.pushed_steps, messages=self.links.messages,
                          contended_messages=self.links.contended)
        return res

