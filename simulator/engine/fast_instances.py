"""Deployed instances on the fast engine: an instance's whole step composed at once.

The exact engine's :class:`~simulator.engine.instance_loop.InstanceLoop` plays a step of an
instance (its ranks stepping together through every MoE layer) as SimPy events: each rank's
attention rounds, the all-to-all's flows on the Fabric, the expert kernels on the ranks' streams.
:class:`FastInstanceLoop` is the same loop — the same schedulers, plans, selections, block
locations, policy questions, MoE routing stream and records (it *is* an ``InstanceLoop``; only
``_step`` differs) — with the step composed at its start on the fast engine's calendars
(:mod:`simulator.engine.fast`), ended by one SimPy timeout:

- **attention** of a slot on every rank at once: :meth:`SlotComposer.slots
  <simulator.engine.fast_slots.SlotComposer.slots>` (rounds, home attention, then the rank's
  projections, FFN and prefill chunks' attention), unfolded — the slot's first layer only. The
  ranks' messages at each stage of the slot form one phase and share links max-min as the
  Fabric's flows would (when a phase is too large to fill at every completion:
  :func:`~simulator.engine.fast_sharing.batched_max_min_finish`, or
  :func:`~simulator.engine.fast_sharing.shared_finish` for µs-scale messages), the owners' kernels
  queue in arrival order, and the homes' last kernels and projections are reserved in issue
  order across homes (two micro-batches of one GPU share its stream) — not rank after rank on
  FIFO link calendars, which would let the first-composed ranks' queries through first and
  pipeline the owners' work as no fair network does;
- **the MoE layer**, from when the last rank is ready, in the closed form's order
  (:meth:`~simulator.costmodel.moe.ExpertParallel.closed_form`, as
  :class:`~simulator.engine.exchange.MoEReplay` plays it): shared experts on each rank's
  calendar; the dispatch as one aggregate per loaded link on the link calendars
  (:meth:`~simulator.engine.fast_links.Links.aggregate`) after the exchange's fixed time; routed
  experts at each rank's own rows; the combine once the slowest rank is done; each rank's add.
  Alone on idle links and streams each phase is the closed form's time (to float rounding);
  against other traffic the stream calendars serve it FIFO, as they do rounds, and on a link
  with known work an aggregate ends with its processor share of the link among that work's
  flows where that is sooner than FIFO behind it (the Fabric's max-min on one link);
- **folding**: the slot's time, MoE included, repeats for the layers it stands for; after the
  last slot each rank's final norm and LM head;
- **two-batch overlap**: the exact engine's two-stage pipeline — per slot the first
  micro-batch's attention from its start and its shared experts; the second's attention from
  when the first's is done; then the first one's dispatch, which starts with that attention
  and shares the links with its messages (composed after them, it sees their work on the
  calendars); the second's shared experts and dispatch; then each one's experts, combine and
  add (behind the second's kernels on the streams, as on the exact engine, where they are
  issued when the first's attention ends); a folded slot ends both after the later start plus
  its layers times the longer of their simulated layers.

What differs from the exact engine, beyond the fast engine's own approximations (FIFO calendars
for other steps' work, pushes charged as a debt — here the largest over the instance's ranks,
waited out at the step's end):

- an all-to-all's share of a link counts the work known there when it is composed, at line
  rate and from each item's issue, while the Fabric's flows are capped at their stack's
  efficiency and a flow composed later does not slow it; the work it shares with is not slowed
  by it either (the calendars stay FIFO, the bytes at line rate). On ``deepseek_v32_ep`` the
  first, cold step's MoE phases are the exact engine's within 3 % (docs/performance.md,
  *Stop 40*);
- the MoE routing draws come from the same stream in a different order across instances (an
  instance composes all its layers before the next instance's step), so with more than one
  instance the routing is equal in distribution, not draw for draw;
- prefill/decode transfers stay on the Fabric (the exact engine's transfer engine and flows),
  posted as on the exact engine when a slot's first layer and its last layer end (the step
  advances to each such time on a prefill instance); they do not see the calendars' traffic, nor
  it theirs;
- the all-to-all's link work is counted at line rate on the calendars while each flow is
  capped at its stack's efficiency (the Fabric leaves the rest of the link to others).
"""

