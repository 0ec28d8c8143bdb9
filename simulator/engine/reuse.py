"""Which prompt blocks a prefill reuses, and what reuse costs: prefix, span and no reuse.

Given a request's prompt blocks, which of them the KV directory already holds (``known``), its
commutative spans and the reuse rule, :func:`plan` sorts every block into one of three classes
(a :class:`ReusePlan`):

- **as is** — the leading run of held blocks that were computed after this very prefix: the KV
  sits at the right positions and is used untouched (what a radix/prefix cache reuses; the
  engine compares each held block's prefix hash when it was computed with the prompt's,
  :func:`workloads.spans.row_prefix_hashes`). The run stops at the first block not held or
  computed after another prefix;
- **rotary** (``span`` only) — a block after that run that lies in a commutative span (a file,
  a document, a candidate answer) and is held, or repeats a block earlier in this prompt. Its
  keys were cached without their position, so the rotary embedding (RoPE) is applied for the
  positions it takes here: the *rotary pass*, priced by :func:`rotary_time`;
- **recompute** — everything else, prefilled. In particular, after the first block that breaks
  the prefix, every block outside a span is recomputed even if an identical block is held:
  content that follows a non-commuting boundary attended to a different prefix there, so its
  KV differs (span queries: only commuting inputs may be reused out of place) — unless the
  engine knows the held KV was computed after this very prefix (``same_prefix``: typically the
  version this session computed on an earlier turn, :meth:`simulator.engine.admission.
  Admission.context`), which is used as is wherever it sits.

**A prefill that gives a token computes at least its last block** (``gives_token``): the
sampled token needs the last prompt token's logits, so a prompt held in full recomputes its
last block (into a page of its own; the held one stays). vLLM v1 caps a prefix-cache hit at
``num_tokens − 1`` tokens in whole blocks (``KVCacheManager.get_computed_blocks``,
vllm/v1/core/kv_cache_manager.py), so a full hit recomputes the whole last block there too.
Not so where the KV arrives computed (a prefill→decode hand-off, ``external_prefill``): that
admission gives the token without computing; nor on a prefill pool's GPU, which hands its KV
off and gives no token in kvfabric's model (:meth:`simulator.engine.admission.Admission.
gives_token`).

``prefix`` has no rotary class; ``none`` recomputes every block. Both reuse classes reuse the
held KV in memory (no new pages); recomputed pages are prefilled whole — spans are laid out
page-aligned, so a recomputed page costs ``block_tokens`` tokens even when its content ends
early (the padding, which a trace counts in ``input_tokens``) — except the context's last
block, which is partial and computes only its own tokens, as vLLM's prefill does (it schedules
``num_tokens − num_computed_tokens``, not whole blocks): ``computed_tokens = recompute_blocks ×
block_tokens − (the last block's empty slots if it is recomputed)``. Until stop 68 the engine
charged that block whole too (up to ``block_tokens − 1`` tokens high), capping only a context
recomputed whole at its length.

Costs and their sources:

- **recompute** — the kernel model's prefill (:meth:`simulator.gpu.kernels.KernelModel.
  prefill_time`) of the computed tokens, as for any prefill (the attention of those tokens to
  the reused context is not charged, as for prefix reuse).
- **rotary pass** — one memory-bound pass per layer over the reused keys' rotary part: read it
  and write it rotated for its new positions (``2 × tokens × rotary bytes × layers``), 3 FLOPs
  per rotated element (``x·cos + rotate(x)·sin``: RoFormer, Su et al., arXiv 2104.09864), at
  the kernel model's copy efficiency, one launch per layer. This is the "re-adjust positional
  encodings" kernel of span-aware vLLM (IBM/vllm pull request #94, "Spans V2", which describes
  it) and LMCache's fused RoPE (``K[old_pos] → K[new_pos]`` in one kernel, CacheBlend).
  Rotary bytes per token per layer: MLA caches one decoupled RoPE key of 64 elements shared by
  all heads (DeepSeek-V2, arXiv 2405.04434; ``qk_rope_head_dim = 64`` in the HF configs), kept
  in bf16 even in the fp8 layout → 128 B; GQA/MHA rotate the whole key, half of the cached
  K + V. For :meth:`~simulator.models.Architecture.custom` models (no split known) half of the
  KV is assumed. Spans V2 instead applies RoPE inside the attention kernel on every read; in
  decode that hides under the memory-bound read, so decode is charged nothing extra here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.gpu.kernels import KernelModel
from simulator.hardware import GPUSpec
from simulator.models import Architecture

__all__ = ["RULES", "ReusePlan", "plan", "rotary_bytes_per_token", "rotary_time", "span_mask",
           "version_keys"]

#: Reuse rules (``placement.reuse``).
RULES: tuple[str, ...] = ("prefix", "span", "none")

#: Elements of MLA's decoupled RoPE key per token per layer (DeepSeek-V2/V3 configs).
MLA_ROPE_DIM = 64


@dataclass(frozen=True)
class ReusePlan:
    """The class of every prompt block (boolean masks of the prompt's length, disjoint,
    covering it)."""

    as_is: np.ndarray
    rotary: np.ndarray
    recompute: np.ndarray

    @property
    def reused(self) -> np.ndarray:
        """Blocks whose held KV is used (as is or after the rotary pass)."""
        return self.as_is | self.rotary

    def computed_tokens(self, context_tokens: int, block_tokens: int) -> int:
        """Prefill tokens: the recomputed blocks' tokens — every page whole, but the context's
        last block only up to its last token (``context_tokens`` [tokens] long in all, in
        ``len(plan)`` blocks of ``block_tokens``) [tokens]."""
        tokens = int(self.recompute.sum()) * block_tokens
        if tokens and self.recompute[-1]:  # its empty slots are not computed
            tokens -= max(len(self.recompute) * block_tokens - int(context_tokens), 0)
        return tokens

    def rotary_tokens(self, block_tokens: int) -> int:
        """Tokens whose keys take the rotary pass (whole pages) [tokens]."""
        return int(self.rotary.sum()) * block_tokens


def span_mask(spans: np.ndarray, n_blocks: int) -> np.ndarray:
    """Whether each of ``n_blocks`` prompt blocks lies in a span (flattened ``[s, e)`` pairs)."""
    mark = np.zeros(n_blocks + 1, dtype=np.int64)
    sp = np.asarray(spans, dtype=np.int64)
    np.add.at(mark, np.minimum(sp[0::2], n_blocks), 1)
    np.add.at(mark, np.minimum(sp[1::2], n_blocks), -1)
    return np.cumsum(mark[:-1]) > 0


def _repeats(ids: np.ndarray) -> np.ndarray:
    """Whether each id already occurred earlier in ``ids``."""
    if len(ids) == 0:
        return np.zeros(0, dtype=bool)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    return first[inverse] != np.arange(len(ids))


def plan(known: np.ndarray, ids: np.ndarray, in_span: np.ndarray | None, rule: str,
         same_prefix: np.ndarray | None = None, *, gives_token: bool = False) -> ReusePlan:
    """Sort a prompt's blocks into as-is / rotary / recompute (see the module docstring).

    Args:
        known: per block, whether the directory holds it.
        ids: the blocks' ids (or directory indices): equal values are equal content.
        in_span: per block, whether it lies in a commutative span (``span`` only; None = none).
        rule: ``"prefix"``, ``"span"`` or ``"none"``.
        same_prefix: per block, whether its held KV was computed after this prompt's prefix;
            None = assume so for every held block whose id does not repeat an earlier one of
            this prompt (the trace-level view, where ids encode their prefix).
        gives_token: the prefill samples a token, so it computes at least the last block.
    """
    known = np.asarray(known, dtype=bool)
    n = len(known)
    none = np.zeros(n, dtype=bool)
    if rule == "none":
        return ReusePlan(none, none.copy(), ~none)
    if rule not in RULES:
        raise ValueError(f"reuse rule {rule!r} is not one of {', '.join(RULES)}")
    repeat = _repeats(np.asarray(ids))
    ok = known & (~repeat if same_prefix is None else np.asarray(same_prefix, dtype=bool))
    lead = int(np.argmin(ok)) if not ok.all() else n
    as_is = none.copy()
    as_is[:lead] = True
    rotary = none.copy()
    if rule == "span" and in_span is not None:
        inside = np.asarray(in_span, dtype=bool)
        rotary[lead:] = (inside & (known | repeat))[lead:]
        if same_prefix is not None:  # outside the spans, a held block computed after this
            # very prefix is the right KV wherever it sits (its version, engine.admission)
            as_is[lead:] = (ok & ~inside)[lead:]
    if gives_token and n and (as_is | rotary).all():
        as_is[-1] = rotary[-1] = False  # held in full: the last block gives the token
    return ReusePlan(as_is, rotary, ~(as_is | rotary))


def version_keys(keys: np.ndarray, prefix_hashes: np.ndarray) -> np.ndarray:
    """Directory keys (int64) for blocks of content ``keys`` computed after the prefixes whose
    hashes are ``prefix_hashes``: a splitmix64 mix of the two.

    A block held as computed after another prefix is other KV (vLLM keys a cached block by its
    whole prefix), so a prompt recomputes it under the ``prefix`` rule — and keeps what it
    computed as a block of its own, under this key, which its session's next turn (or its own
    recompute after a preemption) then finds. Collisions with trace keys are as likely as two
    random 64-bit values meeting."""
    from workloads.spans import _mix

    x = np.asarray(keys, dtype=np.int64).astype(np.uint64) ^ np.asarray(prefix_hashes,
                                                                          dtype=np.uint64)
    return _mix(x).astype(np.int64)


def rotary_bytes_per_token(arch: Architecture) -> float:
    """Bytes of cached key per token per layer that carry the rotary embedding [B]."""
    if arch.attention in ("mla", "mla_dsa"):
        return MLA_ROPE_DIM * arch.bytes_per_element  # bf16 in both KV layouts
    # GQA / MHA: K of K + V, the whole head rotated; a custom model: assumed half as well
    return arch.kv_bytes_per_token / 2.0


def rotary_time(kernels: KernelModel, spec: GPUSpec, arch: Architecture, tokens: float,
                gpus: int = 1) -> float:
    """The rotary pass over ``tokens`` reused position-free tokens, all layers, on ``gpus``
    GPUs of ``spec`` splitting the work evenly [s] (see the module docstring)."""
    if tokens <= 0:
        return 0.0
    rot = rotary_bytes_per_token(arch)
    if not isinstance(kernels, KernelModel):  # a profile: the measured device copy, per layer
        # (the rotation's 3 FLOPs per element hide under the memory-bound read and write)
        return kernels.copy_time(spec, tokens * rot * arch.layers / gpus, kernels=arch.layers)
    nbytes = 2.0 * tokens * rot * arch.layers
    flops = 3.0 * tokens * (rot / arch.bytes_per_element) * arch.layers
    return kernels.roofline(spec, nbytes / gpus, flops / gpus, launches=arch.layers,
                            memory_efficiency=kernels.copy_efficiency).total
