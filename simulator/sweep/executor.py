"""Running a sweep's points on local processes or a Dask cluster, and resuming.

A point runs in a worker as a pure function of (kind, base, params, seed)
(:func:`simulator.sweep.points.run_point`) and returns flat records; the *client* writes each
finished point atomically to ``OUT/points/<id>.parquet``, so an interrupted sweep resumes and
computes only what is missing. A point that fails is reported with its parameters
(``OUT/failures.json``) and does not stop the others. At the end every point's records gather, in
point order, into ``OUT/results.parquet``.

Backends: ``local`` (a process pool; the default) and ``dask`` (dask.distributed: a LocalCluster
of ``workers`` single-threaded processes, or an existing scheduler at ``scheduler``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.errors import UserError
from simulator.fileio import write_parquet, write_text
from simulator.sweep.points import run_point
from simulator.sweep.spec import Point, Sweep

BACKENDS = ("local", "dask")


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