from __future__ import annotations

import numpy as np

from simulator.engine.instance_loop import InstanceLoop
from simulator.network.traffic import MOE_COMBINE, MOE_DISPATCH


class FastInstanceLoop(InstanceLoop):
    """An instance's step loop on the fast engine (see the module docstring)."""

    def _step(self, plans, iteration: int):
        """Every slot of one step for every rank, composed at once; returns each rank's
        prefill work [s]."""
        run = self.run
        env = run.env
        ranks = self.ranks
        for g in ranks:  # the only reset: no push reaches a step's kernels once it has ended
            run.debt[g] = 0.0
        lanes, work, logits = self._parts(plans, iteration)
        live = [k for k, parts in enumerate(lanes) if any(p["tokens"] for p in parts)]
        posting = self.prefill and self.d.handoff is not None
        # an observing policy decides at the slot's start; a prefill instance posts its KV as
        # the slot's layers end (both on the exact engine's clock)
        wait = run.observed is not None or posting
        nxt = dict.fromkeys(live, env.now)  # when each micro-batch starts its next slot [s]
        for s in range(run.S if live else 0):
            moe = self.d.is_moe[s]
            layers = run.slot_layers_list[s]
            start: dict[int, float] = {}
            done: dict[int, float] = {}
            layer = {}  # each micro-batch's MoE layer (a generator: _moe_at)
            dispatch = None  # a MoE layer whose dispatch waits for the next attention
            for order, k in enumerate(live):
                # the second micro-batch's attention once the first's is done
                at = nxt[k] if order == 0 else max(nxt[k], done[live[0]])
                if wait and at > env.now:
                    yield env.timeout(at - env.now)
                start[k] = at
                done[k] = self._attend_at(lanes[k], at, s, moe, iteration)
                if dispatch is not None:  # the first one's dispatch, beside this attention's
                    next(dispatch)  # messages (they start together; the links share them)
                if moe and self.ep is not None:
                    # its shared experts now, before the next micro-batch's attention (the
                    # exact engine issues them first); its experts, combine and add after it,
                    # behind the kernels that attention queues
                    layer[k] = dispatch = self._moe_at(k, lanes[k], s, layers, iteration,
                                                       done[k])
                    next(dispatch)
            if dispatch is not None:
                next(dispatch)
            for k, rest in layer.items():
                done[k] = next(rest)
            if posting:  # the slot's first layers' KV (all but the last of a folded slot)
                yield from self._post_at(lanes, done, max(layers - 1, 1))
            if len(live) == 2 and layers > 1:  # both end together: the later start plus the
                period = max(done[k] - start[k] for k in live)  # longer layers
                nxt = dict.fromkeys(live, max(start.values()) + period * layers)
            else:
                nxt = {k: done[k] + (done[k] - start[k]) * (layers - 1) for k in live}
            if posting and layers > 1:  # the last layer's, when it ends
                yield from self._post_at(lanes, nxt, 1)
        end = max(nxt.values(), default=env.now)
        finish = end
        for i, g in enumerate(ranks):
            tokens = sum(p["tokens"] for p in (lane[i] for lane in lanes))
            if tokens:
                e = run.cal[g].reserve(end, self.rk[i].step_time(tokens, logits[i]), g)
                if e > finish:
                    finish = e
        if finish > env.now:
            yield env.timeout(finish - env.now)
        debt = max(run.debt[g] for g in ranks)
        if debt > 0.0:  # a kernel or flow of this step was pushed back by a later-composed one
            run.pushed_steps += 1
            yield env.timeout(debt)
        return work

    def _post_at(self, lanes: list[list[dict]], ends: dict[int, float], layers: int):
        """Post each micro-batch's KV of ``layers`` layers (of a layer slot) when it ends
        (``ends`` [s] by micro-batch, in that order; a generator)."""
        env = self.run.env
        for k in sorted(ends, key=lambda k: (ends[k], k)):
            if ends[k] > env.now:
                yield env.timeout(ends[k] - env.now)
            self._post(lanes[k], layers)

    def _attend_at(self, parts: list[dict], at: float, s: int, moe: bool,
                   iteration: int) -> float:
        """One micro-batch's attention of slot ``s`` on every rank from ``at`` [s] (home
        blocks, rounds, chunks) and the layer's projections (with a dense slot's FFN); returns
        when the last rank is done [s] (``at`` if none has tokens). The ranks' rounds are
        composed together (:meth:`SlotComposer.slots
        <simulator.engine.fast_slots.SlotComposer.slots>`): their messages at each stage are one
        phase."""
        homes = []
        for p in parts:
            m = p["tokens"]
            if not m:
                continue
            rk = self.rk[p["rank"]]
            pre = (rk.pre_time(m, len(p["reqs"])) + rk.ffn_time(m, moe) + p["chunk_attention"]
                   + p["indexer"])
            homes.append((p["gpu"], p["groups"][s] if p["groups"] is not None else [],
                          p["n_local"][s] if p["n_local"] is not None else 0,
                          p["q_local"][s] if p["q_local"] is not None else 0, pre, at))
        if not homes:
            return at
        return max(at, *self.run.compose.slots(homes, s, iteration))

    def _moe_at(self, lane: int, parts: list[dict], s: int, layers: int, iteration: int,
                t0: float):
        """The slot's MoE layer over every rank from ``t0`` [s] (the last rank ready), on the
        calendars in the closed form's order; recorded with its closed form. A generator of
        three steps: the shared experts (yields ``t0``), the dispatch (yields its end [s]),
        the rest (yields the layer's end [s])."""
        ranks = self.ranks
        tokens, plan, shared_a, post_a = self._moe_plan(parts)
        shared, post = shared_a.tolist(), post_a.tolist()
        cal = self.run.cal
        lead = ranks[0]  # the instance's debts are gathered over its ranks at the step's end
        for r, g in enumerate(ranks):
            if shared[r] > 0:
                cal[g].reserve(t0, shared[r], g, layers)
        yield t0
        t1 = self._exchange(plan.dispatch, "dispatch", t0, lead, layers)
        yield t1
        t2 = t1
        for g, x in zip(ranks, plan.expert_time.tolist(), strict=True):
            if x > 0:
                e = cal[g].reserve(t1, x, g, layers)
                if e > t2:
                    t2 = e
        t3 = self._exchange(plan.combine, "combine", t2, lead, layers)
        t4 = t3
        for r, g in enumerate(ranks):
            if post[r] > 0:
                e = cal[g].reserve(t3, post[r], g, layers)
                if e > t4:
                    t4 = e
        self._moe_record(lane, iteration, s, layers, tokens, plan, shared_a, post_a, t0,
                         (t1 - t0, t2 - t1, t3 - t2, t4 - t3))
        yield t4

    def _exchange(self, pairs: np.ndarray, direction: str, t0: float, lead: int,
                  layers: int) -> float:
        """One all-to-all of traffic matrix ``pairs`` [B] from ``t0`` [s]: its fixed time, then
        one aggregate per loaded link on the link calendars (or, with ``moe_on_fabric`` off,
        the closed form's time on no link); returns when the last link is done [s]."""
        ep = self.ep
        loads = ep.loads(pairs)
        fixed = ep.fixed_time(pairs, direction)
        busy = np.flatnonzero(loads > 0)
        if not len(busy):
            return t0 + fixed
        if not self.d.spec.moe_on_fabric:
            return t0 + fixed + float((loads / ep.rate).max())
        tag = MOE_DISPATCH if direction == "dispatch" else MOE_COMBINE
        links = [ep.links[i] for i in busy.tolist()]
        return self.run.links.aggregate(links, loads[busy].tolist(), ep.rate[busy].tolist(),
                                        t0 + fixed, lead, layers, tag,
                                        float(np.asarray(pairs).sum()))
