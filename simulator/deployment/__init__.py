"""Deployments: how a mixture-of-experts model is laid out on the cluster's GPUs.

- :mod:`~simulator.deployment.spec` — the ``[deployment]`` scenario section (pools of
  instances, attention data and tensor parallelism, expert parallelism, DeepEP kernel mode,
  expert popularity, the prefill→decode transfer engine) and its validation;
- :mod:`~simulator.deployment.checks` — what needs the model and the topology: the section
  against the model's experts, the topology's GPUs and their memory (:func:`check_against`);
- :mod:`~simulator.deployment.layout` — which GPUs each pool takes, which GPU is which rank of
  which instance, and the layout as text or JSON;
- :mod:`~simulator.deployment.weights` — the weights each GPU holds.

What the deployment does on the fabric lives with its owners: the MoE layer's routing, traffic
and closed form in :mod:`simulator.costmodel.moe`, the KV transfer's closed form in
:mod:`simulator.costmodel.transfer`, their replay in the engine (:mod:`simulator.engine.instances`).

May import: ``units``, ``errors``, ``hardware``, ``models``. Exports :class:`DeploymentSpec`,
:class:`PoolSpec`, :class:`TransferSpec`, :func:`validate_deployment`, :func:`check_against`,
:class:`Layout`, :func:`build_layout`, :func:`weights_per_gpu`.
"""

from simulator.deployment.checks import check_against
from simulator.deployment.layout import Instance, Layout, build_layout
from simulator.deployment.spec import (
    DeploymentSpec,
    PoolSpec,
    TransferSpec,
    validate_deployment,
)
from simulator.deployment.weights import weights_per_gpu

__all__ = ["DeploymentSpec", "Instance", "Layout", "PoolSpec", "TransferSpec", "build_layout",
           "check_against", "validate_deployment", "weights_per_gpu"]
