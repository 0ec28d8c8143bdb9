"""The ``[disaggregation]`` scenario section: Lamina-style pools and the homogeneous baseline.

One frozen :class:`DisaggregationSpec` holds what the two decode loops of
:mod:`simulator.disaggregation.lamina` (model-attention disaggregation) and
:mod:`simulator.disaggregation.homogeneous` (vLLM-like tensor-parallel replicas) need beyond the
ordinary scenario::

    [disaggregation]
    model_gpus = 2             # a: model-worker GPUs (projections + FFN)
    attention_gpus = 4         # b: attention-worker GPUs (attention + the KV cache)
    micro_batches = 3          # n: concurrent micro-batches over n − 1 model-worker slices
    model_gpu = "H100"         # catalog GPU kinds of the two pools
    attention_gpu = "H20"
    attention_split = "auto"   # "heads" | "requests" | "auto" (heads unless the model is MLA)
    early_q = true             # send Q before K and V so attention starts before they land
    prefill = "external"       # "external": prompts arrive prefilled (a prefill cluster, as
                               # Lamina evaluates decode); "local": the decode pools prefill
    max_batch = 0              # most requests decoding at once, all micro-batches (0 = KV-bound)
    baseline_gpus = 4          # the homogeneous baseline: GPUs in all …
    baseline_gpu = "H100"
    baseline_tp = 4            # … in tensor-parallel groups of this size (one replica each)
    baseline_max_batch = 0     # most requests per replica (0 = KV-bound)

:func:`validate_disaggregation` checks the raw TOML mapping field by field; every error is a
:class:`~simulator.errors.UserError` naming ``file: field 'disaggregation.x'`` and the fix. Checks
that need the model and the topology (weights fit the model pool, enough GPUs of each kind —
a model pool and an attention pool of one kind take disjoint GPUs, so they need the sum) are
:func:`check_against`'s, run before the first event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simulator import hardware
from simulator.errors import UserError, section_errors

SPLITS: tuple[str, ...] = ("auto", "heads", "requests")
PREFILLS: tuple[str, ...] = ("external", "local")


@dataclass(frozen=True)
class DisaggregationSpec:
    """Pools of the disaggregated run and of its homogeneous baseline (see module docstring).

    Attributes:
        model_gpus: model-worker GPUs ``a`` (>= 1).
        attention_gpus: attention-worker GPUs ``b`` (>= 1).
        micro_batches: concurrent micro-batches ``n`` (>= 2); the model pool is cut into
            ``n − 1`` slices of ``a / (n − 1)`` GPUs, each a full model replica (Lamina's
            deployment); layer ``l`` of a micro-batch runs on slice ``l mod (n − 1)``.
        model_gpu: catalog GPU kind of the model workers.
        attention_gpu: catalog GPU kind of the attention workers.
        attention_split: ``heads`` (every attention GPU serves all requests, a share of the
            KV heads), ``requests`` (each request's whole KV on one attention GPU: data-parallel
            attention, for MLA whose one latent head cannot be split) or ``auto``.
        early_q: send the query part first; attention starts when it lands and the new
            token's K and V follow.
        max_batch: most requests decoding at once over all micro-batches (0 = no limit but
            the attention pool's KV capacity).
        baseline_gpus: GPUs of the homogeneous baseline.
        baseline_gpu: their catalog kind.
        baseline_tp: tensor-parallel group size (each group is one replica holding all
            weights and its own KV).
        baseline_max_batch: most requests per replica (0 = KV-bound only).
    """

    model_gpus: int = 2
    attention_gpus: int = 4
    micro_batches: int = 3
    model_gpu: str = "H100"
    attention_gpu: str = "H20"
    attention_split: str = "auto"
    early_q: bool = True
    prefill: str = "external"
    max_batch: int = 0
    baseline_gpus: int = 4
    baseline_gpu: str = "H100"
    baseline_tp: int = 4
    baseline_max_batch: int = 0

    @property
    def slices(self) -> int:
        """Model-worker slices ``n − 1``."""
        return self.micro_batches - 1

    @property
    def slice_gpus(self) -> int:
        """GPUs per model-worker slice ``a / (n − 1)``."""
        return self.model_gpus // self.slices

    @property
    def replicas(self) -> int:
        """Homogeneous replicas ``baseline_gpus / baseline_tp``."""
        return self.baseline_gpus // self.baseline_tp

    def split_for(self, kv_heads: int) -> str:
        """The attention split actually used for a model with ``kv_heads`` KV heads."""
        if self.attention_split != "auto":
            return self.attention_split
        return "heads" if kv_heads >= self.attention_gpus else "requests"

    def disaggregated_cost_per_hour(self) -> float:
        """$/hour of the disaggregated pools (catalog prices)."""
        return (self.model_gpus * price(self.model_gpu)
                + self.attention_gpus * price(self.attention_gpu))

    def baseline_cost_per_hour(self) -> float:
        """$/hour of the homogeneous baseline (catalog prices)."""
        return self.baseline_gpus * price(self.baseline_gpu)


def price(kind: str) -> float:
    """$/hour of a catalog GPU kind; a :class:`UserError` if the catalog has no price for it."""
    spec = hardware.gpu(kind)
    if spec.price_per_hour is None:
        priced = ", ".join(k for k, v in sorted(hardware.GPUS.items()) if v.price_per_hour)
        raise UserError(f"GPU {kind!r} has no $/hour in the hardware catalog; equal-cost "
                        f"comparisons need one of: {priced}")
    return spec.price_per_hour


_INT_FIELDS = ("model_gpus", "attention_gpus", "micro_batches", "max_batch", "baseline_gpus",
               "baseline_tp", "baseline_max_batch")
_STR_FIELDS = ("model_gpu", "attention_gpu", "baseline_gpu", "attention_split", "prefill")


def validate_disaggregation(raw: Mapping[str, Any] | None,
                            source: str = "<dict>") -> DisaggregationSpec:
    """A :class:`DisaggregationSpec` from the raw ``[disaggregation]`` mapping (None = defaults).

    Raises :class:`UserError` ``"{source}: field 'disaggregation.x': …"`` for an unknown field,
    a wrong type, a count below its minimum, an unknown GPU kind, or a DOP that cannot be cut
    into ``n − 1`` equal slices / baseline replicas.
    """
    if raw is None:
        return DisaggregationSpec()
    fail = section_errors(raw, "disaggregation", source)

    known = (*_INT_FIELDS, *_STR_FIELDS, "early_q")
    for key in sorted(raw):
        if key not in known:
            raise fail(key, f"unknown field; known fields: {', '.join(known)}")
    vals: dict[str, Any] = {}
    for key in _INT_FIELDS:
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int):
                raise fail(key, f"expected an integer, got {v!r}")
            vals[key] = v
    for key in _STR_FIELDS:
        if key in raw:
            if not isinstance(raw[key], str):
                raise fail(key, f"expected a string, got {raw[key]!r}")
            vals[key] = raw[key]
    if "early_q" in raw:
        if not isinstance(raw["early_q"], bool):
            raise fail("early_q", f"expected true/false, got {raw['early_q']!r}")
        vals["early_q"] = raw["early_q"]
    spec = DisaggregationSpec(**vals)
    for key, low, what in (("model_gpus", 1, "model-worker GPUs"),
                           ("attention_gpus", 1, "attention-worker GPUs"),
                           ("micro_batches", 2, "micro-batches (n − 1 slices need n >= 2)"),
                           ("baseline_gpus", 1, "baseline GPUs"),
                           ("baseline_tp", 1, "GPUs per baseline replica"),
                           ("max_batch", 0, "requests (0 = no limit)"),
                           ("baseline_max_batch", 0, "requests (0 = no limit)")):
        if getattr(spec, key) < low:
            raise fail(key, f"{getattr(spec, key)} is too small; give at least {low} {what}")
    for key in ("model_gpu", "attention_gpu", "baseline_gpu"):
        try:
            hardware.gpu(getattr(spec, key))
        except UserError as exc:
            raise fail(key, str(exc)) from None
    if spec.attention_split not in SPLITS:
        raise fail("attention_split", f"{spec.attention_split!r} is not one of {', '.join(SPLITS)}")
    if spec.prefill not in PREFILLS:
        raise fail("prefill", f"{spec.prefill!r} is not one of {', '.join(PREFILLS)}")
    if spec.model_gpus % spec.slices:
        raise fail("micro_batches", f"n = {spec.micro_batches} cuts the model pool into "
                   f"{spec.slices} slices, which does not divide model_gpus = {spec.model_gpus}; "
                   f"pick n − 1 among the divisors of {spec.model_gpus}")
    if spec.baseline_gpus % spec.baseline_tp:
        raise fail("baseline_tp", f"{spec.baseline_tp} does not divide baseline_gpus = "
                   f"{spec.baseline_gpus}; use a divisor")
    return spec


def check_against(spec: DisaggregationSpec, arch, gpu_kinds: list[str], reserve_fraction: float,
                  source: str = "<dict>", *, baseline: bool = False) -> None:
    """Checks that need the model and the topology; a :class:`UserError` naming the field.

    Args:
        spec: the validated section.
        arch: the :class:`~simulator.models.Architecture` served.
        gpu_kinds: catalog kind of every topology GPU, in topology order.
        reserve_fraction: share of each GPU's HBM kept free (activations, workspace).
        source: the scenario file, for messages.
        baseline: check the homogeneous pools instead of the disaggregated ones.
    """
    def fail(key: str, msg: str) -> UserError:
        return UserError(f"{source}: field 'disaggregation.{key}': {msg}")

    upper = [k.upper() for k in gpu_kinds]
    if baseline:
        pools = (("baseline_gpus", spec.baseline_gpu, spec.baseline_gpus),)
    else:
        pools = (("model_gpus", spec.model_gpu, spec.model_gpus),
                 ("attention_gpus", spec.attention_gpu, spec.attention_gpus))
    used: dict[str, int] = {}  # per kind, by the pools before: pools share no GPU
    for key, kind, count in pools:
        have, before = upper.count(kind.upper()), used.get(kind.upper(), 0)
        if have - before < count:
            where = f"the topology has {have}" if not before else (
                f"{have - before} of the topology's {have} are left after the model pool's "
                f"{before} (the pools share no GPU)")
            raise fail(key, f"{count} {kind} GPUs asked, {where}; use a topology with more "
                       f"{kind} GPUs or lower {key}")
        used[kind.upper()] = before + count
    if baseline:
        g = hardware.gpu(spec.baseline_gpu)
        usable = spec.baseline_tp * g.hbm_bytes * (1 - reserve_fraction)
        if arch.weight_bytes >= usable:
            raise fail("baseline_tp", _no_fit(arch, spec.baseline_tp, spec.baseline_gpu, usable,
                                              "baseline_tp", reserve_fraction))
        return
    g = hardware.gpu(spec.model_gpu)
    usable = spec.slice_gpus * g.hbm_bytes * (1 - reserve_fraction)
    if arch.weight_bytes > usable:  # every slice is a full replica
        key = "model_gpus" if spec.slices == 1 else "micro_batches"
        what = "model_gpus" if spec.slices == 1 else "each slice's GPUs, model_gpus / (n − 1),"
        raise fail(key, _no_fit(arch, spec.slice_gpus, spec.model_gpu, usable, what,
                                reserve_fraction))


def _no_fit(arch, gpus: int, kind: str, usable: float, key: str, reserve: float) -> str:
    per = hardware.gpu(kind).hbm_bytes * (1 - reserve)
    need = math.floor(arch.weight_bytes / per) + 1
    return (f"model {arch.name!r} ({arch.weight_bytes / 1e9:.1f} GB of weights) does not fit "
            f"{gpus} × {kind} ({usable / 1e9:.1f} GB usable); raise {key} to about {need} or more")


def spec_of(scenario) -> DisaggregationSpec:
    """The scenario's ``[disaggregation]`` section (defaults if it has none)."""
    spec = getattr(scenario, "disaggregation", None)
    return spec if spec is not None else DisaggregationSpec()
