"""One Lamina iteration's work and its closed form: what a micro-batch's step costs, per layer.

:class:`IterationPlanner` is a part the Lamina run holds (``run.planner``,
:class:`simulator.disaggregation.lamina._Lamina`). At the start of a micro-batch's iteration
the loop asks it for

- the **plan** (:meth:`IterationPlanner.plan`, a :class:`~simulator.disaggregation.staggered.
  Plan` fixed for the iteration): the model slice's projections + FFN per layer over the step's
  tokens (under chunked prefill the chunks' attention too, computed on the model workers; else
  the whole prompts' prefill, spread over the layers), each attention GPU's share of the
  decodes (by KV heads, or the requests placed on it) and its attention time (plus the DSA
  indexer's pass), the bytes both ways per layer — Lamina's ``(2 + 2/G)·e·d`` per token out as
  query part and new K/V, ``e·d`` back (:func:`~simulator.disaggregation.staggered.
  layer_bytes`; the prompts prefilled in the step ship their KV with the K/V) — and a
  tensor-parallel slice's all-reduce bytes;
- the **flows** of each slot (:meth:`IterationPlanner.pairs`): slice GPUs to attention GPUs and
  attention GPUs to the next slot's slice, round-robin — which the exact loop's slots, the fast
  loop (:mod:`simulator.disaggregation.lamina_fast`) and the closed form all send;
- the **prediction** recorded beside the iteration (:meth:`IterationPlanner.predict`): the
  staggered schedule's closed form (:mod:`simulator.disaggregation.staggered`) over every active
  micro-batch's plan, each slot's uncontended times memoized in the plan per slot kind.

It reads the run's pools, kernels, requests and fabric; it draws nothing and changes nothing but
its caches.
"""

from __future__ import annotations

import numpy as np

from simulator.disaggregation.shards import attended_tokens
from simulator.disaggregation.staggered import (
    Plan,
    layer_bytes,
    round_robin_flows,
    slot_time,
    slot_times,
)


class IterationPlanner:
    """Plans and predicts a Lamina run's iterations (see the module docstring).

    Args:
        run: the :class:`~simulator.disaggregation.lamina._Lamina` whose spec, kernels,
            requests, attention pool split, slices and fabric the plans read.
    """

    def __init__(self, run) -> None:
        self.run = run
        self.q_tok, self.kv_tok, self.ret_tok = layer_bytes(run.arch)  # [B] per token per layer
        self._pair_cache: dict[int, tuple] = {}

    def plan(self, sched, step) -> Plan:
        """One iteration's per-layer work: the model slice's projections + FFN over the step's
        tokens (and the prefill chunks' attention, computed on the model workers), each attention
        GPU's share of the decodes, and the bytes both ways (prefill chunks ship their KV)."""
        run = self.run
        arch, km, r = run.arch, run.kernels, run.req
        s, b, L = run.spec.slice_gpus, run.spec.attention_gpus, arch.layers
        decoding = step.decode
        chunked = run.serving.chunked_prefill
        tokens = len(decoding) + (step.prefill_tokens if chunked else 0)
        admitted = [x for x, _ in step.chunks]
        samples = len(decoding) + len(step.prompt_done)  # rows the LM head computes
        if not chunked:  # a whole prompt's prefill_time computes its own row
            samples -= len(set(admitted) & set(step.prompt_done))
        whole = km.non_attention_time(run.mspec, arch, tokens, gpus=s, logits=samples,
                                      decode_rows=len(decoding))
        na = whole / L
        if chunked:
            pre = sum(km.prefill_attention_time(run.mspec, arch, c, run.cached(sched, x, c),
                                                gpus=s) for x, c in step.chunks)
            na += pre / L
            pre += whole - km.non_attention_time(run.mspec, arch, len(decoding), gpus=s)
        else:
            pre = float(sum(km.prefill_time(run.mspec, arch, c, 1.0, gpus=s)
                            for _, c in step.chunks))
        dec = np.asarray(decoding, np.int64)
        ctx = attended_tokens(arch, r.inp[dec] + r.gen[dec])
        prompt_kv = np.array([c for _, c in step.chunks], float) * arch.kv_bytes_per_token
        t_att, batch = np.zeros(b), np.zeros(b)
        q, kv, ret = np.zeros(b), np.zeros(b), np.zeros(b)
        for i in range(b):
            if run.split == "heads":
                mine, w, p_kv = np.ones(len(dec), bool), run.share[i], prompt_kv.sum()
            else:
                mine, w = run.att_of[dec] == i, 1.0
                p_kv = prompt_kv[run.att_of[np.asarray(admitted, np.int64)] == i].sum()
            bi = int(mine.sum())
            batch[i] = bi
            if bi:
                t_att[i] = km.attention_time(run.aspec, run.shards[i], bi, ctx[mine].mean())
                if run.indexer:  # DSA: the indexer scores each query's whole context
                    full = (r.inp[dec] + r.gen[dec])[mine].mean()
                    t_att[i] += km.indexer_time(run.aspec, run.shards[i], bi, full)
            q[i] = bi * self.q_tok * w
            kv[i] = bi * self.kv_tok * w + p_kv * w
            ret[i] = bi * self.ret_tok * w
        tp_tokens = tokens if chunked else len(decoding) + step.prefill_tokens
        ar = tp_tokens * arch.bytes_per_element * arch.hidden_size if run.tp_slices else 0.0
        return Plan(na if chunked else na + pre / L, pre, t_att, batch, q, kv, ret,
                    allreduce_bytes=ar)

    def pairs(self, s: int) -> tuple[list[tuple], list[tuple]]:
        """Flows of slot ``s``: ``(slice GPU, attention GPU, share)`` out and ``(attention GPU,
        next-slice GPU, share)`` back, ``max(s, b)`` each, round-robin (cached per slot)."""
        got = self._pair_cache.get(s)
        if got is None:
            run = self.run
            src = run.slices[s % run.K]
            nxt = run.slices[((s + 1) % len(run.m)) % run.K]
            b = len(run.att_names)
            got = (round_robin_flows(src, b, out=True), round_robin_flows(nxt, b, out=False))
            self._pair_cache[s] = got
        return got

    def times(self, p: Plan, s: int) -> tuple[float, float, np.ndarray]:
        """Plan ``p``'s :func:`~simulator.disaggregation.staggered.slot_times` in slot ``s``,
        with its slice's all-reduces: ``(t_m, c, t_a)`` [s] (cached in the plan per slot kind:
        its layers, its slice and the next slot's)."""
        run = self.run
        key = (int(run.m[s]), s % run.K, ((s + 1) % len(run.m)) % run.K)
        got = p.cache.get(key)
        if got is None:
            out, back = self.pairs(s)
            t_m, c, t_a = slot_times(p, float(run.m[s]), out, back, run.att_names[0],
                                     run.fabric.message_time, run.spec.early_q, run.rt0)
            ar = run.slice_rings[s % run.K].time(float(run.m[s]), p.allreduce_bytes)
            got = p.cache[key] = (t_m + ar, c + ar, t_a)
        return got

    def predict(self, j: int) -> float:
        """The staggered schedule's iteration time [s] of micro-batch ``j`` given every active
        micro-batch's plan (:mod:`simulator.disaggregation.staggered`)."""
        run = self.run
        plans = [p for p in run.plans if p is not None]
        return sum(slot_time([self.times(p, s) for p in plans], self.times(run.plans[j], s),
                             run.K) for s in range(len(run.m)))
