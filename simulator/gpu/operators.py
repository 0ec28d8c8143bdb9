"""The fitted kernel models: one roofline with shape-dependent efficiency and a floor per operator.

Every model has the form ``time = t0 + smax(bytes / rate, FLOPs / throughput)`` where ``t0`` is the
kernel's floor (fixed cost of a launch inside a CUDA graph replay and the kernel's own ramp),
``smax(a, b) = (a^s + b^s)^(1/s)`` a smooth maximum (``s`` fitted: how sharply a kernel turns from
memory- to compute-bound), the rate a fraction of the GPU's datasheet HBM bandwidth ``β`` and the
throughput a fraction of its peak FLOP/s ``π``. The fractions depend on the shape:

- **GEMM** ``(m, n, k)``: weights stream at ``em·nk/(nk + b0)`` of ``β`` (small matrices never
  reach full bandwidth); tensor cores run at ``ec`` of ``π``, plus ``k·τ``: the latency of one
  tile's loop over ``k``, which is all a GEMM with few output tiles pays (equivalently, an
  efficiency ``ec·x/(x + x0)`` in the output tiles per SM ``x``; τ, a latency, is not scaled with
  ``π`` when extrapolating). ``groups`` independent
  weight matrices (a grouped GEMM: MoE experts, MLA's absorbed per-head products) add their
  weights to the bytes, and the kernel streams them at the share of *all* its weights,
  ``em·G·nk/(G·nk + b0)`` — one launch over every group fills the GPU as one matrix of that size
  would (**assumed**: no grouped GEMM was measured; the single matrices that fit ``b0`` are
  4.1M–470M elements) — while its activations and output keep one matrix's share, so the time
  never falls as groups are added (:func:`gemm`); fp8 halves the bytes per
  element and doubles ``π`` (Hopper and Blackwell datasheets; A100 runs fp8 weights through bf16
  tensor cores — weight-only fp8, :data:`FP8_PEAK_RATIO`).
- **decode attention** (GQA/MHA, one query token): KV streams at a rate that grows with the
  parallelism ``p = batch × kv_heads`` — ``p·splits·r1`` in series with ``β·η(p)``, where
  ``splits = clip(132/p, 1, context/Ls)`` counts split-KV partitions and ``η(p)`` falls from
  ``ehi`` to ``elo`` around ``p = pc`` (measured on the H200: a batch of many sequences streams at
  ~2.5 TB/s, a few long ones at ~4.3 TB/s); its FLOPs run at FlashMLA's dense efficiency.
- **MLA decode** keeps FlashMLA's published H800 figures (deepseek-ai/FlashMLA README): ~3,000 GB/s
  memory-bound of the H800's 3.35 TB/s, 660 TFLOP/s dense and 410 TFLOP/s sparse fp8
  compute-bound of 989; its floor is the GQA decode floor (assumed).
- **prefill attention** (``C`` new tokens after ``P`` cached): FLOPs ``2·H·(d_qk + d_v)·pairs`` at
  ``ec / (1 + L0/L̄) / (1 + c0/CTAs)`` of ``π`` (``L̄`` the mean tokens attended per query, CTAs
  ``⌈C/128⌉·H``), scaled by ``kc`` over the causal triangle's share of the pairs; its bytes
  (queries, keys and values read once) at :data:`PREFILL_MEMORY` of ``β`` (assumed, not fitted:
  every measured prefill is compute-bound).
- **elementwise** (RMSNorm, rotary, activation, residual add; each its own fit): bytes at ``e·β``,
  or a per-row latency ``max(1, m/R)·w·c`` when a few rows of width ``w`` cannot fill the GPU.
- **copy** (``2·bytes`` of traffic, falling from ``ehi`` to ``elo`` of ``β`` past ``xc`` bytes),
  **gather** of blocks (``2·bytes`` at ``e·β``), **LSE merge** (inputs + output at ``e·β``).
- **DSA indexer** (per layer): scores ``t0 + smax(bytes/β, FLOPs/(0.67·π))`` with ``s`` bytes per
  score (the unfused measured version materializes them), plus top-k ``t1 + c·(u/1 µs)^g·1 µs``
  with ``u`` the time to stream the scores once at ``β/ek``.
- **collectives** over ``r`` ranks on NVLink (``W`` = the GPU's NVLink bandwidth) or RDMA (``W`` =
  a 400 Gb/s NDR NIC per GPU, as in a DGX H100): all-reduce ``t0 + c·(r−1) + 2(r−1)/r·S/(W·η(r))``
  with ``η(r) = e·r/(r + r0)``; all-gather and all-to-all move ``(r−1)/r·S`` (assumed: the same
  latency and efficiency as the all-reduce fit); send/recv ``t0 + S/(W·e)``. RDMA all-reduce is
  not measured: it uses the RDMA send/recv latency and efficiency (assumed).

Rates are fractions of the datasheet figures of the GPU *asked about*, so a model fitted on one GPU
and evaluated with another's :class:`~simulator.hardware.GPUSpec` is that model scaled by the
datasheet ratios (HBM bandwidth, peak FLOP/s, NVLink) — what a profile calls ``extrapolated``.
Floors (``t0``, per-row latencies) are not scaled (assumed the same on every GPU).

:data:`FITS` says, per operator, which measured rows fit which model from which starting point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simulator.gpu.tables import Rows
from simulator.hardware import LINKS, GPUSpec
from simulator.units import us

#: FlashMLA on H800 (deepseek-ai/FlashMLA README): ~3,000 GB/s memory-bound of 3.35 TB/s HBM3.
FLASHMLA_MEMORY = 3000.0 / 3350.0
#: FlashMLA dense bf16 decode, compute-bound: 660 TFLOP/s of 989.
FLASHMLA_DENSE = 660.0 / 989.0
#: FlashMLA sparse fp8 decode: 410 TFLOP/s of 989.
FLASHMLA_SPARSE = 410.0 / 989.0
#: Dense fp8 / bf16 tensor throughput: 2 on Hopper and Blackwell (H100 1,979 vs 989 TFLOP/s,
#: B200 4.5 vs 2.25 PFLOP/s, H20 296 vs 148; NVIDIA datasheets); A100 has no fp8 tensor cores.
FP8_PEAK_RATIO: dict[str, float] = {"A100": 1.0}
#: A large fp8 GEMM's share of the dense fp8 peak: DeepGEMM's README, "up to 1550 TFLOPS on
#: H800" (dense fp8 peak 1,979); assumed for the fused DSA indexer in prefill (a GEMM-shaped
#: kernel: 64 heads × 128 dims per query-key dot product).
DEEPGEMM_FP8 = 1550.0 / 1979.0
#: The RDMA NIC each GPU has (DGX H100: one ConnectX-7 NDR 400 Gb/s per GPU; REFERENCE.md).
RDMA_NIC_BANDWIDTH = LINKS["ib_ndr"].bandwidth
#: Prefill attention's share of HBM bandwidth for the bytes it reads once: assumed (not fitted;
#: the measured prefills are compute-bound, so their rows cannot pin it).
PREFILL_MEMORY = 0.9
#: SMs of the H100/H200 that split-KV decode partitions fill (NVIDIA datasheets: 132).
REFERENCE_SMS = 132.0
FABRICS = ("nvlink", "rdma")
ELEMENTWISE_KINDS = ("rmsnorm", "rotary", "activation", "add")
COLLECTIVES = ("allreduce", "allgather", "alltoall", "sendrecv")
_E = 2.0  # bytes per bf16 element


def _num(v):
    """``v`` as a float64 array, or as it is when a Python float: one shape's scalar path (see
    :func:`indexer`) — the same IEEE operations as on 0-d arrays, whose results numpy hands on
    as scalars, so the powers go to libm's ``pow`` either way."""
    return v if type(v) is float else np.asarray(v, float)


