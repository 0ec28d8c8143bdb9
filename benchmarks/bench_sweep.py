"""Sweep scale-out: the same 16-point sweep on a Dask LocalCluster of 1 and of 2 workers.

    python benchmarks/bench_sweep.py [--points-scale 1] [--out DIR]

Each point simulates a Lamina-style disaggregated or homogeneous run (a second or two of work).
The clusters are started before the clock starts (the sweep connects with ``--scheduler``), so the
figure is the sweep itself: wall time on 1 and on 2 workers, their ratio (target >= 1.8x on 2
cores), and a check that both gave identical results.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from dask.distributed import LocalCluster

from simulator.sweep import Sweep, execute

ROOT = Path(__file__).resolve().parent.parent


def make_sweep(duration: float) -> Sweep:
    return Sweep.from_dict({
        "sweep": {"name": "bench", "kind": "run", "seed": 0,
                  "base": str(ROOT / "scenarios" / "lamina_llama3_70b.toml")},
        "grid": {"policy": ["disaggregated", "homogeneous"], "stack": ["nccl", "ibgda"],
                 "disaggregation.micro_batches": [2, 3],
                 "engine.duration": [duration, duration * 1.5]},
    }, source="bench_sweep")


def timed_run(sweep: Sweep, workers: int, out: Path) -> tuple[float, pd.DataFrame]:
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        start = time.perf_counter()
        res = execute(sweep, out, "dask", scheduler=cluster.scheduler_address, progress=False)
        wall = time.perf_counter() - start
    if res.failures:
        raise SystemExit(f"bench_sweep: {len(res.failures)} points failed: {res.failures[0]}")
    return wall, res.results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0,
                    help="simulated seconds per point (more = longer points)")
    args = ap.parse_args()
    sweep = make_sweep(args.duration)
    n = len(sweep.points())
    with tempfile.TemporaryDirectory() as tmp:
        one, r1 = timed_run(sweep, 1, Path(tmp) / "w1")
        two, r2 = timed_run(sweep, 2, Path(tmp) / "w2")
    wall_clock = [c for c in r1.columns if c.endswith("wall_time")]  # differs run to run
    same = r1.drop(columns=wall_clock).equals(r2.drop(columns=wall_clock))
    print(f"sweep of {n} points (lamina_llama3_70b, {args.duration:g}–{args.duration * 1.5:g} "
          "simulated s each)")
    print(f"  1 Dask worker : {one:7.2f} s  ({n / one:.2f} points/s)")
    print(f"  2 Dask workers: {two:7.2f} s  ({n / two:.2f} points/s)")
    print(f"  speed-up      : {one / two:7.2f}x  (target >= 1.8x)")
    print(f"  identical results on 1 and 2 workers (wall-clock columns aside): {same}")


if __name__ == "__main__":
    main()
