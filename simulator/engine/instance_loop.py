"""One deployed instance's step loop in the exact engine: its ranks step together through every
layer slot, each MoE layer played on the fabric.

:class:`InstanceLoop` is what :class:`~simulator.engine.instances.Deployed` builds per instance
(``Deployed.loops``) and starts as a SimPy process; it reads the deployment it belongs to (slots,
MoE routing stream, hand-off, ``moe`` records) through its owner and the run's parts (requests,
schedulers, selections, streams, rounds) through ``run``:

- **lockstep.** An instance's ranks step together, as data-parallel attention with expert
  parallelism does (every MoE layer is a collective over all ranks: a rank with nothing to do
  still takes part). Each step every rank's scheduler (:class:`~simulator.engine.scheduler.
  Scheduler`, shared with every engine) forms its own plan — decodes, prefill chunks — and the
  instance sleeps only when no rank has work.
- **a step**, after the host overhead: for each simulated slot (a group of identical layers;
  the dense layers get a slot of their own), each rank runs its decodes' attention — home
  blocks on its stream, remote ones as route / fetch / local rounds chosen by the policy
  (:mod:`simulator.engine.rounds`, exactly as without a deployment) — its prefill chunks'
  attention and the layer's projections at its own token count (:class:`~simulator.costmodel.
  rank_kernels.RankKernels`); when the last rank is ready, an MoE slot plays the layer
  (:mod:`simulator.engine.exchange`): routing drawn from the run's MoE stream, dispatch and
  combine on the Fabric, expert GEMMs at each rank's own rows; a dense slot has its FFN in the
  projections. The slot's time then repeats for the layers it stands for (folding, as the engine
  does). After the last slot, each rank's final norm and LM head.
- **two-batch overlap** (``two_batch_overlap``): each rank's decodes are split in two
  micro-batches (alternate requests; chunks to the lighter one) that run the slots as a
  two-stage pipeline over the same streams and links: the second micro-batch's attention of a
  slot starts once the first's is done (the GPU is handed over at the communication point, as
  vLLM's dual-batch overlap and SGLang's two-batch overlap do), so one's all-to-all is in flight
  while the other computes. A folded slot plays one layer of that pipeline and ends both
  micro-batches together, after the later one's start plus the slot's layers times the longer
  of their simulated layers: in a pipeline both advance a layer per period. (Folded micro-batch
  by micro-batch instead, a second micro-batch that happened to play its layer after the first
  had finished repeated an uncontended layer: steps came out 21–33 % shorter than with every
  layer simulated; docs/accuracy.md, *Layer folding with two-batch overlap*.)
- **prefill instances** post each chunk's KV to the hand-off slot by slot (the slot's first
  layers when its first layer ends, the last layer's when it ends) and hand a finished prompt
  to it instead of decoding.

The fast engine's :class:`~simulator.engine.fast_instances.FastInstanceLoop` is this loop with
another ``_step`` (the step composed at once).
"""

from __future__ import annotations

import numpy as np

from simulator.costmodel.moe import ExpertParallel
from simulator.costmodel.rank_kernels import RankKernels
from simulator.engine.exchange import MoEReplay
from simulator.engine.rounds import Pending


