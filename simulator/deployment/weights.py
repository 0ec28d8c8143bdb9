"""The weights one GPU of a deployment holds.

Every rank holds the model's non-expert weights (attention, dense FFNs, shared experts,
embeddings — data-parallel attention replicates them) plus its routed experts' weights in every
MoE layer. One routed expert of one layer has ``3 × hidden × expert_intermediate`` parameters
(gate, up, down projections; the models' HF configs, :mod:`simulator.models`).
"""

from __future__ import annotations


def expert_params(arch) -> float:
    """Parameters of one routed expert in one layer: gate, up and down projections."""
    return 3.0 * arch.hidden_size * arch.expert_intermediate_size


def moe_layers(arch, dense_layers: int | None = None) -> int:
    """MoE layers of ``arch`` (all layers less the dense ones; 0 without experts)."""
    if not arch.experts:
        return 0
    dense = arch.dense_layers if dense_layers is None else dense_layers
    return int(arch.layers - dense)


def weights_per_gpu(arch, pool, dense_layers: int | None = None) -> float:
    """Weight bytes on one GPU of ``pool`` (a :class:`~simulator.deployment.spec.PoolSpec`): the
    non-expert weights plus the rank's routed experts in every MoE layer (see the module
    docstring) [B]."""
    if not arch.experts:
        return arch.weight_bytes / max(pool.attention_tp, 1)
    per_param = arch.weight_bytes_per_param
    routed = arch.experts * moe_layers(arch) * expert_params(arch)  # as the checkpoint has them
    rest = max(arch.weight_bytes / per_param - routed, 0.0)
    slots = pool.experts_per_rank or (arch.experts + pool.redundant_experts) / pool.ep_degree
    mine = slots * moe_layers(arch, dense_layers) * expert_params(arch)
    return (rest + mine) * per_param
