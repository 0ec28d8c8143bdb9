"""What one GPU of a pool serves of the model: the architecture, a share of its heads, its layers.

Both pool loops (:mod:`simulator.disaggregation.lamina`,
:mod:`simulator.disaggregation.homogeneous`) price a GPU's kernels with an architecture
(:mod:`simulator.models`) reshaped to what that GPU runs, as plain functions of the catalog's
frozen dataclasses:

- :func:`served_arch` — the scenario's model, or a sparse (DSA) one run dense;
- :func:`split_heads` and :func:`head_shard` — the KV heads (and their query heads) a GPU of an
  attention group or a tensor-parallel replica holds, with its share of KV bytes and FLOPs;
- :func:`attended_tokens` — the tokens a query attends (its context, or top-k for DSA);
- :func:`fold_layers` — the real layers each simulated layer slot stands for.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from simulator.models import model as lookup_model


def head_shard(arch, kv_heads: int):
    """The architecture one GPU sees when it serves ``kv_heads`` of ``arch``'s KV heads (and
    their query heads): KV bytes, query heads and attention FLOPs scaled by the share."""
    share = kv_heads / arch.kv_heads
    return dataclasses.replace(
        arch, query_heads=max(1, round(arch.query_heads * share)), kv_heads=kv_heads,
        kv_bytes_per_token_bf16=arch.kv_bytes_per_token_bf16 * share,
        kv_bytes_per_token_fp8=arch.kv_bytes_per_token_fp8 * share,
        attention_flops_per_token=arch.attention_flops_per_token * share)


def split_heads(kv_heads: int, parts: int) -> list[int]:
    """KV heads per part, as even as possible, larger shares first (``parts <= kv_heads``)."""
    base, extra = divmod(kv_heads, parts)
    return [base + (i < extra) for i in range(parts)]


def attended_tokens(arch, context: np.ndarray) -> np.ndarray:
    """Tokens each query attends: its context, capped at top-k for sparse (DSA) models."""
    context = np.asarray(context, float)
    return np.minimum(context, arch.topk_tokens) if arch.sparse else context


def fold_layers(layers: int, groups: int, multiple: int = 1) -> np.ndarray:
    """Real layers each simulated slot stands for: every layer (``groups = 0``) or ``groups``
    slots rounded to a multiple of ``multiple`` (so slots map evenly onto model slices)."""
    if groups <= 0 or groups >= layers:
        return np.ones(layers, np.int64)
    s = max(multiple, int(round(groups / multiple)) * multiple)
    s = min(s, layers)
    return np.diff(np.linspace(0, layers, s + 1).round().astype(np.int64))


def served_arch(scenario, arch=None):
    """The architecture a run serves: ``arch`` if given, else the scenario's model; with
    ``model.selection = "dense"`` a sparse (DSA) model attends its whole context instead."""
    arch = arch if arch is not None else lookup_model(scenario.model.name)
    if arch.sparse and scenario.model.selection == "dense":
        kind = "mla" if arch.attention == "mla_dsa" else arch.attention
        arch = dataclasses.replace(arch, topk_tokens=None, attention=kind)
    return arch