class InstanceLoop:
    """The step loop of one instance (see the module docstring); ``owner`` is the run's
    :class:`~simulator.engine.instances.Deployed`."""

    def __init__(self, owner, inst, rank_kernels: list[RankKernels],
                 ep: ExpertParallel | None) -> None:
        self.d = owner
        self.run = owner.run
        self.inst = inst
        self.ranks = list(inst.gpus)
        self.rk = rank_kernels
        self.ep = ep
        self.replay = MoEReplay(self.run.env, self.run.fabric, ep,
                                [self.run.streams[g] for g in self.ranks],
                                owner.spec.moe_on_fabric) if ep else None
        self.prefill = inst.pool == "prefill"
        self.lanes = 2 if inst.spec.two_batch_overlap else 1

    # -- the loop ----------------------------------------------------------------------------

    def loop(self):
        run = self.run
        env, req = run.env, run.req
        ranks = self.ranks
        overhead = run.serving.overhead_time()
        iteration = 0
        while True:
            if not any(req.queue[g] or req.sched[g].running for g in ranks):
                yield from self._sleep()
                continue
            started = env.now
            plans = []
            again = False  # a rank rejected or preempted (and so admitted none): step again
            for g in ranks:
                plan = req.sched[g].step(req.queue[g])
                for r in plan.rejected:
                    req.reject(r)
                for r in plan.admitted:
                    req.admitted(r)
                again |= bool(plan.rejected or plan.preempted)
                plans.append(plan)
            if not any(p or p.prompt_done for p in plans):
                if not again:
                    yield from self._sleep()  # nothing fits until something changes
                continue
            if overhead:
                yield env.timeout(overhead)
            work = yield from self._step(plans, iteration)
            for i, g in enumerate(ranks):
                plan = plans[i]
                # recomputes after a preemption done in the step give their next token here
                recomputed = 0 if self.prefill else sum(1 for r in plan.prompt_done
                                                        if req.gen[r] > 0)
                for r in plan.decode:
                    req.gen[r] += 1
                    req.grow_context(g, r)
                for r in plan.prompt_done:
                    if self.prefill:
                        computed = min(int(req.computed_tokens[r]), int(req.inp[r]))
                        self.d.handoff.prefilled(g, r, computed)
                    else:
                        req.prompt_done(g, r)
                for r in [r for r in req.sched[g].running if req.gen[r] >= req.out[r]]:
                    req.retire(g, r)
                if plan or plan.prompt_done:
                    run.iters.append((g, iteration, started, env.now, len(plan.decode),
                                      work[i], len(plan.decode) + recomputed,
                                      plan.prefill_tokens,
                                      req.sched[g].take_preempted()))
            if run.check_invariants:
                run.dir.check()
            iteration += 1
            run.rounds.maybe_pack()
            run.iters.maybe_pack()
            run.fabric.spill_records()

    def _sleep(self):
        """Wait until a request reaches any rank of the instance."""
        req = self.run.req
        ev = self.run.env.event()
        for g in self.ranks:
            req.wake[g] = ev
            if self.run.observed is not None:  # no batch of its own until woken
                self.run.observed.idle(g)
        yield ev
        for g in self.ranks:
            req.wake[g] = None

    # -- one step ----------------------------------------------------------------------------

    def _parts(self, plans, iteration: int) -> tuple[list[list[dict]], list[float], list[int]]:
        """Every rank's share of each micro-batch (:meth:`_prepare`), by micro-batch; each
        rank's prefill work [s] and LM-head rows."""
        R = len(self.ranks)
        lanes: list[list[dict]] = [[] for _ in range(self.lanes)]
        work = [0.0] * R
        logits = [0] * R
        for i, g in enumerate(self.ranks):
            plan = plans[i]
            parts = self._prepare(i, g, plan, iteration)
            work[i] = sum(p["chunk_attention"] for p in parts) * self.run.arch.layers
            logits[i] = len(plan.decode) + len(plan.prompt_done)
            for lane, part in enumerate(parts):
                lanes[lane].append(part)
        return lanes, work, logits

    def _step(self, plans, iteration: int):
        """Every slot of one step for every rank; returns each rank's prefill work [s]."""
        run = self.run
        env = run.env
        lanes, work, logits = self._parts(plans, iteration)
        live = [(lane, parts) for lane, parts in enumerate(lanes)
                if any(p["tokens"] for p in parts)]
        pair = _Pipeline(env, run.S) if len(live) == 2 else None
        procs = [env.process(self._lane(lane, parts, iteration, pair, order))
                 for order, (lane, parts) in enumerate(live)]
        if procs:
            yield env.all_of(procs)
        end = env.now
        for i, g in enumerate(self.ranks):
            tokens = sum(p["tokens"] for p in (lane[i] for lane in lanes))
            if tokens:
                e = run.streams[g].issue(self.rk[i].step_time(tokens, logits[i]))
                end = max(end, e)
        if end > env.now:
            yield env.timeout(end - env.now)
        return work

    def _prepare(self, i: int, g: int, plan, iteration: int) -> list[dict]:
        """Rank ``i``'s share of each micro-batch: its decodes' selections and block locations,
        its prefill chunks, and their per-layer work."""
        run = self.run
        req = run.req
        reqs = list(plan.decode)
        n = self.lanes
        split = [reqs[k::n] for k in range(n)]
        chunks: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        attn = [0.0] * n
        spec, L = run.gpus[g].spec, run.arch.layers
        sched = req.sched[g]
        for r, c in plan.chunks:  # each chunk to the lighter micro-batch
            k = min(range(n), key=lambda j: len(split[j]) + sum(x for _, x in chunks[j]))
            chunks[k].append((r, c))
            before = sched.prefill_left.get(r, 0) + c
            cached = int(req.inp[r]) + int(req.gen[r]) - before
            attn[k] += (run.kernels.prefill_attention_time(spec, run.arch, c, max(cached, 0))
                        + req.take_rotary(g, r)) / L
        dense = valid = None
        if reqs:
            dense, valid = run.steps.select(g, reqs)
            run.dir.touch(g, dense[valid], run.env.now)
        parts = []
        for k in range(n):
            part = {"lane": k, "rank": i, "gpu": g, "reqs": split[k], "chunks": chunks[k],
                    "chunk_attention": attn[k], "groups": None, "n_local": None,
                    "q_local": None, "indexer": 0.0}
            B = len(split[k])
            part["tokens"] = B + sum(c for _, c in chunks[k])
            if B:
                idx = np.arange(k, len(reqs), n)
                dk, vk = dense[idx], valid[idx]
                local, groups = run.steps.locate_for(g, dk, vk, run.policy.colocated)
                if run.observed is not None:
                    # an observing policy (adaptive) learns of the micro-batch's step as of a
                    # GPU's step without a deployment: copies used, tokens left, KV room
                    run._observe(g, split[k], vk)
                part["groups"] = groups
                part["n_local"] = local.sum(axis=(0, 2)).tolist()
                part["q_local"] = local.any(axis=2).sum(axis=0).tolist()
                if run.indexer:
                    ctx = float((req.inp[split[k]] + req.gen[split[k]]).mean())
                    part["indexer"] = run.kernels.indexer_time(spec, run.arch, B, ctx)
            parts.append(part)
        return parts

    def _lane(self, lane: int, parts: list[dict], iteration: int, pair: _Pipeline | None,
              order: int):
        """One micro-batch of every rank through every slot (``order``: its place in the
        two-stage ``pair``, if there is one)."""
        run = self.run
        env = run.env
        d = self.d
        post = self.prefill and d.handoff is not None
        for s in range(run.S):
            moe = d.is_moe[s]
            layers = run.slot_layers_list[s]
            if pair is not None and order == 1:
                yield pair.gate[s]  # the first micro-batch's attention of the slot is done
            t0 = env.now
            ready = [self._attend(p, s, moe, iteration) for p in parts if p["tokens"]]
            if ready:
                yield env.all_of(ready)
            if pair is not None and order == 0:
                pair.gate[s].succeed()
            if moe and self.ep is not None:
                yield from self._moe(lane, parts, s, layers, iteration)
            if post:  # the slot's first layers' KV (all but the last of a folded slot)
                self._post(parts, max(layers - 1, 1))
            end = env.now
            if pair is None:
                if layers > 1 and end > t0:
                    yield env.timeout((end - t0) * (layers - 1))
            elif layers > 1:  # both end together: the later start plus the longer layers
                start, period = yield from pair.fold(s, t0, end - t0)
                if start + period * layers > env.now:
                    yield env.timeout(start + period * layers - env.now)
            if post and layers > 1:  # the last layer's, when it ends
                self._post(parts, 1)

    def _post(self, parts: list[dict], layers: int) -> None:
        """Hand the KV of ``layers`` layers (of a layer slot) of the micro-batch ``parts``'
        prefill chunks to the transfer engine (a prefill instance)."""
        for p in parts:
            if p["chunks"]:
                self.d.handoff.computed(p["gpu"], p["chunks"], layers)

    def _attend(self, p: dict, s: int, moe: bool, iteration: int):
        """Rank ``p``'s attention of slot ``s`` (home blocks, rounds, chunks) and the layer's
        projections (with a dense slot's FFN): an event at the projections' end."""
        run = self.run
        g, i = p["gpu"], p["rank"]
        stream = run.streams[g]
        rk = self.rk[i]
        m = p["tokens"]
        pre = (rk.pre_time(m, len(p["reqs"])) + rk.ffn_time(m, moe) + p["chunk_attention"]
               + p["indexer"])
        t0 = run.env.now
        groups = p["groups"][s] if p["groups"] is not None else []
        if groups:
            done = run.env.event()
            pending = Pending(lambda: stream.after_then(done, pre, t0, 1), len(groups))
            for grp in groups:
                run._start_round(g, s, iteration, pending, *grp)
        if p["n_local"] is not None and p["n_local"][s]:
            stream.issue(run.costs.attention(run.names[g], p["n_local"][s], p["q_local"][s]))
        return done if groups else stream.after(pre, t0, 1)

    def _moe(self, lane: int, parts: list[dict], s: int, layers: int, iteration: int):
        """The slot's MoE layer over every rank of the instance, recorded with its closed form."""
        tokens, plan, shared, post = self._moe_plan(parts)
        t0 = self.run.env.now
        sim = yield from self.replay.play(plan, shared, post)
        self._moe_record(lane, iteration, s, layers, tokens, plan, shared, post, t0,
                         (sim.dispatch, sim.experts, sim.combine, sim.post))

    def _moe_plan(self, parts: list[dict]):
        """The slot's MoE layer for the ranks' token counts: ``(tokens, plan, shared experts'
        times, adds' times)`` per rank (routing drawn from the run's MoE stream)."""
        R = len(self.ranks)
        tokens = np.zeros(R, np.int64)
        for p in parts:
            tokens[p["rank"]] = p["tokens"]
        plan = self.ep.layer(self.d.rng, tokens)
        shared = np.array([self.rk[r].shared_time(int(tokens[r])) for r in range(R)])
        post = np.array([self.rk[r].post_time(int(tokens[r])) for r in range(R)])
        return tokens, plan, shared, post

    def _moe_record(self, lane: int, iteration: int, s: int, layers: int, tokens, plan,
                    shared, post, t0: float, phases: tuple) -> None:
        """One ``moe`` record: the layer started at ``t0`` [s], its simulated ``phases``
        (dispatch, experts, combine, add [s]) beside the closed form's."""
        cf = self.ep.closed_form(plan, shared, post)
        R = len(self.ranks)
        self.d.moe_rows.append((
            self.inst.pool, self.inst.index, lane, iteration, s, layers, R, int(tokens.sum()),
            int(plan.rows.max()) if R else 0, plan.dispatch_bytes, plan.combine_bytes, t0,
            *phases, cf.dispatch, cf.experts, cf.combine, cf.post))


class _Pipeline:
    """Two micro-batches' meeting points in one step: per slot, when the first one's attention
    is done (``gate``, which the second one's waits for), and each one's simulated layer [s],
    whose longer one is the slot's period for both."""

    def __init__(self, env, slots: int) -> None:
        self.gate = [env.event() for _ in range(slots)]
        self._layer: list[list[tuple[float, float]]] = [[] for _ in range(slots)]
        self._both = [env.event() for _ in range(slots)]

    def fold(self, s: int, started_at: float, layer_time: float):
        """A micro-batch started slot ``s``'s simulated layer at ``started_at`` [s] and took
        ``layer_time`` [s]: wait for the other one's, then return the later start and the
        longer layer ``(start [s], period [s])`` (a generator: ``yield from``)."""
        seen = self._layer[s]
        seen.append((started_at, layer_time))
        if len(seen) < 2:
            yield self._both[s]
        else:
            self._both[s].succeed()
        return max(a for a, _ in seen), max(t for _, t in seen)
