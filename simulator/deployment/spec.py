"""The ``[deployment]`` scenario section: how a mixture-of-experts model is laid out on the GPUs.

Without it a run serves the model as kvfabric always has (every GPU an attention rank of one
instance, experts charged on each GPU under uniform routing, no MoE traffic). With it, the GPUs
form *instances* — groups of attention data-parallel ranks whose experts are spread over the
same GPUs (expert parallelism, EP) — that step together and exchange every MoE layer's tokens on
the fabric; optionally a separate pool of *prefill* instances computes prompts and hands each
request's KV to a decode instance over RDMA (prefill/decode disaggregation)::

    [deployment]
    instances = 1              # decode instances
    attention_dp = 16          # attention data-parallel ranks per instance (one GPU each) …
    attention_tp = 1           # … each over this many GPUs (tensor-parallel attention)
    ep = 16                    # expert-parallel degree (= the instance's GPUs)
    experts_per_rank = 18      # routed experts per rank, replicas included (default: derived)
    redundant_experts = 32     # extra replicas of the hottest experts (EPLB)
    dense_layers = 3           # first layers with a dense FFN (default: the model's)
    moe_kernels = "low_latency"  # DeepEP kernels: "low_latency" (decode) | "normal"
    two_batch_overlap = false  # split each step into two micro-batches that overlap
    popularity = "uniform"     # expert popularity: "uniform" | "zipf" | [weights per expert]
                               # (a table: at least the model's top-k weights > 0)
    zipf_exponent = 1.0        # with popularity = "zipf"
    moe_on_fabric = true       # false: all-to-alls take their closed-form time off the fabric
                               # (an idle fabric for the KV traffic: the ablation of issue 16)
    external_prefill = false   # true: prompts arrive prefilled on their decode rank (a prefill
                               # cluster outside the simulation, as DeepSeek's decode unit sees)
    gpu = "H100"               # the pool's GPU kind (default: any)
    [deployment.prefill]       # optional: a prefill pool (same fields as the decode pool)
    instances = 1
    attention_dp = 4
    moe_kernels = "normal"
    [deployment.transfer]      # the KV transfer engine between the pools (Mooncake TE)
    bandwidth = 23.75e9        # per NIC [B/s]
    message_overhead_time = 2.6e-6
    layerwise = true           # send each layer's KV as soon as it is computed

Pools take the topology's GPUs in order (``n0/gpu0``, ``n0/gpu1``, …; of the pool's ``gpu``
kind when given): the prefill pool first, then the decode instances, each instance a run of
consecutive GPUs; GPUs left over stay idle (:mod:`simulator.deployment.layout`).

:func:`validate_deployment` checks the raw TOML mapping field by field; every error is one
:class:`~simulator.errors.UserError` ``"file: field 'deployment.x': …"`` naming the fix. What
needs the model and the topology (expert counts, enough GPUs of each kind, a layout the pools
fit — a prefill pool of any kind must leave the decode pool's kind enough GPUs —, the weights
on each kind of GPU a pool is laid on) is :func:`~simulator.deployment.checks.check_against`'s,
run before the first event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator import hardware
from simulator.errors import UserError, section_errors
from simulator.units import GBps, us

MOE_KERNELS: tuple[str, ...] = ("low_latency", "normal")
POPULARITIES: tuple[str, ...] = ("uniform", "zipf")
DTYPES: dict[str, float] = {"fp8": 1.0, "bf16": 2.0}

#: Mooncake Transfer Engine, per NIC [B/s]: 190 GB/s over 8 × 400 Gb/s RoCE NICs for a 40 GB
#: transfer (kvcache-ai/Mooncake README, "Superior performance at scale"): 190 / 8 = 23.75 GB/s
#: per 400 Gb/s NIC. (Their 4 × 200 Gb/s figure, 87 GB/s, is 21.75 GB/s per 200 Gb/s NIC.)
MOONCAKE_NIC_BANDWIDTH = GBps(190.0) / 8
#: Mooncake Transfer Engine per-message overhead [s] — assumed: the transfer-engine guide's
#: sample run reports 379,008 requests/s from one initiator (kvcache-ai/Mooncake
#: doc/en/transfer-engine.md, "Sample Run"), i.e. 1 / 379,008 s = 2.64 µs of posting per request.
MOONCAKE_MESSAGE_OVERHEAD = us(1e6 / 379_008)


@dataclass(frozen=True)
class PoolSpec:
    """One pool of identical instances (decode, or prefill).

    Attributes:
        instances: instances in the pool.
        attention_dp: attention data-parallel ranks per instance.
        attention_tp: GPUs per rank (tensor-parallel attention).
        ep: expert-parallel degree (None: the instance's GPUs).
        experts_per_rank: routed experts per EP rank, replicas included (None: derived).
        redundant_experts: replicas beyond the model's experts, given to the hottest ones.
        moe_kernels: DeepEP kernel mode, ``"low_latency"`` or ``"normal"``.
        two_batch_overlap: two micro-batches per step, one's all-to-all under the other's
            compute.
        gpu: catalog GPU kind of the pool (None: the topology's GPUs of any kind).
    """

    instances: int = 1
    attention_dp: int = 1
    attention_tp: int = 1
    ep: int | None = None
    experts_per_rank: int | None = None
    redundant_experts: int = 0
    moe_kernels: str = "low_latency"
    two_batch_overlap: bool = False
    gpu: str | None = None

    @property
    def instance_gpus(self) -> int:
        """GPUs of one instance: ``attention_dp × attention_tp``."""
        return self.attention_dp * self.attention_tp

    @property
    def gpus(self) -> int:
        """GPUs of the pool."""
        return self.instances * self.instance_gpus

    @property
    def ep_degree(self) -> int:
        """The expert-parallel degree (the instance's GPUs unless given)."""
        return self.ep if self.ep is not None else self.instance_gpus


@dataclass(frozen=True)
class TransferSpec:
    """The transfer engine that moves KV from prefill to decode instances.

    Attributes:
        bandwidth: what the engine sustains per NIC [B/s] (:data:`MOONCAKE_NIC_BANDWIDTH`).
        message_overhead_time: posting cost per message [s] (:data:`MOONCAKE_MESSAGE_OVERHEAD`).
        layerwise: send each simulated layer's KV when it is computed (else the whole
            request's KV when its prefill ends).
    """

    bandwidth: float = MOONCAKE_NIC_BANDWIDTH
    message_overhead_time: float = MOONCAKE_MESSAGE_OVERHEAD
    layerwise: bool = True


@dataclass(frozen=True)
class DeploymentSpec:
    """The validated ``[deployment]`` section (see the module docstring).

    Attributes:
        decode: the decode pool (or the only pool, which then also prefills).
        prefill: a separate prefill pool, or None (each instance prefills its own requests).
        transfer: the KV transfer engine (used with a prefill pool).
        dense_layers: first layers with a dense FFN (None: the model's).
        popularity: ``"uniform"``, ``"zipf"`` or a weight per expert.
        zipf_exponent: exponent ``s`` of the Zipf popularity (expert of rank i: ∝ 1 / i^s).
        dispatch_dtype: element type of dispatched tokens (DeepSeek: fp8).
        combine_dtype: element type of combined results (DeepSeek: bf16).
        moe_on_fabric: put the all-to-all on the fabric (false: each exchange takes its closed
            form's time and no link, to compare with an idle fabric).
        external_prefill: requests arrive with their prompt's KV on their decode rank (computed
            by a prefill cluster the run does not simulate); no prefill pool then.
    """

    decode: PoolSpec = field(default_factory=PoolSpec)
    prefill: PoolSpec | None = None
    transfer: TransferSpec = field(default_factory=TransferSpec)
    dense_layers: int | None = None
    popularity: str | tuple[float, ...] = "uniform"
    zipf_exponent: float = 1.0
    dispatch_dtype: str = "fp8"
    combine_dtype: str = "bf16"
    moe_on_fabric: bool = True
    external_prefill: bool = False

    def pools(self) -> list[tuple[str, PoolSpec]]:
        """``[("prefill", …), ("decode", …)]``, the prefill pool only when there is one."""
        return ([("prefill", self.prefill)] if self.prefill is not None else []) + \
            [("decode", self.decode)]


_POOL_INTS = ("instances", "attention_dp", "attention_tp", "ep", "experts_per_rank",
              "redundant_experts")
_POOL_KEYS = (*_POOL_INTS, "moe_kernels", "two_batch_overlap", "gpu")
_TOP_KEYS = (*_POOL_KEYS, "dense_layers", "popularity", "zipf_exponent", "dispatch_dtype",
             "combine_dtype", "moe_on_fabric", "external_prefill", "prefill", "transfer")
_TRANSFER_KEYS = ("bandwidth", "message_overhead_time", "layerwise")


def validate_deployment(raw: Mapping[str, Any] | None, source: str = "<dict>") -> DeploymentSpec:
    """A :class:`DeploymentSpec` from the raw ``[deployment]`` mapping (None = defaults).

    Raises :class:`UserError` ``"{source}: field 'deployment.x': …"`` for an unknown field, a
    wrong type or range, an unknown GPU kind or kernel mode, or a popularity it cannot use.
    """
    if raw is None:
        return DeploymentSpec()
    fail = section_errors(raw, "deployment", source)

    _unknown(raw, "", _TOP_KEYS, fail)
    decode = _pool(raw, "", "low_latency", fail)
    prefill = None
    if "prefill" in raw:
        sec = raw["prefill"]
        if not isinstance(sec, Mapping):
            raise fail("prefill", "must be a table ([deployment.prefill])")
        _unknown(sec, "prefill.", _POOL_KEYS, fail)
        prefill = _pool(sec, "prefill.", "normal", fail)
    transfer = TransferSpec()
    if "transfer" in raw:
        sec = raw["transfer"]
        if not isinstance(sec, Mapping):
            raise fail("transfer", "must be a table ([deployment.transfer])")
        _unknown(sec, "transfer.", _TRANSFER_KEYS, fail)
        vals: dict[str, Any] = {}
        if "bandwidth" in sec:
            vals["bandwidth"] = _number(sec["bandwidth"], "transfer.bandwidth", fail,
                                        lambda x: x >= hardware.MIN_BANDWIDTH,  # 1e-300: no rate
                                        f"give a rate >= {hardware.MIN_BANDWIDTH:g} B/s")
        if "message_overhead_time" in sec:
            vals["message_overhead_time"] = _number(
                sec["message_overhead_time"], "transfer.message_overhead_time", fail,
                lambda x: 0 <= x < 1, "give seconds in [0, 1)")
        if "layerwise" in sec:
            vals["layerwise"] = _bool(sec["layerwise"], "transfer.layerwise", fail)
        transfer = TransferSpec(**vals)
        if prefill is None:
            raise fail("transfer", "applies only with a prefill pool; add [deployment.prefill] "
                       "or remove [deployment.transfer]")
    top: dict[str, Any] = {}
    if "dense_layers" in raw:
        top["dense_layers"] = _int(raw["dense_layers"], "dense_layers", 0, fail)
    if "popularity" in raw:
        top["popularity"] = _popularity(raw["popularity"], fail)
    if "zipf_exponent" in raw:
        top["zipf_exponent"] = _number(raw["zipf_exponent"], "zipf_exponent", fail,
                                       lambda x: 0 < x <= 10, "give an exponent in (0, 10]")
        if top.get("popularity", "uniform") != "zipf":
            raise fail("zipf_exponent", "applies only with popularity = \"zipf\"")
    if "moe_on_fabric" in raw:
        top["moe_on_fabric"] = _bool(raw["moe_on_fabric"], "moe_on_fabric", fail)
    if "external_prefill" in raw:
        top["external_prefill"] = _bool(raw["external_prefill"], "external_prefill", fail)
        if top["external_prefill"] and prefill is not None:
            raise fail("external_prefill", "a prefill pool is given too; use one or the other")
    for key in ("dispatch_dtype", "combine_dtype"):
        if key in raw:
            if raw[key] not in DTYPES:
                raise fail(key, f"{raw[key]!r} is not one of {', '.join(DTYPES)}")
            top[key] = raw[key]
    return DeploymentSpec(decode=decode, prefill=prefill, transfer=transfer, **top)


def _unknown(sec: Mapping, prefix: str, known: tuple[str, ...], fail) -> None:
    for key in sorted(sec):
        if key not in known:
            raise fail(f"{prefix}{key}", f"unknown field; known fields: {', '.join(known)}")


def _int(v, key: str, low: int, fail) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise fail(key, f"expected an integer, got {v!r}")
    if v < low:
        raise fail(key, f"{v} is too small; give an integer >= {low}")
    return v


def _bool(v, key: str, fail) -> bool:
    if not isinstance(v, bool):
        raise fail(key, f"expected true/false, got {v!r}")
    return v


def _number(v, key: str, fail, ok, hint: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise fail(key, f"expected a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v) or not ok(v):
        raise fail(key, f"invalid value {v!r}; {hint}")
    return v


def _popularity(v, fail) -> str | tuple[float, ...]:
    if isinstance(v, str):
        if v not in POPULARITIES:
            raise fail("popularity", f"{v!r} is not one of {', '.join(POPULARITIES)} (or give a "
                       "list of weights, one per expert)")
        return v
    if isinstance(v, list) and v:
        out = []
        for i, w in enumerate(v):
            if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) \
                    or w < 0:
                raise fail("popularity", f"weight {i} is {w!r}; give numbers >= 0")
            out.append(float(w))
        if not sum(out) > 0:
            raise fail("popularity", "every weight is 0; give at least one weight > 0")
        return tuple(out)
    raise fail("popularity", f"expected \"uniform\", \"zipf\" or a list of weights, got {v!r}")


def _pool(sec: Mapping, prefix: str, default_kernels: str, fail) -> PoolSpec:
    vals: dict[str, Any] = {"moe_kernels": default_kernels}
    for key in _POOL_INTS:
        if key in sec:
            vals[key] = _int(sec[key], prefix + key, 0 if key == "redundant_experts" else 1,
                             fail)
    if "moe_kernels" in sec:
        if sec["moe_kernels"] not in MOE_KERNELS:
            raise fail(prefix + "moe_kernels", f"{sec['moe_kernels']!r} is not one of "
                       f"{', '.join(MOE_KERNELS)}")
        vals["moe_kernels"] = sec["moe_kernels"]
    if "two_batch_overlap" in sec:
        vals["two_batch_overlap"] = _bool(sec["two_batch_overlap"], prefix + "two_batch_overlap",
                                          fail)
    if "gpu" in sec:
        if not isinstance(sec["gpu"], str):
            raise fail(prefix + "gpu", f"expected a GPU kind, got {sec['gpu']!r}")
        try:
            vals["gpu"] = hardware.gpu(sec["gpu"]).name
        except UserError as exc:
            raise fail(prefix + "gpu", str(exc)) from None
    pool = PoolSpec(**vals)
    if pool.ep is not None and pool.ep != pool.instance_gpus:
        raise fail(prefix + "ep", f"{pool.ep} is not the instance's {pool.instance_gpus} GPUs "
                   f"(attention_dp × attention_tp): experts are spread over every GPU of an "
                   f"instance; set ep = {pool.instance_gpus} or change attention_dp")
    return pool
