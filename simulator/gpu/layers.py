"""Decoder layers composed from a kernel profile's operators, per model family.

:func:`decode_ops` lists the kernels one decoder layer runs for a step of ``m`` tokens on one GPU —
name, operator, how many per layer, each kernel's time and source — so a layer's time is the sum
of its operators and every term can be shown. The families (layer dimensions from
:mod:`simulator.models`, i.e. the models' HF configs):

- **GQA / MHA** (Llama), tensor parallel over ``t`` GPUs: RMSNorm, QKV GEMM
  ``(m, (H/t + 2·max(1, H_kv/t))·D, d)``, rotary, [attention], O GEMM ``(m, d, H·D/t)``, residual
  add, RMSNorm, gate/up GEMM ``(m, 2I/t, d)``, SiLU·mul, down GEMM ``(m, d, I/t)``, residual add —
  10 kernels besides attention (the TP all-reduces are left to the caller).
- **MLA** (Kimi K2, DeepSeek-V3), attention data parallel and experts spread over ``g`` GPUs
  (DESIGN.md): every GPU runs its ``m = tokens/g`` share through RMSNorm, q_a and kv_a GEMMs, their
  RMSNorms, q_b, the absorbed ``W_UK`` (a GEMM per head: ``groups = H``, every decoding token
  a row of each, so ``H·m`` rows in all), rotary, [attention], ``W_UV`` per head, O, add,
  RMSNorm, then a dense FFN (the first ``dense_layers`` layers) or an MoE FFN. Only decoding
  tokens take the absorbed products: a prefill token's attention runs the unabsorbed path
  (``kv_b`` decompression of the context, then attention with full heads), which the prefill
  attention's time holds — as vLLM's MLA backend splits a mixed batch: the compute-friendly
  path for the tokens the scheduler labels prefill, the absorbed one for decodes
  (``vllm/v1/attention/backends/mla/common.py``, its module docstring).
- **MLA + DSA** (DeepSeek-V3.2, GLM-5) adds the indexer's projections (q from the q_a latent, one
  key head, per-head weights), its key norm and rotary; the indexer's scores and top-k pass is
  :meth:`ProfiledKernels.indexer_time` (charged per layer like attention).
- **MoE layers**: a router GEMM ``(m, E, d)``, top-k selection (charged as an elementwise pass over
  ``m × E`` scores — assumed), the routed experts as two grouped GEMMs and an activation at their
  token counts, the shared experts as plain GEMMs, and the weighted combine (an add over the
  routed rows). **Routing assumption**: every token picks ``k`` experts uniformly at random and
  experts are spread evenly over the ``g`` GPUs, so a GPU receives ``a = tokens·k/g`` rows; the
  expected number of its ``E/g`` experts that receive any is ``(E/g)·(1 − (1 − 1/E)^(tokens·k))``
  and only those stream their weights, each with ``a / active`` rows.

Per step (not per layer): the final RMSNorm and the LM head GEMM ``(rows needing logits, V/t, d)``.
Weights are fp8 GEMMs for checkpoints served at 1 byte per parameter (the MLA models), bf16
otherwise; the absorbed per-head products and the router stay bf16.

Launch costs follow the profile's CUDA-graph flag: with graphs every kernel adds one graph node's
cost (measured ``graph_per_node``); eager, the host enqueues one kernel per ~10 µs, so a sequence of
kernels takes ``max(Σ kernel times, kernels × enqueue time)`` (the GPU idles when kernels are
shorter than their launches). Assumption: a measured row's time (one kernel replayed alone in a
CUDA graph) already contains a single-graph launch of a few µs that a kernel inside a step's graph
does not pay, so composed layers are an upper bound by up to that per kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.gpu.profile import KernelProfile
from simulator.models import LSE_BYTES, Architecture


@dataclass(frozen=True)
class Op:
    """One kernel of a composed layer.

    Attributes:
        name: what it computes (``qkv_proj``, ``experts_gate_up`` …).
        op: the profile operator (``gemm``, ``elementwise``, …).
        count: how many of it a layer (or a step, for ``per="step"``) runs.
        time: one kernel's time [s].
        source: where the time comes from (see :class:`~simulator.gpu.answers.Timing`).
        per: ``"layer"``, ``"dense_layer"``, ``"moe_layer"`` or ``"step"``.
    """

    name: str
    op: str
    count: float
    time: float
    source: str
    per: str = "layer"


def family(arch: Architecture) -> str:
    """``"gqa"`` (GQA/MHA with layer dimensions), ``"mla"`` (MLA, with or without DSA) or
    ``"generic"`` (no layer dimensions: one GEMM per layer over its active weights)."""
    if arch.attention in ("gqa", "mha") and arch.intermediate_size and arch.hidden_size:
        return "gqa"
    if arch.attention in ("mla", "mla_dsa") and arch.kv_lora_rank and arch.hidden_size and \
            (arch.intermediate_size or arch.experts):
        return "mla"
    return "generic"


def head_dim(arch: Architecture) -> float:
    """GQA/MHA head width: the catalog's, else the query row per head / bytes per element."""
    return float(arch.head_dim or arch.query_bytes_per_head / arch.bytes_per_element)


