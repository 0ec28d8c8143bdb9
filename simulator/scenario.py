"""Scenarios: a TOML file → validated, frozen dataclasses, one per component.

A scenario names everything a run needs — topology, model, workload, KV placement, engine knobs,
the policies to compare, the network stack and the seed — and is validated *before* the first
event: every bad field raises :class:`~simulator.errors.UserError` naming the file, the dotted
field and the fix. Each component later receives only its own part (``scenario.placement`` for the
KV cache, ``scenario.engine`` for the decode loop …), never the whole scenario.

Schema (all sections optional except ``[topology]``, ``[model]`` and ``[workload]``)::

    name = "agentic_repo"          # free text
    seed = 0                       # int >= 0
    stack = "ibgda"                # "ideal" | "nccl" | "ibgda"
    policies = ["route", "fetch", "adaptive"]
    include = "calibration.toml"   # optional: a calibration TOML written by `kvfabric calibrate`
    [calibration] profile = "roofline" (default) | "measured" | "<profile name or .toml>" |
                 {H100 = "h100-vidur", …}  (simulator.gpu.profiled)

    [topology]   preset = "dgx_h100", nodes = 2   (or spec = "dgx_h100:nodes=2", or file = "x.toml")
    [model]      name = "deepseek-v3.2", selection = "auto" | "dense" | "dsa" | "nsa"
    [workload]   kind = "agentic" | "trace" | "spans" | "mixed"; trace = "<file or shipped name>";
                 selections = "<selection-trace parquet>"; time_scale = 1.0;
                 concurrency = <N: a closed loop of N outstanding requests>;
                 [workload.agentic] … (passed verbatim to the agentic generator's dataclass;
                 with preset = "copilot_2026" to the session generator's)
                 [workload.spans] shape = "rag" | "nested", … (the span generators' fields)
                 [workload.mixed] … (workloads.mixed.MixedFleetParams: sub-agents, private
                 long-context sessions and short chats on one cluster)
    [placement]  scheme = "first_writer" | "hash" | "range" | "repo_affinity" | "replicate:K";
                 home = "least_loaded" | "repo_affinity"; block_tokens = 64;
                 reserve_fraction = 0.1; weights_per_gpu = <bytes, optional>;
                 host_tier = true; host_capacity = <bytes>; reuse = "prefix" | "span" | "none"
    [engine]     max_batch = 64; layer_groups = 0 (0 = every layer simulated);
                 duration = <simulated s>; max_requests = <int>;
                 mode = "exact" | "fast" (the decode-loop engine; simulator.runner)
    [serving]    max_num_batched_tokens = 8192; max_num_seqs = <[engine] max_batch>;
                 chunked_prefill = true; kv_allocation = "on_demand" | "reserve";
                 cuda_graphs = true; step_overhead_time = <s>
                 (validated by :mod:`simulator.engine.scheduler`)
    [disaggregation]  Lamina-style pools for the ``disaggregated`` / ``homogeneous`` policies
                 (validated by :mod:`simulator.disaggregation.spec`)
    [deployment] expert-parallel instances, prefill/decode pools and their KV transfer
                 (validated by :mod:`simulator.deployment.spec`)

Relative paths (``include``, ``workload.trace``, ``workload.selections``, ``topology.file``) are
resolved against the scenario file's folder.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.errors import UserError

STACK_NAMES = ("ideal", "nccl", "ibgda")
SELECTIONS = ("auto", "dense", "dsa", "nsa")
ENGINE_MODES = ("exact", "fast")
SCHEMES = ("first_writer", "hash", "range", "repo_affinity", "replicate")
HOME_RULES = ("least_loaded", "repo_affinity")
REUSE_RULES = ("prefix", "span", "none")
WORKLOAD_KINDS = ("agentic", "trace", "spans", "mixed")


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
        kind: ``"trace"``, ``"agentic"`` or ``"spans"``.
        trace: path or shipped trace name (kind = trace).
        agentic: generator parameters as sorted ``(key, value)`` pairs (kind = agentic).
        spans: span-generator parameters as sorted ``(key, value)`` pairs (kind = spans).
        mixed: mixed-fleet parameters as sorted ``(key, value)`` pairs (kind = mixed).
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


def _default_serving():
    from simulator.engine.scheduler import ServingSpec

    return ServingSpec()


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Build with :meth:`load` (TOML) or :meth:`from_dict` (Python)."""

    name: str
    topology: TopologySpec
    model: ModelSpec
    workload: WorkloadSpec
    placement: PlacementSpec = field(default_factory=PlacementSpec)
    engine: EngineSpec = field(default_factory=EngineSpec)
    policies: tuple[str, ...] = ("route", "fetch", "adaptive")
    stack: str = "ibgda"
    seed: int = 0
    calibration: tuple[tuple[str, Any], ...] = ()
    source: str = "<dict>"
    disaggregation: Any = None
    serving: Any = field(default_factory=_default_serving)
    deployment: Any = None

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read and validate a scenario TOML file."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: scenario file not found; pass an existing .toml file")
        data = _read_toml(path)
        return cls.from_dict(data, source=str(path), base=path.parent)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str = "<dict>", base: str | Path | None = None
    ) -> Scenario:
        """Validate a parsed scenario mapping; ``source`` names it in error messages."""
        v = _Validator(source, Path(base) if base is not None else Path.cwd())
        return v.scenario(data)

    def with_changes(self, **changes: Any) -> Scenario:
        """A copy with some top-level fields or sub-specs replaced (``engine=…``, ``seed=…``)."""
        return dataclasses.replace(self, **changes)

    def calibration_dict(self) -> dict[str, Any]:
        """The included calibration values as a fresh dict (empty if none)."""
        return {k: _thaw(v) for k, v in self.calibration}


