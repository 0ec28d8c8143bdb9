"""An independent reference for one round's phases, from first principles.

:func:`round_phases` recomputes a round (route / fetch / local, as ``docs/costmodel.md`` writes
it) from the bytes the model's data sheet gives, the topology's links (a path found here with
networkx, its latency summed and its bottleneck taken edge by edge), the stack's overhead and
efficiency, and kernel times — *without* calling :class:`~simulator.costmodel.CostModel`, the
engine or :mod:`simulator.network.paths`. Kernel times come either from the roofline's
*coefficients* (a :class:`~simulator.gpu.kernels.KernelModel`: launch time and efficiencies,
the GPU's HBM bandwidth and peak FLOP/s; the bytes and FLOPs of each kernel are counted here, the
prefill's causal attention pair by pair) or, for any other kernel-time object (the measured
profiles), from its *operator-level* answers (``attention_time``, ``merge_time``,
``gather_time``, ``splice_time_per_layer``, ``prefill_time``): then what the oracle checks independently is the
composition — which GPU runs which kernel, over how many tokens, divided by the layers and the
reuse, and the messages.

:func:`decode_step_time` is one decode step of a lone request whose blocks are all on its home
GPU: per layer, the home's attention over its selected tokens, the DSA indexer over its context,
and the projections + FFN.

:func:`ep_rank_time` is the projections + FFN of one step of an attention data-parallel rank in
an expert-parallel instance whose every rank carries as many tokens, composed the way a
``[deployment]``'s rank is (:class:`~simulator.costmodel.rank_kernels.RankKernels`: the rank's
own tokens, the routed experts at the rows it receives) — the reference for what a GPU of a run
without a deployment is charged (:mod:`simulator.engine.stepcosts`).

Used by ``tests/test_oracle.py`` (the closed form and the engine's rounds against it, and known
answers computed by hand).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from simulator.hardware import GPUSpec, StackSpec
from simulator.hardware import gpu as gpu_spec
from simulator.hardware import stack as stack_spec
from simulator.models import Architecture

__all__ = ["OraclePhases", "Roof", "decode_step_time", "ep_rank_time", "round_phases"]

#: Bytes naming one block in a fetch request (a 64-bit id) — docs/costmodel.md.
ID_BYTES = 8.0


@dataclass(frozen=True)
class OraclePhases:
    """probe, transfer, compute, ret, merge [s] and their sum."""

    probe: float
    transfer: float
    compute: float
    ret: float
    merge: float

    @property
    def total(self) -> float:
        return self.probe + self.transfer + self.compute + self.ret + self.merge


def _path(g: nx.DiGraph, src: str, dst: str) -> list[str]:
    """The least-latency path (fewest hops among equals) through no GPU or host but the two
    endpoints (over the whole graph only where there is none such: the rule of
    :mod:`simulator.network.paths`, found here independently): must be unique for a fair check."""
    def keep(u: str, v: str) -> bool:
        return u == src or g.nodes[u].get("kind") not in ("gpu", "host")
    try:
        paths = list(nx.all_shortest_paths(nx.subgraph_view(g, filter_edge=keep), src, dst,
                                           weight="latency"))
    except nx.NetworkXNoPath:
        paths = list(nx.all_shortest_paths(g, src, dst, weight="latency"))
    fewest = min(len(p) for p in paths)
    paths = [p for p in paths if len(p) == fewest]
    if len(paths) != 1:
        raise ValueError(f"oracle: {len(paths)} equal paths {src} → {dst}; use a topology "
                         "where the path is unique")
    return paths[0]


def message(g: nx.DiGraph, stack: StackSpec, src: str, dst: str,
            nbytes: float) -> tuple[float, float]:
    """(fixed part, wire part) of a lone message [s]: overhead + Σ latency, bytes / (η · min W)."""
    if src == dst:
        return 0.0, 0.0
    p = _path(g, src, dst)
    edges = list(zip(p, p[1:], strict=False))
    inter = any(g.nodes[n].get("kind") == "nic" for n in p)
    fixed = (stack.inter_node_overhead_time if inter else stack.intra_node_overhead_time)
    fixed += sum(g.edges[e]["latency"] for e in edges)
    eff = stack.inter_node_efficiency if inter else stack.intra_node_efficiency
    wire = nbytes / (eff * min(g.edges[e]["bandwidth"] for e in edges)) if nbytes > 0 else 0.0
    return fixed, wire


class Roof:
    """Kernel times counted here from the roofline's coefficients of a ``KernelModel``."""

    def __init__(self, km) -> None:
        self.km = km

    def _t(self, spec: GPUSpec, nbytes: float, flops: float, launches: float = 1.0,
           mem: float | None = None, cmp: float | None = None) -> float:
        km = self.km
        mem = km.memory_efficiency if mem is None else mem
        cmp = km.compute_efficiency if cmp is None else cmp
        return launches * km.launch_time + max(nbytes / (spec.hbm_bandwidth * mem),
                                               flops / (spec.peak_flops * cmp))

    def attention_time(self, spec, arch: Architecture, batch, tokens, heads=None) -> float:
        if tokens <= 0 or batch <= 0:
            return 0.0
        h = arch.query_heads if heads is None else heads
        row = (arch.query_bytes_per_head + arch.return_bytes_per_head) * h
        nbytes = batch * tokens * arch.kv_bytes_per_token + batch * row
        flops = batch * tokens * arch.attention_flops_per_token * h / arch.query_heads
        cmp = self.km.sparse_compute_efficiency if arch.sparse else self.km.compute_efficiency
        return self._t(spec, nbytes, flops, cmp=cmp)

    def merge_time(self, spec, arch: Architecture, batch, partials=2, heads=None) -> float:
        h = arch.query_heads if heads is None else heads
        r = arch.return_bytes_per_head * h
        return self._t(spec, (partials + 1) * batch * r,
                       3.0 * partials * batch * r / arch.bytes_per_element)

    def gather_time(self, spec, nbytes) -> float:
        if nbytes <= 0:
            return 0.0
        return self._t(spec, 2.0 * nbytes, 0.0, mem=self.km.copy_efficiency)

    def splice_time_per_layer(self, arch: Architecture, chunks) -> float:
        return chunks * self.km.splice_time / arch.layers

    def prefill_time(self, spec, arch: Architecture, tokens, sequences=1.0, gpus=1) -> float:
        if tokens <= 0 or sequences <= 0:
            return 0.0
        n = int(tokens)
        assert n == tokens, "the oracle counts whole tokens"
        i = np.arange(1, n + 1, dtype=np.float64)  # token i attends min(i, top-k) tokens
        pairs = float(np.minimum(i, arch.topk_tokens or n).sum())
        weights = min(arch.weight_bytes, sequences * n * arch.active_weight_bytes)
        nbytes = weights + sequences * n * arch.kv_bytes_per_token * arch.layers
        flops = sequences * (n * arch.non_attention_flops_per_token
                             + arch.layers * arch.attention_flops_per_token * pairs)
        return self._t(spec, nbytes / gpus, flops / gpus, launches=arch.layers)

    def non_attention_time(self, spec, arch: Architecture, batch, gpus=1, logits=None,
                           decode_rows=None) -> float:
        weights = min(arch.weight_bytes, batch * arch.active_weight_bytes)
        flops = batch * arch.non_attention_flops_per_token
        return self._t(spec, weights / gpus, flops / gpus, launches=arch.layers)

    def indexer_time(self, spec, arch: Architecture, batch, context_tokens) -> float:
        if not (arch.sparse and arch.indexer_heads) or context_tokens <= 0:
            return 0.0
        h, d, e = arch.indexer_heads, arch.indexer_head_dim, arch.bytes_per_element
        return self._t(spec, context_tokens * d * e + batch * h * d * e,
                       2.0 * batch * context_tokens * h * d)


