"""Running a sweep's points on local processes or a Dask cluster, and resuming.

Before anything runs or is written, every point is validated
(:func:`simulator.sweep.check.check_points`) and the output folder is created and written to.
A point then runs in a worker as a pure function of (kind, base, params, seed)
(:func:`simulator.sweep.points.run_point`) and returns flat records; the *client* writes each
finished point atomically to ``OUT/points/<point id>-<key>.parquet``, so an interrupted sweep
resumes and computes only what is missing. The key covers everything that determines the point
(:mod:`simulator.sweep.spec`): a point whose base scenario, input files, seed or kvfabric
version changed since it was written is computed again (its stale file replaced), never resumed.
A point that fails is reported with its parameters (``OUT/failures.json``) and does not stop
the others. At the end every point's records gather, in point order, into
``OUT/results.parquet``; a run with points to compute first removes the earlier
``results.parquet`` and ``failures.json``, so an interrupted one leaves none from other inputs.

Ctrl-C (SIGINT) stops a sweep at once: queued points are cancelled and the workers ended (they
ignore SIGINT themselves, so the client decides), finished points are kept, and
:class:`Interrupted` says how many. A point whose worker process dies (killed, out of memory) is
reported as failed like any other, and the sweep goes on.

Backends: ``local`` (spawned worker processes, :mod:`simulator.sweep.local_pool`; the default)
and ``dask``
(dask.distributed: a LocalCluster of ``workers`` single-threaded processes, or an existing
scheduler at ``scheduler``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.errors import UserError
from simulator.fileio import probe_folder, write_parquet, write_text
from simulator.sweep.check import check_points
from simulator.sweep.local_pool import how_it_ended, run_unordered
from simulator.sweep.points import run_point
from simulator.sweep.spec import Point, Sweep

BACKENDS = ("local", "dask")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: ``finished`` of ``total`` points are kept in ``out``/points."""

    def __init__(self, finished: int, total: int, out: Path) -> None:
        super().__init__(f"{finished} of {total} points finished")
        self.finished, self.total, self.out = finished, total, out


@dataclass
class SweepResult:
    """What :func:`execute` did: the gathered results and per-point bookkeeping.

    ``stale``: points whose earlier result no longer matched their inputs (recomputed).
    """

    results: pd.DataFrame
    failures: list[dict[str, Any]] = field(default_factory=list)
    computed: int = 0
    resumed: int = 0
    stale: int = 0
    out: Path | None = None


def point_file(points_dir: Path, point: Point) -> Path:
    """Where a finished point's records live: its id (which point) and key (which inputs)."""
    return points_dir / f"{point.point_id}-{point.key}.parquet"


def _point_frame(point: Point, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    params = [(k, v) for k, v in point.params if k not in df.columns]  # e.g. "policy"
    for i, (k, v) in enumerate(params):
        df.insert(i, k, [v] * len(df))
    df.insert(0, "point_seed", point.seed)
    df.insert(0, "point_id", point.point_id)
    df.insert(0, "point", point.index)
    return df


def _gathered(path: Path, point: Point) -> pd.DataFrame:
    """A finished point's records with its index in *this* sweep: a point resumed from a
    sweep whose grid has since grown or shrunk keeps its key but not its place."""
    df = pd.read_parquet(path)
    df["point"] = point.index
    return df


def _run_task(task: tuple) -> dict:
    kind, base, base_dir, point, skip_bad = task
    return run_point(kind, base, base_dir, point, skip_bad)


#: What a failed point whose worker ended before answering says to do.
_DIED_DETAIL = ("the point's worker ended before returning (out of memory, or killed); run the "
                "point alone to see why")


def _died(task: tuple, exit_code: int) -> dict:
    """The outcome of a point whose worker process ended before answering."""
    return {"error": f"WorkerDied: the process running this point {how_it_ended(exit_code)}",
            "detail": _DIED_DETAIL}


def _lost(exc: Exception) -> dict:
    """The outcome of a Dask task that never answered (``KilledWorker``: its workers died, out
    of memory or killed; a lost connection): a failed point, as a local worker's death is."""
    first = (str(exc).splitlines() or [""])[0]
    return {"error": f"WorkerDied: the Dask task of this point failed ({type(exc).__name__}: "
                     f"{first})",
            "detail": _DIED_DETAIL}


def _iter_local(tasks: list[Point], sweep: Sweep, workers: int) -> Iterator[tuple[Point, dict]]:
    work = [(sweep.kind, sweep.base, sweep.base_dir, p, sweep.skip_bad) for p in tasks]
    for task, outcome in run_unordered(_run_task, work, workers, _died):
        yield task[3], outcome


def _connect(scheduler: str):
    """A Dask client of the scheduler at ``scheduler``; a :class:`UserError` naming it if
    the address is malformed or nothing answers there (before anything is written)."""
    from dask.distributed import Client

    try:
        return Client(scheduler, timeout=10)
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"--scheduler {scheduler}: cannot connect ({exc}); start a scheduler "
                        "there (tcp://host:8786) or drop --scheduler for a local cluster"
                        ) from None


