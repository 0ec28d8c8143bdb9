"""The homogeneous baseline: vLLM-like tensor-parallel replicas, each running the whole model.

``baseline_gpus`` GPUs of one kind are cut into replicas of ``baseline_tp`` GPUs. A replica holds
all weights (``W / tp`` per GPU) and the KV of its own requests, split by KV heads over its GPUs.
A model with fewer KV heads than GPUs (MLA's one latent head) would have its KV duplicated by
tensor parallelism; the baseline uses data-parallel attention for it instead (as SGLang/vLLM's
DP-attention mode does): the replica's requests spread evenly over its GPUs, each GPU attending
its own ``⌈B / tp⌉`` over their whole KV. Free HBM after weights and the reserve bounds the batch.

The serving loop, per replica, is the engines' (:class:`~simulator.engine.scheduler.Scheduler`
over one queue for the deployment, first come first served; the replica's KV is a
:class:`~simulator.disaggregation.byte_pool.BytePool`): decodes first, then prefill chunks under the
step's token budget (with ``prefill = "local"``; otherwise prompts arrive prefilled), preemption by
recompute when KV runs out, and the per-step host overhead. A step runs every layer: attention over
each decoding request's KV (dense, or top-k for DSA models), the prefill chunks' attention, and
projections + FFN of all the step's tokens on the group's stream, then the layer's two all-reduces
(after attention and after the FFN) of ``tokens · e · d`` bytes over the group's ring on the fabric. The all-reduces are
:class:`~simulator.disaggregation.ring.Ring`'s, so an uncontended iteration takes exactly its
closed form ``Σ_layers (kernels + all-reduces)``.

**Fast mode** (``[engine] mode = "fast"``): where no two rings' messages share a directed link
(:func:`~simulator.disaggregation.homogeneous_fast.rings_unshared`, checked once), a replica's
whole step is composed at once and ends at one SimPy timeout
(:class:`~simulator.disaggregation.homogeneous_fast.ComposedSteps`): the exact loop's times
without its events. A step's kernels come from the kernel model per token count (kept) and its
attention on floats (the same bits as on arrays). When rings do share links the run stays
exact and its summary's ``engine_fallback`` says why. Held to the exact loop by
``tests/test_disaggregation_fast.py`` and ``benchmarks/bench_homogeneous.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from simulator import hardware
from simulator.disaggregation.byte_pool import BytePool
from simulator.disaggregation.homogeneous_fast import ComposedSteps, rings_unshared
from simulator.disaggregation.pools import TOO_LARGE_REPLICA, PoolRun, build_result, idle_fraction
from simulator.disaggregation.ring import Ring
from simulator.disaggregation.shards import attended_tokens, fold_layers, head_shard, split_heads
from simulator.disaggregation.spec import DisaggregationSpec
from simulator.engine.clock import run_clock
from simulator.engine.scheduler import Scheduler
from simulator.gpu.streams import Stream


def simulate_homogeneous(scenario, seed: int | None = None, *,
                         spec: DisaggregationSpec | None = None, graph=None,
                         trace: pd.DataFrame | None = None,
                         progress: Callable[[int, int], None] | None = None, arch=None,
                         fast: bool = False):
    """Simulate ``scenario`` on the homogeneous baseline; returns a
    :class:`~simulator.engine.results.Result`. Arguments as
    :func:`simulator.disaggregation.lamina.simulate_disaggregated`; ``fast``: compose whole
    steps (one event each) where that is exact — else the summary's ``engine_fallback`` says
    why not."""
    return _Homogeneous.simulate(scenario, seed, spec=spec, graph=graph, trace=trace,
                                 progress=progress, arch=arch, fast=fast)


class _Homogeneous(PoolRun):
    """One baseline run; build, ``execute`` once."""

    baseline = True

    def __init__(self, sc, spec: DisaggregationSpec, seed: int, trace: pd.DataFrame, graph,
                 progress, arch=None, fast: bool = False) -> None:
        super().__init__(sc, spec, seed, trace, graph, progress, arch)
        arch, reserve = self.arch, self.reserve
        chosen = self.gpus_of(spec.baseline_gpu, spec.baseline_gpus)
        t = spec.baseline_tp
        self.t = t
        self.groups = [chosen[i * t:(i + 1) * t] for i in range(spec.replicas)]
        self.gspec = hardware.gpu(spec.baseline_gpu)
        self.dp_attention = arch.kv_heads < t
        if self.dp_attention:  # MLA: requests spread over the group, whole KV on one GPU
            self.share = np.full(t, 1.0 / t)
            self.shards = [arch]
        else:
            heads = split_heads(arch.kv_heads, t)
            self.share = np.array(heads, float) / arch.kv_heads
            self.shards = [head_shard(arch, h) for h in sorted(set(heads))]  # the distinct
        free = self.gspec.hbm_bytes * (1.0 - reserve) - arch.weight_bytes / t
        self.free_per_gpu = free
        self.cap = float(np.min(free / self.share))  # full-request KV bytes one replica holds
        per_token = arch.kv_bytes_per_token * arch.layers
        self.pools = [BytePool(self.req, per_token, self.cap, self.kv_reserve, self.prompt_work)
                      for _ in self.groups]
        # most requests per replica: the section's cap (0: KV-bound), else [serving] max_num_seqs
        limit = spec.baseline_max_batch or self.serving.max_num_seqs or 1 << 30
        self.scheds = [Scheduler(self.serving, pool, limit) for pool in self.pools]
        self.m = fold_layers(arch.layers, sc.engine.layer_groups)
        self.streams = [Stream(self.env) for _ in self.groups]
        self.rings = [Ring(self.fabric, grp, self._measured(grp)) for grp in self.groups]
        self.fast, self.fallback = self._fast_mode(fast)
        self._rest: dict[tuple[int, int | None, int], float] = {}  # see _rest_time
        # each shard's decode attention [s] as a function of (queries, context tokens)
        self.attention = [self.kernels.attention_timer(self.gspec, sh) for sh in self.shards]
        # per replica, its last step's decodes: (the list, as an array, their summed context
        # [tokens] or None) — see _layer_plan
        self._last: list[tuple[list[int], np.ndarray, int | None] | None] = [None] * spec.replicas
        self.until = math.inf if sc.engine.duration is None else float(sc.engine.duration)
        # fast mode's steps, composed at once; their ring records handed over in batches
        self.composed = ComposedSteps(self.fabric, self.rings, self.streams, self.m, arch.layers,
                                      self.until)

    def _fast_mode(self, fast: bool) -> tuple[bool, str | None]:
        """Whether this run composes whole steps (``fast``), and why not when it was asked to."""
        if not fast:
            return False, None
        if not rings_unshared(self.fabric, self.rings):
            return False, ("tensor-parallel rings share fabric links; their all-reduces need "
                           "the Fabric's sharing")
        return True, None

    def _measured(self, group: list[str]):
        """One all-reduce's measured time over ``group`` [s] as a function of its bytes."""
        kind = Ring.fabric_of(self.graph, group)
        return lambda nbytes: self.kernels.allreduce_time(self.gspec, nbytes, len(group), kind)

    def _layer_plan(self, g: int, sched, plan) -> tuple[float, float, float, np.ndarray, bool]:
        """(kernel time per layer, whole-prompt prefill time all layers, all-reduce bytes per
        layer, the decodes as an array, whether they are replica ``g``'s last step's) of one
        step: decodes' attention, chunks' attention, projections + FFN. The same decodes as the
        last step's (the usual step) are each one token further: their array is the last
        step's, their summed context (dense attention) the last sum + ``B``."""
        arch, km, r, t = self.arch, self.kernels, self.req, self.t
        B = len(plan.decode)
        last = self._last[g]
        same = last is not None and last[0] == plan.decode
        dec = last[1] if same else np.asarray(plan.decode, np.int64)
        C = plan.prefill_tokens
        pre = 0.0
        samples = B + len(plan.prompt_done)  # rows the LM head computes
        if self.serving.chunked_prefill:
            k = self._rest_time(B + C, samples, B)
            if plan.chunks:
                k += sum(km.prefill_attention_time(self.gspec, arch, c, self.cached(sched, x, c),
                                                   gpus=t) for x, c in plan.chunks) / arch.layers
        else:
            k = self._rest_time(B, None, B)
            pre = float(sum(km.prefill_time(self.gspec, arch, c, 1.0, gpus=t)
                            for _, c in plan.chunks))
        summed = None
        if B:
            if arch.sparse:
                context = r.inp[dec] + r.gen[dec]
                ctx = attended_tokens(arch, context).mean()
            else:  # the mean numpy takes of these integers (their sum is exact), exactly
                summed = last[2] + B if same else int((r.inp[dec] + r.gen[dec]).sum())
                ctx = summed / B
            per_gpu = -(-B // t) if self.dp_attention else B
            timers = self.attention
            k += timers[0](per_gpu, ctx) if len(timers) == 1 else \
                max(timer(per_gpu, ctx) for timer in timers)
            if self.indexer:  # DSA: the indexer scores each query's whole context
                k += km.indexer_time(self.gspec, arch, per_gpu, context.mean())
        self._last[g] = (plan.decode, dec, summed)
        return k, pre, float(B + C) * arch.bytes_per_element * arch.hidden_size, dec, same

    def _rest_time(self, tokens: int, logits: int | None, decode: int) -> float:
        """Projections, FFN and norms of a step of ``tokens`` tokens with ``logits`` LM-head
        rows and ``decode`` decoding ones, per layer [s]: the kernel model's answer, kept per
        shape (a pure function of it; a run sees a few hundred shapes over thousands of
        steps)."""
        key = (tokens, logits, decode)
        got = self._rest.get(key)
        if got is None:
            arch = self.arch
            got = self.kernels.non_attention_time(self.gspec, arch, tokens, gpus=self.t,
                                                  logits=logits, decode_rows=decode) / arch.layers
            if len(self._rest) > 1 << 16:
                self._rest.clear()
            self._rest[key] = got
        return got

    def _replica(self, g: int):
        env, r = self.env, self.req
        sched = self.scheds[g]
        overhead = self.serving.overhead_time()
        compose = self.composed.step
        iteration = 0
        fewest = None  # the fewest tokens a running request has left, when all decode
        while True:
            plan = sched.step(self.queue)
            for y in plan.rejected:
                r.finish(y, env.now, TOO_LARGE_REPLICA)
            for y in plan.admitted:
                r.home[y] = self.groups[g][0]
                if np.isnan(r.admitted_at[y]):
                    r.admitted_at[y] = env.now
            if plan.preempted:
                self._wake()
            if not plan and not plan.prompt_done:
                if plan.preempted:  # it preempted and so admitted none (the scheduler's rule):
                    continue  # the next step admits
                ev = env.event()
                self.waiters.append(ev)
                yield ev
                continue
            started = env.now
            if self.fast:
                k, pre, x, dec, same = self._layer_plan(g, sched, plan)
                end, cf = compose(g, started + overhead, k, pre, x)
                yield env.timeout(end - started)
                cf += overhead
            else:
                if overhead:
                    yield env.timeout(overhead)
                k, pre, x, dec, same = self._layer_plan(g, sched, plan)
                cf = overhead
                for m in self.m.tolist():
                    kernel = m * k + pre * m / self.arch.layers
                    yield self.streams[g].run(kernel)
                    cf += kernel
                    yield from self.rings[g].run(env, m, x)
                    cf += self.rings[g].time(m, x)
            recomputed = 0  # prompts recomputed after a preemption: their next token
            for y in plan.prompt_done:
                if r.gen[y] == 0:
                    r.first_at[y] = env.now
                else:
                    recomputed += 1
                r.gen[y] += 1
            B = len(plan.decode)
            if B:  # distinct requests: one fancy-indexed addition
                r.gen[dec] += 1
            # usually every running request decoded: the same array, in the same order — and
            # when they are the last step's, the fewest tokens any has left is one fewer
            if plan.decode == sched.running:
                running = dec
                fewest = fewest - 1 if same and fewest is not None else \
                    int((r.out[dec] - r.gen[dec]).min()) if B else None
            else:
                running, fewest = np.array(sched.running, np.int64), None
            done = [] if fewest is not None and fewest > 0 else \
                running[r.gen[running] >= r.out[running]].tolist()
            for y in done:
                sched.finish(y)
                r.finish(y, env.now)
            if done:
                self._wake()
            self.iters.append((g, iteration, started, env.now, B, pre, B + recomputed,
                               plan.prefill_tokens,
                               len(plan.preempted), cf))
            iteration += 1

    def execute(self):
        wall0 = time.perf_counter()
        env = self.env
        env.process(self._arrivals())
        for g in range(len(self.groups)):
            env.process(self._replica(g))
        duration = self.sc.engine.duration
        run_clock(env, duration, self.progress)
        self.composed.flush()
        wall = time.perf_counter() - wall0
        first = min((row[2] for row in self.iters), default=0.0)
        span = env.now - first
        t = self.t
        busy = [s.busy_time for s in self.streams for _ in range(t)]
        now = env.now
        gpus = pd.DataFrame({
            "gpu": [x for grp in self.groups for x in grp],
            "pool": [f"replica{g}" for g in range(len(self.groups)) for _ in range(t)],
            "busy_time": busy,
            "utilization": [b / now if now > 0 else 0.0 for b in busy],
            "kernels": [s.kernels_run for s in self.streams for _ in range(t)],
            "kv_capacity_bytes": [self.free_per_gpu] * (t * len(self.groups)),
            "kv_peak_bytes": [float(self.pools[g].peak * sh) for g in range(len(self.groups))
                              for sh in self.share],
        })
        idle = idle_fraction(busy, span)
        sp = self.spec
        extra = {
            "model_pool_idle": idle,  # the same GPUs run the model and attention
            "attention_pool_idle": idle,
            "replicas": sp.replicas,
            "baseline_tp": t,
            "kv_capacity_bytes": float(self.cap * len(self.groups)),
            "kv_peak_bytes": float(sum(p.peak for p in self.pools)),
            "preemptions": int(sum(x.preemptions for x in self.scheds)),
            "layer_slots": len(self.m),
        }
        names = [f"replica{g}" for g in range(len(self.groups))]
        res = build_result("homogeneous", self.seed, env, self.fabric, self.req,
                            self.sc.placement.block_tokens, self.iters, names, gpus,
                            sp.baseline_cost_per_hour(), wall, extra,
                            concurrency=self.sc.workload.concurrency)
        if self.fallback is not None:
            res.summary["engine_fallback"] = self.fallback
        return res
