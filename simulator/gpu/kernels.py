"""The kernel-time model: a roofline per GPU kernel, with efficiencies and a launch overhead.

Kernel times (:class:`KernelModel`) follow one rule (DESIGN.md decision 4)::

    time = launch_time + max(bytes / (HBM bandwidth × memory_efficiency),
                             FLOPs / (peak FLOP/s × compute_efficiency))

applied to these kernels (``e`` bytes per element, ``H`` query heads used, ``T`` tokens attended
per query, ``B`` queries, per layer):

- **attention decode** — bytes ``B·T·kv + B·H·(q_row + r_row)`` (each query reads its own KV
  and its query row, and writes its output row + LSE), FLOPs ``B·T·f·H/heads`` where ``f`` is the
  architecture's attention FLOPs per attended token. Sparse (DSA) architectures use the sparse
  compute efficiency.
- **LSE merge** of ``P`` partial results — bytes ``(P + 1)·B·H·r_row`` (read P partials, write
  one), FLOPs ``3·P·B·H·r_row/e`` (scale, add, normalise per element); memory-bound in practice.
- **gather** of fetched scattered blocks into the paged cache — a copy: bytes ``2·n`` (read +
  write) at the *copy* efficiency, no FLOPs.
- **splice** of a contiguous fetched chunk — a fixed ``splice_time`` per chunk for all layers,
  of which a one-layer round pays ``splice_time / layers`` (assumption: the re-adaptation work
  is spread evenly over layers).
- **prefill** of ``n`` tokens for ``S`` sequences, all layers — bytes: the weights a batch
  touches (``min(weights, S·n·active weights)``, the MoE approximation) + the KV it writes; FLOPs
  ``S·(n·non-attention FLOPs + layers·f·Σ_{i=1..n} min(i, top-k))`` (causal attention, capped by
  sparse selection); one launch per layer; work split evenly over ``gpus``.
- **non-attention** (projections + FFN) of one decode iteration of ``b`` tokens, all layers —
  the same weight-touch rule and ``b·non-attention FLOPs``.

Defaults (FlashMLA README, H800 whose HBM3 peak equals H100 SXM's 3.35 TB/s and dense BF16 989
TFLOP/s): dense decode reaches ~3,000 GB/s memory-bound → memory efficiency 3000/3350; 660
TFLOP/s compute-bound → 660/989; sparse fp8 decode 410 TFLOP/s → 410/989. An H100 device-to-device
copy reaches ~3.0 TB/s counting read + write (REFERENCE.md) → copy efficiency 3.0/3.35. The launch
overhead is not published by FlashMLA: 3 µs is an assumption (``kvfabric calibrate`` fits it as
the intercept of measured kernel rows). The splice cost, ~3 ms per contiguous chunk, is from
"Move the Query, Not the Cache" (arXiv 2606.01502, abstract).

The runtime that runs these kernels is :mod:`simulator.gpu.runtime`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from simulator.errors import UserError
from simulator.hardware import LINKS, GPUSpec
from simulator.models import Architecture
from simulator.units import ms, us


class Roofline(NamedTuple):
    """The three parts of one kernel's time [s]; ``total = launch + max(memory, compute)``."""

    launch_time: float
    memory_time: float
    compute_time: float

    @property
    def total(self) -> float:
        """Kernel time [s]."""
        return self.launch_time + max(self.memory_time, self.compute_time)