def weight_dtype(arch: Architecture) -> str:
    """``"fp8"`` for 1-byte weights, else ``"bf16"``."""
    return "fp8" if arch.weight_bytes_per_param <= 1.0 else "bf16"


def moe_shares(arch: Architecture, tokens: float, gpus: float) -> tuple[float, float]:
    """(routed rows on one GPU, experts on it that receive any) under the routing assumption."""
    e, k = float(arch.experts), float(arch.experts_per_token)
    rows = tokens * k / gpus
    active = (e / gpus) * (1.0 - (1.0 - 1.0 / e) ** (tokens * k))
    return rows, max(active, 1e-12)


class _Builder:
    def __init__(self, profile: KernelProfile) -> None:
        self.p = profile
        self.ops: list[Op] = []

    def gemm(self, name, m, n, k, dtype="bf16", groups=1.0, count=1.0, per="layer"):
        if m <= 0:
            return
        t, source = self.p.gemm_seconds(m, n, k, dtype, groups)
        self.ops.append(Op(name, "gemm", count, t, source, per))

    def elem(self, name, kind, m, w, count=1.0, per="layer"):
        if m <= 0:
            return
        t, source = self.p.elementwise_seconds(kind, m, w)
        self.ops.append(Op(name, "elementwise", count, t, source, per))


def decode_ops(profile: KernelProfile, arch: Architecture, tokens: float, gpus: float = 1,
               logits: float | None = None, decode_rows: float | None = None) -> list[Op]:
    """The kernels of one step of ``tokens`` tokens over ``gpus`` GPUs, on one GPU (see the
    module docstring); ``logits``: rows the LM head computes (default every token);
    ``decode_rows``: the step's decoding tokens (default every token), the rows that take MLA's
    absorbed per-head products — a prefill token's attention runs the unabsorbed path, which
    :meth:`~simulator.gpu.profiled.ProfiledKernels.prefill_attention_time` prices."""
    b = _Builder(profile)
    logits = tokens if logits is None else logits
    fam = family(arch)
    if fam == "gqa":
        _gqa(b, arch, tokens, float(gpus), logits)
    elif fam == "mla":
        _mla(b, arch, tokens, float(gpus), logits, tokens if decode_rows is None else decode_rows)
    else:
        _generic(b, arch, tokens, float(gpus))
    return b.ops


def _gqa(b: _Builder, a: Architecture, m: float, t: float, logits: float) -> None:
    d, hd, dt = float(a.hidden_size), head_dim(a), weight_dtype(a)
    q, kv = a.query_heads / t, max(1.0, a.kv_heads / t)
    inter = a.intermediate_size / t
    b.elem("input_norm", "rmsnorm", m, d)
    b.gemm("qkv_proj", m, (q + 2 * kv) * hd, d, dt)
    b.elem("rotary", "rotary", m, (q + kv) * hd)
    b.gemm("o_proj", m, d, q * hd, dt)
    b.elem("residual_add", "add", m, d, count=2)
    b.elem("post_attention_norm", "rmsnorm", m, d)
    b.gemm("gate_up_proj", m, 2 * inter, d, dt)
    b.elem("activation", "activation", m, inter)
    b.gemm("down_proj", m, d, inter, dt)
    b.elem("final_norm", "rmsnorm", m, d, per="step")
    if a.vocab_size:
        b.gemm("lm_head", logits, a.vocab_size / t, d, "bf16", per="step")


