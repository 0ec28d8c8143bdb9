"""The fast engine: whole decode steps computed at once, one SimPy event per GPU decode step.

The exact engine (:mod:`simulator.engine.exact`) advances SimPy to every message and every layer
of a decode step; the SimPy floor (docs/performance.md) bounds how fast that can go. The fast
engine shares everything else with it — it *is* an exact-engine run (:class:`FastRun` subclasses
its ``_Run``) with a different way of advancing time:

- the same serving loop (``_gpu_loop``: the :class:`~simulator.engine.scheduler.Scheduler` and
  :class:`~simulator.engine.admission.Admission` objects — admission, chunked prefill, preemption,
  growth and retirement are the same code), the same KV directory and copies, the same
  selections and block locations (:class:`~simulator.engine.locate.StepData`, the same random
  streams), the same policy asked the same question per (home, owner, layer slot) with the same
  :class:`~simulator.policies.Round`, the same closed-form phases (:class:`CostModel` over the
  run's kernel-time object ``self.kernels``), the same records and :class:`Result`;
- **time**: a decode step's layers are composed at the step's start — per layer slot, the rounds'
  messages (:mod:`simulator.engine.fast_links`), the owners' attention kernels, the home's
  kernels (local attention, merges, fetched-block attention, recompute, projections + FFN), in
  the exact engine's order and sizes — and the step ends at one SimPy timeout. GPU streams are
  :class:`~simulator.engine.fast_streams.Calendar`\\ s that accept kernels issued at future times.

What is approximated, and only under contention between steps of different GPUs (a lone request,
or steps that do not overlap on a stream or link, get the exact engine's times to float rounding;
the tests hold it to 1e-6):

- **owner and home streams**: FIFO in issue order over every kernel known when a step is
  composed (:class:`~simulator.engine.fast_streams.Calendar`). A step's times are fixed when it
  is composed; a kernel of another GPU's step composed *later* but issued *earlier* pushes its
  kernels back in the calendar without moving the rest of the step, so the step is charged
  the push instead — times its layer slot's folding, as a delay in a folded slot costs the
  exact engine — as a *debt* waited out at its end (a second SimPy event for that step only,
  counted in ``extras["pushed_steps"]``). What the push would have changed further (the step's
  later kernels and messages, which keep their composed times) is not followed;
- **links**: a step's own concurrent messages share links max-min fairly, as in the Fabric;
  against other steps' traffic a message is served FIFO on each link's work calendar (bytes
  conserved at the line rate) instead of max-min fair sharing, with the same debts;
- a copy a round fetches is entered in the directory when its step is composed (stamped with
  the round's end); only the home's own later steps read it, so no step sees it early.

A policy that observes the run (``observes``: ``adaptive``) gets the same counters as on the
exact engine (:class:`~simulator.policies.observed.Observed`). For it the engine advances to the
start of each layer slot that has rounds (one event per such slot, not per step), so the policy
decides knowing every kernel and message issued by then, as on the exact engine: the owner's
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

import heapq
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from simulator.engine.exact import _Run
from simulator.engine.fast_instances import FastInstanceLoop
from simulator.engine.fast_links import Links
from simulator.engine.fast_streams import FastStream
from simulator.engine.results import Result
from simulator.errors import UserError
from simulator.network.traffic import KV_FETCH, KV_ROUTE
from simulator.policies import Policy, Round

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


class _Round:
    """One round of a step being composed (plain slots; records as the exact engine's)."""

    __slots__ = ("k", "b", "members", "n_blocks", "distinct", "option", "owner", "code", "cf",
                 "probe", "transfer", "compute", "ret", "merge", "nbytes", "end", "home")

    def __init__(self, k, b, members, n_blocks, distinct, option, owner, code, cf) -> None:
        self.k, self.b, self.members = k, b, members
        self.n_blocks, self.distinct = n_blocks, distinct
        self.option, self.owner, self.code, self.cf = option, owner, code, cf
        self.probe = self.transfer = self.compute = self.ret = self.merge = 0.0
        self.nbytes = 0.0
        self.end = 0.0
        self.home = 0  # which of the homes composed together (FastRun._slots)


class FastRun(_Run):
    """One fast-engine run: an exact-engine run whose decode steps are composed at once (see
    the module docstring). Not reusable: build, ``execute`` once."""

    engine_name = "fast"
    #: A ``[deployment]``'s instances step on the fast engine's calendars too.
    instance_loop = FastInstanceLoop

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
        self.links = Links(self.env, self.fabric, self.debt)
        if self.observed is not None:  # an observing policy sees the link calendars' load
            self.observed.links = self.links
        self.chain_slots = False  # every slot is composed without events anyway
        # a policy that never routes puts no other GPU's kernel on a home stream: quiet slots
        # then need no calendar (their kernels are only counted)
        self.chain_quiet = "route" not in policy.options
        self._attn_tables: list[np.ndarray | None] = [None] * self.G
        # a pure policy's answer depends on the round alone (not on when it is asked): memoized;
        # ``pure`` counts only where the policy's own class declares it (a subclass that
        # overrides ``choose`` is not memoized unless it says so itself)
        pure = type(policy).__dict__.get("pure", False)
        self._choices: dict | None = {} if pure else None

    # -- one decode step -----------------------------------------------------------------------

    def _decode(self, g: int, reqs: list[int], iteration: int, na_layer: float | None,
                start_at: float):
        """One decode step of ``reqs`` on GPU ``g`` from ``start_at`` [s], composed at once;
        one SimPy event at its end."""
        env = self.env
        self.debt[g] = 0.0
        dense, valid = self.steps.select(g, reqs)
        self.dir.touch(g, dense[valid], env.now)
        if na_layer is None:
            na_layer = self._na(g, len(reqs))
        if self.policy.colocated:
            local = valid
            groups: list[list] = [[] for _ in range(self.S)]
        else:
            local, groups = self.steps.locate(g, dense, valid)
        if self.observed is not None:
            self._observe(g, reqs, valid)
        n_arr = local.sum(axis=(0, 2))
        q_arr = local.any(axis=2).sum(axis=0)
        at = start_at
        name = self.names[g]
        cal = self.cal[g]
        own_stream = self.chain_quiet and cal.last_end <= at
        observing = self.observed is not None
        if own_stream and self.S >= VECTOR_SLOTS and not observing:
            # no kernel but this GPU's own can be on its stream: the layers with nothing to
            # exchange are summed as arrays, without calendar items
            at = self._quiet_stretches(g, iteration, groups, n_arr, q_arr, na_layer, at)
            yield env.timeout(at - env.now)
            return
        n_local, q_local = n_arr.tolist(), q_arr.tolist()
        slot_layers = self.slot_layers_list
        if not own_stream:  # every slot's items on the calendar: the quiet ones' sizes at once
            attn = self._attention_table(g, n_arr, q_arr).tolist()
        prev = 0
        for s in [*(i for i, grp in enumerate(groups) if grp), self.S]:
            if s > prev and not own_stream:  # quiet slots: attention, then projections + FFN,
                # back to back as one item each
                at = cal.chain(at, [a + na_layer for a in attn[prev:s]], slot_layers[prev:s], g,
                               [2 if a else 1 for a in attn[prev:s]])
            for q in range(prev, s) if own_stream else ():  # only this GPU's kernels on its
                # stream: counted, no item
                a = self._attention(name, n_local[q], q_local[q]) if n_local[q] else 0.0
                end = at + a + na_layer
                cal.account(a + na_layer, 2 if a else 1, end)
                at = end + (end - at) * (slot_layers[q] - 1)
            if s < self.S:
                if observing and at > env.now:
                    # an observing policy decides when the slot starts, knowing every kernel
                    # and message issued by then (as on the exact engine): one event per slot
                    # with rounds
                    yield env.timeout(at - env.now)
                at = self._slot(g, s, iteration, groups[s], n_local[s], q_local[s], na_layer,
                                at)
            prev = s + 1
        yield env.timeout(at - env.now)
        yield from self._pay_debt(g)

    def _pay_debt(self, g: int):
        """Wait out GPU ``g``'s debt, if a later-computed kernel pushed its running step back
        (a second event for that step only), and clear it."""
        if self.debt[g] > 0.0:
            self.pushed_steps += 1
            debt, self.debt[g] = self.debt[g], 0.0
            yield self.env.timeout(debt)

    def _prefill_layers(self, g: int, layer_time: float):
        """The exact engine's prefill-only step (layer slot by slot) composed at once on GPU
        ``g``'s calendar; one event at its end, a second for a debt (a later-composed kernel
        that pushed its layers back, as a decode step's)."""
        env = self.env
        self.debt[g] = 0.0
        S = self.S
        at = self.cal[g].chain(env.now, [layer_time] * S, self.slot_layers_list, g, [1] * S)
        yield env.timeout(at - env.now)
        yield from self._pay_debt(g)

    def _quiet_stretches(self, g: int, iteration: int, groups: list, n_arr: np.ndarray,
                         q_arr: np.ndarray, na_layer: float, at: float) -> float:
        """A step on a stream only its own GPU uses: runs of slots with nothing to exchange as
        arrays (each slot's attention + projections + FFN, times its folding), the slots with
        rounds one by one; returns the step's end [s]."""
        cal = self.cal[g]
        attn = self._attention_table(g, n_arr, q_arr)
        busy = attn + na_layer
        span = busy * self.slot_layers
        kernels = np.where(attn > 0, 2, 1)
        S = len(groups)
        prev = 0
        for s in [*(i for i, grp in enumerate(groups) if grp), S]:
            if s > prev:
                at += float(span[prev:s].sum())
                cal.account(float(busy[prev:s].sum()), int(kernels[prev:s].sum()), at)
            if s < S:
                at = self._slot(g, s, iteration, groups[s], int(n_arr[s]), int(q_arr[s]),
                                na_layer, at)
            prev = s + 1
        return at

    def _attention_table(self, g: int, n_arr: np.ndarray, q_arr: np.ndarray) -> np.ndarray:
        """The home's own attention per slot [s] for ``n_arr`` local blocks of ``q_arr``
        queries (0 where none), from a lookup table per GPU filled from the cost model as new
        (blocks, queries) pairs appear."""
        table = self._attn_tables[g]
        n_max, q_max = int(n_arr.max()), int(q_arr.max())
        if table is None or n_max >= table.shape[0] or q_max >= table.shape[1]:
            shape = (max(n_max + 1, 64, 0 if table is None else table.shape[0]),
                     max(q_max + 1, 4, 0 if table is None else table.shape[1]))
            bigger = np.full(shape, np.nan)
            bigger[0, :] = 0.0
            if table is not None:
                bigger[: table.shape[0], : table.shape[1]] = table
            table = self._attn_tables[g] = bigger
        attn = table[n_arr, q_arr]
        missing = np.isnan(attn)
        if missing.any():
            name = self.names[g]
            for n, q in set(zip(n_arr[missing].tolist(), q_arr[missing].tolist(), strict=True)):
                table[n, q] = self._attention(name, n, q)
            attn = table[n_arr, q_arr]
        return attn

    def _slot(self, g: int, s: int, iteration: int, slot_groups: list, n_loc: int, q_loc: int,
              na_layer: float, t0: float, fold: bool = True) -> float:
        """Compose layer slot ``s`` (with rounds) of a step on GPU ``g`` started at ``t0`` [s];
        returns when the next slot starts [s] (after the folded layers' time; with ``fold``
        False, when the slot's first layer ends: a deployment folds after its MoE layer)."""
        cal = self.cal[g]
        layers = self.slot_layers_list[s]
        name = self.names[g]
        links = self.links
        if len(slot_groups) == 1:  # the common case, without the general bookkeeping
            rd = self._round(g, s, slot_groups[0], t0)
            cf = rd.cf
            if rd.option == "route":
                q, r = self.route_payload(rd.b)
                rd.nbytes = q + r
                started, arrived = links.one(name, rd.owner, q, t0, g, layers, KV_ROUTE)
                end_c = self.cal[rd.k].reserve(arrived, cf.compute, g, layers)
                if n_loc:
                    cal.reserve(t0, self._attention(name, n_loc, q_loc), g, layers)
                back = links.one(rd.owner, name, r, end_c, g, layers, KV_ROUTE)[1]
                rd.end = cal.reserve(back, cf.merge, g, layers)
                rd.probe, rd.transfer = started - t0, arrived - started
                rd.compute, rd.ret, rd.merge = end_c - arrived, back - end_c, rd.end - back
                release = back
            elif rd.option == "fetch" and self.G <= rd.code < 2 * self.G:
                # from host DRAM: a host→device copy on the home's copy engine, as the exact one
                rd.nbytes = self.cm.fetch_bytes(rd.n_blocks / rd.b, rd.b)
                if n_loc:
                    cal.reserve(t0, self._attention(name, n_loc, q_loc), g, layers)
                arrived = self._host_copy(g, t0, cf.transfer)
                rd.end = release = cal.reserve(arrived, cf.compute + cf.merge, g, layers)
                rd.probe, rd.transfer = 0.0, arrived - t0
                rd.compute, rd.merge = rd.end - arrived - cf.merge, cf.merge
                self._keep_copies(g, s, rd)
            elif rd.option == "fetch":
                req = self.cm.request_bytes(rd.n_blocks / rd.b, rd.b)
                kv = self.cm.fetch_bytes(rd.n_blocks / rd.b, rd.b)
                rd.nbytes = req + kv
                asked = links.one(name, rd.owner, req, t0, g, layers, KV_FETCH)[1]
                if n_loc:
                    cal.reserve(t0, self._attention(name, n_loc, q_loc), g, layers)
                arrived = links.one(rd.owner, name, kv, asked, g, layers, KV_FETCH)[1]
                rd.end = release = cal.reserve(arrived, cf.compute + cf.merge, g, layers)
                rd.probe, rd.transfer = asked - t0, arrived - asked
                rd.compute, rd.merge = rd.end - arrived - cf.merge, cf.merge
                self._keep_copies(g, s, rd)
            else:
                rd.end = release = cal.reserve(t0, cf.compute + cf.merge, g, layers)
                if n_loc:
                    cal.reserve(t0, self._attention(name, n_loc, q_loc), g, layers)
                rd.compute, rd.merge = rd.end - t0 - cf.merge, cf.merge
                self._keep_copies(g, s, rd)
            end = cal.reserve(release, na_layer, g, layers)
            self.rounds.append((
                iteration, s, layers, g, rd.code, rd.option, rd.b, rd.n_blocks, rd.distinct,
                rd.nbytes, t0, rd.probe, rd.transfer, rd.compute, rd.ret, rd.merge,
                rd.end - t0, cf.probe, cf.transfer, cf.compute, cf.ret, cf.merge, cf.total))
            return end + (end - t0) * (layers - 1) if fold else end
        end = self._slots([(g, slot_groups, n_loc, q_loc, na_layer, t0)], s, iteration)[0]
        return end + (end - t0) * (layers - 1) if fold else end

    def _slots(self, homes: list[tuple], s: int, iteration: int) -> list[float]:
        """Compose layer slot ``s`` of the steps of ``homes`` — ``(gpu, groups, local blocks,
        local queries, projections + FFN [s], slot start [s])`` each: one GPU's step, or the
        ranks of a deployment's instance (its micro-batches' too when they overlap), whose
        messages at each stage form one phase (sharing links max-min, :meth:`Links.phase`);
        returns when each home's slot (its first layer) ends [s]. Homes are taken in order —
        each asks its rounds, then queues its own kernels — as the exact engine's ranks issue
        theirs at their start."""
        layers = self.slot_layers_list[s]
        cal_of = self.cal
        lead = homes[0][0]
        rounds = []
        remote = []  # route / fetch rounds over the fabric, homes in order, each in key order
        home_kernels: list[list] = []  # per home: (issued at, order, duration, round)
        copies: list[list] = []  # per home: its fetch and recompute rounds (they leave copies)
        done: dict[int, float] = {}  # homes with nothing to exchange: their slot's end
        for h, (g, slot_groups, n_loc, q_loc, na_layer, t0) in enumerate(homes):
            cal = cal_of[g]
            if not slot_groups:  # attention, then projections + FFN: back to back, in order
                a = self._attention(self.names[g], n_loc, q_loc) if n_loc else 0.0
                done[h] = cal.reserve(t0, a + na_layer, g, layers, 2 if a else 1)
                home_kernels.append([])
                copies.append([])
                continue
            host = []  # fetches from host DRAM: copies on the home's copy engine
            mine = len(remote)
            copies.append([])
            for grp in slot_groups:  # in order, a recompute queued before the next round
                rd = self._round(g, s, grp, t0)
                rd.home = h
                rounds.append(rd)
                if rd.option != "route":
                    copies[h].append(rd)
                if rd.option == "local":  # one home kernel: recompute + attention, merge
                    cf = rd.cf
                    rd.end = cal.reserve(t0, cf.compute + cf.merge, g, layers)
                    rd.merge = cf.merge
                    rd.compute = rd.end - t0 - cf.merge
                elif self.G <= rd.code < 2 * self.G:
                    host.append(rd)
                else:
                    remote.append(rd)
            if n_loc:  # home's own partial attention, queued behind any recompute
                cal.reserve(t0, self._attention(self.names[g], n_loc, q_loc), g, layers)
            kernels = []
            for i, rd in enumerate(host):
                rd.nbytes = self.cm.fetch_bytes(rd.n_blocks / rd.b, rd.b)
                arrived = self._host_copy(g, t0, rd.cf.transfer)
                rd.probe, rd.transfer = 0.0, arrived - t0
                kernels.append((arrived, len(remote) - mine + i, rd.cf.compute + rd.cf.merge,
                                rd))
            home_kernels.append(kernels)
        if remote:
            starts = [homes[rd.home][5] for rd in remote]
            links = self.links
            names = self.names
            first = []
            for rd, t0 in zip(remote, starts, strict=True):
                name = names[homes[rd.home][0]]
                if rd.option == "route":
                    q, r = self.route_payload(rd.b)
                    rd.nbytes = q + r
                    first.append((name, rd.owner, q, t0))
                else:
                    req = self.cm.request_bytes(rd.n_blocks / rd.b, rd.b)
                    rd.nbytes = req
                    first.append((name, rd.owner, req, t0))
            tags = [KV_ROUTE if rd.option == "route" else KV_FETCH for rd in remote]
            arrivals = links.phase(first, lead, layers, tags)
            # the owners' kernels in arrival order (homes' rounds to one owner queue FIFO)
            order = sorted(range(len(remote)), key=lambda i: (arrivals[i][1], i))
            second: list = [None] * len(remote)
            for i in order:
                rd = remote[i]
                started, finished = arrivals[i]
                name = names[homes[rd.home][0]]
                if rd.option == "route":
                    rd.probe = started - starts[i]
                    rd.transfer = finished - started
                    end_c = cal_of[rd.k].reserve(finished, rd.cf.compute, homes[rd.home][0],
                                                 layers)
                    rd.compute = end_c - finished
                    second[i] = (rd.owner, name, self.route_payload(rd.b)[1], end_c)
                else:
                    rd.probe = finished - starts[i]
                    kv = self.cm.fetch_bytes(rd.n_blocks / rd.b, rd.b)
                    rd.nbytes += kv
                    second[i] = (rd.owner, name, kv, finished)
            seen = [0] * len(homes)
            for rd, msg, (_, finished) in zip(remote, second, links.phase(second, lead, layers,
                                                                          tags), strict=True):
                i = seen[rd.home]
                seen[rd.home] += 1
                if rd.option == "route":
                    rd.ret = finished - msg[3]
                    home_kernels[rd.home].append((finished, i, rd.cf.merge, rd))
                else:
                    rd.transfer = finished - msg[3]
                    home_kernels[rd.home].append((finished, i, rd.cf.compute + rd.cf.merge, rd))
        # each home's kernels, then its projections + FFN once its rounds are in, all homes'
        # in issue order (two micro-batches of one GPU share its stream)
        ends: list[float] = [done.get(h, 0.0) for h in range(len(homes))]
        release = [h[5] for h in homes]
        left = [len(k) for k in home_kernels]
        queue = [(issued, h, order, dur, rd) for h, kernels in enumerate(home_kernels)
                 for issued, order, dur, rd in kernels]
        queue += [(release[h], h, -1, 0.0, None) for h in range(len(homes))
                  if h not in done and not left[h]]
        heapq.heapify(queue)
        while queue:
            issued, h, _, dur, rd = heapq.heappop(queue)
            g = homes[h][0]
            if rd is None:  # the home's rounds are in: its copies, then the rest of the layer
                for c in sorted(copies[h], key=lambda x: x.end):
                    self._keep_copies(g, s, c)
                    if c.end > release[h]:
                        release[h] = c.end
                ends[h] = cal_of[g].reserve(release[h], homes[h][4], g, layers)
                continue
            rd.end = cal_of[g].reserve(issued, dur, g, layers)
            if rd.option == "route":
                rd.merge = rd.end - issued
                if issued > release[h]:
                    release[h] = issued
            else:
                rd.merge = rd.cf.merge
                rd.compute = rd.end - issued - rd.cf.merge
            left[h] -= 1
            if not left[h]:
                last = max(release[h], max((x.end for x in copies[h]), default=release[h]))
                heapq.heappush(queue, (last, h, -1, 0.0, None))
        append = self.rounds.append
        for rd in rounds:
            cf = rd.cf
            g, t0 = homes[rd.home][0], homes[rd.home][5]
            append((iteration, s, layers, g, rd.code, rd.option, rd.b, rd.n_blocks, rd.distinct,
                    rd.nbytes, t0, rd.probe, rd.transfer, rd.compute, rd.ret, rd.merge,
                    rd.end - t0, cf.probe, cf.transfer, cf.compute, cf.ret, cf.merge,
                    cf.total))
        return ends

    def _keep_copies(self, g: int, s: int, rd: _Round) -> None:
        """Enter the copies a fetch or recompute round made on GPU ``g`` (slot ``s``); an
        observing policy counts those of a GPU's blocks it chose to copy (as the exact engine's
        round does at its end)."""
        kept = self.dir.add_copies_kept(g, rd.members, s, rd.end)[1]  # per (block, slot)
        if self.observed is not None and rd.k < self.G:
            self.observed.copied(g, rd.k, kept)

    def _free_at(self, g: int, at: float) -> float:
        """When the work issued on GPU ``g``'s stream calendar by ``at`` [s] is done [s]."""
        return self.cal[g].free_at(at)

    def _host_copy(self, g: int, at: float, duration: float) -> float:
        """A host→device copy of ``duration`` [s] issued at ``at`` on GPU ``g``'s copy engine
        (FIFO per direction, as :class:`~simulator.gpu.copyengines.CopyEngines`); its end [s]."""
        engine = self.copies[g].h2d
        end = engine.free_at = (at if at > engine.free_at else engine.free_at) + duration
        engine.busy += duration
        engine.kernels_run += 1
        return end

    def _finish_run(self) -> None:
        self.links.flush()

    def execute(self) -> Result:
        res = super().execute()
        res.extras.update(pushed_steps=self.pushed_steps, messages=self.links.messages,
                          contended_messages=self.links.contended)
        return res

    def _round(self, g: int, s: int, grp, t0: float) -> _Round:
        """The policy's option for one group (forced for host / dropped blocks), as the exact
        engine's ``_start_round`` asks it."""
        k, b, members = grp
        n_blocks, distinct, owner, option, code = self._group(g, k, b, members)
        if option is None:
            per = math.ceil(n_blocks / b)
            memo = self._choices
            if memo is not None:
                option = memo.get((g, k, s, b, per, distinct))
            if option is None:
                option = self._ask(Round(self.names[g], owner, s, b, per, distinct, t0))
                if memo is not None:
                    memo[(g, k, s, b, per, distinct)] = option
        cf = self._cf_cache.get((option, g, code, n_blocks, b))
        if cf is None:
            cf = self._closed_form(option, g, code, owner, n_blocks, b)
        return _Round(k, b, members, n_blocks, distinct, option, owner, code, cf)
