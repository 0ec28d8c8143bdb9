"""Sweeps as data: a validated :class:`Sweep` (TOML or a dict) and its :class:`Point` s.

A sweep file::

    [sweep]
    name = "example"
    kind = "run"                  # "run": simulate a scenario; "predict": the closed form only
    base = "agentic_repo.toml"    # kind = "run": the scenario every point starts from
    seed = 0                      # the sweep seed; each point's seed derives from it
    samples = 0                   # 0: the full grid; N > 0: N random points (see [random])

    [grid]                        # dotted scenario fields → the values to try
    "topology.nodes" = [1, 2]
    stack = ["nccl", "ibgda"]
    policy = ["route", "fetch"]   # "policy" picks the policy; without it, every scenario policy

    [random]                      # only with samples > 0: draw each field from a distribution
    "engine.max_batch" = { low = 8, high = 128, log = true, integer = true }

    [base]                        # kind = "predict": fixed CostModel arguments (points.py)
    model = "deepseek-v3.2"

Each point is a frozen mapping of field → value. Its id is a hash of that mapping (so the same
point has the same id in every sweep and backend). Its **seed** derives from the sweep seed and
the point's *workload fields* through :class:`numpy.random.SeedSequence`: the fields under
``workload.`` and ``seed`` (a grid over ``seed`` gives replications). Every other field —
``stack``, ``policy``, the topology, placement, engine, model — leaves the seed alone, so points
that differ only there replay the same requests (common random numbers); the same point gives
the same result, bit for bit, on any backend and in any order.

Its **key** names its finished result on disk (resume): a hash of everything that determines
it — the kind, the base (the scenario's content with ``[base]`` merged in), the content of the
files the point's scenario reads (trace, selections, topology, included calibration, a kernel
profile file), the parameters, the seed, ``skip_bad`` and the kvfabric version. Change any of them and the point is
computed again instead of resumed.

:func:`simulator.sweep.check.check_points` validates every point before any runs: each
point's scenario (unknown dotted fields, bad values, a duplicate or unknown policy), what a run
needs of this machine (:func:`simulator.runner.check`) and every trace it reads — or, for
``kind = "predict"``, the closed form's arguments.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import UserError
from simulator.fileio import folder_name_ok

KINDS = ("run", "predict")
#: Fields a ``predict`` point may set (the :class:`~simulator.costmodel.CostModel` arguments).
PREDICT_FIELDS = ("model", "topology", "stack", "src", "dst", "blocks", "batch", "reuse",
                  "block_tokens", "layout", "kv_dtype", "bandwidth")
#: The ``predict`` defaults a sweep's ``[base]`` and grid override.
PREDICT_DEFAULTS = {"model": "deepseek-v3.2", "topology": "dgx_h100", "stack": "ibgda",
                    "src": "n0/gpu0", "dst": "n1/gpu0", "blocks": 32, "batch": 1, "reuse": 1.0,
                    "block_tokens": 64}


@dataclass(frozen=True)
class Distribution:
    """A random draw for one field: uniform in [low, high], or log-uniform; optionally an int."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def draw(self, rng: np.random.Generator) -> float | int:
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        return int(round(x)) if self.integer else float(x)


def _distribution(spec: Any, fail) -> Distribution:
    """One ``[random]`` field's table as a :class:`Distribution`; ``fail(msg)`` makes the
    error for that field."""
    if not isinstance(spec, Mapping) or not {"low", "high"} <= set(spec) or (
            set(spec) - {"low", "high", "log", "integer"}):
        raise fail("give a table { low = …, high = … [, log, integer] }")
    low, high = spec["low"], spec["high"]
    if not (all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
            and low <= high and math.isfinite(high - low)):
        raise fail("low and high must be finite numbers with low <= high")
    log, integer = spec.get("log", False), spec.get("integer", False)
    if not (isinstance(log, bool) and isinstance(integer, bool)):
        raise fail("log and integer must be true or false")
    if log and low <= 0:
        raise fail("log = true needs low > 0")
    return Distribution(float(low), float(high), log, integer)


