"""The sections a scenario composes, as frozen dataclasses, and the values their fields allow.

One dataclass per section of :mod:`simulator.scenario`'s schema that lives with the scenario —
``[topology]``, ``[model]``, ``[workload]``, ``[placement]``, ``[engine]`` — each with its
defaults; :mod:`simulator.scenario.validate` fills them from TOML. Sections owned elsewhere
(``[serving]``, ``[disaggregation]``, ``[deployment]``) keep their dataclasses with their owners.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STACK_NAMES = ("ideal", "nccl", "ibgda")
SELECTIONS = ("auto", "dense", "dsa", "nsa")
ENGINE_MODES = ("exact", "fast")
SCHEMES = ("first_writer", "hash", "range", "repo_affinity", "replicate")
HOME_RULES = ("least_loaded", "repo_affinity")
REUSE_RULES = ("prefix", "span", "none")
WORKLOAD_KINDS = ("agentic", "trace", "spans", "mixed")


#: The longest ``[engine] duration`` [s] (116 days): far past any serving study, and short
#: enough that a double still resolves nanoseconds at the end of the run (at 1e300 s the clock
#: could not tell one decode step from the next, and the link tables overflowed).
MAX_DURATION = 1e7

#: The largest ``[workload] time_scale``: a day of trace stretched to three years, still with
#: sub-microsecond resolution in its arrival times.
MAX_TIME_SCALE = 1e3


@dataclass(frozen=True)
class TopologySpec:
    """Which cluster: a preset builder with a node count, a spec string, or a topology file."""

    preset: str | None = "dgx_h100"
    nodes: int = 1
    spec: str | None = None
    file: str | None = None

    def build(self):
        """Build the topology graph (imports :mod:`topologies` lazily)."""
        import topologies

        if self.file is not None:
            return topologies.load(self.file)
        if self.spec is not None:
            return topologies.parse_spec(self.spec)
        return topologies.build(self.preset, nodes=self.nodes)


@dataclass(frozen=True)
class ModelSpec:
    """Which model, and which sparse selection its decode attention uses."""

    name: str = "deepseek-v3.2"
    selection: str = "auto"


@dataclass(frozen=True)
class WorkloadSpec:
    """Where requests come from: a trace file (or shipped name) or the agentic generator.

    Attributes:
        kind: ``"trace"``, ``"agentic"``, ``"spans"`` or ``"mixed"``.
        trace: path or shipped trace name (kind = trace).
        agentic: generator parameters as sorted ``(key, value)`` pairs (kind = agentic).
        spans: span-generator parameters as sorted ``(key, value)`` pairs (kind = spans).
        mixed: mixed-fleet parameters as sorted ``(key, value)`` pairs (kind = mixed).
        A scenario file gives only its kind's table (another kind's is refused at load); a
        spec built in Python may hold any, and only its kind's is read.
        selections: optional selection-trace Parquet replayed verbatim instead of sampling.
        time_scale: arrival times are multiplied by this (< 1 compresses the trace).
        concurrency: keep this many requests outstanding (a closed loop: the next enters when
            one finishes; arrival times are ignored), or None (open loop, the trace's times).
    """

    kind: str = "trace"
    trace: str | None = None
    agentic: tuple[tuple[str, Any], ...] = ()
    selections: str | None = None
    time_scale: float = 1.0
    concurrency: int | None = None
    spans: tuple[tuple[str, Any], ...] = ()
    mixed: tuple[tuple[str, Any], ...] = ()

    def agentic_params(self) -> dict[str, Any]:
        """The generator parameters as a fresh dict."""
        return dict(self.agentic)

    def spans_params(self) -> dict[str, Any]:
        """The span generator's parameters as a fresh dict."""
        return dict(self.spans)

    def mixed_params(self) -> dict[str, Any]:
        """The mixed-fleet generator's parameters as a fresh dict."""
        return dict(self.mixed)


@dataclass(frozen=True)
class PlacementSpec:
    """Where KV blocks live and which GPU is a session's home.

    Attributes:
        scheme: placement of prompt blocks over owner GPUs (see :mod:`simulator.kvcache`).
        replicas: copies per block for ``replicate`` (``replicate:K``), else 1.
        home: ``least_loaded`` or ``repo_affinity``.
        block_tokens: tokens per engine KV block.
        reserve_fraction: share of HBM kept free (activations, workspace) (0 ≤ x < 1).
        weights_per_gpu: model weights resident on each GPU [B]; None = the model's total
            weights spread over every GPU of the cluster.
        host_tier: blocks an owner cannot keep in HBM spill to its machine's host DRAM.
        host_capacity: host DRAM for KV per machine [B].
        reuse: ``prefix`` (a block is reused only within an identical prefix), ``span``
            (also blocks of commutative spans wherever they sit, at the costs of
            :mod:`simulator.engine.reuse`) or ``none`` (every prompt is prefilled whole).
    """

    scheme: str = "first_writer"
    replicas: int = 1
    home: str = "least_loaded"
    block_tokens: int = 64
    reserve_fraction: float = 0.1
    weights_per_gpu: float | None = None
    host_tier: bool = True
    host_capacity: float = 1.0e12
    reuse: str = "prefix"


@dataclass(frozen=True)
class EngineSpec:
    """Decode-loop knobs.

    Attributes:
        max_batch: most queries one GPU decodes per iteration.
        layer_groups: 0 simulates every layer; G > 0 simulates G representative layers, each
            standing for layers / G identical ones (exact when rates are stationary).
        duration: stop admitting/simulating after this much simulated time [s] (None = no limit).
        max_requests: replay only the first N requests (None = all).
        mode: ``"exact"`` (an event per message and layer) or ``"fast"`` (an event per decode
            step, held to the exact engine by a validation suite); see :mod:`simulator.runner`.
    """

    max_batch: int = 64
    layer_groups: int = 0
    duration: float | None = None
    max_requests: int | None = None
    mode: str = "exact"