@dataclass(frozen=True)
class KernelModel:
    """Roofline coefficients of the GPU kernels (dimensionless efficiencies, seconds).

    Attributes:
        launch_time: per-kernel launch + tail overhead [s] (assumed 3 µs; fit it).
        memory_efficiency: achieved / peak HBM bandwidth of decode kernels.
        compute_efficiency: achieved / peak dense FLOP/s of dense-attention and GEMM kernels.
        sparse_compute_efficiency: achieved / peak FLOP/s of sparse (DSA) attention kernels.
        copy_efficiency: achieved / peak HBM bandwidth of a device copy (read + write counted).
        splice_time: re-adapting one contiguous fetched chunk into the cache, all layers [s].
    """

    launch_time: float = us(3.0)
    memory_efficiency: float = 3000.0 / 3350.0  # FlashMLA dense decode ~3,000 GB/s on H800
    compute_efficiency: float = 660.0 / 989.0  # FlashMLA compute-bound 660 TFLOP/s on H800
    sparse_compute_efficiency: float = 410.0 / 989.0  # FlashMLA sparse fp8 decode 410 TFLOP/s
    copy_efficiency: float = 3.0 / 3.35  # H100 D2D copy ~3.0 TB/s of 3.35 TB/s
    splice_time: float = ms(3.0)  # arXiv 2606.01502 abstract: ~3 ms per contiguous chunk

    def __post_init__(self) -> None:
        if self.launch_time < 0 or self.splice_time < 0:
            raise ValueError("KernelModel: launch_time and splice_time must be >= 0")
        for field in ("memory_efficiency", "compute_efficiency", "sparse_compute_efficiency",
                      "copy_efficiency"):
            if not 0 < getattr(self, field) <= 1:
                raise ValueError(f"KernelModel: {field} must be in (0, 1]")

    # -- the roofline ------------------------------------------------------------------------

    def roofline(self, spec: GPUSpec, nbytes: float, flops: float, *, launches: float = 1.0,
                 compute_efficiency: float | None = None,
                 memory_efficiency: float | None = None) -> Roofline:
        """Parts of a kernel moving ``nbytes`` [B] and doing ``flops`` [FLOP] on ``spec``."""
        mem_eff = self.memory_efficiency if memory_efficiency is None else memory_efficiency
        cmp_eff = self.compute_efficiency if compute_efficiency is None else compute_efficiency
        return Roofline(
            launches * self.launch_time,
            nbytes / (spec.hbm_bandwidth * mem_eff),
            flops / (spec.peak_flops * cmp_eff),
        )

    # -- attention ---------------------------------------------------------------------------

    def attention_roofline(self, spec: GPUSpec, arch: Architecture, batch: float,
                           tokens: float, heads: int | None = None) -> Roofline:
        """Decode attention of ``batch`` queries, each over ``tokens`` cached tokens, one layer."""
        h = arch.query_heads if heads is None else heads
        row_bytes = arch.query_bytes(heads) + arch.return_bytes(heads)
        nbytes = batch * tokens * arch.kv_bytes_per_token + batch * row_bytes
        flops = batch * tokens * arch.attention_flops_per_token * h / arch.query_heads
        eff = self.sparse_compute_efficiency if arch.sparse else self.compute_efficiency
        return self.roofline(spec, nbytes, flops, compute_efficiency=eff)

    def attention_time(self, spec: GPUSpec, arch: Architecture, batch: float, tokens: float,
                       heads: int | None = None) -> float:
        """Decode attention time [s] of ``batch`` queries over ``tokens`` tokens each, one layer."""
        if tokens <= 0 or batch <= 0:
            return 0.0
        return self.attention_roofline(spec, arch, batch, tokens, heads).total

    def attention_timer(self, spec: GPUSpec, arch: Architecture,
                        heads: int | None = None) -> Callable[[float, float], float]:
        """:meth:`attention_time` of ``spec``, ``arch`` and ``heads`` as a function of
        ``(batch, tokens)`` [s] (a loop that asks it every step)."""
        return lambda batch, tokens: self.attention_time(spec, arch, batch, tokens, heads)

    def merge_time(self, spec: GPUSpec, arch: Architecture, batch: float, partials: int = 2,
                   heads: int | None = None) -> float:
        """LSE merge of ``partials`` partial results for ``batch`` queries, one layer [s]."""
        if partials < 2 or batch <= 0:
            return 0.0
        row = arch.return_bytes(heads)
        nbytes = (partials + 1) * batch * row
        flops = 3.0 * partials * batch * row / arch.bytes_per_element
        return self.roofline(spec, nbytes, flops).total

    # -- fetched blocks ----------------------------------------------------------------------

    def gather_roofline(self, spec: GPUSpec, nbytes: float) -> Roofline:
        """Copy ``nbytes`` fetched scattered KV into the paged cache (read + write)."""
        return self.roofline(spec, 2.0 * nbytes, 0.0, memory_efficiency=self.copy_efficiency)

    def gather_time(self, spec: GPUSpec, nbytes: float) -> float:
        """Gather time [s] of ``nbytes`` of fetched scattered KV; 0 if nothing was fetched."""
        return self.gather_roofline(spec, nbytes).total if nbytes > 0 else 0.0

    def copy_time(self, spec: GPUSpec, nbytes: float, kernels: float = 1.0) -> float:
        """A device copy of ``nbytes`` (read + write) in ``kernels`` launches, at the copy
        efficiency [s]; 0 for nothing."""
        if nbytes <= 0:
            return 0.0
        return self.roofline(spec, 2.0 * nbytes, 0.0, launches=kernels,
                             memory_efficiency=self.copy_efficiency).total

    def splice_time_per_layer(self, arch: Architecture, chunks: float) -> float:
        """Splice time [s] one layer's round pays for ``chunks`` contiguous fetched chunks."""
        return chunks * self.splice_time / arch.layers

    # -- recompute and the rest of the model --------------------------------------------------

    def prefill_time(self, spec: GPUSpec, arch: Architecture, tokens: float,
                     sequences: float = 1.0, gpus: int = 1) -> float:
        """Recompute (prefill) ``tokens`` tokens for each of ``sequences`` sequences, all layers.

        Runs on ``gpus`` GPUs of ``spec`` splitting bytes and FLOPs evenly [s].
        """
        if tokens <= 0 or sequences <= 0:
            return 0.0
        n = float(tokens)
        attended = _causal_attended(n, arch.topk_tokens)
        weights = min(arch.weight_bytes, sequences * n * arch.active_weight_bytes)
        nbytes = weights + sequences * n * arch.kv_bytes_per_token * arch.layers
        flops = sequences * (n * arch.non_attention_flops_per_token
                             + arch.layers * arch.attention_flops_per_token * attended)
        return self.roofline(spec, nbytes / gpus, flops / gpus, launches=arch.layers).total

    def prefill_attention_time(self, spec: GPUSpec, arch: Architecture, new_tokens: float,
                               cached_tokens: float, gpus: int = 1) -> float:
        """Attention of a prefill chunk of ``new_tokens`` after ``cached_tokens``, all layers [s].

        Causal within the chunk, capped at top-k for sparse models: token pairs
        ``Σ_{i=1..n} min(c + i, k)``; bytes: the context's KV read once and the chunk's written
        (``(c + 2n)·kv`` per layer); one launch per layer; split evenly over ``gpus``. A chunked
        prefill step pays this plus :meth:`non_attention_time` of the step's tokens.
        """
        n, c = float(new_tokens), float(cached_tokens)
        if n <= 0:
            return 0.0
        pairs = _causal_attended(c + n, arch.topk_tokens) - _causal_attended(c, arch.topk_tokens)
        nbytes = arch.layers * (c + 2.0 * n) * arch.kv_bytes_per_token
        flops = arch.layers * arch.attention_flops_per_token * pairs
        return self.roofline(spec, nbytes / gpus, flops / gpus, launches=arch.layers).total

    def non_attention_time(self, spec: GPUSpec, arch: Architecture, batch: float,
                           gpus: int = 1, logits: float | None = None,
                           decode_rows: float | None = None) -> float:
        """Projections + FFN of one decode iteration of ``batch`` tokens, all layers [s].

        ``logits``: rows whose logits the LM head computes (default all ``batch``); fewer take
        the head's ``2·vocab·hidden`` FLOPs per row off (its weights are read either way).
        ``decode_rows`` is accepted for the profiled model's signature and not used: the
        roofline charges every token the model's ``non_attention_flops_per_token``.
        """
        if batch <= 0:
            return 0.0
        weights = min(arch.weight_bytes, batch * arch.active_weight_bytes)
        flops = batch * arch.non_attention_flops_per_token
        if logits is not None and logits < batch:
            flops = max(0.0, flops - (batch - logits) * 2.0 * arch.vocab_size * arch.hidden_size)
        return self.roofline(spec, weights / gpus, flops / gpus, launches=arch.layers).total

    # -- the parts a chunked-prefill scheduler and sparse models need --------------------------

    def indexer_time(self, spec: GPUSpec, arch: Architecture, batch: float,
                     context_tokens: float) -> float:
        """DSA indexer pass of ``batch`` queries over ``context_tokens`` keys, one layer [s]:
        bytes ``L·D·e + B·H·D·e`` (index keys and queries), FLOPs ``2·B·L·H·D``; 0 without an
        indexer."""
        if not (arch.sparse and arch.indexer_heads) or batch <= 0 or context_tokens <= 0:
            return 0.0
        h, d, e = arch.indexer_heads, arch.indexer_head_dim, arch.bytes_per_element
        nbytes = context_tokens * d * e + batch * h * d * e
        flops = 2.0 * batch * context_tokens * h * d
        return self.roofline(spec, nbytes, flops).total

    def _collective(self, spec: GPUSpec, nbytes: float, ranks: int, fabric: str,
                    share: float) -> float:
        if ranks <= 1 or nbytes <= 0:
            return 0.0
        if fabric not in ("nvlink", "rdma"):
            raise UserError(f"fabric {fabric!r}: give nvlink or rdma")
        line = spec.nvlink_bandwidth if fabric == "nvlink" else LINKS["ib_ndr"].bandwidth
        return self.launch_time + share * (ranks - 1.0) / ranks * nbytes / line

    def allreduce_time(self, spec: GPUSpec, nbytes: float, ranks: int,
                       fabric: str = "nvlink") -> float:
        """Ring all-reduce of a ``nbytes`` buffer over ``ranks`` GPUs at the line rate of
        ``fabric`` (NVLink: the GPU's; RDMA: one NDR 400 Gb/s NIC), one launch [s]."""
        return self._collective(spec, nbytes, ranks, fabric, 2.0)

    def allgather_time(self, spec: GPUSpec, nbytes: float, ranks: int,
                       fabric: str = "nvlink") -> float:
        """Ring all-gather into a ``nbytes`` output: ``(r−1)/r·nbytes`` at the line rate [s]."""
        return self._collective(spec, nbytes, ranks, fabric, 1.0)

    def alltoall_time(self, spec: GPUSpec, nbytes: float, ranks: int,
                      fabric: str = "nvlink") -> float:
        """All-to-all of a ``nbytes`` send buffer per rank: ``(r−1)/r·nbytes`` at the line
        rate [s]."""
        return self._collective(spec, nbytes, ranks, fabric, 1.0)

    def launch_overhead_time(self, kernels: float, spec: GPUSpec | None = None) -> float:
        """Launch cost of ``kernels`` kernels: ``kernels × launch_time`` [s]."""
        return kernels * self.launch_time

    def attention_breakpoints(self, spec: GPUSpec, arch: Architecture, batch: float,
                              heads: int | None = None) -> list[float]:
        """Token counts > 0 where :meth:`attention_time` changes slope: the roofline's kink,
        where the compute time overtakes the memory time (none if it never does)."""
        a = self.attention_roofline(spec, arch, batch, 1.0, heads)
        b = self.attention_roofline(spec, arch, batch, 2.0, heads)
        m1, c1 = b.memory_time - a.memory_time, b.compute_time - a.compute_time
        m0, c0 = a.memory_time - m1, a.compute_time - c1
        if m1 == c1:
            return []
        kink = (c0 - m0) / (m1 - c1)
        return [kink] if kink > 0 and math.isfinite(kink) else []


def _causal_attended(n: float, topk: int | None) -> float:
    """Σ_{i=1..n} min(i, k): token-pairs a causal prefill of n tokens attends (k = ∞ if dense)."""
    if topk is None or n <= topk:
        return n * (n + 1.0) / 2.0
    k = float(topk)
    return k * (k + 1.0) / 2.0 + (n - k) * k