def _kernels(kernels):
    """A roofline's coefficients (a ``KernelModel``: it has efficiencies) are counted here;
    any other kernel-time object answers per operator."""
    return Roof(kernels) if hasattr(kernels, "memory_efficiency") else kernels


def round_phases(option: str, g: nx.DiGraph, arch: Architecture, kernels, src: str, dst: str,
                 blocks: float, batch: float = 1, *, stack: str | StackSpec = "ideal",
                 block_tokens: int = 64, reuse: float = 1.0, layout: str | None = None,
                 instance_gpus: int = 8, default_gpu: str = "H100") -> OraclePhases:
    """One round of ``option`` between home ``src`` and owner ``dst`` (docs/costmodel.md)."""
    st = stack_spec(stack)
    k = _kernels(kernels)
    home = gpu_spec(g.nodes[src].get("gpu", default_gpu))
    owner = gpu_spec(g.nodes[dst].get("gpu", default_gpu))
    n = blocks * block_tokens
    merge = k.merge_time(home, arch, batch, 2)
    if option == "route":
        fixed, wire = message(g, st, src, dst, batch * arch.query_bytes())
        rf, rw = message(g, st, dst, src, batch * arch.return_bytes())
        return OraclePhases(fixed, wire, k.attention_time(owner, arch, batch, n), rf + rw, merge)
    if option == "fetch":
        if blocks == 0:
            return OraclePhases(0.0, 0.0, 0.0, 0.0, merge)
        kv = batch * n * arch.kv_bytes_per_token
        probe = sum(message(g, st, src, dst, ID_BYTES * blocks * batch)) / reuse
        transfer = sum(message(g, st, dst, src, kv)) / reuse
        layout = layout or ("scattered" if arch.sparse else "contiguous")
        if layout == "scattered":
            install = k.gather_time(home, kv)
        else:
            install = k.splice_time_per_layer(arch, batch)
        compute = k.attention_time(home, arch, batch, n) + install / reuse
        return OraclePhases(probe, transfer, compute, 0.0, merge)
    if option == "local":
        # the home's share of its instance's prefill, every one of the instance_gpus GPUs
        # recomputing B sequences of n tokens
        recompute = k.prefill_time(home, arch, n, batch * instance_gpus,
                                   gpus=instance_gpus) / arch.layers
        return OraclePhases(0.0, 0.0, recompute / reuse + k.attention_time(home, arch, batch, n),
                            0.0, merge)
    raise ValueError(f"option {option!r}")


