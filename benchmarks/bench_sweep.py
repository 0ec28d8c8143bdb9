"""Sweep scale-out: the same 16-point sweep on a Dask LocalCluster of 1 and of 2 workers.

    python benchmarks/bench_sweep.py [--points-scale 1] [--out DIR]

Each point simulates a Lamina-style disaggregated run of Llama-3-70B (a second or two of work;
the grid varies the stack, micro-batches and early-Q, with two replicates; points cost about the
same, so the figure measures the backend rather than load imbalance).
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
        "grid": {"policy": ["disaggregated"], "stack": ["nccl", "ibgda"],
                 "disaggregation.micro_batches": [2, 3],
                 "disaggregation.early_q": [True, False],
                 "engine.duration": [duration], "seed": [0, 1]},
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


def _spin(n: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - start


def machine_ceiling(n: int = 20_000_000) -> float:
    """This machine's own 2-process speed-up on pure-Python CPU work (the ceiling a 2-worker
    sweep can reach here): the same loop once alone, then twice at the same time."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        pool.submit(_spin, 1000).result()
        alone = time.perf_counter()
        pool.submit(_spin, n).result()
        alone = time.perf_counter() - alone
        both = time.perf_counter()
        list(pool.map(_spin, [n, n]))
        both = time.perf_counter() - both
    return 2 * alone / both


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=30.0,
                    help="simulated seconds per point (more = longer points)")
    args = ap.parse_args()
    sweep = make_sweep(args.duration)
    n = len(sweep.points())
    ceiling_before = machine_ceiling()
    with tempfile.TemporaryDirectory() as tmp:
        one, r1 = timed_run(sweep, 1, Path(tmp) / "w1")
        two, r2 = timed_run(sweep, 2, Path(tmp) / "w2")
    ceiling_after = machine_ceiling()
    wall_clock = [c for c in r1.columns if c.endswith("wall_time")]  # differs run to run
    same = r1.drop(columns=wall_clock).equals(r2.drop(columns=wall_clock))
    print(f"sweep of {n} points (lamina_llama3_70b, {args.duration:g} simulated s each)")
    print(f"  1 Dask worker : {one:7.2f} s  ({n / one:.2f} points/s)")
    print(f"  2 Dask workers: {two:7.2f} s  ({n / two:.2f} points/s)")
    print(f"  speed-up      : {one / two:7.2f}x  (target >= 1.8x)")
    print(f"  this machine's own 2-process speed-up on a pure-Python loop, before/after: "
          f"{ceiling_before:.2f}x / {ceiling_after:.2f}x")
    print(f"  identical results on 1 and 2 workers (wall-clock columns aside): {same}")


if __name__ == "__main__":
    main()
