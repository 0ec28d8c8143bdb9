"""Attention architectures: what one token of one layer costs in bytes and FLOPs.

An :class:`Architecture` is a frozen spec holding exactly what the cost model, the GPU kernel model
and Lamina-style disaggregation need, all per token and per layer unless a name says otherwise:

- the KV cache a token leaves behind (``kv_bytes_per_token``; bf16 and fp8 layouts),
- the routed payload *per query head* (``query_bytes_per_head`` out, ``return_bytes_per_head`` back
  — the partial output row plus its 4-byte log-sum-exp), so a user can route a subset of heads,
- attention FLOPs per attended token (all query heads), sparse selection (``topk_tokens``),
- hidden size ``d``, query heads, KV heads (``G = query_heads / kv_heads``), bytes per element,
- weight bytes, active parameters and non-attention FLOPs per token, approximated as
  ``2 × active parameters`` (one multiply-add per weight; it leaves out the attention score and
  value products, which depend on the context and are charged by the attention kernel instead).

MLA decode runs "absorbed" (MQA-style): every query head reads the one cached latent row of
``kv_lora_rank + rope_dim`` = 576 elements, so the query row per head is 576 wide and the output row
512 wide; one token costs ``2 × (576 + 512)`` FLOPs per head. GQA/MHA heads are ``head_dim`` wide
for both. Numbers come from ../shared/REFERENCE.md (sources given beside each entry).

A new architecture enters through two coefficients (DESIGN.md "two coefficients"):
:meth:`Architecture.custom` builds one from the routed payload and the bytes moved per selected
token, plus its layer count.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from simulator.errors import UserError
from simulator.units import GB

#: Bytes of the log-sum-exp (one fp32) returned with every partial output row, per head.
LSE_BYTES = 4.0

ATTENTION_KINDS: tuple[str, ...] = ("mla", "mla_dsa", "gqa", "mha", "custom")
#: The layer dimensions (HF config names in brackets where they differ): ``head_dim``;
#: ``intermediate_size`` (dense FFN); ``vocab_size``; MLA's ``q_lora_rank``, ``kv_lora_rank``,
#: ``qk_nope_head_dim``, ``qk_rope_head_dim``, ``v_head_dim``; MoE's ``experts``
#: [n_routed_experts], ``experts_per_token`` [num_experts_per_tok], ``shared_experts``
#: [n_shared_experts], ``expert_intermediate_size`` [moe_intermediate_size] and
#: ``dense_layers`` [first_k_dense_replace: the first layers keep a dense FFN].
LAYER_FIELDS: tuple[str, ...] = (
    "head_dim", "intermediate_size", "vocab_size", "q_lora_rank", "kv_lora_rank",
    "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "experts", "experts_per_token",
    "shared_experts", "expert_intermediate_size", "dense_layers")
KV_DTYPES: tuple[str, ...] = ("bf16", "fp8")


class UnknownModelError(UserError):
    """A model name that is not in the catalog."""


@dataclass(frozen=True)
class Architecture:
    """One model's attention and weight figures (SI units; per token per layer unless stated).

    Attributes:
        name: catalog name, e.g. ``"deepseek-v3.2"``.
        layers: transformer layers.
        attention: one of :data:`ATTENTION_KINDS`.
        query_heads: query heads per layer.
        kv_heads: KV heads per layer (1 for absorbed MLA: one shared latent row).
        hidden_size: model width ``d`` [elements].
        bytes_per_element: activation element size ``e`` [B] (2 for bf16).
        kv_bytes_per_token_bf16: cached KV per token per layer in bf16 [B].
        kv_bytes_per_token_fp8: cached KV per token per layer in the fp8 layout [B].
        query_bytes_per_head: routed query row per head per token per layer [B].
        return_bytes_per_head: returned partial output + LSE per head per token per layer [B].
        attention_flops_per_token: FLOPs one query token spends on one attended token, all query
            heads, one layer [FLOP].
        weight_bytes: all weights of the model as served [B].
        active_params: parameters a token passes through (all of them for a dense model).
        non_attention_flops_per_token: projections + FFN per token, all layers [FLOP]
            (≈ 2 × active parameters).
        topk_tokens: sparse selection (DSA top-k tokens per query per layer), None if dense.
        indexer_heads: DSA indexer heads (0 if none).
        indexer_head_dim: DSA indexer head width [elements] (0 if none).
        kv_dtype: which KV layout the cache holds, ``"bf16"`` or ``"fp8"``.
        weight_bytes_per_param: bytes per served weight (1 for fp8 checkpoints, 2 for bf16).
        head_dim … dense_layers: the layer dimensions of :data:`LAYER_FIELDS` (0 if unknown).
        max_context_tokens: the longest sequence (prompt + output) the model takes [tokens],
            its HF config's ``max_position_embeddings``; None where not checked. A run with
            requests that need more counts them (``requests_over_context``) and says so; it
            still serves them.
    """

    name: str
    layers: int
    attention: str
    query_heads: int
    kv_heads: int
    hidden_size: int
    bytes_per_element: float
    kv_bytes_per_token_bf16: float
    kv_bytes_per_token_fp8: float
    query_bytes_per_head: float
    return_bytes_per_head: float
    attention_flops_per_token: float
    weight_bytes: float
    active_params: float
    non_attention_flops_per_token: float
    topk_tokens: int | None = None
    indexer_heads: int = 0
    indexer_head_dim: int = 0
    kv_dtype: str = "bf16"
    weight_bytes_per_param: float = 2.0
    # -- layer dimensions (0 = unknown), from each model's HF config; what a kernel profile
    # composes a decoder layer from (simulator/gpu/layers.py) --
    head_dim: int = 0
    intermediate_size: int = 0
    vocab_size: int = 0
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    experts: int = 0
    experts_per_token: int = 0
    shared_experts: int = 0
    expert_intermediate_size: int = 0
    dense_layers: int = 0
    max_context_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"model {self.name!r}: attention {self.attention!r} not in "
                             f"{ATTENTION_KINDS}")
        if self.kv_dtype not in KV_DTYPES:
            raise ValueError(f"model {self.name!r}: kv_dtype {self.kv_dtype!r} not in {KV_DTYPES}")
        for field in ("layers", "query_heads", "kv_heads"):
            if not getattr(self, field) >= 1:
                raise ValueError(f"model {self.name!r}: {field} must be >= 1")
        for field in ("kv_bytes_per_token_bf16", "kv_bytes_per_token_fp8"):
            if not getattr(self, field) > 0:
                raise ValueError(f"model {self.name!r}: {field} must be > 0")
        for field in ("query_bytes_per_head", "return_bytes_per_head", "attention_flops_per_token",
                      "weight_bytes", "active_params", "non_attention_flops_per_token",
                      "bytes_per_element", "hidden_size", "weight_bytes_per_param"):
            if getattr(self, field) < 0:
                raise ValueError(f"model {self.name!r}: {field} must be >= 0")
        for field in LAYER_FIELDS:
            if getattr(self, field) < 0:
                raise ValueError(f"model {self.name!r}: {field} must be >= 0")
        if self.topk_tokens is not None and self.topk_tokens < 1:
            raise ValueError(f"model {self.name!r}: topk_tokens must be >= 1 or None")
        if self.max_context_tokens is not None and self.max_context_tokens < 1:
            raise ValueError(f"model {self.name!r}: max_context_tokens must be >= 1 or None")

    # -- derived figures --------------------------------------------------------------------

    @property
    def group_size(self) -> float:
        """``G``: query heads per KV head."""
        return self.query_heads / self.kv_heads

    @property
    def kv_bytes_per_token(self) -> float:
        """Cached (and fetched) KV bytes per token per layer in this spec's ``kv_dtype`` [B]."""
        if self.kv_dtype == "fp8":
            return self.kv_bytes_per_token_fp8
        return self.kv_bytes_per_token_bf16

    @property
    def sparse(self) -> bool:
        """True if each query attends a selected subset of tokens (DSA top-k)."""
        return self.topk_tokens is not None

    def query_bytes(self, heads: int | None = None) -> float:
        """Routed query bytes per token per layer for ``heads`` heads (default all) [B]."""
        return self.query_bytes_per_head * self._heads(heads)

    def return_bytes(self, heads: int | None = None) -> float:
        """Returned partial output + LSE per token per layer for ``heads`` heads [B]."""
        return self.return_bytes_per_head * self._heads(heads)

    def routed_payload_bytes(self, heads: int | None = None) -> float:
        """Coefficient 1: query + return bytes per token per layer [B]."""
        return self.query_bytes(heads) + self.return_bytes(heads)

    @property
    def moved_bytes_per_token(self) -> float:
        """Coefficient 2: bytes moved per selected token per layer when fetching [B]."""
        return self.kv_bytes_per_token

    @property
    def active_weight_bytes(self) -> float:
        """Weight bytes one token passes through (``weight_bytes`` scaled by active share) [B]."""
        total = self.total_params
        return self.weight_bytes if total <= 0 else self.weight_bytes * self.active_params / total

    @property
    def total_params(self) -> float:
        """Total parameters, recovered from weights at the served element size."""
        if self.weight_bytes_per_param <= 0:
            return 0.0
        return self.weight_bytes / self.weight_bytes_per_param

    def lamina_send_bytes_per_token(self) -> float:
        """Lamina model worker → attention worker per token per layer: ``(2 + 2/G)·e·d`` [B]."""
        return (2.0 + 2.0 / self.group_size) * self.bytes_per_element * self.hidden_size

    def lamina_return_bytes_per_token(self) -> float:
        """Lamina attention worker → model worker per token per layer: ``e·d`` [B]."""
        return self.bytes_per_element * self.hidden_size

    def with_kv_dtype(self, kv_dtype: str) -> Architecture:
        """The same architecture with its cache held in ``kv_dtype`` (``"bf16"`` or ``"fp8"``)."""
        if kv_dtype not in KV_DTYPES:
            raise UserError(f"kv dtype {kv_dtype!r} is not one of {', '.join(KV_DTYPES)}")
        return dataclasses.replace(self, kv_dtype=kv_dtype)

    def _heads(self, heads: int | None) -> int:
        if heads is None:
            return self.query_heads
        if not 1 <= heads <= self.query_heads:
            raise UserError(f"heads={heads} for model {self.name!r}: give 1 to {self.query_heads}")
        return int(heads)

    # -- the two-coefficient constructor ----------------------------------------------------

    @classmethod
    def custom(
        cls,
        name: str,
        layers: int,
        routed_payload_bytes: float,
        moved_bytes_per_token: float,
        *,
        return_bytes: float | None = None,
        attention_flops_per_token: float = 0.0,
        topk_tokens: int | None = None,
        weight_bytes: float = 0.0,
        non_attention_flops_per_token: float = 0.0,
    ) -> Architecture:
        """An architecture from the two coefficients and its layer count.

        Args:
            name: a label for tables.
            layers: transformer layers.
            routed_payload_bytes: query + return bytes per token per layer [B].
            moved_bytes_per_token: KV bytes moved per selected token per layer [B].
            return_bytes: the returned part of the payload [B]; default half of it. Only the
                split between the route's transfer and return phases depends on it, not the
                total when both directions have the same rate.
            attention_flops_per_token: FLOPs per attended token per layer; 0 (the default)
                makes the attention kernel purely memory-bound.
            topk_tokens: sparse selection, if any (makes the default fetch layout scattered).
            weight_bytes: weights [B] (needed only for the recompute of ``local``).
            non_attention_flops_per_token: FLOPs per token, all layers (for ``local``).
        """
        if not routed_payload_bytes > 0 or not moved_bytes_per_token > 0:
            raise UserError(f"custom model {name!r}: routed_payload_bytes and "
                            "moved_bytes_per_token must be > 0")
        ret = routed_payload_bytes / 2.0 if return_bytes is None else float(return_bytes)
        if not 0 <= ret <= routed_payload_bytes:
            raise UserError(f"custom model {name!r}: return_bytes must be in [0, payload]")
        return cls(
            name=name, layers=int(layers), attention="custom", query_heads=1, kv_heads=1,
            hidden_size=0, bytes_per_element=2.0,
            kv_bytes_per_token_bf16=float(moved_bytes_per_token),
            kv_bytes_per_token_fp8=float(moved_bytes_per_token),
            query_bytes_per_head=float(routed_payload_bytes) - ret, return_bytes_per_head=ret,
            attention_flops_per_token=float(attention_flops_per_token),
            weight_bytes=float(weight_bytes), active_params=float(weight_bytes) / 2.0,
            non_attention_flops_per_token=float(non_attention_flops_per_token),
            topk_tokens=topk_tokens,
        )


