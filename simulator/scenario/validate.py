"""Validation: one parsed scenario TOML checked section by section before the first event.

:class:`_Validator` turns each section's mapping into its dataclass
(:mod:`simulator.scenario.sections`) or hands it to the owner's validator (``[serving]``,
``[disaggregation]``, ``[deployment]``, ``calibration.profile``); every bad field raises
:class:`~simulator.errors.UserError` naming the file, the dotted field and the fix. Relative
paths are resolved against the scenario file's folder. Also here: reading a TOML file
(:func:`read_toml`) and freezing tables into sorted ``(key, value)`` tuples, so a scenario stays
hashable and immutable.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from simulator.errors import UserError
from simulator.scenario import sections


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; :class:`UserError` naming the file if it is not UTF-8 or TOML."""
    return _read_toml(Path(path))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a BOM (Windows editors) dropped
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                        f"{exc.start}); save the file as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc}); fix the syntax at that line") from None


class _Table(tuple):
    """A frozen TOML table: its ``(key, value)`` pairs sorted by key. A tuple (hashable, equal
    to the plain tuple of its pairs) of its own type, so that thawing tells a table from an
    array whose items happen to be ``[name, value]`` pairs."""

    __slots__ = ()


def _freeze(value: Any) -> Any:
    """Tables → :class:`_Table`, arrays → tuples, at every depth; scalars as they are."""
    if isinstance(value, Mapping):
        return _Table(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """What :func:`_freeze` froze, with tables as dicts again (arrays stay tuples)."""
    if isinstance(value, _Table):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return tuple(_thaw(v) for v in value)
    return value


def _shipped_traces() -> Collection[str]:
    """The names of the shipped traces (:data:`workloads.loaders.SHIPPED`)."""
    from workloads.loaders import SHIPPED

    return SHIPPED


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

    def path(self, value: str | None, names: Collection[str] = ()) -> str | None:
        """A file ``value`` names: as given if absolute or one of ``names`` (shipped names)
        with no such file beside the scenario, else relative to the scenario's folder — never
        to the working folder, so a missing file is reported where it was looked for."""
        if value is None:
            return None
        p = Path(value)
        if p.is_absolute() or (value in names and not (self.base / p).exists()):
            return value
        return str(self.base / p)

    # -- sections --------------------------------------------------------------------------

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
        from simulator.gpu.calibration import check_coefficients

        cal: dict[str, Any] = {}
        inc = data.get("include")
        if inc is not None:
            if not isinstance(inc, str):
                raise self.fail("include", "must be the path of a calibration TOML file")
            p = Path(self.path(inc))
            if p.is_dir():
                raise self.fail("include", f"{inc!r} is a folder; give a calibration TOML "
                                "file's path")
            if not p.is_file():
                raise self.fail("include", f"file {inc!r} not found; write it with "
                                "`kvfabric calibrate` or fix the path")
            included = _read_toml(p)
            check_coefficients(included, lambda k, m: self.fail("include", f"{inc}: '{k}': {m}"))
            cal.update(included)
        extra = data.get("calibration", {})
        if not isinstance(extra, Mapping):
            raise self.fail("calibration", "must be a table")
        check_coefficients(extra, lambda k, m: self.fail(f"calibration.{k}", m))
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

    def topology(self, data: Mapping) -> sections.TopologySpec:
        sec = self.section(data, "topology", ("preset", "nodes", "spec", "file"), True)
        given = [k for k in ("preset", "spec", "file") if k in sec]
        if len(given) != 1:
            raise self.fail("topology", "give exactly one of preset (with nodes), spec or file")
        nodes = self.get(sec, "topology", "nodes", int, 1, check=lambda n: n >= 1,
                         hint="use a node count >= 1")
        if "nodes" in sec and "preset" not in sec:
            raise self.fail("topology.nodes", "only applies with topology.preset")
        return sections.TopologySpec(
            preset=self.get(sec, "topology", "preset", str, None),
            nodes=nodes,
            spec=self.get(sec, "topology", "spec", str, None),
            file=self.path(self.get(sec, "topology", "file", str, None)),
        )

    def model(self, data: Mapping) -> sections.ModelSpec:
        sec = self.section(data, "model", ("name", "selection"), True)
        if "name" not in sec:
            raise self.fail("model.name", "missing; name a model such as 'deepseek-v3.2'")
        from simulator.models import model as lookup_model

        try:
            lookup_model(self.get(sec, "model", "name", str, ""))
        except UserError as exc:
            raise self.fail("model.name", str(exc)) from None
        return sections.ModelSpec(
            name=self.get(sec, "model", "name", str, "deepseek-v3.2"),
            selection=self.choice(sec, "model", "selection", sections.SELECTIONS, "auto"),
        )

    def workload(self, data: Mapping) -> sections.WorkloadSpec:
        sec = self.section(
            data, "workload", ("kind", "trace", "agentic", "selections", "time_scale",
                               "concurrency", "spans", "mixed"), True)
        kind = self.choice(sec, "workload", "kind", sections.WORKLOAD_KINDS, "trace")
        trace = self.get(sec, "workload", "trace", str, None, check=lambda t: t.strip() != "",
                         hint="name a trace file or a shipped trace")
        tables = {own: self.generator_table(sec, own, kind, what) for own, what in (
            ("agentic", "generator"), ("spans", "span-generator"), ("mixed", "mixed-fleet"))}
        if kind == "trace" and trace is None:
            raise self.fail("workload.trace", "missing; name a trace file or a shipped trace "
                            "such as 'mooncake_conversation'")
        if kind != "trace" and trace is not None:
            raise self.fail("workload.trace", f"not used with kind = '{kind}'; remove it")
        check = {"agentic": self.agentic, "spans": self.spans, "mixed": self.mixed}.get(kind)
        if check is not None:  # the table the run generates from, field by field
            check(tables[kind], data)
        return sections.WorkloadSpec(
            kind=kind,
            trace=self.path(trace, _shipped_traces()),
            agentic=_freeze(tables["agentic"]),
            selections=self.path(self.get(sec, "workload", "selections", str, None)),
            time_scale=self.get(sec, "workload", "time_scale", float, 1.0,
                                check=lambda x: 0 < x <= sections.MAX_TIME_SCALE,
                                hint="use a factor > 0 and <= "
                                     f"{sections.MAX_TIME_SCALE:g}"),
            concurrency=self.get(sec, "workload", "concurrency", int, None,
                                 check=lambda n: n >= 1,
                                 hint="use a number of outstanding requests >= 1"),
            spans=_freeze(tables["spans"]),
            mixed=_freeze(tables["mixed"]),
        )

    def generator_table(self, sec: Mapping, own: str, kind: str, what: str) -> Mapping:
        """``[workload.<own>]``: a table; empty unless ``kind`` is ``own`` — a table of another
        kind would be ignored, and an edit to it have no effect (refused, as ``trace`` is)."""
        table = sec.get(own, {})
        if not isinstance(table, Mapping):
            raise self.fail(f"workload.{own}", f"must be a table of {what} parameters")
        if table and kind != own:
            raise self.fail(f"workload.{own}", f"not used with kind = '{kind}'; remove it, or "
                            f"set kind = '{own}' to generate with it")
        return table

    def agentic(self, params: Mapping, data: Mapping) -> None:
        """Every ``[workload.agentic]`` key a generator field, of its type, in its range (the
        session generator's with a ``preset``, the simple generator's without)."""
        if "preset" in params:
            from workloads.presets import PRESETS, is_preset, session_params
            from workloads.sessions import SessionParams

            preset = params["preset"]
            if not is_preset(preset):
                raise self.fail("workload.agentic.preset", f"{preset!r} is not one of: "
                                f"{', '.join(PRESETS)}")
            self.generator(SessionParams, params, data, "workload.agentic", extra=("preset",),
                           build=functools.partial(session_params, preset))
            return
        from workloads.agentic import AgenticParams

        self.generator(AgenticParams, params, data, "workload.agentic")

    def mixed(self, params: Mapping, data: Mapping) -> None:
        """Every ``[workload.mixed]`` key a :class:`workloads.mixed.MixedFleetParams` field, of
        its type, in its range."""
        from workloads.mixed import MixedFleetParams

        self.generator(MixedFleetParams, params, data, "workload.mixed")

    def spans(self, params: Mapping, data: Mapping) -> None:
        """``[workload.spans]``: ``shape`` (rag or nested) and every other key a field of that
        shape's generator (:func:`simulator.engine.trace.span_generators`), of its type, in its
        range."""
        from simulator.engine.trace import span_generators

        shapes = span_generators()
        shape = self.choice(dict(params), "workload.spans", "shape", tuple(shapes), "rag")
        self.generator(shapes[shape][0], params, data, "workload.spans", extra=("shape",))

    def generator(self, params_type: type, params: Mapping, data: Mapping, prefix: str, *,
                  extra: tuple[str, ...] = (), build=None) -> None:
        """Every key of ``params`` (the table ``prefix``) but the ``extra`` ones (checked by the
        caller) a field of the generator dataclass ``params_type``, of its type, a time [s]
        (``*_time``, ``*_time_mean``) at most :data:`~simulator.scenario.sections.MAX_DURATION`,
        in the dataclass's range — built by ``build`` (default ``params_type``) with the
        scenario's ``placement.block_tokens`` (64 if missing or bad: that field is checked on
        its own)."""
        fields = {f.name: type(f.default) for f in dataclasses.fields(params_type)}
        self.unknown(params, prefix, (*extra, *fields))
        given = {k: v for k, v in params.items() if k not in extra}
        for key in given:
            time = key.endswith(("_time", "_time_mean"))
            self.get(given, prefix, key, fields[key], None,
                     check=(lambda t: t <= sections.MAX_DURATION) if time else None,
                     hint=f"use seconds <= {sections.MAX_DURATION:g} (116 days, the longest "
                          "[engine] duration)")
        placement = data.get("placement", {})
        bt = placement.get("block_tokens", 64) if isinstance(placement, Mapping) else 64
        bt = bt if isinstance(bt, int) and not isinstance(bt, bool) and bt >= 1 else 64
        try:
            (build or params_type)(**{"block_tokens": bt, **given})
        except (TypeError, ValueError) as exc:
            msg = str(exc)
            name = next((f for f in sorted(fields, key=len, reverse=True)
                         if msg.startswith(f)), "")
            raise self.fail(f"{prefix}{'.' + name if name else ''}", msg) from None

    def placement(self, data: Mapping) -> sections.PlacementSpec:
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
        elif raw not in sections.SCHEMES:
            raise self.fail("placement.scheme", f"{raw!r} is not one of: first_writer, hash, "
                            "range, repo_affinity, replicate:K")
        return sections.PlacementSpec(
            scheme=scheme,
            replicas=replicas,
            home=self.choice(sec, "placement", "home", sections.HOME_RULES, "least_loaded"),
            block_tokens=self.get(sec, "placement", "block_tokens", int, 64,
                                  check=lambda b: b >= 1, hint="use tokens per block >= 1"),
            reserve_fraction=self.get(sec, "placement", "reserve_fraction", float, 0.1,
                                      check=lambda x: 0 <= x < 1, hint="use 0 <= x < 1"),
            weights_per_gpu=self.get(sec, "placement", "weights_per_gpu", float, None,
                                     check=lambda x: x >= 0, hint="use bytes >= 0"),
            host_tier=self.get(sec, "placement", "host_tier", bool, True),
            host_capacity=self.get(sec, "placement", "host_capacity", float, 1.0e12,
                                   check=lambda x: x >= 0, hint="use bytes >= 0"),
            reuse=self.choice(sec, "placement", "reuse", sections.REUSE_RULES, "prefix"),
        )

    def engine(self, data: Mapping) -> sections.EngineSpec:
        sec = self.section(
            data, "engine", ("max_batch", "layer_groups", "duration", "max_requests", "mode"),
            False
        )
        return sections.EngineSpec(
            max_batch=self.get(sec, "engine", "max_batch", int, 64, check=lambda b: b >= 1,
                               hint="use a batch size >= 1"),
            layer_groups=self.get(sec, "engine", "layer_groups", int, 0, check=lambda g: g >= 0,
                                  hint="use 0 (every layer) or a group count >= 1"),
            duration=self.get(sec, "engine", "duration", float, None,
                              check=lambda d: 0 < d <= sections.MAX_DURATION,
                              hint="use simulated seconds > 0 and <= "
                                   f"{sections.MAX_DURATION:g} (116 days)"),
            max_requests=self.get(sec, "engine", "max_requests", int, None,
                                  check=lambda n: n >= 1, hint="use a count >= 1"),
            mode=self.choice(sec, "engine", "mode", sections.ENGINE_MODES, "exact"),
        )


def _tname(types: tuple) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}
    return " or ".join(names.get(t, t.__name__) for t in types)
