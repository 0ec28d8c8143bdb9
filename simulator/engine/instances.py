"""Deployed instances in the exact engine: expert-parallel ranks that step together, their MoE
layers on the fabric, and prefill instances handing KV to decode instances.

With a ``[deployment]`` (:mod:`simulator.deployment`) the run (:class:`~simulator.engine.exact.
_Run`) holds a :class:`Deployed`, which replaces its per-GPU loops by one loop per *instance*:

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
  micro-batches (alternate requests; chunks to the lighter one) that run the slots as two
  processes over the same streams and links — one's all-to-all in flight while the other
  computes.
- **prefill/decode** (a prefill pool): requests arrive at the prefill pool
  (:class:`~simulator.engine.kvtransfer.Handoff`); prefill instances step like any instance
  (their ranks only ever prefill), posting each chunk's KV slot by slot; a decode instance admits
  a request when its KV has arrived.

Every MoE layer is recorded beside its closed form (:meth:`~simulator.costmodel.moe.
ExpertParallel.closed_form`): ``moe`` records; every transfer in ``kv_transfers``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator import kvcache
from simulator.costmodel.experts import popularity
from simulator.costmodel.moe import ExpertParallel
from simulator.costmodel.rank_kernels import RankKernels
from simulator.deployment.layout import build_layout
from simulator.deployment.spec import check_against
from simulator.deployment.weights import weights_per_gpu
from simulator.engine.exchange import MoEReplay
from simulator.engine.kvtransfer import TRANSFER_COLUMNS, Handoff, TransferEngine
from simulator.engine.rounds import Pending
from simulator.gpu.profiled import default_kernels
from simulator.network.paths import paths_among

#: Columns of the ``moe`` records: one per (instance, micro-batch, step, MoE slot).
MOE_COLUMNS = ("pool", "instance", "lane", "iteration", "layer", "layers", "ranks", "tokens",
               "max_rows", "dispatch_bytes", "combine_bytes", "started_at", "dispatch_time",
               "expert_time", "combine_time", "post_time", "cf_dispatch_time", "cf_expert_time",
               "cf_combine_time", "cf_post_time")


def fold_slots(layers: int, dense: int, groups: int) -> np.ndarray:
    """Slot boundaries (``S + 1`` layer indices): every layer its own slot (``groups`` 0 or
    ≥ layers), else ``groups`` slots of which the dense layers form the first."""
    if groups <= 0 or groups >= layers:
        return np.arange(layers + 1)
    if 0 < dense < layers:
        groups = max(groups, 2)
        rest = np.linspace(dense, layers, groups).round().astype(int)
        return np.concatenate(([0], rest))
    return np.linspace(0, layers, groups + 1).round().astype(int)


class Deployed:
    """A run's deployment (see the module docstring). Built by the run's constructor once its
    topology, kernels and fabric exist; :meth:`setup` once its requests exist; :meth:`start`
    starts the instance loops."""

    def __init__(self, run, spec) -> None:
        self.run = run
        self.spec = spec
        arch = run.arch
        kinds = [run.graph.nodes[n].get("gpu", "H100") for n in run.names]
        check_against(spec, arch, kinds, run.sc.source, run.sc.placement.reserve_fraction)
        if not all(s.predicts for s in run.streams):
            raise ValueError("a [deployment] needs the closed-form streams (exact_streams=False)")
        self.layout = build_layout(spec, run.names, kinds)
        self.dense = arch.dense_layers if spec.dense_layers is None else spec.dense_layers
        if not arch.experts:
            self.dense = arch.layers
        bounds = fold_slots(arch.layers, self.dense if arch.experts else 0,
                            run.sc.engine.layer_groups)
        self.bounds = bounds
        self.homes = self.layout.gpus_of("decode")
        self.rng = None  # the MoE routing stream, spawned by the run
        self.handoff: Handoff | None = None
        self.moe_rows: list[tuple] = []
        self.kernels = run.kernels if hasattr(run.kernels, "profile") else default_kernels()

    def slots(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(S, real layers per slot, first layer of each slot) for the run."""
        b = self.bounds
        return len(b) - 1, np.diff(b), b[:-1]

    def capacities(self, specs, placement, block_bytes: float) -> tuple[int, ...]:
        """KV blocks each GPU holds after its weights (its pool's: non-expert weights and its
        routed experts) and the reserve; idle GPUs hold none."""
        pool_of = {g: inst.spec for inst in self.layout.instances for g in inst.gpus}
        caps = []
        for g, s in enumerate(specs):
            pool = pool_of.get(g)
            if pool is None:
                caps.append(0)
                continue
            w = weights_per_gpu(self.run.arch, pool, self.spec.dense_layers)
            caps.append(kvcache.capacity_blocks(s.hbm_bytes, w, placement.reserve_fraction,
                                                block_bytes))
        return tuple(caps)

    def setup(self, rng: np.random.Generator) -> None:
        """Build the EP groups and the hand-off, once the run's requests exist."""
        run = self.run
        self.rng = rng
        arch = run.arch
        probs = None
        if arch.experts:
            probs = popularity(self.spec.popularity, arch.experts, rng, self.spec.zipf_exponent)
        self.probs = probs
        S, slot_layers, slot_first = self.slots()
        self.is_moe = [bool(arch.experts) and int(f) >= self.dense for f in slot_first]
        rank_kernels: dict[str, RankKernels] = {}
        self.loops = []
        for inst in self.layout.instances:
            names = [run.names[g] for g in inst.gpus]
            rks = []
            for g in inst.gpus:
                spec = run.gpus[g].spec
                if spec.name not in rank_kernels:
                    rank_kernels[spec.name] = RankKernels(self.kernels, spec, arch,
                                                          self.spec.dense_layers)
                rks.append(rank_kernels[spec.name])
            ep = None
            if arch.experts and any(self.is_moe):
                paths = paths_among(run.graph, names) if len(names) > 1 else {}
                run.fabric.paths.prime(paths)
                run.cm._paths.prime(paths)
                per = inst.spec.experts_per_rank or \
                    (arch.experts + inst.spec.redundant_experts) // inst.spec.ep_degree
                ep = ExpertParallel(names, run.graph, arch, probs, per, inst.spec.moe_kernels,
                                    rks, paths, self.spec.dispatch_dtype,
                                    self.spec.combine_dtype)
            if run.observed is not None and len(inst.gpus) > 1:  # its ranks step together
                run.observed.lockstep[list(inst.gpus)] = True
            # the fast engine brings a loop of its own (simulator.engine.fast_instances)
            loop = getattr(run, "instance_loop", None) or InstanceLoop
            self.loops.append(loop(self, inst, rks, ep))
        if self.layout.disaggregated:
            t = self.spec.transfer
            self.handoff = Handoff(run, self.layout.gpus_of("prefill"),
                                   TransferEngine(run.env, run.fabric, t.bandwidth,
                                                  t.message_overhead_time),
                                   t.layerwise, run.slot_layers_list)

    def start(self) -> None:
        """Start every instance's loop (and send arrivals to the prefill pool, if any)."""
        run = self.run
        if self.handoff is not None:
            run.req.entry.deliver = self.handoff.deliver
        elif self.spec.external_prefill:
            run.req.entry.deliver = self._deliver_prefilled
        for loop in self.loops:
            run.env.process(loop.loop())

    def _deliver_prefilled(self, r: int) -> None:
        """Request ``r`` arrives with its prompt's KV on its decode rank (``external_prefill``):
        its new blocks are placed there as if a prefill cluster had sent them, so the rank
        admits it without computing anything and its first token comes with that step."""
        req = self.run.req
        home = req.choose_home(r)
        idx = req.context(r)
        req.ctx_idx[r] = idx
        req.reuse_plan(r, idx)  # the prompt's prefix hashes
        req.place_computed(home, r)
        req.home[r] = home
        req.queue[home].append(r)
        w = req.wake[home]
        if w is not None and not w.triggered:
            w.succeed()

    # -- results -------------------------------------------------------------------------

    def extras(self) -> dict:
        """What a run's result carries for the deployment: the layout, the ``moe`` and
        ``kv_transfers`` records, and the decode pool's GPU count."""
        moe = pd.DataFrame(self.moe_rows, columns=list(MOE_COLUMNS))
        transfers = pd.DataFrame(self.handoff.records if self.handoff else [],
                                 columns=list(TRANSFER_COLUMNS))
        return {"deployment": self.layout.as_dict(), "moe": moe, "kv_transfers": transfers,
                "decode_gpus": len(self.homes)}

    def summary(self) -> dict:
        """Headline figures of the deployment: the MoE layers' closed-form error (relative, over
        the exchange phases), the transfers' times (first post to last arrival) and waits (the
        prompt's end to the last arrival: the transfer's share of TTFT) [s]."""
        out: dict = {"decode_gpus": len(self.homes)}
        rows = self.moe_rows
        if rows:
            m = np.array([r[12:20] for r in rows], float)
            sim, cf = m[:, :4].sum(axis=1), m[:, 4:].sum(axis=1)
            err = np.abs(sim - cf) / np.where(cf > 0, cf, np.nan)
            err = err[np.isfinite(err)]
            out["moe_layers"] = len(rows)
            out["moe_closed_form_error_p50"] = float(np.quantile(err, 0.5)) if len(err) else 0.0
            out["moe_closed_form_error_p99"] = float(np.quantile(err, 0.99)) if len(err) else 0.0
            out["moe_time_mean"] = float(sim.mean())
        if self.handoff is not None and self.handoff.records:
            t = np.array([r[8] for r in self.handoff.records], float)
            out["kv_transfers"] = len(t)
            out["kv_transfer_time_p50"] = float(np.quantile(t, 0.5))
            out["kv_transfer_time_p99"] = float(np.quantile(t, 0.99))
            # what the transfer adds to TTFT: from the prompt's end to the last KV arrived
            wait = np.array([r[7] - r[6] for r in self.handoff.records], float)
            out["kv_transfer_wait_p50"] = float(np.quantile(wait, 0.5))
            out["kv_transfer_wait_p99"] = float(np.quantile(wait, 0.99))
        return out