def decode_step_time(arch: Architecture, kernels, spec: GPUSpec, *, selected_tokens: float,
                     context_tokens: float, batch: int = 1, gpus: int = 1) -> float:
    """One decode step of ``batch`` requests whose selected KV is all on the home GPU [s]:
    ``layers × (attention over the selected tokens + indexer over the context + projections
    and FFN / layers)`` (no host overhead). On ``gpus`` GPUs the projections and FFN are the
    home's share of its instance's step with every GPU decoding ``batch`` requests."""
    k = _kernels(kernels)
    per_layer = (k.attention_time(spec, arch, batch, selected_tokens)
                 + k.indexer_time(spec, arch, batch, context_tokens)
                 + k.non_attention_time(spec, arch, batch * gpus, gpus=gpus) / arch.layers)
    return arch.layers * per_layer


def ep_rank_time(kernels, spec: GPUSpec, arch: Architecture, tokens: int, logits: int,
                 gpus: int, decode: int | None = None) -> float:
    """Projections + FFN, all layers, of one step of ``tokens`` tokens (``logits`` of them
    sampled, ``decode`` of them decoding — the rows of MLA's absorbed products; default all) on
    one attention data-parallel rank of an MLA mixture-of-experts instance of
    ``gpus`` GPUs whose every rank carries as many tokens: the attention-side kernels, the dense
    layers' FFN, the router, the shared experts and the combine at the rank's own count, the
    routed experts at the ``tokens · k`` rows it receives on its ``E / gpus`` experts, and the
    LM head [s]. Composed as a ``[deployment]``'s rank is, not by ``non_attention_time``."""
    from simulator.costmodel.rank_kernels import RankKernels, expert_layers
    from simulator.gpu.layers import moe_shares

    rk = RankKernels(kernels, spec, arch)
    rows, active = moe_shares(arch, tokens * gpus, gpus)  # every rank sends as many rows
    moe = expert_layers(arch)
    return (arch.layers * rk.pre_time(tokens, decode) + arch.dense_layers * rk.ffn_time(tokens, False)
            + moe * (rk.ffn_time(tokens, True) + rk.shared_time(tokens)
                     + rk.expert_time(rows, active) + rk.post_time(tokens))
            + rk.step_time(tokens, logits))
