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
point has the same id in every sweep and backend) and its seed derives from the sweep seed and the
hash of its fields other than ``policy`` through :class:`numpy.random.SeedSequence` — the same
point gives the same result, bit for bit, on any backend and in any order, and points that differ
only in the policy see the same workload (common random numbers).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import UserError

KINDS = ("run", "predict")


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


@dataclass(frozen=True)
class Point:
    """One sweep point: its parameters, stable id and derived seed."""

    index: int
    params: tuple[tuple[str, Any], ...]
    point_id: str
    seed: int

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

    @classmethod
    def load(cls, path: str | Path) -> Sweep:
        """Read and validate a sweep TOML file."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: sweep file not found; pass an existing .toml file")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: not valid TOML ({exc}); fix the syntax there") from None
        return cls.from_dict(data, source=str(path), base_dir=path.parent)

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
        kind = head.get("kind", "run")
        if kind not in KINDS:
            raise fail("sweep.kind", f"{kind!r} is not one of {', '.join(KINDS)}")
        seed = head.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise fail("sweep.seed", "give an integer >= 0")
        samples = head.get("samples", 0)
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
            raise fail("sweep.samples", "give an integer >= 0 (0 = the full grid)")

        base: dict[str, Any] = dict(data.get("base", {}))
        if kind == "run":
            if "base" not in head:
                raise fail("sweep.base", "kind = \"run\" needs the scenario file to start from")
            scenario_path = (base_dir / head["base"]).resolve()
            if not scenario_path.is_file():
                raise fail("sweep.base", f"scenario file {scenario_path} not found")
            scenario = tomllib.loads(scenario_path.read_text())
            base = _merge(scenario, base)
            base_dir = scenario_path.parent

        grid_data = data.get("grid", {})
        if not isinstance(grid_data, Mapping) or not grid_data:
            raise fail("grid", "give at least one field with a list of values")
        grid = []
        for key in sorted(grid_data):
            values = grid_data[key]
            if not isinstance(values, list) or not values:
                raise fail(f"grid.{key}", "give a non-empty list of values")
            grid.append((key, tuple(values)))

        rnd = []
        for key in sorted(data.get("random", {})):
            spec = data["random"][key]
            if not isinstance(spec, Mapping) or not {"low", "high"} <= set(spec):
                raise fail(f"random.{key}", "give a table { low = …, high = … [, log, integer] }")
            low, high = spec["low"], spec["high"]
            if not (isinstance(low, int | float) and isinstance(high, int | float) and low <= high):
                raise fail(f"random.{key}", "low and high must be numbers with low <= high")
            if spec.get("log") and low <= 0:
                raise fail(f"random.{key}", "log = true needs low > 0")
            rnd.append((key, Distribution(float(low), float(high), bool(spec.get("log", False)),
                                          bool(spec.get("integer", False)))))
        if rnd and samples == 0:
            raise fail("random", "random fields need [sweep] samples = N > 0")
        return cls(name=str(head.get("name", Path(source).stem)), kind=kind, seed=seed,
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
        for params in raw:
            pid = point_id(self.kind, params)
            if pid in seen:  # random sampling can repeat a point; compute it once
                continue
            seen.add(pid)
            # Points that differ only in the policy share a seed (common random numbers): the
            # policies are compared on the same generated workload.
            workload_id = point_id(self.kind, {k: v for k, v in params.items() if k != "policy"})
            out.append(Point(len(out), tuple(sorted(params.items())), pid,
                             derive_seed(self.seed, workload_id)))
        return out


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