def _mla(name: str, layers: int, heads: int, hidden: int, total_params: float,
         active_params: float, topk: int | None, indexer_heads: int, **dims: int) -> Architecture:
    """An absorbed-MLA architecture: latent 512 + RoPE 64 (HF config.json; deepseek-ai/FlashMLA).

    KV per token per layer: (512 + 64) × 2 B = 1,152 B in bf16; FlashMLA's fp8 layout stores the
    512 latent values in fp8 plus 4 fp32 scales and the 64 RoPE values in bf16:
    512 + 16 + 128 = 656 B (REFERENCE.md). Query row per head 576 × 2 = 1,152 B; returned row
    512 × 2 B + 4 B LSE = 1,028 B. Weights as served: 1 B per parameter (fp8 checkpoints).
    """
    e = 2.0
    return Architecture(
        name=name, layers=layers, attention="mla_dsa" if topk else "mla", query_heads=heads,
        kv_heads=1, hidden_size=hidden, bytes_per_element=e,
        kv_bytes_per_token_bf16=(512 + 64) * e, kv_bytes_per_token_fp8=656.0,
        query_bytes_per_head=576 * e, return_bytes_per_head=512 * e + LSE_BYTES,
        attention_flops_per_token=2.0 * (576 + 512) * heads,
        weight_bytes=total_params * 1.0, active_params=active_params,
        non_attention_flops_per_token=2.0 * active_params,
        topk_tokens=topk, indexer_heads=indexer_heads, indexer_head_dim=128 if topk else 0,
        weight_bytes_per_param=1.0, kv_lora_rank=512, qk_rope_head_dim=64, **dims,
    )


