"""Kernel times from measured profiles, behind the interface the engines and the closed form use.

:class:`ProfiledKernels` has :class:`~simulator.gpu.kernels.KernelModel`'s methods and meanings —
``attention_time``, ``merge_time``, ``gather_time``, ``splice_time_per_layer``, ``prefill_time``,
``non_attention_time``, ``prefill_attention_time``, ``indexer_time``, ``allreduce_time``,
``allgather_time``, ``alltoall_time``, ``launch_overhead_time``, ``attention_breakpoints`` — but
answers from the :class:`~simulator.gpu.profile.KernelProfile` of each GPU (picked by
``spec.name``), composing layers as :mod:`simulator.gpu.layers` describes. Every method that runs
kernels includes their launch costs (per the profile's CUDA-graph flag); collectives exclude
nothing but the other kernels.

What ``gpus`` means: for GQA/MHA models the tensor-parallel degree (every GEMM and the attention
heads split over ``gpus``; every GPU sees all tokens). For MLA models (with or without MoE) the
instance's attention data-parallel ranks, over which the experts are also spread: the call's
tokens (and prefill sequences) are shared evenly among the ``gpus`` GPUs (fractional shares) and
the answer is one GPU's time — all run at once. ``prefill_attention_time`` is one sequence's
attention, which for MLA runs on the one rank holding its KV (``gpus`` is then ignored).

Selection in a scenario (``[calibration]``): ``profile = "measured"`` (the default: every GPU its
shipped profile), ``"roofline"`` (the analytical :class:`KernelModel` with its cited constants), a profile name or a profile
TOML path (used for GPUs of that profile's kind, the shipped default for the others), or a table
``{H100 = "h100-vidur", H20 = "h20"}``. :func:`~simulator.gpu.calibration.run_kernels` takes the
deployment's ``cuda_graphs`` flag, which overrides the profiles' own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np

from simulator.errors import UserError
from simulator.gpu import layers
from simulator.gpu import operators as ops
from simulator.gpu.kernels import KernelModel
from simulator.gpu.profile import KernelProfile
from simulator.gpu.profiles import DEFAULT_PROFILES, default_profile, load_profile
from simulator.hardware import GPUSpec, gpu
from simulator.models import Architecture

#: Bytes of one fetched block a gather moves when the caller gives only bytes: the measured block
#: (64 tokens × 576 latent elements × bf16 = 73,728 B; calibration/h200/memory.csv).
GATHER_BLOCK_BYTES = 73_728.0
#: Kernels of one decode attention: FlashMLA's split + combine; one flash-decoding kernel for GQA.
MLA_ATTENTION_KERNELS = 2.0
#: Kernels of a DSA indexer pass: scores and top-k (fused production kernels; assumed).
INDEXER_KERNELS = 2.0
PROFILE_CHOICES = ("roofline", "measured")


def _query_heads(arch: Architecture, heads: int | None) -> float:
    """Query heads of attention over ``heads`` KV heads (None: the model's all), as a float."""
    return float(arch.query_heads if heads is None else arch._heads(heads))


def _kv_heads(arch: Architecture, h: float) -> float:
    """KV heads that ``h`` query heads attend (GQA groups, at least one)."""
    return max(1.0, math.ceil(h / arch.group_size))


class ProfiledKernels:
    """Kernel times from profiles (see the module docstring).

    Args:
        profiles: GPU catalog name → profile for GPUs of that kind; others use their shipped
            default (:data:`~simulator.gpu.profiles.DEFAULT_PROFILES`).
        cuda_graphs: override every profile's CUDA-graph flag (None keeps each profile's).
        paged_kv: charge GQA decode attention over a paged KV cache (pages gathered first, as
            measured) instead of contiguous KV.
        page_tokens: tokens per page when ``paged_kv``.
    """

    def __init__(self, profiles: Mapping[str, KernelProfile] | None = None, *,
                 cuda_graphs: bool | None = None, paged_kv: bool = False,
                 page_tokens: int = 16) -> None:
        self.profiles = {k.upper(): v for k, v in (profiles or {}).items()}
        self.cuda_graphs = cuda_graphs
        self.paged_kv = paged_kv
        self.page_tokens = page_tokens
        self._roofline = KernelModel()
        self.profile = lru_cache(maxsize=None)(self._profile)
        self._ops = lru_cache(maxsize=4096)(self._decode_ops)
        self._collectives = lru_cache(maxsize=1 << 16)(self._collective_time)
        self._launch_times: dict[tuple[KernelProfile, float], float] = {}

    def _profile(self, spec: GPUSpec) -> KernelProfile:
        """The profile answering for ``spec`` (cached per spec)."""
        p = self.profiles.get(spec.name.upper())
        p = p.at(spec) if p is not None else default_profile(spec)
        return p if self.cuda_graphs is None else p.with_cuda_graphs(self.cuda_graphs)

    def _launched(self, p: KernelProfile, gpu_time: float, kernels: float) -> float:
        """``gpu_time`` of ``kernels`` kernels with their launches (graph: added; eager: the
        slower of the GPU and the host enqueueing them)."""
        key = (p, kernels)  # a profile's launch cost of so many kernels never changes: kept
        launch = self._launch_times.get(key)
        if launch is None:
            launch = self._launch_times[key] = float(p.launch(kernels).time)
        return gpu_time + launch if p.cuda_graphs else max(gpu_time, launch)

    # -- decode attention and what surrounds it ----------------------------------------------

    def attention_time(self, spec: GPUSpec, arch: Architecture, batch: float, tokens: float,
                       heads: int | None = None) -> float:
        """Decode attention of ``batch`` queries over ``tokens`` tokens each, one layer [s]."""
        if tokens <= 0 or batch <= 0:
            return 0.0
        p = self.profile(spec)
        t, kernels = self._attention(p, arch, batch, tokens, heads), 1.0
        if arch.attention not in ("gqa", "mha"):
            kernels = MLA_ATTENTION_KERNELS
        return self._launched(p, t, kernels)

    def attention_timer(self, spec: GPUSpec, arch: Architecture,
                        heads: int | None = None) -> Callable[[float, float], float]:
        """:meth:`attention_time` of ``spec``, ``arch`` and ``heads`` as a function of
        ``(batch, tokens)`` [s], the same floats: for GQA/MHA over contiguous KV, the profile,
        head counts and launch cost looked up once (where a measured table answers instead of
        the fitted model, each call asks :meth:`attention_time`) — a loop asks it every step."""
        if arch.attention not in ("gqa", "mha") or self.paged_kv:
            return lambda batch, tokens: self.attention_time(spec, arch, batch, tokens, heads)
        p = self.profile(spec)
        h = _query_heads(arch, heads)
        kv, d = _kv_heads(arch, h), layers.head_dim(arch)
        seconds, launched = p.attention_seconds, self._launched

        def timer(batch: float, tokens: float) -> float:
            if tokens <= 0 or batch <= 0:
                return 0.0
            t = seconds(batch, tokens, h, kv, d)
            return launched(p, t, 1.0) if t is not None else \
                self.attention_time(spec, arch, batch, tokens, heads)

        return timer

    def _attention(self, p: KernelProfile, arch: Architecture, batch, tokens, heads) -> float:
        h = _query_heads(arch, heads)
        if arch.attention in ("gqa", "mha"):
            kv = _kv_heads(arch, h)
            if not self.paged_kv:
                t = p.attention_seconds(batch, tokens, h, kv, layers.head_dim(arch))
                if t is not None:
                    return t
            return float(p.attention(batch, tokens, h, kv, layers.head_dim(arch),
                                     paged=self.paged_kv, page_tokens=self.page_tokens).time)
        row = arch.query_bytes_per_head + arch.return_bytes_per_head
        flops = arch.attention_flops_per_token / arch.query_heads
        t = p.mla_attention(batch, tokens, h, kv_bytes_per_token=arch.kv_bytes_per_token,
                            row_bytes_per_head=row, flops_per_token_per_head=flops,
                            sparse=arch.sparse)
        return float(t.time)

    def merge_time(self, spec: GPUSpec, arch: Architecture, batch: float, partials: int = 2,
                   heads: int | None = None) -> float:
        """LSE merge of ``partials`` partial results for ``batch`` queries, one layer [s]."""
        if partials < 2 or batch <= 0:
            return 0.0
        p = self.profile(spec)
        h = _query_heads(arch, heads)
        t = float(p.merge(batch, h, layers.return_dim(arch), partials).time)
        return self._launched(p, t, 1.0)

    def gather_time(self, spec: GPUSpec, nbytes: float) -> float:
        """Gather of ``nbytes`` of fetched scattered KV (blocks of :data:`GATHER_BLOCK_BYTES`,
        assumed) into the paged cache [s]; 0 if nothing was fetched."""
        if nbytes <= 0:
            return 0.0
        p = self.profile(spec)
        t = float(p.gather(nbytes / GATHER_BLOCK_BYTES, GATHER_BLOCK_BYTES).time)
        return self._launched(p, t, 1.0)

    def copy_time(self, spec: GPUSpec, nbytes: float, kernels: float = 1.0) -> float:
        """A device copy of ``nbytes`` (read + write) in ``kernels`` launches, from the measured
        copy table (memory.csv) [s]; 0 for nothing."""
        if nbytes <= 0:
            return 0.0
        p = self.profile(spec)
        per = float(p.copy(nbytes / kernels))
        return self._launched(p, kernels * per, kernels)

    def splice_time_per_layer(self, arch: Architecture, chunks: float) -> float:
        """Splice of ``chunks`` contiguous fetched chunks, one layer's share [s] — not measured:
        :class:`KernelModel`'s ~3 ms per chunk (arXiv 2606.01502)."""
        return self._roofline.splice_time_per_layer(arch, chunks)

    def indexer_time(self, spec: GPUSpec, arch: Architecture, batch: float,
                     context_tokens: float) -> float:
        """DSA indexer pass of ``batch`` queries over ``context_tokens`` keys, one layer [s]
        (0 for models without an indexer)."""
        if not (arch.sparse and arch.indexer_heads) or batch <= 0 or context_tokens <= 0:
            return 0.0
        p = self.profile(spec)
        t = p.indexer_time(batch, context_tokens, arch.indexer_heads, arch.indexer_head_dim)
        return self._launched(p, t, INDEXER_KERNELS)

    # -- the rest of the model -----------------------------------------------------------------

    def decode_ops(self, spec: GPUSpec, arch: Architecture, batch: float, gpus: int = 1,
                   logits: float | None = None,
                   decode_rows: float | None = None) -> list[layers.Op]:
        """The kernels of one step of ``batch`` tokens on one of ``gpus`` GPUs (no attention,
        no collectives), each with its count, time and source; ``decode_rows`` of the tokens
        decode (default all; :func:`~simulator.gpu.layers.decode_ops`)."""
        rows = None if decode_rows is None else float(decode_rows)
        return list(self._ops(spec, arch, float(batch), float(gpus), logits, rows))

    def _decode_ops(self, spec, arch, batch, gpus, logits, rows) -> tuple[layers.Op, ...]:
        return tuple(layers.decode_ops(self.profile(spec), arch, batch, gpus, logits, rows))

    def non_attention_time(self, spec: GPUSpec, arch: Architecture, batch: float, gpus: int = 1,
                           logits: float | None = None,
                           decode_rows: float | None = None) -> float:
        """Projections, FFN / experts and norms of one step of ``batch`` tokens over ``gpus``
        GPUs, all layers, with the LM head for ``logits`` rows (default all) [s]; without
        tensor-parallel collectives or MoE dispatch. ``decode_rows``: how many of the tokens
        decode (default all); only they take MLA's absorbed per-head products."""
        if batch <= 0:
            return 0.0
        ops_ = self.decode_ops(spec, arch, batch, gpus, logits, decode_rows)
        counts = layers.layer_counts(arch)
        gpu = sum(o.time * o.count * counts[o.per] for o in ops_)
        kernels = sum(o.count * counts[o.per] for o in ops_)
        return self._launched(self.profile(spec), gpu, kernels)

    def prefill_attention_time(self, spec: GPUSpec, arch: Architecture, new_tokens: float,
                               cached_tokens: float, gpus: int = 1) -> float:
        """Attention of a prefill chunk of one sequence — ``new_tokens`` after ``cached_tokens``
        — all layers [s]. MLA: decompressing the context's keys and values (``kv_b``), the
        attention, and (DSA) the indexer over the chunk; GQA/MHA: heads split over ``gpus``."""
        if new_tokens <= 0:
            return 0.0
        p = self.profile(spec)
        c, cached = float(new_tokens), max(0.0, float(cached_tokens))
        if layers.family(arch) == "mla":
            h = float(arch.query_heads)
            nope, rope = float(arch.qk_nope_head_dim), float(arch.qk_rope_head_dim)
            t = p.gemm_seconds(cached + c, h * (nope + arch.v_head_dim), arch.kv_lora_rank,
                               "bf16")[0]
            t += float(p.prefill_attention(c, cached, h, h, nope + rope, arch.v_head_dim,
                                           topk=arch.topk_tokens).time)
            kernels = 2.0
            if arch.sparse and arch.indexer_heads:
                t += float(p.indexer_prefill(c, cached, arch.indexer_heads,
                                             arch.indexer_head_dim).time)
                kernels += INDEXER_KERNELS
        else:
            g = float(gpus) if arch.attention in ("gqa", "mha") else 1.0
            h = arch.query_heads / g
            kv = max(1.0, arch.kv_heads / g)
            d = layers.head_dim(arch) if arch.attention in ("gqa", "mha") else \
                arch.query_bytes_per_head / arch.bytes_per_element
            t = float(p.prefill_attention(c, cached, h, kv, d, topk=arch.topk_tokens).time)
            kernels = 1.0
        return self._launched(p, t * arch.layers, kernels * arch.layers)

    def prefill_time(self, spec: GPUSpec, arch: Architecture, tokens: float,
                     sequences: float = 1.0, gpus: int = 1) -> float:
        """Prefill of ``sequences`` whole prompts of ``tokens`` tokens on ``gpus`` GPUs, all
        layers: the step's non-attention kernels (LM head for one row per sequence) and each
        sequence's causal attention (for MLA, ``sequences / gpus`` of them per GPU) [s]."""
        if tokens <= 0 or sequences <= 0:
            return 0.0
        na = self.non_attention_time(spec, arch, tokens * sequences, gpus, logits=sequences,
                                     decode_rows=0.0)
        share = sequences / gpus if layers.family(arch) == "mla" else sequences
        return na + share * self.prefill_attention_time(spec, arch, tokens, 0.0, gpus)

    # -- collectives and launches -------------------------------------------------------------

    def _collective(self, kind: str, spec: GPUSpec, nbytes: float, ranks: int,
                    fabric: str) -> float:
        if ranks <= 1 or nbytes <= 0:
            return 0.0
        return self._collectives(kind, spec, float(nbytes), int(ranks), fabric)

    def _collective_time(self, kind: str, spec: GPUSpec, nbytes: float, ranks: int,
                         fabric: str) -> float:
        """One collective's time (memoized in ``_collectives``: engines ask for the same
        buffer sizes step after step, and a table lookup costs ~0.3 ms)."""
        p = self.profile(spec)
        return self._launched(p, float(p.collective(kind, nbytes, ranks, fabric).time), 1.0)

    def allreduce_time(self, spec: GPUSpec, nbytes: float, ranks: int,
                       fabric: str = "nvlink") -> float:
        """All-reduce of a ``nbytes`` buffer over ``ranks`` GPUs on ``fabric`` [s]."""
        return self._collective("allreduce", spec, nbytes, ranks, fabric)

    def allgather_time(self, spec: GPUSpec, nbytes: float, ranks: int,
                       fabric: str = "nvlink") -> float:
        """All-gather into a ``nbytes`` output over ``ranks`` GPUs on ``fabric`` [s]."""
        return self._collective("allgather", spec, nbytes, ranks, fabric)

    def alltoall_time(self, spec: GPUSpec, nbytes: float, ranks: int,
                      fabric: str = "nvlink") -> float:
        """All-to-all of a ``nbytes`` send buffer per rank over ``ranks`` GPUs [s]."""
        return self._collective("alltoall", spec, nbytes, ranks, fabric)

    def launch_overhead_time(self, kernels: float, spec: GPUSpec | None = None) -> float:
        """Launch cost of ``kernels`` kernels on ``spec``'s profile (default: an H100's) [s]."""
        p = self.profile(spec if spec is not None else gpu("H100"))
        return float(p.launch(kernels).time)

    # -- where attention_time bends ------------------------------------------------------------

    def attention_breakpoints(self, spec: GPUSpec, arch: Architecture, batch: float,
                              heads: int | None = None) -> list[float]:
        """Token counts > 0 where :meth:`attention_time` changes slope: the measured contexts of
        its table (interpolation is piecewise), the split-KV bounds of the GQA model, or the
        MLA roofline's knee."""
        p = self.profile(spec)
        h = _query_heads(arch, heads)
        out: list[float] = []
        if arch.attention in ("gqa", "mha"):
            prm = p.fit("attention").params
            kv = _kv_heads(arch, h)
            par = max(batch * kv, 1e-9)
            out += [prm["Ls"], prm["Ls"] * ops.REFERENCE_SMS / par]
            table = p._table("attention", "attention",
                             ("layout", "paged" if self.paged_kv else "contiguous"))
            if table is not None:
                ctx = table.rows.data["context"][(table.rows.data["q_heads"] == h)]
                out += [float(x) for x in np.unique(ctx)]
        else:
            row = arch.query_bytes_per_head + arch.return_bytes_per_head
            f = arch.attention_flops_per_token / arch.query_heads
            eff = ops.FLASHMLA_SPARSE if arch.sparse else ops.FLASHMLA_DENSE
            mem = spec.hbm_bandwidth * ops.FLASHMLA_MEMORY
            slope = h * f / (spec.peak_flops * eff) - arch.kv_bytes_per_token / mem
            if slope > 0:
                out.append(h * row / mem / slope)
        return sorted({x for x in out if x > 0 and math.isfinite(x)})


def check_profile_choice(value) -> None:
    """A :class:`UserError` (one line, no field name) unless ``value`` names profiles."""
    from simulator.gpu.profiles import profile_names

    if isinstance(value, str):
        if value in PROFILE_CHOICES:
            return
        load_profile(value)  # read and checked now, before any run starts (cached)
        return
    if isinstance(value, Mapping):
        known = set(DEFAULT_PROFILES)
        for gpu_name, name in value.items():
            if str(gpu_name).upper() not in {k.upper() for k in known}:
                raise UserError(f"GPU kind {gpu_name!r} is not one of {', '.join(sorted(known))}")
            if not isinstance(name, str):
                raise UserError(f"{gpu_name} = {name!r}: give a profile name")
            load_profile(name)
        return
    raise UserError(f"{value!r}: give \"roofline\", \"measured\", a profile name "
                    f"({', '.join(profile_names())}), a profile TOML path, or a table "
                    "GPU kind → profile name")


@lru_cache(maxsize=1)
def default_kernels() -> ProfiledKernels:
    """The kernel times a run uses when it names no profile: every GPU its shipped, measured
    (or extrapolated) profile, CUDA graphs per profile (shared: it holds only caches)."""
    return ProfiledKernels()


def profiled_kernels(choice, cuda_graphs: bool | None = None) -> ProfiledKernels:
    """The :class:`ProfiledKernels` a scenario's ``profile`` choice (not ``"roofline"``) names."""
    check_profile_choice(choice)
    chosen: dict[str, KernelProfile] = {}
    if isinstance(choice, str) and choice != "measured":
        prof = load_profile(choice)
        chosen[prof.gpu.name] = prof
    elif isinstance(choice, Mapping):
        for gpu_name, name in choice.items():
            spec = gpu(str(gpu_name))
            chosen[spec.name] = load_profile(name).at(spec)
    return ProfiledKernels(chosen, cuda_graphs=cuda_graphs)