class InstanceLoop:
    """The step loop of one instance (see the module docstring)."""

    def __init__(self, owner: Deployed, inst, rank_kernels: list[RankKernels],
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
                for r in plan.decode:
                    req.gen[r] += 1
                    req.grow_context(g, r)
                for r in plan.prompt_done:
                    if self.prefill:
                        computed = min(int(req.prefilled[r]) * req.bt, int(req.inp[r]))
                        self.d.handoff.prefilled(g, r, computed)
                    else:
                        req.prompt_done(g, r)
                for r in [r for r in req.sched[g].running if req.gen[r] >= req.out[r]]:
                    req.retire(g, r)
                if plan or plan.prompt_done:
                    run.iters.append((g, iteration, started, env.now, len(plan.decode),
                                      work[i], len(plan.decode), plan.prefill_tokens,
                                      len(plan.preempted)))
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
        procs = [env.process(self._lane(lane, parts, iteration))
                 for lane, parts in enumerate(lanes) if any(p["tokens"] for p in parts)]
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
                if run.policy.colocated:
                    local = vk
                    groups: list[list] = [[] for _ in range(run.S)]
                else:
                    local, groups = run.steps.locate(g, dk, vk)
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

    def _lane(self, lane: int, parts: list[dict], iteration: int):
        """One micro-batch of every rank through every slot."""
        run = self.run
        env = run.env
        d = self.d
        for s in range(run.S):
            t0 = env.now
            moe = d.is_moe[s]
            layers = run.slot_layers_list[s]
            ready = []
            for p in parts:
                if p["tokens"]:
                    ready.append(self._attend(p, s, moe, iteration))
            if ready:
                yield env.all_of(ready)
            if moe and self.ep is not None:
                yield from self._moe(lane, parts, s, layers, iteration)
            post = self.prefill and d.handoff is not None
            if post:  # the slot's first layers' KV (all but the last of a folded slot)
                for p in parts:
                    if p["chunks"]:
                        d.handoff.computed(p["gpu"], p["chunks"], s, max(layers - 1, 1))
            end = env.now
            if layers > 1 and end > t0:
                yield env.timeout((end - t0) * (layers - 1))
            if post and layers > 1:  # the last layer's, when it ends
                for p in parts:
                    if p["chunks"]:
                        d.handoff.computed(p["gpu"], p["chunks"], s, 1)

    def _attend(self, p: dict, s: int, moe: bool, iteration: int):
        """Rank ``p``'s attention of slot ``s`` (home blocks, rounds, chunks) and the layer's
        projections (with a dense slot's FFN): an event at the projections' end."""
        run = self.run
        g, i = p["gpu"], p["rank"]
        stream = run.streams[g]
        rk = self.rk[i]
        m = p["tokens"]
        pre = rk.pre_time(m) + rk.ffn_time(m, moe) + p["chunk_attention"] + p["indexer"]
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

