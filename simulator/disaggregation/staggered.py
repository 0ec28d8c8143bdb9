"""The staggered schedule's closed form: what one disaggregated iteration should take.

Pure functions over a micro-batch's per-layer work (:class:`Plan`) and uncontended message times
(:meth:`simulator.network.Fabric.message_time`); :mod:`simulator.disaggregation.lamina` simulates
the same work and records this prediction beside every iteration.

Per folded slot of ``m`` layers, micro-batch ``k`` costs ``t_m(k)`` on its model slice and
``t_a(k, i)`` on attention GPU ``i``; its own chain is ``c(k) = t_m + send(Q) + max(t_a, send(KV))
+ return + (m − 1)·round-trip latency`` (with ``early_q``; else ``send(Q + KV) + t_a``), where a
send's size is the busiest NIC's bytes (one sender or one receiver). Micro-batch ``j``'s slot
takes ``max(max_i Σ_k t_a(k, i), Σ_k t_m(k) / (n − 1), c(j))`` — attention pool, model slices, or
its own chain — and its iteration the sum over slots. For ``n`` equal micro-batches on an ideal
network this is Lamina's ``L · max(n·t_a, n·t_m/(n − 1), t_m + t_a)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def layer_bytes(arch) -> tuple[float, float, float]:
    """Per token per layer [B]: (query part, new K + V, returned output) — Lamina's
    ``(2 + 2/G)·e·d`` out as ``2·e·d`` + ``2·e·d/G``, and ``e·d`` back."""
    send = arch.lamina_send_bytes_per_token()
    kv = 2.0 * arch.bytes_per_element * arch.hidden_size / arch.group_size
    return send - kv, kv, arch.lamina_return_bytes_per_token()


def round_robin_flows(gpus: list[str], b: int, out: bool) -> list[tuple]:
    """``max(len(gpus), b)`` flows pairing model GPUs with attention GPUs ``0..b−1``
    round-robin: ``(gpu, i, share)`` (``out``) or ``(i, gpu, share)``; each carries
    ``share = 1 / (flows of attention GPU i)`` of that GPU's bytes."""
    k = max(len(gpus), b)
    idx = [(gpus[j % len(gpus)], j % b) for j in range(k)]
    count = [sum(1 for _, i in idx if i == a) for a in range(b)]
    if out:
        return [(x, i, 1.0 / count[i]) for x, i in idx]
    return [(i, x, 1.0 / count[i]) for x, i in idx]


@dataclass
class Plan:
    """One micro-batch iteration's per-layer work, fixed at the iteration's start."""

    model_layer: float  # model-slice time per layer [s]
    prefill_time: float  # prefill part of it, all layers [s]
    t_att: np.ndarray  # attention time per layer per attention GPU [s]
    batch: np.ndarray  # decoding requests per attention GPU
    q: np.ndarray  # query bytes per layer per attention GPU [B]
    kv: np.ndarray  # new K/V (+ prompts' KV under local prefill) per layer per attention GPU [B]
    ret: np.ndarray  # returned bytes per layer per attention GPU [B]
    cache: dict = field(default_factory=dict)  # slot_times results per slot kind
    allreduce_bytes: float = 0.0  # a model slice's tensor-parallel all-reduce per layer [B]


def busiest_nic(x: np.ndarray, flows: list[tuple], m: float, sender_first: bool) -> float:
    """Bytes on the busiest NIC for per-attention-GPU bytes ``x`` over ``flows`` [B]."""
    per: dict[str, float] = {}
    for a, c, f in flows:
        node, i = (a, c) if sender_first else (c, a)
        per[node] = per.get(node, 0.0) + x[i] * f
    return m * max(max(per.values(), default=0.0), x.max(initial=0.0))


def slot_times(p: Plan, m: float, out: list[tuple], back: list[tuple], att0: str,
               message_time: Callable[[str, str, float], float], early_q: bool,
               rt0: float) -> tuple[float, float, np.ndarray]:
    """``(t_m, c, t_a)`` of a slot of ``m`` layers [s]: model time, the micro-batch's own chain
    (model time included) and attention time per attention GPU."""
    def msg(src: str, dst: str, nbytes: float) -> float:
        return message_time(src, dst, nbytes) if nbytes > 0 else 0.0

    src0, nxt0 = out[0][0], back[0][1]
    t_m = m * p.model_layer
    t_a = m * p.t_att
    if early_q and p.q.sum() > 0:
        send = msg(src0, att0, busiest_nic(p.q, out, m, True))
        att = max(t_a.max(initial=0.0), msg(src0, att0, busiest_nic(p.kv, out, m, True)))
    else:
        send = msg(src0, att0, busiest_nic(p.q + p.kv, out, m, True))
        att = t_a.max(initial=0.0)
    ret = msg(att0, nxt0, busiest_nic(p.ret, back, m, False))
    extra = (m - 1.0) * rt0 if (p.q.sum() + p.kv.sum()) > 0 else 0.0
    return t_m, t_m + send + att + ret + extra, t_a


def slot_time(parts: list[tuple[float, float, np.ndarray]], own: tuple, slices: int) -> float:
    """One slot of the micro-batch whose :func:`slot_times` are ``own``, given every active
    micro-batch's ``parts``: ``max(attention pool, model slices, own chain)`` [s]."""
    att = np.sum([x[2] for x in parts], axis=0).max(initial=0.0)
    model = sum(x[0] for x in parts) / slices
    return max(float(att), model, own[1])
