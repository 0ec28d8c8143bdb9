"""Where does each option win? Sub-agents × reuse × stack, every static policy and ``adaptive``.

The sweep behind notebook 06 (``notebooks/06_adaptive.ipynb`` reads what this writes, so the
notebook stays fast). Base: ``scenarios/agentic_repo.toml`` with a 64k-token repository, 1.5
turns per sub-agent and tasks arriving for 90 s (47 to 340 requests a point with seed 0); the grid:

- ``subagents`` — 4, 16, 32 sub-agents per task (how many queries share the repository owner:
  its load, and how many readers a copy at a home serves);
- ``output_tokens_mean`` — 16, 64, 256 tokens generated per turn (how many decode steps can
  reuse a fetched copy: the *reuse* axis);
- ``stack`` — ``ibgda`` (GPU-initiated RDMA, 16.5 µs per message) and ``nccl`` (33 µs).

Each point replays one trace under ``route``, ``fetch``, ``local`` and ``adaptive`` (same seed,
the fast engine unless ``--engine exact``) and records TBT p50/p99, throughput, the best static
policy per metric, ``adaptive``'s regret against it and the share of rounds ``adaptive``
routed, fetched or recomputed.

    python benchmarks/adaptive_sweep.py            # writes notebooks/data/adaptive_sweep.parquet
    python benchmarks/adaptive_sweep.py --jobs 2 --out sweep.parquet
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUBAGENTS = (4, 16, 32)
OUTPUT_TOKENS = (16.0, 64.0, 256.0)
STACKS = ("ibgda", "nccl")
POLICIES = ("route", "fetch", "local", "adaptive")
OUT = ROOT / "notebooks" / "data" / "adaptive_sweep.parquet"


def scenario(subagents: int, output_tokens: float, stack: str):
    """One point of the grid (see the module docstring)."""
    from simulator import Scenario

    path = ROOT / "scenarios" / "agentic_repo.toml"
    base = tomllib.loads(path.read_text())
    agentic = {**base["workload"]["agentic"], "repo_tokens": 65536, "turns_mean": 1.5,
               "duration_time": 90.0, "subagents": subagents,
               "output_tokens_mean": output_tokens}
    data = {**base, "name": f"sweep_{subagents}_{int(output_tokens)}_{stack}", "stack": stack,
            "workload": {**base["workload"], "agentic": agentic}}
    return Scenario.from_dict(data, source="adaptive_sweep", base=path.parent)


def run_point(point: tuple[int, float, str], engine: str = "fast") -> list[dict]:
    """Every policy at one grid point: one row per policy."""
    from simulator import run
    from simulator.engine.regret import regret
    from simulator.runner import load_trace

    subagents, output_tokens, stack = point
    sc = scenario(subagents, output_tokens, stack)
    trace = load_trace(sc, sc.seed)
    t0 = time.perf_counter()
    res = {p: run(sc, p, seed=sc.seed, trace=trace, engine=engine) for p in POLICIES}
    rep = regret({p: r.summary for p, r in res.items()})
    rows = []
    for p, r in res.items():
        s = r.summary
        decided = r.rounds[r.rounds["owner"].astype(str) != r.rounds["src"].astype(str)]
        shares = decided["option"].astype(str).value_counts(normalize=True)
        rows.append({
            "subagents": subagents, "output_tokens_mean": output_tokens, "stack": stack,
            "engine": s["engine"], "policy": p, "requests": s["requests"], "tbt_p50": s["tbt_p50"],
            "tbt_p99": s["tbt_p99"], "throughput_tokens_per_s": s["throughput_tokens_per_s"],
            "best_tbt_p50": rep["baseline"]["tbt_p50"],
            "best_throughput": rep["baseline"]["throughput_tokens_per_s"],
            "regret_tbt_p50": rep["policies"][p]["tbt_p50"],
            "regret_tbt_p99": rep["policies"][p]["tbt_p99"],
            "regret_throughput": rep["policies"][p]["throughput_tokens_per_s"],
            "rounds": len(decided),
            **{f"share_{o}": float(shares.get(o, 0.0)) for o in ("route", "fetch", "local")},
        })
    print(f"  {point}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--engine", default="fast", choices=("exact", "fast"))
    args = ap.parse_args(argv)
    import pandas as pd

    from simulator.fileio import write_parquet

    points = list(itertools.product(SUBAGENTS, OUTPUT_TOKENS, STACKS))
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = [r for rs in pool.map(run_point, points, [args.engine] * len(points))
                    for r in rs]
    else:
        rows = [r for p in points for r in run_point(p, args.engine)]
    df = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(df, args.out)
    best = df[df["policy"] == "adaptive"][["subagents", "output_tokens_mean", "stack",
                                           "best_tbt_p50", "regret_tbt_p50",
                                           "regret_throughput", "share_route", "share_fetch"]]
    print(best.to_string(index=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