def _mla(b: _Builder, a: Architecture, tokens: float, g: float, logits: float,
         decode_rows: float) -> None:
    m, d, dt, h = tokens / g, float(a.hidden_size), weight_dtype(a), float(a.query_heads)
    # the absorbed products: each decoding token through every head's matrix, so h·rows rows
    # over h groups (the grouped GEMM's rows are spread over its groups)
    absorbed = h * min(float(decode_rows), tokens) / g
    nope, rope = float(a.qk_nope_head_dim), float(a.qk_rope_head_dim)
    lora, vh = float(a.kv_lora_rank), float(a.v_head_dim)
    b.elem("input_norm", "rmsnorm", m, d)
    if a.q_lora_rank:
        b.gemm("q_a_proj", m, a.q_lora_rank, d, dt)
        b.elem("q_a_norm", "rmsnorm", m, a.q_lora_rank)
        b.gemm("q_b_proj", m, h * (nope + rope), a.q_lora_rank, dt)
    else:
        b.gemm("q_proj", m, h * (nope + rope), d, dt)
    b.gemm("kv_a_proj", m, lora + rope, d, dt)
    b.elem("kv_a_norm", "rmsnorm", m, lora)
    b.gemm("w_uk_absorb", absorbed, lora, nope, "bf16", groups=h)
    b.elem("rotary", "rotary", m, (h + 1) * rope)
    if a.sparse and a.indexer_heads:
        hi, di = float(a.indexer_heads), float(a.indexer_head_dim)
        b.gemm("indexer_q_proj", m, hi * di, a.q_lora_rank or d, dt)
        b.gemm("indexer_k_proj", m, di, d, dt)
        b.gemm("indexer_weights_proj", m, hi, d, "bf16")
        b.elem("indexer_k_norm", "rmsnorm", m, di)
        b.elem("indexer_rotary", "rotary", m, (hi + 1) * rope)
    b.gemm("w_uv_absorb", absorbed, vh, lora, "bf16", groups=h)
    b.gemm("o_proj", m, d, h * vh, dt)
    b.elem("residual_add", "add", m, d, count=2)
    b.elem("post_attention_norm", "rmsnorm", m, d)
    if a.dense_layers or not a.experts:
        inter = float(a.intermediate_size)
        per = "dense_layer" if a.experts else "layer"
        b.gemm("dense_gate_up_proj", m, 2 * inter, d, dt, per=per)
        b.elem("dense_activation", "activation", m, inter, per=per)
        b.gemm("dense_down_proj", m, d, inter, dt, per=per)
    if a.experts:
        ie, e = float(a.expert_intermediate_size), float(a.experts)
        rows, active = moe_shares(a, tokens, g)
        b.gemm("router", m, e, d, "bf16", per="moe_layer")
        b.elem("topk_select", "activation", m, e, per="moe_layer")
        b.gemm("experts_gate_up", rows, 2 * ie, d, dt, groups=active, per="moe_layer")
        b.elem("experts_activation", "activation", rows, ie, per="moe_layer")
        b.gemm("experts_down", rows, d, ie, dt, groups=active, per="moe_layer")
        if a.shared_experts:
            s = float(a.shared_experts) * ie
            b.gemm("shared_gate_up", m, 2 * s, d, dt, per="moe_layer")
            b.elem("shared_activation", "activation", m, s, per="moe_layer")
            b.gemm("shared_down", m, d, s, dt, per="moe_layer")
        b.elem("experts_combine", "add", rows, d, per="moe_layer")
    b.elem("final_norm", "rmsnorm", m, d, per="step")
    if a.vocab_size:
        b.gemm("lm_head", logits / g, a.vocab_size, d, "bf16", per="step")


def _generic(b: _Builder, a: Architecture, tokens: float, g: float) -> None:
    """No layer dimensions: one GEMM per layer streaming the active weights' share
    (``active weight bytes / layers / g``) and doing ``2·params`` FLOPs per token."""
    e = 1.0 if weight_dtype(a) == "fp8" else 2.0
    elems = a.active_weight_bytes / a.layers / g / e
    if elems <= 0:
        return
    k = float(a.hidden_size) if a.hidden_size else math.sqrt(elems)
    b.gemm("layer_weights", tokens, elems / k, k, weight_dtype(a))


def layer_counts(arch: Architecture) -> dict[str, float]:
    """How many times each ``per`` of :class:`Op` occurs in one step."""
    moe = float(arch.layers - arch.dense_layers) if arch.experts else 0.0
    dense = float(arch.dense_layers) if arch.experts else 0.0
    return {"layer": float(arch.layers), "dense_layer": dense, "moe_layer": moe, "step": 1.0}


def return_dim(arch: Architecture) -> float:
    """Width of one returned partial output row [elements]."""
    return (arch.return_bytes_per_head - LSE_BYTES) / arch.bytes_per_element