def _dense(name: str, layers: int, q_heads: int, kv_heads: int, hidden: int,
           weight_bytes: float, attention: str, **dims: int) -> Architecture:
    """A GQA/MHA architecture with 128-wide heads, bf16/fp16 weights (Lamina Table 2)."""
    e = 2.0
    head_dim = hidden // q_heads
    params = weight_bytes / e
    return Architecture(
        name=name, layers=layers, attention=attention, query_heads=q_heads, kv_heads=kv_heads,
        hidden_size=hidden, bytes_per_element=e,
        kv_bytes_per_token_bf16=2 * kv_heads * head_dim * e,
        kv_bytes_per_token_fp8=2 * kv_heads * head_dim * 1.0,
        query_bytes_per_head=head_dim * e, return_bytes_per_head=head_dim * e + LSE_BYTES,
        attention_flops_per_token=2.0 * (head_dim + head_dim) * q_heads,
        weight_bytes=weight_bytes, active_params=params, non_attention_flops_per_token=2 * params,
        head_dim=head_dim, **dims,
    )


# Layer dimensions beside each entry are the model's HF config.json (names as in LAYER_FIELDS).
_DSV3 = dict(q_lora_rank=1536, qk_nope_head_dim=128, v_head_dim=128, intermediate_size=18432,
             vocab_size=129280, experts=256, experts_per_token=8, shared_experts=1,
             expert_intermediate_size=2048, dense_layers=3, max_context_tokens=163_840)

