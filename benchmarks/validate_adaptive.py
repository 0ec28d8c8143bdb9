"""Does ``adaptive`` win? Its regret against the best static policy on the validation suite.

Issue 18's targets, checked on every scenario of the suite:

1. ``adaptive``'s TBT p50 and throughput within 2 % of the best static policy's (the best of
   ``route``, ``fetch`` and ``local`` for each metric: regret ≤ 0.02);
2. on ``mixed_fleet`` and at least one other scenario, ``adaptive`` at least 5 % better than
   every static policy on TBT p50 or throughput (regret ≤ −0.05) without being worse on the
   other (regret ≤ 0).

The suite is the fast engine's validation suite (``benchmarks/validate_fast.py``: the agentic
repository at 4, 16 and 32 sub-agents, host-tier pressure, the first 1,000 Mooncake requests,
each on both stacks where that suite has them) plus the default run and the mixed fleet:

- ``default`` — ``scenarios/agentic_cluster.toml`` (``kvfabric run`` with no argument: 64 GPUs);
- ``agentic-4`` / ``-16`` / ``-32`` (``-32-nccl``) — ``scenarios/agentic_repo.toml`` at 4, 16,
  32 sub-agents per task (over the ``nccl`` stack: CPU-driven RDMA);
- ``host-32`` (``-nccl``) — 32 sub-agents with HBM for KV cut so the repository's owner demotes
  blocks to host DRAM and fetched copies are evicted;
- ``mooncake-1000`` (``-nccl``) — the first 1,000 requests of the Mooncake conversation trace;
- ``cluster-128`` — ``scenarios/cluster_128.toml``: ``cluster_1024``'s load per GPU on 128
  GPUs (10 s of tasks of 100 sub-agents over 13 repositories; 60 simulated seconds, overloaded);
- ``mixed_fleet`` — ``scenarios/mixed_fleet.toml``: sub-agents, private long-context sessions,
  short chats.

Each scenario's trace is generated or loaded once; every policy replays it with the same seed,
on each engine asked for (``--engine``: ``fast``, ``exact`` or ``both``; default ``fast``).

    python benchmarks/validate_adaptive.py                      # the suite on the fast engine
    python benchmarks/validate_adaptive.py --engine both --jobs 2
    python benchmarks/validate_adaptive.py --scenarios default,mixed_fleet
    python benchmarks/validate_adaptive.py --policies route,fetch,local,adaptive,adaptive_static
    python benchmarks/validate_adaptive.py --scenarios mixed_fleet --set workload.mixed.chat_rate=2.0
    python benchmarks/validate_adaptive.py --scenarios default --engine both --seeds 0,1,2
    python benchmarks/validate_adaptive.py --scenarios agentic-32-causal --seeds 0,5 --by-batch
    python benchmarks/validate_adaptive.py --out results.csv    # every run's metrics as CSV
    python benchmarks/validate_adaptive.py --table results.csv  # the table of a saved CSV

Prints one table row per (scenario, engine) — the best static policy's TBT p50 and throughput,
adaptive's, its regret on each (negative: better than every static policy), and whether targets
1 and 2 hold — then, for a trace with populations (``mixed_fleet``), each policy's median
per-request TBT per population and the best static policy for each, and the verdict per engine. The Mooncake replays dominate the time (74–195 s
per policy on the fast engine on the project's shared 2-core machine, 46–107 s on the exact
engine); the whole suite took 20 minutes on the fast engine, about 13 on the exact one.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cliargs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLICIES: tuple[str, ...] = ("route", "fetch", "local", "adaptive")
ENGINES: tuple[str, ...] = ("exact", "fast")
#: Target 1: adaptive's regret on TBT p50 and throughput at most this.
WITHIN = 0.02
#: Target 2: adaptive's regret at most minus this on one of them (and ≤ 0 on the other).
BETTER = 0.05


def _validate_fast():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import validate_fast
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return validate_fast


#: The default run first, then validate_fast's suite (which holds the default too since stop 33:
#: listed once, so a whole-suite run makes it once), then cluster-128 and mixed_fleet.
SCENARIOS: tuple[str, ...] = tuple(dict.fromkeys(("default", *_validate_fast().SUITE,
                                                  "cluster-128", "mixed_fleet")))


#: The scenarios read straight from a TOML file (``--set`` changes their keys).
FILES: dict[str, str] = {"default": "agentic_cluster.toml", "cluster-128": "cluster_128.toml",
                         "mixed_fleet": "mixed_fleet.toml"}


def suite(name: str, changes: tuple[str, ...] = ()):
    """The validation scenario ``name`` (a :class:`~simulator.scenario.Scenario`), with
    ``changes`` (``"section.key=<TOML value>"``, e.g. ``workload.mixed.chat_rate=2.0`` or
    ``stack="nccl"``) applied to its file's keys (the scenarios of :data:`FILES` only)."""
    import tomllib

    from simulator import Scenario
    from simulator.scenario import read_toml

    if name in FILES:
        path = ROOT / "scenarios" / FILES[name]
        if not changes:
            return Scenario.load(path)
        data = read_toml(path)
        for change in changes:
            key, eq, value = change.partition("=")
            *parents, leaf = key.strip().split(".")
            if not eq or not leaf or not all(parents):
                raise ValueError(f"--set {change!r}: give KEY=VALUE, e.g. "
                                 "workload.mixed.chat_rate=2.0")
            try:
                parsed = tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                raise ValueError(f"--set {change!r}: {value!r} is not a TOML value (quote "
                                 "strings: model.name='\"kimi-k2\"')") from None
            table = data
            for part in parents:
                table = table.setdefault(part, {})
                if not isinstance(table, dict):
                    raise ValueError(f"--set {change!r}: {part!r} is not a table")
            table[leaf] = parsed
        return Scenario.from_dict(data, source=f"{path} with {', '.join(changes)}",
                                  base=path.parent)
    if name not in SCENARIOS:
        raise SystemExit(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    if changes:
        raise ValueError(f"--set changes only {' and '.join(FILES)}, not {name!r}")
    return _validate_fast().scenario(name)


def population_tbt(requests, population) -> dict[str, float]:
    """Per population, the median over its completed requests of each request's mean time
    between tokens, ``(finished_at − first_token_at) / (tokens_generated − 1)`` [s] (requests
    that generated one token are left out). ``population[i]`` names request ``i``'s
    population (the mixed workload's ``trace.attrs["population"]``)."""
    import numpy as np

    pop = np.asarray(population)[requests["request_id"].to_numpy()]
    gen = requests["tokens_generated"].to_numpy(float)
    span = (requests["finished_at"] - requests["first_token_at"]).to_numpy(float)
    ok = requests["completed"].to_numpy(bool) & (gen > 1)
    tbt = np.where(ok, span / np.maximum(gen - 1.0, 1.0), np.nan)
    return {str(p): float(np.nanmedian(tbt[(pop == p) & ok]))
            for p in dict.fromkeys(pop.tolist()) if ((pop == p) & ok).any()}


def by_batch(iterations) -> dict[int, tuple[float, float]]:
    """Per decode batch size ``B``: the median time [s] of the steps that decoded ``B`` tokens
    and ran no prefill chunk (nan if none did), and the share of all decoded tokens that came from
    steps of batch ``B`` (prefill steps counted by their decode batch).

    A median over tokens (TBT p50) sits inside one batch size's steps; where about half the
    tokens come from batch-1 steps, a few per cent of tokens moving between batch sizes moves
    TBT p50 by the whole gap between them. The step time at equal batch tells a policy's cost
    from the batching it happened to get."""
    import numpy as np

    batch = iterations["batch"].to_numpy(int)
    tokens = iterations["tokens"].to_numpy(float)
    step = (iterations["finished_at"] - iterations["started_at"]).to_numpy(float)
    quiet = iterations["prefill_tokens"].to_numpy(int) == 0
    total = tokens.sum()
    out = {}
    for b in sorted(set(batch[batch > 0].tolist())):
        mine = batch == b
        t = step[mine & quiet]
        out[int(b)] = (float(np.median(t)) if len(t) else math.nan,
                       float(tokens[mine].sum() / total) if total else math.nan)
    return out


def run_scenario(name: str, policies: tuple[str, ...], engines: tuple[str, ...],
                 changes: tuple[str, ...] = (), seed: int | None = None,
                 batches: bool = False) -> list[dict]:
    """Every policy on scenario ``name`` on each engine: one ``{"scenario", "engine",
    "requests", "runs": {policy: summary}, "wall_time"}`` per engine. A trace with
    populations (the mixed fleet) adds ``population_tbt_p50`` (:func:`population_tbt`) to
    each summary, ``batches`` adds ``by_batch`` (:func:`by_batch`). ``changes``: :func:`suite`'s;
    ``seed`` replaces the scenario's (its rows are then labelled ``name@seed``)."""
    from simulator import run
    from simulator.runner import load_trace

    scenario = suite(name, changes)
    if seed is not None:
        scenario = scenario.with_changes(seed=seed)
        name = f"{name}@{seed}"
    trace = load_trace(scenario, scenario.seed)
    population = trace.attrs.get("population")
    out = []
    for engine in engines:
        t0 = time.perf_counter()
        runs = {}
        for p in policies:
            res = run(scenario, p, seed=scenario.seed, trace=trace, engine=engine)
            runs[p] = res.summary
            if batches:
                runs[p]["by_batch"] = by_batch(res.iterations)
            if population is not None:
                runs[p]["population_tbt_p50"] = population_tbt(res.requests, population)
            print(f"  {name} [{engine}]: {p} done ({res.summary['wall_time']:.0f} s)",
                  file=sys.stderr, flush=True)
        out.append({"scenario": name, "engine": engine, "requests": len(trace), "runs": runs,
                    "wall_time": time.perf_counter() - t0})
    return out


def from_csv(path: Path) -> list[dict]:
    """Results as :func:`run_scenario` returns them, read back from ``--out``'s CSV."""
    import pandas as pd

    df = pd.read_csv(path)
    out = []
    for (name, engine), g in df.groupby(["scenario", "run_engine"], sort=False):
        runs = {row["policy"]: row.to_dict() for _, row in g.iterrows()}
        out.append({"scenario": name, "engine": engine, "requests": int(g["requests"].iloc[0]),
                    "runs": runs})
    return out


def verdict(result: dict) -> dict:
    """The scenario's row: best static values, adaptive's, its regret, targets 1 and 2."""
    from simulator.engine.regret import regret

    runs = result["runs"]
    rep = regret(runs)
    row = {"scenario": result["scenario"], "engine": result["engine"],
           "requests": result["requests"]}
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
    row["within"] = bool(p50 <= WITHIN and thr <= WITHIN)  # numpy floats: a plain bool
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
    head = ("scenario", "engine", "requests", "best static p50", "TBT p50 [ms]", "adaptive [ms]",
            "regret", "best static tok/s", "tok/s", "adaptive tok/s", "regret", "p99 regret",
            "≤2 %", "≥5 % better")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for r in rows:
        if "regret_p50" not in r:
            print(f"| {r['scenario']} | {r['engine']} | {r['requests']} | (no static policy or "
                  "no adaptive) |")
            continue
        print("| " + " | ".join([
            r["scenario"], r["engine"], f"{r['requests']:,}", _fmt(r["best_p50"]),
            _fmt(r["best_p50_value"], "ms"), _fmt(r["adaptive_p50"], "ms"),
            _fmt(r["regret_p50"], "pct"), _fmt(r["best_thr"]), _fmt(r["best_thr_value"], "num"),
            _fmt(r["adaptive_thr"], "num"), _fmt(r["regret_thr"], "pct"),
            _fmt(r["regret_p99"], "pct"), "yes" if r["within"] else "NO",
            "yes" if r["better"] else "no"]) + " |")


def print_populations(results: list[dict]) -> None:
    """Per population, each policy's median per-request TBT [ms] and which static policy is
    best for it (runs that recorded ``population_tbt_p50`` only; not kept by ``--out``)."""
    from simulator.engine.regret import STATIC

    for r in results:
        runs = {p: s["population_tbt_p50"] for p, s in r["runs"].items()
                if isinstance(s.get("population_tbt_p50"), dict)}
        if not runs:
            continue
        pops = list(dict.fromkeys(k for v in runs.values() for k in v))
        print(f"\n{r['scenario']} [{r['engine']}]: median per-request TBT [ms] by population")
        print("| population | " + " | ".join(runs) + " | best static |")
        print("|---|" + "---:|" * (len(runs) + 1))
        for pop in pops:
            vals = {p: v.get(pop, math.nan) for p, v in runs.items()}
            static = {p: x for p, x in vals.items() if p in STATIC and not math.isnan(x)}
            best = min(static, key=static.get) if static else "—"
            print(f"| {pop} | " + " | ".join(f"{x * 1e3:.2f}" for x in vals.values())
                  + f" | {best} |")


def print_by_batch(results: list[dict]) -> None:
    """Per scenario, each policy's median decode-only step time [ms] at each batch size and that batch
    size's share of decoded tokens (:func:`by_batch`; not kept by ``--out``)."""
    for r in results:
        runs = {p: s["by_batch"] for p, s in r["runs"].items() if isinstance(s.get("by_batch"),
                                                                              dict)}
        if not runs:
            continue
        sizes = sorted({b for v in runs.values() for b in v})[:6]
        print(f"\n{r['scenario']} [{r['engine']}]: median decode-only step time [ms] by batch "
              "(share of decoded tokens)")
        print("| policy | TBT p50 [ms] | " + " | ".join(f"B={b}" for b in sizes) + " |")
        print("|---|---:|" + "---:|" * len(sizes))
        for p, v in runs.items():
            cells = [f"{v[b][0] * 1e3:.2f} ({v[b][1]:.0%})" if b in v else "—" for b in sizes]
            print(f"| {p} | {r['runs'][p]['tbt_p50'] * 1e3:.2f} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default=list(SCENARIOS),
                    type=cliargs.names(SCENARIOS, "scenario"))
    ap.add_argument("--policies", default=list(POLICIES), type=cliargs.policy_names)
    ap.add_argument("--engine", default="fast", choices=(*ENGINES, "both"))
    ap.add_argument("--jobs", type=int, default=1, help="scenarios run at once (processes)")
    ap.add_argument("--out", type=Path, help="write every run's metrics to this CSV")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change a key of the default, cluster-128 or mixed_fleet scenario "
                    "file (TOML value; repeatable), e.g. --set workload.mixed.chat_rate=2.0")
    ap.add_argument("--table", type=Path, help="print the table of a CSV written by --out "
                    "instead of running")
    ap.add_argument("--by-batch", action="store_true", help="also each policy's decode step "
                    "time at each batch size and that size's share of tokens (TBT p50 on a "
                    "closed-loop trace can sit at the edge between two batch sizes)")
    ap.add_argument("--seeds", default=None, type=cliargs.ints,
                    help="comma-separated seeds (default: each scenario's own): a row per "
                    "(scenario, seed, engine), labelled name@seed")
    args = ap.parse_args(argv)
    names = list(args.scenarios)
    seeds = [None] if args.seeds is None else args.seeds
    policies = tuple(args.policies)
    engines = ENGINES if args.engine == "both" else (args.engine,)
    if args.set and args.table is None:  # every change checked before any run starts
        for n in names:
            try:
                suite(n, tuple(args.set))
            except ValueError as e:  # the scenario's own UserError is one
                ap.exit(2, f"{ap.prog}: error: {e}\n")
    if args.table is not None:
        results = from_csv(args.table)
    else:  # run_scenario's arguments, one tuple per (scenario, seed)
        cases = [(n, policies, engines, tuple(args.set), x, args.by_batch)
                 for n in names for x in seeds]
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs) as pool:
                results = [r for rs in pool.map(run_scenario, *zip(*cases, strict=True)) for r in rs]
        else:
            results = [r for case in cases for r in run_scenario(*case)]
    if args.out is not None:
        import pandas as pd

        flat = [{"scenario": r["scenario"], "run_engine": r["engine"], "policy": p,
                 "requests": r["requests"],
                 **{k: v for k, v in s.items() if not isinstance(v, dict | list)}}
                for r in results for p, s in r["runs"].items()]
        pd.DataFrame(flat).to_csv(args.out, index=False)
    rows = [verdict(r) for r in results]
    print_table(rows)
    print_populations(results)
    if args.by_batch:
        print_by_batch(results)
    ok = True
    for engine in dict.fromkeys(r["engine"] for r in rows):
        mine = [r for r in rows if r["engine"] == engine]
        within = all(r.get("within", False) for r in mine)
        missed = [r["scenario"] for r in mine if r.get("within") is False]
        unmeasured = [r["scenario"] for r in mine if "within" not in r]
        better = [r["scenario"] for r in mine if r.get("better")]
        second = "mixed_fleet" in better and len(better) >= 2
        why = [f"{what} on: {', '.join(who)}" for what, who in (
            ("missed", missed), ("not measured (no adaptive or no static run)", unmeasured))
            if who]
        print(f"\n[{engine}] target 1 (TBT p50 and throughput within {WITHIN:.0%} of the best "
              f"static policy on every scenario): {'met' if within else 'NOT met'}"
              + ("" if within else f" ({'; '.join(why)})"))
        print(f"[{engine}] target 2 (≥{BETTER:.0%} better than every static policy on "
              f"mixed_fleet and one more): {'met' if second else 'NOT met'} (better on: "
              f"{', '.join(better) or 'none'})")
        ok &= within and second
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