@dataclass(frozen=True)
class Point:
    """One sweep point: its parameters, stable id, derived seed and the key of its result."""

    index: int
    params: tuple[tuple[str, Any], ...]
    point_id: str
    seed: int
    key: str = ""

    @property
    def as_dict(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class Sweep:
    """A validated sweep. Build with :meth:`load` (TOML) or :meth:`from_dict`."""

    name: str
    kind: str
    seed: int
    base: Mapping[str, Any]
    base_dir: str
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    random: tuple[tuple[str, Distribution], ...] = ()
    samples: int = 0
    source: str = "<dict>"
    skip_bad: bool = False

    @classmethod
    def load(cls, path: str | Path) -> Sweep:
        """Read and validate a sweep TOML file."""
        from simulator.scenario import find, read_toml

        path = find(path, "sweep")
        return cls.from_dict(read_toml(path), source=str(path), base_dir=path.parent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>",
                  base_dir: str | Path | None = None) -> Sweep:
        """Validate a parsed sweep mapping; ``source`` names it in error messages."""
        base_dir = Path(base_dir) if base_dir is not None else Path.cwd()

        def fail(fld: str, msg: str) -> UserError:
            return UserError(f"{source}: field '{fld}': {msg}")

        unknown = sorted(set(data) - {"sweep", "grid", "random", "base"})
        if unknown:
            raise fail(unknown[0], "unknown section; use [sweep], [grid], [random] or [base]")
        head = data.get("sweep", {})
        if not isinstance(head, Mapping):
            raise fail("sweep", "must be a table")
        bad = sorted(set(head) - {"name", "kind", "base", "seed", "samples"})
        if bad:
            raise fail(f"sweep.{bad[0]}", "unknown key; known: name, kind, base, seed, samples")
        name = str(head.get("name", Path(source).stem))
        if not folder_name_ok(name):
            raise fail("sweep.name", f"invalid value {name!r}; give a name without '/', "
                       "'\\' or control characters, not empty, '.' or '..' (it names the "
                       "default result folder)")
        kind = head.get("kind", "run")
        if kind not in KINDS:
            raise fail("sweep.kind", f"{kind!r} is not one of {', '.join(KINDS)}")
        seed = head.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise fail("sweep.seed", "give an integer >= 0")
        samples = head.get("samples", 0)
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
            raise fail("sweep.samples", "give an integer >= 0 (0 = the full grid)")

        for section in ("grid", "random", "base"):
            if not isinstance(data.get(section, {}), Mapping):
                raise fail(section, f"must be a table ([{section}])")
        base: dict[str, Any] = dict(data.get("base", {}))
        if kind == "run":
            if "base" not in head:
                raise fail("sweep.base", "kind = \"run\" needs the scenario file to start from")
            from simulator.scenario import find, read_toml

            if not isinstance(head["base"], str):
                raise fail("sweep.base", "give the scenario file's path or shipped name")
            scenario_path = (base_dir / head["base"]).resolve()
            if not scenario_path.is_file():
                try:
                    scenario_path = find(head["base"]).resolve()
                except UserError:
                    raise fail("sweep.base", f"scenario file {scenario_path} not found") from None
            base = _merge(read_toml(scenario_path), base)
            base_dir = scenario_path.parent

        grid_data = data.get("grid", {})
        if not grid_data and not data.get("random"):
            raise fail("grid", "give at least one field with a list of values")
        grid = []
        for key in sorted(grid_data):
            values = grid_data[key]
            if not isinstance(values, list) or not values:
                raise fail(f"grid.{key}", "give a non-empty list of values")
            twice = [v for i, v in enumerate(values) if _digest(v) in map(_digest, values[:i])]
            if twice:  # a point that would be run once and counted as two
                raise fail(f"grid.{key}", f"lists {twice[0]!r} twice; give each value once")
            grid.append((key, tuple(values)))

        rnd = [(key, _distribution(data["random"][key], functools.partial(fail, f"random.{key}")))
               for key in sorted(data.get("random", {}))]
        if rnd and samples == 0:
            raise fail("random", "random fields need [sweep] samples = N > 0")
        if kind == "run":
            for key in [k for k, _ in grid] + [k for k, _ in rnd]:
                node, parts = base, key.split(".")
                for i, part in enumerate(parts[:-1]):
                    node = node.get(part, {}) if isinstance(node, Mapping) else node
                    if not isinstance(node, Mapping):
                        where = ".".join(parts[: i + 1])
                        raise fail(f"grid.{key}", f"'{where}' is not a table in the base "
                                   "scenario; name a field inside a section")
        return cls(name=name, kind=kind, seed=seed,
                   base=base, base_dir=str(base_dir), grid=tuple(grid), random=tuple(rnd),
                   samples=samples, source=source)

    def points(self) -> list[Point]:
        """Every point of the sweep, in a deterministic order."""
        keys = [k for k, _ in self.grid]
        if self.samples == 0:
            combos = itertools.product(*(values for _, values in self.grid))
            raw = [dict(zip(keys, combo, strict=True)) for combo in combos]
        else:
            rng = np.random.default_rng(self.seed)
            raw = []
            for _ in range(self.samples):
                p = {k: values[int(rng.integers(len(values)))] for k, values in self.grid}
                p.update({k: dist.draw(rng) for k, dist in self.random})
                raw.append(p)
        out, seen = [], set()
        base_key = _digest({"kind": self.kind, "base": self.base, "skip_bad": self.skip_bad,
                            "version": _version()})
        files: dict[str, str] = {}
        for params in raw:
            pid = point_id(self.kind, params)
            if pid in seen:  # random sampling can repeat a point; compute it once
                continue
            seen.add(pid)
            # Points that differ only in fields that leave the workload alone (policy, stack,
            # topology …) share a seed (common random numbers): they replay the same requests.
            seed = derive_seed(self.seed, point_id(self.kind, workload_fields(params)))
            inputs = {f: _file_digest(f, files) for f in self._input_files(params)}
            key = _digest({"base": base_key, "params": params, "seed": seed, "inputs": inputs})
            out.append(Point(len(out), tuple(sorted(params.items())), pid, seed, key))
        return out

    def scenario_data(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The point's scenario mapping: the base with the point's dotted fields set
        (``policy`` is not a scenario field: it picks the policy to run)."""
        data = copy.deepcopy(dict(self.base))
        for key, value in params.items():
            if key != "policy":
                # a copy: a later dotted field under a table value must not write into the grid
                set_dotted(data, key, copy.deepcopy(value))
        return data

    def _input_files(self, params: Mapping[str, Any]) -> list[str]:
        """Local files a point reads: a ``run`` point's scenario's (resolved like the scenario
        does), a ``predict`` point's topology file."""
        if self.kind != "run":
            topo = {**PREDICT_DEFAULTS, **self.base, **params}.get("topology")
            p = Path(topology_spec(str(topo), self.base_dir))
            return [str(p.resolve())] if p.suffix == ".toml" and p.is_file() else []
        data = self.scenario_data(params)
        refs = [data.get("include"), _get(data, "topology", "file"),
                _get(data, "workload", "trace"), _get(data, "workload", "selections")]
        out = [f for f in map(self._local_file, refs) if f]
        # the kernel profile file: [calibration] profile, else the included file's
        profile = _get(data, "calibration", "profile")
        include = self._local_file(data.get("include"))
        if profile is None and include:
            from simulator.scenario import read_toml

            try:
                profile = read_toml(include).get("profile")
            except UserError:  # a bad include is refused by the points' check
                profile = None
        if isinstance(profile, str) and profile.endswith(".toml"):
            if found := self._local_file(profile):
                out.append(found)
        elif isinstance(profile, Mapping):  # GPU kind → profile: paths as the loader reads them
            out += [str(Path(v).resolve()) for v in profile.values()
                    if isinstance(v, str) and v.endswith(".toml") and Path(v).is_file()]
        return out

    def _local_file(self, ref: Any) -> str | None:
        """The resolved path of a file a scenario names (relative to its folder), or None."""
        if not isinstance(ref, str):
            return None
        p = Path(ref) if Path(ref).is_absolute() else Path(self.base_dir) / ref
        return str(p.resolve()) if p.is_file() else None


def topology_spec(spec: str, base_dir: str | Path) -> str:
    """A predict point's ``topology``: a preset spec as given; a file path relative to the
    sweep's folder (``base_dir``), as a run point's files are — but a shipped preset file
    (``topologies/presets/…``) not found there stays as given, for the loader to find."""
    p = Path(spec)
    if not (spec.endswith(".toml") or "/" in spec or (Path(base_dir) / p).is_file()):
        return spec  # NAME[:key=value,…]
    if p.is_absolute() or ((not (Path(base_dir) / p).exists())
                           and p.parts[:2] == ("topologies", "presets")):
        return spec
    return str(Path(base_dir) / p)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``key = "a.b"``, creating tables on the way."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"sweep field '{key}': '{part}' is not a table in the base")
    node[parts[-1]] = value


def workload_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """The point's fields that change its workload (its seed derives from these): ``seed`` and
    everything under ``workload.``."""
    return {k: v for k, v in params.items() if k == "seed" or k.startswith("workload.")}


def _get(data: Mapping[str, Any], section: str, key: str) -> Any:
    sec = data.get(section)
    return sec.get(key) if isinstance(sec, Mapping) else None


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _file_digest(path: str, cache: dict[str, str]) -> str:
    if path not in cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        cache[path] = h.hexdigest()[:16]
    return cache[path]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kvfabric")
    except PackageNotFoundError:  # pragma: no cover - an uninstalled tree
        return "unknown"


def point_id(kind: str, params: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit id of a point (independent of key order and backend)."""
    blob = json.dumps({"kind": kind, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def derive_seed(sweep_seed: int, pid: str) -> int:
    """The point's seed: a SeedSequence of the sweep seed and the point id."""
    ss = np.random.SeedSequence([sweep_seed, int(pid, 16)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