def smax(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    """Smooth maximum ``(a^s + b^s)^(1/s)`` of non-negative times [s] (a float for floats)."""
    a, b = _num(a), _num(b)
    if type(a) is float and type(b) is float:
        top = max(a, b, 1e-300)
    else:
        top = np.maximum(np.maximum(a, b), 1e-300)
    return top * ((a / top) ** s + (b / top) ** s) ** (1.0 / s)


def _peak(spec: GPUSpec, fp8: np.ndarray | bool) -> np.ndarray:
    return spec.peak_flops * np.where(fp8, FP8_PEAK_RATIO.get(spec.name, 2.0), 1.0)


def gemm(p: dict, spec: GPUSpec, m, n, k, fp8=False, groups=1.0) -> np.ndarray:
    """GEMM ``y[m, n] = x[m, k]·W[k, n]`` (``groups`` weight matrices sharing the m rows) [s].
    Python floats (and a bool ``fp8``) in, a float out: the same value as for 0-d arrays (a
    step's kernels, shape after shape) — the same IEEE operations in the same order, and the
    power libm's (:func:`smax`).

    Every byte moves at one matrix's share ``em·nk/(nk + b0)``; the weights of ``G > 1``
    groups at the share of all of them (module docstring), i.e. their bytes scaled by
    ``share(nk) / share(G·nk) = (G·nk + b0)·nk / (G·nk·(nk + b0))``, exactly 1 for one matrix
    (fewer than one group, an expected count of matrices read, keeps one matrix's share)."""
    b0 = p["b0"]
    if type(m) is float and type(n) is float and type(k) is float and type(groups) is float \
            and type(fp8) is bool:
        e = 1.0 if fp8 else _E
        peak = spec.peak_flops * (FP8_PEAK_RATIO.get(spec.name, 2.0) if fp8 else 1.0)
        gnk = (groups if groups > 1.0 else 1.0) * n * k
    else:
        m, n, k, groups = (np.asarray(v, float) for v in (m, n, k, groups))
        e = np.where(fp8, 1.0, _E)
        peak = _peak(spec, fp8)
        gnk = np.maximum(groups, 1.0) * n * k
    nk = n * k
    nbytes = groups * n * k * e * ((gnk + b0) * nk / (gnk * (nk + b0))) + m * k * e + m * n * _E
    flops = 2.0 * m * n * k
    em = p["em"] * n * k / (nk + b0)
    return p["t0"] + smax(nbytes / (spec.hbm_bandwidth * em),
                          flops / (peak * p["ec"]) + k * p["tau"], p["s"])


def decode_attention(p: dict, spec: GPUSpec, batch, context, q_heads, kv_heads, head_dim,
                     kv_element_bytes=_E) -> np.ndarray:
    """GQA/MHA decode attention over contiguous KV, one layer [s]. Python floats in, a float
    out: the same value as for 0-d arrays (a decode step's hot path) — the logarithm and
    exponential are numpy's either way, the clips the same comparisons, and the powers libm's
    (:func:`_num`)."""
    scalar = type(batch) is float and type(context) is float and type(q_heads) is float \
        and type(kv_heads) is float and type(head_dim) is float
    b, L, hq, hk, d = (batch, context, q_heads, kv_heads, head_dim) if scalar else \
        (np.asarray(v, float) for v in (batch, context, q_heads, kv_heads, head_dim))
    nbytes = 2.0 * b * L * hk * d * kv_element_bytes + 2.0 * b * hq * d * _E
    flops = 4.0 * b * L * hq * d
    if scalar:
        par = max(b * hk, 1e-9)
        z = min(max(p["sh"] * float(np.log(par / p["pc"])), -700.0), 700.0)
        eta = p["elo"] + (p["ehi"] - p["elo"]) / (1.0 + float(np.exp(z)))
        splits = min(max(REFERENCE_SMS / par, 1.0), max(1.0, L / p["Ls"]))
    else:
        par = np.maximum(b * hk, 1e-9)
        z = np.clip(p["sh"] * np.log(par / p["pc"]), -700.0, 700.0)
        eta = p["elo"] + (p["ehi"] - p["elo"]) / (1.0 + np.exp(z))
        splits = np.clip(REFERENCE_SMS / par, 1.0, np.maximum(1.0, L / p["Ls"]))
    beta = spec.hbm_bandwidth
    rate = 1.0 / (1.0 / (par * splits * p["r1"] * beta) + 1.0 / (beta * eta))
    return p["t0"] + smax(nbytes / rate, flops / (spec.peak_flops * FLASHMLA_DENSE), 4.0)


def mla_attention(t0: float, spec: GPUSpec, batch, tokens, heads, kv_bytes_per_token,
                  row_bytes_per_head, flops_per_token_per_head, sparse=False) -> np.ndarray:
    """Absorbed MLA decode (FlashMLA figures; see the module docstring), one layer [s]."""
    b, n, h = (np.asarray(v, float) for v in (batch, tokens, heads))
    nbytes = b * n * kv_bytes_per_token + b * h * row_bytes_per_head
    flops = b * n * h * flops_per_token_per_head
    eff = np.where(sparse, FLASHMLA_SPARSE, FLASHMLA_DENSE)
    return t0 + smax(nbytes / (spec.hbm_bandwidth * FLASHMLA_MEMORY),
                     flops / (spec.peak_flops * eff), 4.0)


def prefill_attention(p: dict, spec: GPUSpec, new, pairs, triangle, context, q_heads, kv_heads,
                      qk_dim, v_dim) -> np.ndarray:
    """Attention of ``new`` query tokens over ``pairs`` (query, key) pairs, one layer [s].

    ``triangle`` is the share of the pairs under a causal mask; ``context`` the keys read.
    """
    c, pr, tri, L = (np.asarray(v, float) for v in (new, pairs, triangle, context))
    hq, hk, dq, dv = (np.asarray(v, float) for v in (q_heads, kv_heads, qk_dim, v_dim))
    flops = 2.0 * hq * (dq + dv) * pr
    nbytes = c * hq * (dq + dv) * _E + L * hk * (dq + dv) * _E
    mean = pr / np.maximum(c, 1e-9)
    ctas = np.ceil(c / 128.0) * hq
    ec = p["ec"] / (1.0 + p["L0"] / mean) / (1.0 + p["c0"] / ctas) * (1.0 - tri * (1.0 - p["kc"]))
    return p["t0"] + smax(nbytes / (spec.hbm_bandwidth * PREFILL_MEMORY),
                          flops / (spec.peak_flops * ec), 4.0)


_ELEMENTWISE_BYTES = {"rmsnorm": (2.0, 1.0), "rotary": (2.0, 0.0), "activation": (3.0, 0.0),
                      "add": (3.0, 0.0)}


def elementwise_bytes(kind: str, tokens, width) -> np.ndarray:
    """HBM bytes of an elementwise kernel over ``tokens`` rows of ``width`` bf16 elements [B]:
    RMSNorm reads and writes the rows and reads its weight; rotary rewrites the q and k rows;
    the gated activation reads two halves and writes one; the residual add reads two, writes one."""
    per_row, fixed = _ELEMENTWISE_BYTES[kind]
    m, w = _num(tokens), _num(width)
    return (per_row * m * w + fixed * w) * _E


def elementwise(p: dict, spec: GPUSpec, kind: str, tokens, width) -> np.ndarray:
    """One elementwise kernel of ``kind`` (see :func:`elementwise_bytes`) [s]; Python floats
    in, a float out, as :func:`gemm`."""
    m, w = _num(tokens), _num(width)
    nbytes = elementwise_bytes(kind, m, w)
    q = {k: p[f"{kind}_{k}"] for k in ("t0", "e", "R", "c", "s")}
    rows = m / q["R"]
    rows = (rows if rows > 1.0 else 1.0) if type(rows) is float else np.maximum(1.0, rows)
    return q["t0"] + smax(nbytes / (spec.hbm_bandwidth * q["e"]), rows * w * q["c"], q["s"])


def copy(p: dict, spec: GPUSpec, nbytes) -> np.ndarray:
    """Device-to-device copy of ``nbytes`` (read + write) [s]."""
    x = np.asarray(nbytes, float)
    eta = p["elo"] + (p["ehi"] - p["elo"]) / (1.0 + (x / p["xc"]) ** 4)
    return p["t0"] + 2.0 * x / (spec.hbm_bandwidth * eta)


def gather(p: dict, spec: GPUSpec, blocks, block_bytes) -> np.ndarray:
    """Gather of ``blocks`` scattered blocks of ``block_bytes`` into a contiguous buffer [s]."""
    nbytes = np.asarray(blocks, float) * np.asarray(block_bytes, float)
    return p["t0"] + 2.0 * nbytes / (spec.hbm_bandwidth * p["e"])


def merge(p: dict, spec: GPUSpec, batch, heads, dim, partials) -> np.ndarray:
    """LSE merge of ``partials`` partial outputs (bf16 rows + fp32 LSE) of batch × heads [s]."""
    b, h, d, n = (np.asarray(v, float) for v in (batch, heads, dim, partials))
    nbytes = n * b * h * (d * _E + 4.0) + b * h * (d * _E + 4.0)
    return p["t0"] + nbytes / (spec.hbm_bandwidth * p["e"])


def indexer_scores(p: dict, spec: GPUSpec, batch, context, heads, dim) -> np.ndarray:
    """The scores part of a DSA indexer pass, one layer [s]."""
    b, L, h, d = (_num(v) for v in (batch, context, heads, dim))
    nbytes = b * L * h * p["s"] + L * d * _E
    return p["t0"] + smax(nbytes / spec.hbm_bandwidth,
                          2.0 * b * L * h * d / (spec.peak_flops * FLASHMLA_DENSE), 4.0)


def indexer_topk(p: dict, spec: GPUSpec, batch, context) -> np.ndarray:
    """The top-k part of a DSA indexer pass, one layer [s]."""
    u = _num(batch) * _num(context) * 4.0 / (spec.hbm_bandwidth / p["ek"])
    return p["t1"] + p["c"] * (u / us(1.0)) ** p["g"] * us(1.0)


def indexer(p: dict, spec: GPUSpec, batch, context, heads, dim) -> np.ndarray:
    """A DSA indexer pass (scores, then top-k), one layer [s]. Python floats in, a float out:
    the same value as for 0-d arrays (:meth:`KernelProfile.indexer_time
    <simulator.gpu.profile.KernelProfile.indexer_time>`, a decode step's hot path)."""
    return indexer_scores(p, spec, batch, context, heads, dim) + indexer_topk(p, spec, batch,
                                                                              context)


def indexer_prefill(p: dict, spec: GPUSpec, new, cached, heads, dim) -> np.ndarray:
    """A prefill chunk's DSA indexer pass, one layer [s], as the production kernel runs it
    (fused fp8 logits, DeepGEMM's ``fp8_mqa_logits``; then top-k): ``new`` query tokens after
    ``cached`` keys, causal — ``pairs = new·cached + new·(new + 1)/2`` (query, key) pairs at
    ``2·heads·dim`` fp8 FLOPs each, at :data:`DEEPGEMM_FP8` of the fp8 peak, in parallel with
    the bytes: fp8 keys and queries read once, each pair's fp32 logit written and read back by
    the top-k (``8`` bytes per pair). Assumed, not measured (our measured indexer is unfused
    bf16 and materializes per-head scores, which a prefill's ``new × context`` shape makes
    absurd); the fit's launch floor ``t0`` is kept."""
    n, c, h, d = (np.asarray(v, float) for v in (new, cached, heads, dim))
    pairs = n * c + n * (n + 1.0) / 2.0
    flops = 2.0 * pairs * h * d
    nbytes = (c + n) * d + n * h * d + 8.0 * pairs
    return p["t0"] + smax(nbytes / spec.hbm_bandwidth, flops / (_peak(spec, True) * DEEPGEMM_FP8),
                          4.0)


def fabric_bandwidth(spec: GPUSpec, fabric: str) -> float:
    """Per-GPU bandwidth [B/s] of ``fabric``: NVLink (the datasheet's) or one RDMA NIC."""
    return spec.nvlink_bandwidth if fabric == "nvlink" else RDMA_NIC_BANDWIDTH


def collective(p: dict, spec: GPUSpec, kind: str, nbytes, ranks, fabric: str) -> np.ndarray:
    """A collective ``kind`` of ``nbytes`` over ``ranks`` GPUs on ``fabric`` [s] (0 for 1 rank).

    ``nbytes``: the buffer each rank reduces (all-reduce), the gathered output (all-gather), the
    send buffer of each rank (all-to-all), the message (send/recv).
    """
    s, r = np.asarray(nbytes, float), np.asarray(ranks, float)
    w = fabric_bandwidth(spec, fabric)
    if kind == "sendrecv":
        out = p[f"sr_{fabric}_t0"] + s / (w * p[f"sr_{fabric}_e"])
        return np.where(r <= 1, 0.0, out)
    share = 2.0 * (r - 1.0) / r if kind == "allreduce" else (r - 1.0) / r
    if fabric == "nvlink":
        eta = p["ar_e"] * r / (r + p["ar_r0"])
        out = p["ar_t0"] + p["ar_c"] * (r - 1.0) + share * s / (w * eta)
    else:
        out = p["sr_rdma_t0"] + p["ar_c"] * (r - 1.0) + share * s / (w * p["sr_rdma_e"])
    return np.where(r <= 1, 0.0, out)


# -- what each operator is fitted on ----------------------------------------------------------

@dataclass(frozen=True)
class FitSpec:
    """How one operator's parameters are fitted: the rows it reads, the model evaluated on them
    (``model(params, spec, rows) -> times``) and the starting parameters."""

    rows: tuple[str, ...]
    model: Callable[[dict, GPUSpec, Rows], np.ndarray]
    start: dict[str, float]


def _gemm_rows(p, spec, r):
    return gemm(p, spec, r.data["m"], r.data["n"], r.data["k"], r.data["dtype"] == "fp8")


def _attention_rows(p, spec, r):
    return decode_attention(p, spec, r.data["batch"], r.data["context"], r.data["q_heads"],
                            r.data["kv_heads"], r.data["head_dim"])


def _prefill_rows(p, spec, r):
    c, kv = r.data["q_len"].astype(float), r.data["kv_len"].astype(float)
    masked = r.data["masked"].astype(bool)
    pairs = np.where(masked, c * (c + 1.0) / 2.0, c * kv)
    tri = np.where(masked, 1.0, 0.0)
    d = r.data["head_dim"]
    return prefill_attention(p, spec, c, pairs, tri, kv, r.data["q_heads"], r.data["kv_heads"],
                             d, d)


def _gather_rows(p, spec, r):
    return gather(p, spec, r.data["blocks"], r.data["block_bytes"])


def page_gather_blocks(batch, context, kv_heads, head_dim, page_tokens):
    """(blocks, bytes per block) of gathering K and V pages of a paged cache (bf16)."""
    blocks = 2.0 * np.asarray(batch, float) * np.asarray(context, float) / page_tokens
    return blocks, np.asarray(page_tokens, float) * kv_heads * head_dim * _E


def _page_gather_rows(p, spec, r):
    blocks, bb = page_gather_blocks(r.data["batch"], r.data["context"], r.data["kv_heads"],
                                    r.data["head_dim"], r.data["page_tokens"])
    return gather(p, spec, blocks, bb)


def _gather_both(p, spec, r):
    """Block gathers (memory.csv) or page gathers of a paged decode (attn_decode.csv)."""
    if "page_tokens" in r.data:
        return _page_gather_rows(p, spec, r)
    return _gather_rows(p, spec, r)


def _merge_rows(p, spec, r):
    return merge(p, spec, r.data["batch"], r.data["heads"], r.data["dim"], r.data["partials"])


def _elementwise_rows(p, spec, r):
    out = np.empty(len(r))
    for kind in ELEMENTWISE_KINDS:
        sel = r.data["kind"] == kind
        if sel.any():
            out[sel] = elementwise(p, spec, kind, r.data["tokens"][sel], r.data["width"][sel])
    return out


def _scores_rows(p, spec, r):
    return indexer_scores(p, spec, r.data["batch"], r.data["context"], r.data["heads"],
                          r.data["dim"])


def _topk_rows(p, spec, r):
    return indexer_topk(p, spec, r.data["batch"], r.data["context"])


def _allreduce_rows(p, spec, r):
    return collective(p, spec, "allreduce", r.data["bytes"], r.data["ranks"], "nvlink")


def _sendrecv_rows(p, spec, r):
    out = np.empty(len(r))
    for fabric in FABRICS:
        sel = r.data["fabric"] == fabric
        if sel.any():
            out[sel] = collective(p, spec, "sendrecv", r.data["bytes"][sel], 2.0, fabric)
    return out


_ELEMENTWISE_START = {f"{k}_{n}": v for k in ELEMENTWISE_KINDS
                      for n, v in (("t0", 1e-6), ("e", 0.5), ("R", 200.0), ("c", 3e-10),
                                   ("s", 4.0))}

#: operator → the fits that make up its parameters (fitted in this order, each on its rows).
FITS: dict[str, dict[str, FitSpec]] = {
    "gemm": {"gemm": FitSpec(("gemm",), _gemm_rows,
                             dict(t0=3e-6, em=0.9, b0=4e5, ec=0.75, tau=1e-9, s=4.0))},
    "attention": {"attention": FitSpec(
        ("attention:contiguous",), _attention_rows,
        dict(t0=1e-5, ehi=0.9, elo=0.5, pc=180.0, sh=4.0, r1=0.02, Ls=512.0))},
    "prefill_attention": {"prefill_attention": FitSpec(
        ("prefill_attention",), _prefill_rows, dict(t0=1e-5, ec=0.4, L0=200.0, c0=50.0,
                                                    kc=0.8))},
    "elementwise": {kind: FitSpec((f"elementwise:{kind}",), _elementwise_rows,
                                  {k: v for k, v in _ELEMENTWISE_START.items()
                                   if k.startswith(kind + "_")}) for kind in ELEMENTWISE_KINDS},
    "copy": {"copy": FitSpec(("copy",), lambda p, s, r: copy(p, s, r.data["bytes"]),
                             dict(t0=5e-6, ehi=0.9, elo=0.6, xc=5e8))},
    "gather": {"gather": FitSpec(("gather", "page_gather"), _gather_both, dict(t0=5e-6, e=0.8))},
    "merge": {"merge": FitSpec(("merge",), _merge_rows, dict(t0=3e-5, e=0.1))},
    "indexer": {"scores": FitSpec(("indexer_scores",), _scores_rows, dict(t0=1e-5, s=8.0)),
                "topk": FitSpec(("indexer_topk",), _topk_rows,
                                dict(t1=3e-5, ek=1.0, g=0.5, c=1.0))},
    "collective": {"allreduce": FitSpec(("allreduce",), _allreduce_rows,
                                        dict(ar_t0=2e-5, ar_c=1e-6, ar_e=0.8, ar_r0=1.0)),
                   "sendrecv_nvlink": FitSpec(("sendrecv:nvlink",), _sendrecv_rows,
                                              dict(sr_nvlink_t0=5e-6, sr_nvlink_e=0.8)),
                   "sendrecv_rdma": FitSpec(("sendrecv:rdma",), _sendrecv_rows,
                                            dict(sr_rdma_t0=2e-5, sr_rdma_e=0.7))},
}
