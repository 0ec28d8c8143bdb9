"""Parameter sweeps over scenarios (or over the closed form), on local processes or a Dask cluster.

A sweep is data (a TOML file)::

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

    [base]                        # kind = "predict": fixed CostModel arguments (sweep_points)
    model = "deepseek-v3.2"

Each point is a frozen mapping of field → value. Its id is a hash of that mapping (so the same
point has the same id in every sweep and backend) and its seed derives from the sweep seed and the
hash of its fields other than ``policy`` through :class:`numpy.random.SeedSequence` — the same
point gives the same result, bit for bit, on any backend and in any order, and points that differ
only in the policy see the same workload (common random numbers). A point runs in a worker as a pure function of (kind, base,
params, seed) and returns flat records; the *client* writes each finished point atomically to
``OUT/points/<id>.parquet``, so an interrupted sweep resumes and computes only what is missing.
A point that fails is reported with its parameters (``OUT/failures.json``) and does not stop the
others. At the end every point's records gather, in point order, into ``OUT/results.parquet``.

Backends: ``local`` (a process pool; the default) and ``dask`` (dask.distributed: a LocalCluster
of ``workers`` single-threaded processes, or an existing scheduler at ``scheduler``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.errors import UserError
from simulator.fileio import write_parquet, write_text
from simulator.sweep_points import run_point

KINDS = ("run", "predict")
BACKENDS = ("local", "dask")


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


# -- execution ---------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What :func:`execute` did: the gathered results and per-point bookkeeping."""

    results: pd.DataFrame
    failures: list[dict[str, Any]] = field(default_factory=list)
    computed: int = 0
    resumed: int = 0
    out: Path | None = None


def _point_frame(point: Point, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    params = [(k, v) for k, v in point.params if k not in df.columns]  # e.g. "policy"
    for i, (k, v) in enumerate(params):
        df.insert(i, k, [v] * len(df))
    df.insert(0, "point_seed", point.seed)
    df.insert(0, "point_id", point.point_id)
    df.insert(0, "point", point.index)
    return df


def _iter_local(tasks: list[Point], kind: str, base, base_dir: str,
                workers: int) -> Iterator[tuple[Point, dict]]:
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_point, kind, base, base_dir, p): p for p in tasks}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def _iter_dask(tasks: list[Point], kind: str, base, base_dir: str, workers: int,
               scheduler: str | None) -> Iterator[tuple[Point, dict]]:
    from dask.distributed import Client, LocalCluster
    from dask.distributed import as_completed as dask_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=10)
        except OSError as exc:
            raise UserError(f"--scheduler {scheduler}: cannot connect ({exc}); start a "
                            "scheduler there or drop --scheduler for a local cluster") from None
    try:
        futures = {client.submit(run_point, kind, base, base_dir, p, pure=False,
                                 key=f"kvfabric-point-{p.point_id}"): p for p in tasks}
        for fut in dask_completed(futures):
            yield futures[fut], fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def execute(sweep: Sweep, out: str | Path, backend: str = "local", *, workers: int | None = None,
            scheduler: str | None = None,
            on_point: Callable[[Point, dict], None] | None = None,
            progress: bool = True) -> SweepResult:
    """Run every point of ``sweep`` not already finished under ``out``; gather the results.

    Args:
        out: the results folder (created if missing).
        backend: ``"local"`` (process pool) or ``"dask"``.
        workers: worker processes (default: the CPU count for local, 2 for a Dask LocalCluster).
        scheduler: a Dask scheduler address (``tcp://host:8786``); None starts a LocalCluster.
        on_point: called in the client after each finished point (for tests and UIs).
        progress: show a rich progress bar.
    """
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r}: give one of {', '.join(BACKENDS)}")
    out = Path(out)
    points_dir = out / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    points = sweep.points()
    todo = [p for p in points if not (points_dir / f"{p.point_id}.parquet").exists()]
    result = SweepResult(pd.DataFrame(), resumed=len(points) - len(todo), out=out)
    if workers is None:
        workers = (os.cpu_count() or 1) if backend == "local" else 2
    workers = max(1, min(workers, len(todo))) if todo else 1

    stream = (_iter_local(todo, sweep.kind, sweep.base, sweep.base_dir, workers)
              if backend == "local" else
              _iter_dask(todo, sweep.kind, sweep.base, sweep.base_dir, workers, scheduler))
    from rich.progress import Progress

    with Progress(disable=not progress or not todo, transient=False) as bar:
        task = bar.add_task(f"sweep {sweep.name} ({backend}, {workers} workers)",
                            total=len(todo))
        if todo:
            for point, outcome in stream:
                if "error" in outcome:
                    result.failures.append({"point": point.index, "point_id": point.point_id,
                                            "params": point.as_dict, "error": outcome["error"],
                                            "detail": outcome["detail"]})
                else:
                    write_parquet(_point_frame(point, outcome["rows"]),
                                  points_dir / f"{point.point_id}.parquet")
                    result.computed += 1
                if on_point is not None:
                    on_point(point, outcome)
                bar.advance(task)

    frames = [pd.read_parquet(points_dir / f"{p.point_id}.parquet") for p in points
              if (points_dir / f"{p.point_id}.parquet").exists()]
    result.results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_parquet(result.results, out / "results.parquet")
    failures = sorted(result.failures, key=lambda f: f["point"])
    result.failures = failures
    write_text(json.dumps(failures, indent=2, default=str), out / "failures.json")
    return result