MODELS: dict[str, Architecture] = {
    # DeepSeek-V3.2: 61 layers, MLA with 128 heads, hidden 7168, DSA top-2048 with a 64 × 128
    # indexer (HF config.json; REFERENCE.md). 671B total / 37B active parameters (DeepSeek-V3
    # report), served as the released fp8 checkpoint (1 B per parameter). Layer dimensions:
    # deepseek-ai/DeepSeek-V3.2-Exp config.json (q_lora 1536, kv_lora 512, qk_nope 128, rope 64,
    # v_head 128, intermediate 18432, vocab 129280, 256 routed experts top-8, 1 shared, expert
    # intermediate 2048, first_k_dense_replace 3, max_position_embeddings 163840 — the
    # model card's "128K" is the served default).
    "deepseek-v3.2": _mla("deepseek-v3.2", 61, 128, 7168, 671e9, 37e9, 2048, 64, **_DSV3),
    # DeepSeek-V3: the same without DSA (dense MLA); deepseek-ai/DeepSeek-V3 config.json.
    "deepseek-v3": _mla("deepseek-v3", 61, 128, 7168, 671e9, 37e9, None, 0, **_DSV3),
    # GLM-5 (glm_moe_dsa): 78 layers, 64 heads, hidden 6144, DSA top-2048 with a 32 × 128 indexer
    # (HF config; NVIDIA NeMo GlmMoeDsaConfig); 744B total / 40B active (HF transformers docs).
    # Served in fp8 (assumption: the zai-org fp8 release). Layer dimensions: zai-org/GLM-5
    # config.json (q_lora 2048, qk_nope 192, v_head 256, intermediate 12288, vocab 154880,
    # 256 routed experts top-8, 1 shared, expert intermediate 2048, first_k_dense_replace 3).
    # Its context window is not checked here (max_context_tokens None).
    "glm-5": _mla("glm-5", 78, 64, 6144, 744e9, 40e9, 2048, 32, q_lora_rank=2048,
                  qk_nope_head_dim=192, v_head_dim=256, intermediate_size=12288,
                  vocab_size=154880, experts=256, experts_per_token=8, shared_experts=1,
                  expert_intermediate_size=2048, dense_layers=3),
    # Kimi K2: 61 layers, MLA with 64 heads, hidden 7168, dense; 1T total / 32B active
    # (Moonshot model card), fp8 checkpoint. Layer dimensions: moonshotai/Kimi-K2-Instruct
    # config.json (q_lora 1536, qk_nope 128, v_head 128, intermediate 18432, vocab 163840,
    # 384 routed experts top-8, 1 shared, expert intermediate 2048, first_k_dense_replace 1).
    # Its context window is not checked here (max_context_tokens None).
    "kimi-k2": _mla("kimi-k2", 61, 64, 7168, 1000e9, 32e9, None, 0, q_lora_rank=1536,
                    qk_nope_head_dim=128, v_head_dim=128, intermediate_size=18432,
                    vocab_size=163840, experts=384, experts_per_token=8, shared_experts=1,
                    expert_intermediate_size=2048, dense_layers=1),
    # Llama-3.1-8B: 32 layers, GQA 32 q / 8 kv heads of 128, d = 4096, 8.03B parameters in bf16
    # (HF meta-llama/Llama-3.1-8B config.json and model card: intermediate 14336, vocab 128256,
    # max_position_embeddings 131072):
    # the 8B dense model of the span-query scenarios (one GPU).
    "llama-3.1-8b": _dense("llama-3.1-8b", 32, 32, 8, 4096, GB(16.06), "gqa",
                           intermediate_size=14336, vocab_size=128256,
                           max_context_tokens=131_072),
    # Llama-3-70B: 80 layers, GQA 64 q / 8 kv heads of 128, d = 8192, 137.5 GB (Lamina Table 2);
    # meta-llama/Meta-Llama-3-70B config.json: intermediate 28672, vocab 128256,
    # max_position_embeddings 8192.
    "llama-3-70b": _dense("llama-3-70b", 80, 64, 8, 8192, GB(137.5), "gqa",
                          intermediate_size=28672, vocab_size=128256, max_context_tokens=8_192),
    # LLaMA-65B: 80 layers, MHA 64 heads of 128, d = 8192, 130.1 GB (Lamina Table 2); its HF
    # config (huggyllama/llama-65b): intermediate 22016, vocab 32000, max_position_embeddings 2048.
    "llama-65b": _dense("llama-65b", 80, 64, 64, 8192, GB(130.1), "mha",
                        intermediate_size=22016, vocab_size=32000, max_context_tokens=2_048),
    # LLaMA-33B: 60 layers, MHA 52 heads of 128, d = 6656, 64.7 GB (Lamina Table 2); its HF
    # config (huggyllama/llama-30b): intermediate 17920, vocab 32000, max_position_embeddings 2048.
    "llama-33b": _dense("llama-33b", 60, 52, 52, 6656, GB(64.7), "mha",
                        intermediate_size=17920, vocab_size=32000, max_context_tokens=2_048),
    # Llama-2-70B (Vidur's validation model): meta-llama/Llama-2-70b-hf config.json — 80 layers,
    # GQA 64 q / 8 kv heads of 128, d = 8192, intermediate 28672, vocab 32000,
    # max_position_embeddings 4096 (the same figures
    # are columns of calibration/vidur_h100/compute/Llama-2-70b-hf.mlp.csv). Parameters from
    # those dimensions: 80 × (2·8192² + 2·8192·1024 + 3·8192·28672 + 2·8192) + 2·32000·8192
    # + 8192 = 68,976,648,192, in bf16: 137.95 GB.
    "llama-2-70b": _dense("llama-2-70b", 80, 64, 8, 8192, 2.0 * 68_976_648_192, "gqa",
                          intermediate_size=28672, vocab_size=32000, max_context_tokens=4_096),
}


def model(name: str | Architecture) -> Architecture:
    """The catalog architecture called ``name`` (case-insensitive), or ``name`` if already one."""
    if isinstance(name, Architecture):
        return name
    key = str(name).lower()
    if key in MODELS:
        return MODELS[key]
    known = ", ".join(sorted(MODELS))
    raise UnknownModelError(f"unknown model {name!r}; known: {known} "
                            "(or build one with Architecture.custom)")
