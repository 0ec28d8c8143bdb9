"""Does ``adaptive`` win? Its regret against the best static policy on the validation suite.

Issue 18's targets, checked on every scenario of the suite:

1. ``adaptive``'s TBT p50 and throughput within 2 % of the best static policy's (the best of
   ``route``, ``fetch`` and ``local`` for each metric: regret ≤ 0.02);
2. on ``mixed_fleet`` and at least one other scenario, ``adaptive`` at least 5 % better than
   every static policy on TBT p50 or throughput (regret ≤ −0.05) without being worse on the
   other (regret ≤ 0).

The suite (each scenario's trace generated or loaded once, every policy replaying it with the
same seed; :func:`suite`):

- ``default`` — ``scenarios/agentic_repo.toml`` as shipped (32 sub-agents, ``ibgda``);
- ``subagents_4`` / ``_16`` / ``_32`` — the same repository, 4, 16 or 32 sub-agents per task
  and 1.5 turns on average (notebook 02's load sweep);
- ``nccl`` — the default over the ``nccl`` stack (CPU-driven RDMA: 33 µs per message);
- ``host_pressure`` — the default with 60 GB of weights per GPU, so HBM holds 2,668 KV blocks
  and the 4,233-block repository spills to the host tier (fetched over PCIe);
- ``mooncake_1000`` — the first 1,000 requests of the Mooncake conversation trace;
- ``mixed_fleet`` — ``scenarios/mixed_fleet.toml``: sub-agents, private long-context sessions,
  short chats.

    python benchmarks/validate_adaptive.py                      # the whole suite (~30 min)
    python benchmarks/validate_adaptive.py --jobs 2             # two scenarios at a time
    python benchmarks/validate_adaptive.py --scenarios default,mixed_fleet
    python benchmarks/validate_adaptive.py --policies route,fetch,local,adaptive,adaptive_static
    python benchmarks/validate_adaptive.py --out results.csv    # every run's metrics as CSV

Prints one table row per scenario — the best static policy's TBT p50 and throughput, adaptive's,
its regret on each (negative: better than every static policy), and whether targets 1 and 2
hold — then the suite's verdict. The ``mooncake_1000`` replay dominates the time (a few minutes
per policy on the project's 2-core machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENARIOS: tuple[str, ...] = ("default", "subagents_4", "subagents_16", "subagents_32", "nccl",
                              "host_pressure", "mooncake_1000", "mixed_fleet")
POLICIES: tuple[str, ...] = ("route", "fetch", "local", "adaptive")
#: Target 1: adaptive's regret on TBT p50 and throughput at most this.
WITHIN = 0.02
#: Target 2: adaptive's regret at most minus this on one of them (and ≤ 0 on the other).
BETTER = 0.05


def suite(name: str):
    """The validation scenario ``name`` (a :class:`~simulator.scenario.Scenario`)."""
    import tomllib

    from simulator import Scenario

    sc = ROOT / "scenarios"
    if name == "mooncake_1000":
        s = Scenario.load(sc / "mooncake_conversation.toml")
        return s.with_changes(engine=dataclasses.replace(s.engine, max_requests=1000))
    if name == "host_pressure":
        s = Scenario.load(sc / "mooncake_conversation.toml")
        return s.with_changes(
            name=name, engine=dataclasses.replace(s.engine, max_requests=300),
            placement=dataclasses.replace(s.placement, weights_per_gpu=66e9))
    if name == "mixed_fleet":
        return Scenario.load(sc / "mixed_fleet.toml")
    base = tomllib.loads((sc / "agentic_repo.toml").read_text())
    if name.startswith("subagents_"):
        agentic = {**base["workload"]["agentic"], "subagents": int(name.split("_")[1]),
                   "turns_mean": 1.5}
        base = {**base, "workload": {**base["workload"], "agentic": agentic}}
    elif name == "nccl":
        base = {**base, "stack": "nccl"}
    elif name != "default":
        raise SystemExit(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return Scenario.from_dict({**base, "name": name}, source=f"validate_adaptive:{name}",
                              base=sc)


def run_scenario(name: str, policies: tuple[str, ...]) -> dict:
    """Every policy on scenario ``name``: ``{"scenario", "requests", "runs": {policy:
    summary}, "wall_time"}``."""
    from simulator import run
    from simulator.runner import load_trace

    t0 = time.perf_counter()
    scenario = suite(name)
    trace = load_trace(scenario, scenario.seed)
    runs = {}
    for p in policies:
        res = run(scenario, p, seed=scenario.seed, trace=trace)
        runs[p] = res.summary
        print(f"  {name}: {p} done ({res.summary['wall_time']:.0f} s)", file=sys.stderr,
              flush=True)
    return {"scenario": name, "requests": len(trace), "runs": runs,
            "wall_time": time.perf_counter() - t0}


def from_csv(path: Path) -> list[dict]:
    """Results as :func:`run_scenario` returns them, read back from ``--out``'s CSV."""
    import pandas as pd

    df = pd.read_csv(path)
    out = []
    for name, g in df.groupby("scenario", sort=False):
        runs = {row["policy"]: row.to_dict() for _, row in g.iterrows()}
        out.append({"scenario": name, "requests": int(g["requests"].iloc[0]), "runs": runs})
    return out


