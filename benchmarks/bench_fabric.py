"""Speed of the max-min fair Fabric against the naive oracle, in one run, on two workloads.

(a) 8 hosts, each with a 100 GB/s up and down link (1 µs per hop) to one switch; 10,000 flows
    between random pairs (src ≠ dst), exponential sizes with a 1 GB mean, Poisson arrivals at link
    load 0.7 (λ = 0.7 × 8 × 100 GB/s / 1 GB = 560 flows/s); stack ``ideal``.
(b) A 2-node ``dgx_h100`` (``topologies.build``): 1,000 flows between random GPU pairs issued
    within 100 µs, so about 1,000 run at once; exponential sizes with a 64 MB mean; stack
    ``ibgda`` (so per-flow efficiency caps are exercised too).

For each it prints flows per wall-second of the Fabric and of :class:`NaiveFabric` (same flows,
same process), their ratio, and the largest finish-time difference (relative to the finish time
and to the flow's own duration). Path caches are filled before timing (path search is shared
code, not the fluid model). Targets: (a) ≥ 3×, (b) ≥ 20×, differences ≤ 1e-9 relative.

    .venv/bin/python benchmarks/bench_fabric.py            # full (~1–2 min)
    .venv/bin/python benchmarks/bench_fabric.py --quick    # smaller (~10 s)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import simpy

import topologies
from simulator.network import Fabric
from simulator.testing.fabric import FlowSpec, NaiveFabric, run_flows, star_graph
from simulator.units import GB, MB, GBps, us


def star_workload(n: int, rng: np.random.Generator):
    hosts, bw, mean = 8, GBps(100), GB(1)
    names = [f"h{i}" for i in range(hosts)]
    rate = 0.7 * hosts * bw / mean  # arrivals per second for load 0.7 on every link
    src = rng.integers(0, hosts, n)
    dst = (src + rng.integers(1, hosts, n)) % hosts
    at = np.cumsum(rng.exponential(1.0 / rate, n))
    size = rng.exponential(mean, n)
    flows = [FlowSpec(float(t), names[a], names[b], float(s))
             for t, a, b, s in zip(at, src, dst, size, strict=True)]
    return star_graph(hosts, bw, us(1)), flows, "ideal"


def dgx_workload(n: int, rng: np.random.Generator):
    g = topologies.build("dgx_h100", nodes=2)
    names = topologies.gpus(g)
    src = rng.integers(0, len(names), n)
    dst = (src + rng.integers(1, len(names), n)) % len(names)
    at = rng.uniform(0.0, us(100), n)
    size = rng.exponential(MB(64), n)
    flows = [FlowSpec(float(t), names[a], names[b], float(s))
             for t, a, b, s in zip(at, src, dst, size, strict=True)]
    return g, flows, "ibgda"


def peak_concurrency(recs) -> int:
    """Most flows sharing bandwidth at one instant."""
    ev = sorted([(r.started_at, 1) for r in recs if r.finished_at > r.started_at]
                + [(r.finished_at, -1) for r in recs if r.finished_at > r.started_at])
    return int(np.max(np.cumsum([d for _, d in ev]))) if ev else 0


def measure(model, g, flows, stack):
    fab = model(simpy.Environment(), g, stack=stack)
    for pair in sorted({(f.src, f.dst) for f in flows}):
        fab.paths(*pair)
    t0 = time.perf_counter()
    recs = run_flows(fab, flows)
    return recs, time.perf_counter() - t0


def bench(name, workload, n, target, seed, judge=True):
    g, flows, stack = workload(n, np.random.default_rng(seed))
    fast, fast_time = measure(Fabric, g, flows, stack)
    slow, slow_time = measure(NaiveFabric, g, flows, stack)
    fa = np.array([r.finished_at for r in fast])
    fb = np.array([r.finished_at for r in slow])
    dur = np.array([r.finished_at - r.issued_at for r in slow])
    out = {
        "case": name,
        "flows": n,
        "stack": stack,
        "peak_concurrent_flows": peak_concurrency(fast),
        "fabric_flows_per_s": n / fast_time,
        "oracle_flows_per_s": n / slow_time,
        "ratio": slow_time / fast_time,
        "target_ratio": target,
        "max_rel_finish_diff": float(np.max(np.abs(fa - fb) / fb)),
        "max_rel_duration_diff": float(np.max(np.abs(fa - fb) / np.where(dur > 0, dur, 1.0))),
        "fabric_wall_time": fast_time,
        "oracle_wall_time": slow_time,
    }
    out["met"] = (bool(out["ratio"] >= target and out["max_rel_finish_diff"] <= 1e-9) if judge
                  else None)  # targets are for the full sizes
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (2,000 and 300 flows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = [
        bench("a: 8-host star, load 0.7", star_workload, 2000 if args.quick else 10_000, 3.0,
              args.seed, judge=not args.quick),
        bench("b: 2 x dgx_h100, burst", dgx_workload, 300 if args.quick else 1000, 20.0,
              args.seed + 1, judge=not args.quick),
    ]
    wall = time.perf_counter() - t0
    if args.json:
        print(json.dumps({"results": results, "wall_time": wall}, indent=2))
        return
    verdict = {True: "met", False: "NOT MET", None: "(targets are judged on the full run)"}
    for r in results:
        print(f"({r['case']}) {r['flows']} flows, stack {r['stack']}, "
              f"peak {r['peak_concurrent_flows']} concurrent")
        print(f"  Fabric {r['fabric_flows_per_s']:10.0f} flows/s  ({r['fabric_wall_time']:.2f} s)")
        print(f"  oracle {r['oracle_flows_per_s']:10.0f} flows/s  ({r['oracle_wall_time']:.2f} s)")
        print(f"  ratio  {r['ratio']:10.1f} x   (target >= {r['target_ratio']:g}x)")
        print(f"  max finish-time difference {r['max_rel_finish_diff']:.2e} relative "
              f"({r['max_rel_duration_diff']:.2e} of the flow's duration)  "
              f"-> {verdict[r['met']]}")
    print(f"wall time {wall:.1f} s")


if __name__ == "__main__":
    main()
