"""Lamina-style model-attention disaggregation: the two-pool decode loop with staggered pipelining.

Pools. ``a`` model-worker GPUs (compute-optimized, e.g. H100) hold the weights and run
projections + FFN; ``b`` attention-worker GPUs (memory-optimized, cheaper, e.g. H20) hold the KV
cache and run decode attention. The model pool is cut into ``n − 1`` *slices* of ``a / (n − 1)``
GPUs, each a full model replica (as Lamina deploys them; a slice of several GPUs holds it
tensor-parallel, with two all-reduces per layer over its ring); the rotation sends layer ``l`` of a
micro-batch to slice ``l mod (n − 1)``. A layer's model work is cut
at attention (the post-attention half of layer ``l − 1`` with the pre-attention half of layer
``l``), so each attention output goes straight to the slice of the next layer.

Per layer and micro-batch of ``B`` tokens (``e`` bytes per element, ``d`` hidden size, ``G``
query heads per KV head), as REFERENCE.md gives Lamina's traffic:

- the slice computes its segment (``non_attention_time / L`` for ``B`` tokens, plus the prefill
  of newly admitted requests) on its FIFO stream;
- it sends ``(2 + 2/G)·e·d`` bytes per token to the attention pool: the query part ``2·e·d``
  first, then the new token's K and V ``2·e·d/G`` (``early_q``: attention starts when the query
  lands; K and V follow on the same connection) — prompts admitted this iteration also ship their
  KV; split by KV heads over all attention GPUs, or by requests (``attention_split``);
- each attention GPU runs attention over its share of every request's KV (dense, or the top-k
  selection of DSA models) and returns ``e·d`` bytes per token to the next slice.

For MLA (DeepSeek-V3.2) the single latent KV head cannot be split by heads, so ``auto`` splits by
requests (data-parallel attention): the "query part" stands for the hidden state the attention
side needs to form its absorbed query rows, "K and V" for the new token's latent row, and the
output ``e·d`` for the attention output projected back to the hidden size — Lamina's formula with
``G`` = query heads (``kv_heads = 1``), from :meth:`Architecture.lamina_send_bytes_per_token`.

Staggered pipelining. ``n`` micro-batch processes loop over layers; the slices and the attention
GPUs serve them first come, first served, so the micro-batches fall into a rotation in which a slice
works on one while the attention pool works on another. The closed form the run is held against
(:mod:`simulator.disaggregation.staggered`): with per-layer model time ``t_m(k)`` and attention time
``t_a(k)`` of micro-batch ``k`` and its own round trip ``c(k) = t_m + send + t_a + return``, one
layer of micro-batch ``j`` takes

    T_layer(j) = max( Σ_k t_a(k),  Σ_k t_m(k) / (n − 1),  c(j) )

(attention pool busy, model slices busy, or its own chain the bottleneck; for ``n`` equal
micro-batches this is Lamina's ``max(n·t_a, n·t_m/(n − 1), t_m + t_a + round trip)``); an
iteration is ``Σ_layers T_layer``. It is exact in the periodic regime of equal micro-batches and
approximate while admissions make them unequal (the run reports its error). The idle time
left on each pool is reported. Each iteration's per-layer work (the plan both loops run), its
flows and this prediction come from the run's :class:`~simulator.disaggregation.lamina_plan.
IterationPlanner` (``run.planner``); this module is the loop that runs them.

The serving loop is the engines' (:class:`~simulator.engine.scheduler.Scheduler`, one per
micro-batch, over one queue): at the start of its iteration a micro-batch admits queued requests
while it is below its even share of the requests in the system and the attention pool
(:class:`~simulator.disaggregation.attention_pool.AttentionPool`) holds their KV; decodes
first, prefill chunks under the token budget (``prefill = "local"``), preemption by recompute
when the pool runs out, the per-step host overhead before the iteration's first layer; a
request that cannot fit even alone is reported, not run.

**Fast mode** (``[engine] mode = "fast"``; :mod:`~simulator.disaggregation.lamina_fast`): the
same loop with each layer slot composed at once — slice and attention streams as work calendars,
each stage's flows in closed form when alone on their links and max-min shared with the other
micro-batches' flows in flight when not — composed as far ahead as no other event intervenes (a
micro-batch alone: one timeout per iteration; interleaved ones: one per slot, in the order they
reach it, so slices serve them as here). Alone it is this loop to float rounding; loaded, within
the engine contract (``tests/test_lamina_fast.py``, ``benchmarks/bench_lamina.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from simulator import hardware
from simulator.disaggregation.attention_pool import AttentionPool
from simulator.disaggregation.lamina_fast import SlotComposer
from simulator.disaggregation.lamina_fast import iteration as fast_iteration
from simulator.disaggregation.lamina_plan import IterationPlanner
from simulator.disaggregation.pools import TOO_LARGE, PoolRun, build_result, idle_fraction
from simulator.disaggregation.ring import Ring
from simulator.disaggregation.shards import fold_layers, head_shard, split_heads
from simulator.disaggregation.spec import DisaggregationSpec
from simulator.disaggregation.staggered import Plan
from simulator.engine.clock import run_clock
from simulator.engine.scheduler import Scheduler
from simulator.errors import UserError
from simulator.gpu.streams import Stream


def simulate_disaggregated(scenario, seed: int | None = None, *,
                           spec: DisaggregationSpec | None = None, graph=None,
                           trace: pd.DataFrame | None = None,
                           progress: Callable[[int, int], None] | None = None, arch=None,
                           fast: bool = False):
    """Simulate ``scenario`` on Lamina-style pools; returns a
    :class:`~simulator.engine.results.Result`.

    Args:
        scenario: a :class:`~simulator.scenario.Scenario` (model, workload, topology, stack,
            ``engine.layer_groups`` / ``max_requests`` / ``duration``, placement reserve).
        seed: overrides ``scenario.seed`` (the loop itself draws nothing at random).
        spec: the ``[disaggregation]`` section (default: the scenario's, else defaults).
        graph: a topology graph to use instead of building the scenario's.
        trace: a preloaded request trace (as :func:`simulator.engine.trace.load_trace` returns).
        progress: called as ``progress(finished_requests, total_requests)``; with an
            ``[engine] duration``, ``progress(simulated_time, duration)`` [s] instead
            (:mod:`simulator.engine.clock`).
        arch: an :class:`~simulator.models.Architecture` to serve instead of the scenario's.
        fast: compose layer slots on work calendars (:mod:`~simulator.disaggregation.lamina_fast`)
            instead of simulating their flows and kernels as events.
    """
    return _Lamina.simulate(scenario, seed, spec=spec, graph=graph, trace=trace,
                            progress=progress, arch=arch, fast=fast)


class _Lamina(PoolRun):
    """One disaggregated run; build, ``execute`` once."""

    def __init__(self, sc, spec: DisaggregationSpec, seed: int, trace: pd.DataFrame, graph,
                 progress, arch=None, fast: bool = False) -> None:
        super().__init__(sc, spec, seed, trace, graph, progress, arch)
        arch, reserve = self.arch, self.reserve
        self.model_names = self.gpus_of(spec.model_gpu, spec.model_gpus)
        self.att_names = self.gpus_of(spec.attention_gpu, spec.attention_gpus,
                                      taken=self.model_names)
        self.mspec = hardware.gpu(spec.model_gpu)
        self.aspec = hardware.gpu(spec.attention_gpu)
        K, s = spec.slices, spec.slice_gpus
        self.K = K
        self.slices = [self.model_names[k * s:(k + 1) * s] for k in range(K)]
        # a slice of several GPUs holds its layers tensor-parallel (dense models): two
        # all-reduces per layer over its ring, held on the slice's stream (a slice's ring stays
        # in its node, apart from the attention traffic); MLA/MoE slices are expert-parallel,
        # whose all-to-all is not modelled here (docs/disaggregation.md)
        self.tp_slices = arch.attention in ("gqa", "mha") and s > 1
        self.slice_rings = [Ring(self.fabric, sl, self._measured(sl)) for sl in self.slices]
        self.slice_streams = [Stream(self.env) for _ in range(K)]
        b = spec.attention_gpus
        self.att_streams = [Stream(self.env) for _ in range(b)]
        self.m = fold_layers(arch.layers, sc.engine.layer_groups, K)
        self.split = spec.split_for(arch.kv_heads)
        if self.split == "heads":
            if arch.kv_heads < b:
                raise UserError(
                    f"{sc.source}: field 'disaggregation.attention_split': {arch.name!r} has "
                    f"{arch.kv_heads} KV heads, fewer than attention_gpus = {b}; split by "
                    "'requests' or use fewer attention GPUs")
            heads = split_heads(arch.kv_heads, b)
            self.share = np.array(heads, float) / arch.kv_heads
            self.shards = [head_shard(arch, h) for h in heads]
        else:
            self.share = np.ones(b)
            self.shards = [arch] * b
        self.cap = np.full(b, self.aspec.hbm_bytes * (1.0 - reserve))
        self.pool = AttentionPool(self.req, arch.kv_bytes_per_token * arch.layers, self.cap,
                                  self.kv_reserve, self.prompt_work, self.share,
                                  self.split == "heads")
        self.att_of = self.pool.att_of
        n = spec.micro_batches
        seqs = self.serving.max_num_seqs or 1 << 30
        self.scheds = [Scheduler(self.serving, self.pool, seqs) for _ in range(n)]
        self.plans: list[Plan | None] = [None] * n
        src, dst = self.model_names[0], self.att_names[0]
        self.rt0 = self.fabric.message_time(src, dst, 0) + self.fabric.message_time(dst, src, 0)
        self.planner = IterationPlanner(self)  # each iteration's plan and its closed form
        self.fast = fast
        if fast:  # the streams become calendars (lamina_fast), the flows timed there
            until = math.inf if sc.engine.duration is None else float(sc.engine.duration)
            self.composer = SlotComposer(self.env, self.fabric, K, self.att_names, n,
                                         spec.early_q, self.rt0, until)
            self.slice_streams = self.composer.slice_streams
            self.att_streams = self.composer.att_streams
            self.m_float = self.m.astype(float).tolist()

    def _measured(self, group: list[str]):
        """One all-reduce's measured time over ``group`` [s] as a function of its bytes."""
        kind = Ring.fabric_of(self.graph, group)
        return lambda nbytes: self.kernels.allreduce_time(self.mspec, nbytes, len(group), kind)

    # -- requests --------------------------------------------------------------------------

    def _seq_limit(self, j: int) -> int:
        """Requests micro-batch ``j`` may run this iteration: its even share of the requests in
        the system, and what ``max_batch`` (all micro-batches) leaves."""
        total = sum(len(x) for x in self.scheds)
        mine = len(self.scheds[j])
        limit = math.ceil((total + len(self.queue)) / self.spec.micro_batches)
        if self.spec.max_batch:
            limit = min(limit, mine + max(0, self.spec.max_batch - total))
        return limit

    # -- the micro-batch loop ------------------------------------------------------------

    def _micro(self, j: int):
        env, r = self.env, self.req
        sched = self.scheds[j]
        overhead = self.serving.overhead_time()
        iteration = 0
        while True:
            step = sched.step(self.queue, self._seq_limit(j))
            for x in step.rejected:
                r.finish(x, env.now, TOO_LARGE)
            for x in step.admitted:
                w = int(self.att_of[x])
                r.home[x] = "attention pool" if w < 0 else self.att_names[w]
                if np.isnan(r.admitted_at[x]):
                    r.admitted_at[x] = env.now
            if step.preempted:
                self._wake()
            if not step and not step.prompt_done:
                if step.preempted:  # it preempted and so admitted none (the scheduler's rule):
                    # its only requests, when the other micro-batches hold the pool; the step
                    # runs nothing but is recorded (no length, no tokens), or its preemptions
                    # would be in no row when this micro-batch sleeps next
                    self.iters.append((j, iteration, env.now, env.now, 0, 0.0, 0, 0,
                                       sched.take_preempted(), 0.0))
                    iteration += 1
                    continue  # the next step admits
                self.plans[j] = None
                ev = env.event()
                self.waiters.append(ev)
                yield ev
                continue
            started = env.now
            plan = self.planner.plan(sched, step)
            self.plans[j] = plan
            cf = self.planner.predict(j) + overhead
            if self.fast:
                yield from fast_iteration(self, j, plan, overhead)
            else:
                if overhead:
                    yield env.timeout(overhead)
                for s in range(len(self.m)):
                    yield from self._slot(s, plan)
            recomputed = 0  # prompts recomputed after a preemption: their next token
            for x in step.prompt_done:
                if r.gen[x] == 0:
                    r.first_at[x] = env.now
                else:
                    recomputed += 1
                r.gen[x] += 1
            for x in step.decode:
                r.gen[x] += 1
            done = [x for x in sched.running if r.gen[x] >= r.out[x]]
            for x in done:
                sched.finish(x)
                r.finish(x, env.now)
            if done:
                self._wake()
            B = len(step.decode)
            # the step's preemptions (all since the last record: each record takes its own)
            self.iters.append((j, iteration, started, env.now, B, plan.prefill_time,
                               B + recomputed,
                               step.prefill_tokens, sched.take_preempted(), cf))
            iteration += 1

    def _slot(self, s: int, p: Plan):
        """One (folded) layer of one micro-batch: slice segment, Q (then K/V), attention,
        outputs back to the next slice. The attention GPUs work in lockstep on their shares."""
        env, fab = self.env, self.fabric
        m = float(self.m[s])
        out, back = self.planner.pairs(s)
        names = self.att_names
        # the slice's all-reduces run on its GPUs (NCCL kernels) after its segment, at their
        # uncontended ring time: while they run the slice serves no other micro-batch
        ring = self.slice_rings[s % self.K].time(m, p.allreduce_bytes)
        yield self.slice_streams[s % self.K].run(m * p.model_layer + ring)
        early = self.spec.early_q and p.q.sum() > 0
        first = p.q if early else p.q + p.kv
        second = p.kv if early else np.zeros_like(p.kv)
        evs = [fab.transfer(x, names[i], m * first[i] * f) for x, i, f in out if first[i] > 0]
        if not evs and not second.any():
            return
        if evs:
            yield env.all_of(evs)
        evs = [self.att_streams[i].run(m * p.t_att[i]) for i in range(len(names)) if p.batch[i]]
        evs += [fab.transfer(x, names[i], m * second[i] * f) for x, i, f in out if second[i] > 0]
        if evs:
            yield env.all_of(evs)
        evs = [fab.transfer(names[i], y, m * p.ret[i] * f) for i, y, f in back if p.ret[i] > 0]
        if evs:
            yield env.all_of(evs)
        if m > 1:
            yield env.timeout((m - 1.0) * self.rt0)

    # -- driving and collecting -------------------------------------------------------------

    def execute(self):
        wall0 = time.perf_counter()
        env = self.env
        env.process(self._arrivals())
        for j in range(self.spec.micro_batches):
            env.process(self._micro(j))
        duration = self.sc.engine.duration
        run_clock(env, duration, self.progress)
        if self.fast:
            self.composer.links.close()
        wall = time.perf_counter() - wall0
        first = min((row[2] for row in self.iters), default=0.0)
        span = env.now - first
        s = self.spec.slice_gpus
        model_busy = [self.slice_streams[k].busy_time for k in range(self.K) for _ in range(s)]
        att_busy = [x.busy_time for x in self.att_streams]
        now = env.now
        gpus = pd.DataFrame({
            "gpu": self.model_names + self.att_names,
            "pool": ["model"] * len(self.model_names) + ["attention"] * len(self.att_names),
            "busy_time": model_busy + att_busy,
            "utilization": [x / now if now > 0 else 0.0 for x in model_busy + att_busy],
            "kernels": [self.slice_streams[k].kernels_run for k in range(self.K)
                        for _ in range(s)] + [x.kernels_run for x in self.att_streams],
            "kv_capacity_bytes": [0.0] * len(self.model_names) + self.cap.tolist(),
            "kv_peak_bytes": [0.0] * len(self.model_names) + self.pool.peak.tolist(),
        })
        sp = self.spec
        extra = {
            "model_pool_idle": idle_fraction(model_busy, span),
            "attention_pool_idle": idle_fraction(att_busy, span),
            "dop": f"({sp.model_gpus}, {sp.attention_gpus})",
            "micro_batches": sp.micro_batches,
            "attention_split": self.split,
            "kv_capacity_bytes": float(self.cap.sum()),
            "kv_peak_bytes": float(self.pool.peak.sum()),
            "preemptions": int(sum(x.preemptions for x in self.scheds)),
            "layer_slots": len(self.m),
        }
        names = [f"microbatch{j}" for j in range(sp.micro_batches)]
        return build_result("disaggregated", self.seed, env, self.fabric, self.req,
                            self.sc.placement.block_tokens, self.iters, names, gpus,
                            sp.disaggregated_cost_per_hour(), wall, extra,
                            concurrency=self.sc.workload.concurrency)