# -- validation --------------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; :class:`UserError` naming the file if it is not UTF-8 or TOML."""
    return _read_toml(Path(path))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                        f"{exc.start}); save the file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc}); fix the syntax at that line") from None


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and value and all(
        isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in value
    ):
        return {k: _thaw(v) for k, v in value}
    return value


class _Validator:
    """Checks one parsed TOML mapping section by section; errors name ``source: field``."""

    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base

    def fail(self, fld: str, msg: str) -> UserError:
        return UserError(f"{self.source}: field '{fld}': {msg}")

    def section(self, data: Mapping, name: str, known: tuple[str, ...], required: bool) -> dict:
        if name not in data:
            if required:
                raise self.fail(name, f"missing; add a [{name}] section")
            return {}
        sec = data[name]
        if not isinstance(sec, Mapping):
            raise self.fail(name, f"must be a table ([{name}]), got {type(sec).__name__}")
        self.unknown(sec, name, known)
        return dict(sec)

    def unknown(self, sec: Mapping, prefix: str, known: tuple[str, ...]) -> None:
        for key in sorted(sec):
            if key not in known:
                where = f"{prefix}.{key}" if prefix else key
                raise self.fail(where, f"unknown field; known fields: {', '.join(known)}")

    def get(self, sec: dict, prefix: str, key: str, typ, default, *, check=None, hint: str = ""):
        fld = f"{prefix}.{key}" if prefix else key
        if key not in sec:
            return default
        val = sec[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        if float in types and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if isinstance(val, bool) and bool not in types:
            raise self.fail(fld, f"expected {_tname(types)}, got a boolean")
        if not isinstance(val, types):
            raise self.fail(fld, f"expected {_tname(types)}, got {val!r}")
        if isinstance(val, float) and not math.isfinite(val):
            raise self.fail(fld, f"must be a finite number, got {val!r}")
        if check is not None and not check(val):
            raise self.fail(fld, f"invalid value {val!r}; {hint}")
        return val

    def choice(self, sec: dict, prefix: str, key: str, choices: tuple[str, ...], default: str):
        val = self.get(sec, prefix, key, str, default)
        if val not in choices:
            raise self.fail(
                f"{prefix}.{key}" if prefix else key,
                f"{val!r} is not one of: {', '.join(choices)}",
            )
        return val

    def path(self, value: str | None) -> str | None:
        if value is None:
            return None
        p = Path(value)
        if not p.is_absolute() and (self.base / p).exists():
            return str(self.base / p)
        return value

    # -- sections --------------------------------------------------------------------------

    def scenario(self, data: Mapping[str, Any]) -> Scenario:
        top_known = (
            "name", "seed", "stack", "policies", "include",
            "topology", "model", "workload", "placement", "engine", "calibration",
            "disaggregation", "serving", "deployment",
        )
        if not isinstance(data, Mapping):
            raise UserError(f"{self.source}: a scenario must be a TOML table")
        self.unknown(data, "", top_known)
        name = self.get(dict(data), "", "name", str, Path(self.source).stem)
        seed = self.get(dict(data), "", "seed", int, 0, check=lambda s: s >= 0,
                        hint="use an integer >= 0")
        stack = self.choice(dict(data), "", "stack", STACK_NAMES, "ibgda")
        policies = self.policies(data)
        calibration = self.calibration(data)
        engine = self.engine(data)
        deployment = self.deployment(data)
        return Scenario(
            name=name,
            topology=self.topology(data),
            model=self.model(data),
            workload=self.workload(data),
            placement=self.placement(data),
            engine=engine,
            policies=policies,
            stack=stack,
            seed=seed,
            calibration=calibration,
            source=self.source,
            disaggregation=self.disaggregation(data),
            serving=self.serving(data),
            deployment=deployment,
        )

    def deployment(self, data: Mapping):
        if "deployment" not in data:
            return None
        from simulator.deployment.spec import validate_deployment

        return validate_deployment(data["deployment"], self.source)

    def serving(self, data: Mapping):
        from simulator.engine.scheduler import validate_serving

        return validate_serving(data.get("serving"), self.source)

    def disaggregation(self, data: Mapping):
        if "disaggregation" not in data:
            return None
        from simulator.disaggregation.spec import validate_disaggregation

        return validate_disaggregation(data["disaggregation"], self.source)

    def policies(self, data: Mapping) -> tuple[str, ...]:
        from simulator.policies import POLICIES

        raw = data.get("policies", ["route", "fetch", "adaptive"])
        if isinstance(raw, str):
            raw = [p.strip() for p in raw.split(",") if p.strip()]
        if not isinstance(raw, list) or not raw or not all(isinstance(p, str) for p in raw):
            raise self.fail("policies", "must be a non-empty list of policy names")
        for p in raw:
            if p not in POLICIES:
                raise self.fail("policies", f"unknown policy {p!r}; known: {', '.join(POLICIES)}")
        twice = sorted({p for p in raw if raw.count(p) > 1})
        if twice:
            raise self.fail("policies", f"lists {', '.join(twice)} twice; name each policy once")
        return tuple(raw)

    def calibration(self, data: Mapping) -> tuple[tuple[str, Any], ...]:
        cal: dict[str, Any] = {}
        inc = data.get("include")
        if inc is not None:
            if not isinstance(inc, str):
                raise self.fail("include", "must be the path of a calibration TOML file")
            p = Path(self.path(inc))
            if not p.is_file():
                raise self.fail("include", f"file {inc!r} not found; write it with "
                                "`kvfabric calibrate` or fix the path")
            cal.update(_read_toml(p))
        extra = data.get("calibration", {})
        if not isinstance(extra, Mapping):
            raise self.fail("calibration", "must be a table")
        cal.update(extra)
        self.kernel_profile(cal)
        return _freeze(cal)

    def kernel_profile(self, cal: Mapping) -> None:
        """``calibration.profile``: the kernel profiles a run uses (simulator.gpu.profiled)."""
        from simulator.gpu.profiled import check_profile_choice

        if "profile" in cal:
            value = cal["profile"]
            if isinstance(value, str) and value.endswith(".toml"):
                cal["profile"] = value = self.path(value)
            try:
                check_profile_choice(value)
            except UserError as exc:
                raise self.fail("calibration.profile", str(exc)) from None

    def topology(self, data: Mapping) -> TopologySpec:
        sec = self.section(data, "topology", ("preset", "nodes", "spec", "file"), True)
        given = [k for k in ("preset", "spec", "file") if k in sec]
        if len(given) != 1:
            raise self.fail("topology", "give exactly one of preset (with nodes), spec or file")
        nodes = self.get(sec, "topology", "nodes", int, 1, check=lambda n: n >= 1,
                         hint="use a node count >= 1")
        if "nodes" in sec and "preset" not in sec:
            raise self.fail("topology.nodes", "only applies with topology.preset")
        return TopologySpec(
            preset=self.get(sec, "topology", "preset", str, None),
            nodes=nodes,
            spec=self.get(sec, "topology", "spec", str, None),
            file=self.path(self.get(sec, "topology", "file", str, None)),
        )

    def model(self, data: Mapping) -> ModelSpec:
        sec = self.section(data, "model", ("name", "selection"), True)
        if "name" not in sec:
            raise self.fail("model.name", "missing; name a model such as 'deepseek-v3.2'")
        from simulator.models import model as lookup_model

        try:
            lookup_model(self.get(sec, "model", "name", str, ""))
        except UserError as exc:
            raise self.fail("model.name", str(exc)) from None
        return ModelSpec(
            name=self.get(sec, "model", "name", str, "deepseek-v3.2"),
            selection=self.choice(sec, "model", "selection", SELECTIONS, "auto"),
        )

    def workload(self, data: Mapping) -> WorkloadSpec:
        sec = self.section(
            data, "workload", ("kind", "trace", "agentic", "selections", "time_scale",
                               "concurrency", "spans", "mixed"), True)
        kind = self.choice(sec, "workload", "kind", WORKLOAD_KINDS, "trace")
        trace = self.get(sec, "workload", "trace", str, None)
        agentic = sec.get("agentic", {})
        if not isinstance(agentic, Mapping):
            raise self.fail("workload.agentic", "must be a table of generator parameters")
        if kind == "trace" and trace is None:
            raise self.fail("workload.trace", "missing; name a trace file or a shipped trace "
                            "such as 'mooncake_conversation'")
        if kind != "trace" and trace is not None:
            raise self.fail("workload.trace", f"not used with kind = '{kind}'; remove it")
        if kind == "agentic":
            self.agentic(agentic, data)
        spans = sec.get("spans", {})
        if not isinstance(spans, Mapping):
            raise self.fail("workload.spans", "must be a table of span-generator parameters")
        mixed = sec.get("mixed", {})
        if not isinstance(mixed, Mapping):
            raise self.fail("workload.mixed", "must be a table of mixed-fleet parameters")
        if kind == "mixed":
            self.mixed(mixed, data)
        return WorkloadSpec(
            kind=kind,
            trace=self.path(trace),
            agentic=_freeze(agentic),
            selections=self.path(self.get(sec, "workload", "selections", str, None)),
            time_scale=self.get(sec, "workload", "time_scale", float, 1.0,
                                check=lambda x: x > 0, hint="use a factor > 0"),
            concurrency=self.get(sec, "workload", "concurrency", int, None,
                                 check=lambda n: n >= 1,
                                 hint="use a number of outstanding requests >= 1"),
            spans=_freeze(spans),
            mixed=_freeze(mixed),
        )

    def agentic(self, params: Mapping, data: Mapping) -> None:
        """Every ``[workload.agentic]`` key a generator field, of its type, in its range (the
        session generator's with a ``preset``, the simple generator's without)."""
        if "preset" in params:
            from workloads.presets import PRESETS, session_params
            from workloads.sessions import SessionParams

            preset = params["preset"]
            if preset not in PRESETS:
                raise self.fail("workload.agentic.preset", f"{preset!r} is not one of: "
                                f"{', '.join(PRESETS)}")
            fields = {f.name: type(f.default) for f in dataclasses.fields(SessionParams)}
            rest = {k: v for k, v in params.items() if k != "preset"}
            self.unknown(rest, "workload.agentic", ("preset", *fields))
            try:
                session_params(preset, **rest)
            except (TypeError, ValueError) as exc:
                raise self.fail("workload.agentic", str(exc)) from None
            return
        from workloads.agentic import AgenticParams

        fields = {f.name: type(f.default) for f in dataclasses.fields(AgenticParams)}
        self.unknown(params, "workload.agentic", tuple(fields))
        for key in params:
            self.get(dict(params), "workload.agentic", key, fields[key], None)
        placement = data.get("placement", {})
        bt = placement.get("block_tokens", 64) if isinstance(placement, Mapping) else 64
        bt = bt if isinstance(bt, int) and not isinstance(bt, bool) and bt >= 1 else 64
        try:
            AgenticParams(**{"block_tokens": bt, **params})
        except (TypeError, ValueError) as exc:
            msg = str(exc)
            name = next((f for f in sorted(fields, key=len, reverse=True)
                         if msg.startswith(f)), "")
            raise self.fail(f"workload.agentic{'.' + name if name else ''}", msg) from None

    def mixed(self, params: Mapping, data: Mapping) -> None:
        """Every ``[workload.mixed]`` key a :class:`workloads.mixed.MixedFleetParams` field, of
        its type, in its range."""
        from workloads.mixed import MixedFleetParams

        fields = {f.name: type(f.default) for f in dataclasses.fields(MixedFleetParams)}
        self.unknown(params, "workload.mixed", tuple(fields))
        for key in params:
            self.get(dict(params), "workload.mixed", key, fields[key], None)
        placement = data.get("placement", {})
        bt = placement.get("block_tokens", 64) if isinstance(placement, Mapping) else 64
        bt = bt if isinstance(bt, int) and not isinstance(bt, bool) and bt >= 1 else 64
        try:
            MixedFleetParams(**{"block_tokens": bt, **params})
        except (TypeError, ValueError) as exc:
            msg = str(exc)
            name = next((f for f in sorted(fields, key=len, reverse=True)
                         if msg.startswith(f)), "")
            raise self.fail(f"workload.mixed{'.' + name if name else ''}", msg) from None

    def placement(self, data: Mapping) -> PlacementSpec:
        known = ("scheme", "home", "block_tokens", "reserve_fraction", "weights_per_gpu",
                 "host_tier", "host_capacity", "reuse")
        sec = self.section(data, "placement", known, False)
        raw = self.get(sec, "placement", "scheme", str, "first_writer")
        scheme, replicas = raw, 1
        if raw.startswith("replicate"):
            _, _, k = raw.partition(":")
            if not k.isdigit() or int(k) < 1:
                raise self.fail("placement.scheme", f"{raw!r}: write replicate:K with K >= 1, "
                                "e.g. 'replicate:2'")
            scheme, replicas = "replicate", int(k)
        elif raw not in SCHEMES:
            raise self.fail("placement.scheme", f"{raw!r} is not one of: first_writer, hash, "
                            "range, repo_affinity, replicate:K")
        return PlacementSpec(
            scheme=scheme,
            replicas=replicas,
            home=self.choice(sec, "placement", "home", HOME_RULES, "least_loaded"),
            block_tokens=self.get(sec, "placement", "block_tokens", int, 64,
                                  check=lambda b: b >= 1, hint="use tokens per block >= 1"),
            reserve_fraction=self.get(sec, "placement", "reserve_fraction", float, 0.1,
                                      check=lambda x: 0 <= x < 1, hint="use 0 <= x < 1"),
            weights_per_gpu=self.get(sec, "placement", "weights_per_gpu", float, None,
                                     check=lambda x: x >= 0, hint="use bytes >= 0"),
            host_tier=self.get(sec, "placement", "host_tier", bool, True),
            host_capacity=self.get(sec, "placement", "host_capacity", float, 1.0e12,
                                   check=lambda x: x >= 0, hint="use bytes >= 0"),
            reuse=self.choice(sec, "placement", "reuse", REUSE_RULES, "prefix"),
        )

    def engine(self, data: Mapping) -> EngineSpec:
        sec = self.section(
            data, "engine", ("max_batch", "layer_groups", "duration", "max_requests", "mode"),
            False
        )
        return EngineSpec(
            max_batch=self.get(sec, "engine", "max_batch", int, 64, check=lambda b: b >= 1,
                               hint="use a batch size >= 1"),
            layer_groups=self.get(sec, "engine", "layer_groups", int, 0, check=lambda g: g >= 0,
                                  hint="use 0 (every layer) or a group count >= 1"),
            duration=self.get(sec, "engine", "duration", float, None, check=lambda d: d > 0,
                              hint="use simulated seconds > 0"),
            max_requests=self.get(sec, "engine", "max_requests", int, None,
                                  check=lambda n: n >= 1, hint="use a count >= 1"),
            mode=self.choice(sec, "engine", "mode", ENGINE_MODES, "exact"),
        )


def _tname(types: tuple) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}
    return " or ".join(names.get(t, t.__name__) for t in types)


# -- shipped scenarios -------------------------------------------------------------------------


def shipped_dir() -> Path:
    """The shipped ``scenarios/`` folder: the source checkout's, or the copy a regular install
    puts under ``<prefix>/share/kvfabric/scenarios``."""
    import sys

    checkout = Path(__file__).resolve().parents[1] / "scenarios"
    if (checkout / "agentic_repo.toml").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "kvfabric" / "scenarios"


def find(arg: str | Path, what: str = "scenario") -> Path:
    """The file ``arg`` names: an existing path, else a shipped scenario (or sweep) by name,
    with or without ``.toml`` (``"lamina_llama3_70b"``) — from any folder."""
    path = Path(arg)
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".toml") else path.name
    shipped = shipped_dir() / f"{name}.toml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in shipped_dir().glob("*.toml")
                   if p.stem.endswith("_sweep") == (what == "sweep"))
    raise UserError(f"{arg}: {what} file not found; pass a {what} .toml file or a shipped "
                    f"name ({', '.join(names)})")