def _iter_dask(tasks: list[Point], sweep: Sweep, workers: int,
               client) -> Iterator[tuple[Point, dict]]:
    """``client``: a connected scheduler's (:func:`_connect`), or None for a LocalCluster of
    ``workers`` processes, closed at the end."""
    from dask.distributed import Client, LocalCluster
    from dask.distributed import as_completed as dask_completed

    cluster = None
    if client is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    futures = {}
    try:
        futures = {client.submit(run_point, sweep.kind, sweep.base, sweep.base_dir, p,
                                 sweep.skip_bad, pure=False,
                                 key=f"kvfabric-point-{p.point_id}-{p.key}"): p for p in tasks}
        for fut in dask_completed(futures):
            try:
                outcome = fut.result()
            except Exception as exc:  # run_point never raises: the task's worker was lost
                outcome = _lost(exc)
            yield futures[fut], outcome
    finally:
        client.cancel(list(futures))
        client.close()
        if cluster is not None:
            cluster.close()


def _check_finished(points_dir: Path, finished: list[Point]) -> None:
    """Each finished point's file readable as Parquet, before any work: a damaged one (a copy
    cut short, a full disk) was a pyarrow traceback once every other point had run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for p in finished:
        f = point_file(points_dir, p)
        try:
            pq.read_metadata(f)
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"{f}: a finished point's file that is not readable Parquet ({exc}); "
                            "delete it to compute that point again") from None


def execute(sweep: Sweep, out: str | Path, backend: str = "local", *, workers: int | None = None,
            scheduler: str | None = None,
            on_point: Callable[[Point, dict], None] | None = None,
            progress: bool = True, check: bool = True) -> SweepResult:
    """Run every point of ``sweep`` not already finished under ``out``; gather the results.

    Raises :class:`UserError` before anything runs or is written if a point cannot run, and
    :class:`Interrupted` on Ctrl-C (finished points kept).

    Args:
        out: the results folder (created if missing).
        backend: ``"local"`` (process pool) or ``"dask"``.
        workers: worker processes (default: the CPU count for local, 2 for a Dask LocalCluster).
        scheduler: a Dask scheduler address (``tcp://host:8786``); None starts a LocalCluster.
        on_point: called in the client after each finished point (for tests and UIs).
        progress: show a rich progress bar.
        check: validate every point first (:func:`~simulator.sweep.check.check_points`);
            False when the caller already did.
    """
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r}: give one of {', '.join(BACKENDS)}")
    out = Path(out)
    points = sweep.points()
    points_dir = out / "points"
    done = {p.name for p in points_dir.glob("*.parquet")} if points_dir.is_dir() else set()
    todo = [p for p in points if point_file(points_dir, p).name not in done]
    if workers is None:
        workers = (os.cpu_count() or 1) if backend == "local" else 2
    workers = max(1, min(workers, len(todo))) if todo else 1
    if check:
        check_points(sweep, parallel=workers)
    _check_finished(points_dir, [p for p in points if p not in todo])
    client = _connect(scheduler) if backend == "dask" and scheduler and todo else None
    try:
        probe_folder(points_dir)
    except OSError as exc:
        if client is not None:
            client.close()
        raise UserError(f"--out {out}: cannot write there ({exc.strerror or exc}); choose a "
                        "folder you can write") from None
    stale = 0
    for p in todo:  # results of this point for other inputs: replaced, never gathered
        for old in points_dir.glob(f"{p.point_id}*.parquet"):
            old.unlink()
            stale += 1
    if todo:  # the gathered files say what an earlier run found: not this sweep's until its end
        for gathered in (out / "results.parquet", out / "failures.json"):
            gathered.unlink(missing_ok=True)
    result = SweepResult(pd.DataFrame(), resumed=len(points) - len(todo), stale=stale, out=out)

    stream = (_iter_local(todo, sweep, workers) if backend == "local" else
              _iter_dask(todo, sweep, workers, client))
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress

    # on stderr, like kvfabric run's bars: stdout holds the results table alone
    with Progress(disable=not progress or not todo, transient=False,
                  console=Console(stderr=True)) as bar:
        plural = "" if workers == 1 else "s"
        task = bar.add_task(escape(f"sweep {sweep.name} ({backend}, {workers} worker{plural})"),
                            total=len(todo))
        try:
            for point, outcome in (stream if todo else ()):
                if "error" in outcome:
                    result.failures.append({"point": point.index, "point_id": point.point_id,
                                            "params": point.as_dict, "error": outcome["error"],
                                            "detail": outcome["detail"]})
                else:
                    write_parquet(_point_frame(point, outcome["rows"]),
                                  point_file(points_dir, point))
                    result.computed += 1
                if on_point is not None:
                    on_point(point, outcome)
                bar.advance(task)
        except KeyboardInterrupt:
            # counted on disk, not by ``computed``: Ctrl-C can land after a point's file is
            # renamed into place and before the count is raised
            kept = sum(point_file(points_dir, p).exists() for p in points)
            raise Interrupted(kept, len(points), out) from None
        finally:
            stream.close()  # ends the workers now, not when the generator is collected

    frames = [_gathered(point_file(points_dir, p), p) for p in points
              if point_file(points_dir, p).exists()]
    result.results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_parquet(result.results, out / "results.parquet")
    failures = sorted(result.failures, key=lambda f: f["point"])
    result.failures = failures
    write_text(json.dumps(failures, indent=2, default=str), out / "failures.json")
    return result