def verdict(result: dict) -> dict:
    """The scenario's row: best static values, adaptive's, its regret, targets 1 and 2."""
    from simulator.engine.regret import regret

    runs = result["runs"]
    rep = regret(runs)
    row = {"scenario": result["scenario"], "requests": result["requests"]}
    if rep is None or "adaptive" not in runs:
        return row
    r = rep["policies"]["adaptive"]
    for key, short in (("tbt_p50", "p50"), ("throughput_tokens_per_s", "thr")):
        best = rep["baseline"][key]
        row[f"best_{short}"] = best
        row[f"best_{short}_value"] = runs[best][key] if best else math.nan
        row[f"adaptive_{short}"] = runs["adaptive"][key]
        row[f"regret_{short}"] = r[key]
    row["regret_p99"] = r["tbt_p99"]
    p50, thr = row["regret_p50"], row["regret_thr"]
    row["within"] = p50 <= WITHIN and thr <= WITHIN
    row["better"] = (p50 <= -BETTER and thr <= 0) or (thr <= -BETTER and p50 <= 0)
    return row


def _fmt(x, kind=None):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, str):
        return x
    if kind == "ms":
        return f"{x * 1e3:.2f}"
    if kind == "pct":
        return f"{x:+.1%}"
    return f"{x:.4g}"


def print_table(rows: list[dict]) -> None:
    """The suite as a Markdown table (see the module docstring)."""
    head = ("scenario", "requests", "best static p50", "TBT p50 [ms]", "adaptive [ms]",
            "regret", "best static tok/s", "tok/s", "adaptive tok/s", "regret", "p99 regret",
            "≤2 %", "≥5 % better")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for r in rows:
        if "regret_p50" not in r:
            print(f"| {r['scenario']} | {r['requests']} | (no static policy or no adaptive) |")
            continue
        print("| " + " | ".join([
            r["scenario"], f"{r['requests']:,}", _fmt(r["best_p50"]),
            _fmt(r["best_p50_value"], "ms"), _fmt(r["adaptive_p50"], "ms"),
            _fmt(r["regret_p50"], "pct"), _fmt(r["best_thr"]), _fmt(r["best_thr_value"], "num"),
            _fmt(r["adaptive_thr"], "num"), _fmt(r["regret_thr"], "pct"),
            _fmt(r["regret_p99"], "pct"), "yes" if r["within"] else "NO",
            "yes" if r["better"] else "no"]) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--jobs", type=int, default=1, help="scenarios run at once (processes)")
    ap.add_argument("--out", type=Path, help="write every run's metrics to this CSV")
    ap.add_argument("--table", type=Path, help="print the table of a CSV written by --out "
                    "instead of running")
    args = ap.parse_args(argv)
    names = [s for s in args.scenarios.split(",") if s]
    policies = tuple(p for p in args.policies.split(",") if p)
    for n in names:
        if n not in SCENARIOS:
            ap.error(f"unknown scenario {n!r}; known: {', '.join(SCENARIOS)}")
    if args.table is not None:
        results = from_csv(args.table)
    elif args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_scenario, names, [policies] * len(names)))
    else:
        results = [run_scenario(n, policies) for n in names]
    if args.out is not None:
        import pandas as pd

        flat = [{"scenario": r["scenario"], "policy": p, **{k: v for k, v in s.items()
                                                          if not isinstance(v, dict | list)}}
                for r in results for p, s in r["runs"].items()]
        pd.DataFrame(flat).to_csv(args.out, index=False)
    rows = [verdict(r) for r in results]
    print_table(rows)
    within = all(r.get("within", False) for r in rows)
    better = [r["scenario"] for r in rows if r.get("better")]
    second = "mixed_fleet" in better and len(better) >= 2
    print(f"\ntarget 1 (TBT p50 and throughput within {WITHIN:.0%} everywhere): "
          f"{'met' if within else 'NOT met'}")
    print(f"target 2 (≥{BETTER:.0%} better on mixed_fleet and one more): "
          f"{'met' if second else 'NOT met'} (better on: {', '.join(better) or 'none'})")
    return 0 if within and second else 1


if __name__ == "__main__":
    raise SystemExit(main())
