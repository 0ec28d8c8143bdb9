"""Engine speed on the Mooncake conversation trace (2 × dgx_h100, DeepSeek-V3.2, ibgda).

For each policy (route, fetch, adaptive) and each prefix of the trace (1k, 4k, all 12,031
requests) it runs ``scenarios/mooncake_conversation.toml`` and prints: wall time, SimPy events,
events per wall-second, simulated decode tokens per wall-second, and the ratio of the engine's
events/s to raw SimPy's — a process yielding ``env.timeout`` in a loop, measured in the same run
(the targets: engine ≥ 40 % of raw SimPy; the whole trace ≤ 10 min per policy with every layer
simulated, ≤ 60 s with ``layer_groups = 8``). Cost should grow about linearly in requests;
``whole s`` extrapolates a prefix's wall time to the whole trace by output tokens (decode steps
dominate the cost); ``peak GB`` is the process's peak resident memory so far. ``µs/tok`` is wall
time per simulated decode token (the 60 s target allows 14.6 µs over the whole trace's 4.12 M
tokens). ``floor s`` is what bare SimPy, at the rate measured in the same run, needs for the
fewest events an exact replay of the same run could make — two per route or fetch round (each
message's arrival must see the cluster as it is then), one per decode iteration — i.e. a lower
bound on any engine that advances SimPy per message, before it does any work. Each run reports
its progress on stderr every 30 s. docs/performance.md
keeps the figures measured so far and where the time goes.

    .venv/bin/python benchmarks/bench_engine.py                          # full (hours on 1 core)
    .venv/bin/python benchmarks/bench_engine.py --requests 200,400 --layer-groups 8
    .venv/bin/python benchmarks/bench_engine.py --jobs 6 --json out.json  # one process per run
    .venv/bin/python benchmarks/bench_engine.py --engine fast,exact --requests 300
    .venv/bin/python benchmarks/bench_engine.py --cluster --budget 600   # scenarios/cluster_1024

``--engine`` names the engines to run (``exact``, ``fast`` or both; each run says which engine
made it, and a fast run that fell back says so). ``--cluster`` runs
``scenarios/cluster_1024.toml`` per policy on the fast engine, printing the simulated time
reached every 30 wall-seconds, and stops a run after ``--budget`` wall-seconds: it reports the
simulated seconds reached, simulated seconds per wall-minute, decode tokens per wall-second and
the peak resident memory (the targets: 60 simulated seconds in 10 min and 8 GB per policy).

Runs are independent, so ``--jobs N`` runs N of them at once in separate processes (use only
on a machine with N free cores; events/s are per process).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cliargs
import simpy

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "mooncake_conversation.toml"


def raw_simpy_rate(n: int = 1_000_000) -> float:
    """Events per wall-second of bare SimPy: one process yielding ``n`` timeouts."""
    env = simpy.Environment()

    def proc():
        for _ in range(n):
            yield env.timeout(1e-6)

    env.process(proc())
    t = time.perf_counter()
    env.run()
    return next(env._eid) / (time.perf_counter() - t)


class _Progress:
    """Long runs say how far they are: a line on stderr at most every ``every_time`` [s]."""

    def __init__(self, label: str, t0: float, every_time: float = 30.0) -> None:
        self.label, self.t0, self.every_time = label, t0, every_time
        self.next_at = t0 + every_time

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now >= self.next_at or done == total:
            self.next_at = now + self.every_time
            print(f"[{self.label}] {done:,}/{total:,} requests finished after "
                  f"{now - self.t0:,.0f} s", file=sys.stderr, flush=True)


def one(args: tuple[str, int, int, int, str]) -> dict:
    """Run one (policy, requests, layer_groups, seed, engine); return its speed figures."""
    from simulator.runner import load_trace, run
    from simulator.scenario import EngineSpec, Scenario

    policy, requests, groups, seed, engine = args
    sc = Scenario.load(SCENARIO)
    sc = sc.with_changes(engine=EngineSpec(max_batch=sc.engine.max_batch, layer_groups=groups,
                                           duration=None, max_requests=requests))
    trace = load_trace(sc, seed)
    whole = load_trace(sc.with_changes(engine=EngineSpec(
        max_batch=sc.engine.max_batch, layer_groups=groups, duration=None, max_requests=None)),
        seed)
    share = float(trace["output_tokens"].sum()) / float(whole["output_tokens"].sum())
    raw = raw_simpy_rate()
    t = time.perf_counter()
    res = run(sc, policy, seed, trace=trace, engine=engine,
              progress=_Progress(f"{policy} {engine} {len(trace)}", t))
    wall = time.perf_counter() - t
    s = res.summary
    # the fewest SimPy events an exact replay of the same run needs: a message's arrival must
    # see the cluster as it is then, and a route or fetch round is two messages (query and
    # answer, request and blocks); a decode iteration ends at an event of its own
    messages = 2 * sum(n for o, n in s["options"].items() if o in ("route", "fetch"))
    min_events = messages + len(res.iterations)
    return {
        "policy": policy, "engine": s.get("engine", "exact"), "requests": len(trace),
        "layer_groups": groups, "wall_time": wall,
        "events": s["events"], "events_per_s": s["events"] / wall,
        "raw_simpy_events_per_s": raw, "ratio_to_raw": s["events"] / wall / raw,
        "decode_tokens": s["decode_tokens"], "tokens_per_wall_s": s["decode_tokens"] / wall,
        "wall_time_per_token": wall / max(s["decode_tokens"], 1.0),
        "min_events": min_events, "simpy_floor_time": min_events / raw,
        "sim_time": s["sim_time"], "completed": s["completed"], "rounds": s["rounds"],
        "tbt_p50": s["tbt_p50"], "ttft_p50": s["ttft_p50"],
        "whole_trace_wall_time_est": wall / share,  # linear in output tokens
        # the process's peak resident memory so far (runs in one process: the largest yet)
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main(argv: list[str] | None = None) -> None:
    from simulator.engine.fast import ENGINES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", default=[1000, 4000, 12031], type=cliargs.positive_ints,
                    help="comma-separated trace prefixes (12031 = the whole trace)")
    ap.add_argument("--policies", default=["route", "fetch", "adaptive"],
                    type=cliargs.policy_names)
    ap.add_argument("--layer-groups", type=int, default=0,
                    help="0 = every layer simulated (default); 8 = the fast target")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    ap.add_argument("--json", dest="json_path", default=None, help="also write results here")
    ap.add_argument("--engine", default=["exact"], type=cliargs.names(ENGINES, "engine"),
                    help=f"comma-separated: {', '.join(ENGINES)}")
    ap.add_argument("--cluster", action="store_true", help="scenarios/cluster_1024.toml instead")
    ap.add_argument("--budget", type=float, default=600.0,
                    help="--cluster: wall seconds per policy before a run is stopped")
    a = ap.parse_args(argv)
    if a.cluster:
        cluster(a.policies, a.budget, a.seed, a.json_path)
        return
    runs = [(p, n, a.layer_groups, a.seed, e) for n in a.requests for p in a.policies
            for e in a.engine]
    print(f"raw SimPy (this process): {raw_simpy_rate():,.0f} events/s")
    hdr = (f"{'policy':<9}{'engine':>7}{'requests':>9}{'groups':>7}{'wall s':>9}{'events':>13}"
           f"{'events/s':>10}{'raw %':>7}{'tokens/s':>10}{'µs/tok':>8}{'floor s':>9}{'sim s':>9}{'whole s':>9}"
           f"{'peak GB':>9}")
    print(hdr)
    out = []
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs) as pool:
            results = list(pool.map(one, runs))
    else:
        results = map(one, runs)
    for r in results:
        out.append(r)
        print(f"{r['policy']:<9}{r['engine']:>7}{r['requests']:>9}{r['layer_groups']:>7}{r['wall_time']:>9.1f}"
              f"{r['events']:>13,}{r['events_per_s']:>10,.0f}{100 * r['ratio_to_raw']:>7.1f}"
              f"{r['tokens_per_wall_s']:>10,.0f}{1e6 * r['wall_time_per_token']:>8.1f}"
              f"{r['simpy_floor_time']:>9.1f}{r['sim_time']:>9.1f}"
              f"{r['whole_trace_wall_time_est']:>9.0f}{r['peak_rss_bytes'] / 1e9:>9.2f}",
              flush=True)
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(out, indent=2) + "\n")


class _OverBudget(Exception):
    """A cluster run used up its wall-clock budget."""


def cluster(policies: list[str], budget_time: float, seed: int, json_path: str | None) -> None:
    """Run scenarios/cluster_1024.toml per policy on the fast engine (see the module doc)."""
    from simulator.engine.fast import FastRun
    from simulator.policies import get
    from simulator.runner import load_trace
    from simulator.scenario import Scenario

    sc = Scenario.load(ROOT / "scenarios" / "cluster_1024.toml")
    t = time.perf_counter()
    trace = load_trace(sc, seed)
    print(f"cluster_1024: {len(trace):,} requests, {int(trace['output_tokens'].sum()):,} output "
          f"tokens, trace in {time.perf_counter() - t:.1f} s; raw SimPy "
          f"{raw_simpy_rate():,.0f} events/s", flush=True)
    out = []
    for policy in policies:
        t0 = time.perf_counter()
        run = FastRun(sc, get(policy), seed, trace, None)
        built = time.perf_counter() - t0
        env = run.env
        state = {"next": t0 + 30.0}

        def watch(env=env, run=run, state=state, t0=t0, policy=policy):
            while True:
                yield env.timeout(0.05)
                now = time.perf_counter()
                if now >= state["next"]:
                    state["next"] = now + 30.0
                    print(f"[{policy}] {env.now:6.2f} simulated s after {now - t0:5.0f} s; "
                          f"{int(run.req.gen.sum()):,} tokens; {run.req.finished:,} requests "
                          f"finished", file=sys.stderr, flush=True)
                if now - t0 > budget_time:
                    raise _OverBudget

        env.process(watch())
        stopped = False
        try:
            res = run.execute()
            sim, tokens = res.summary["sim_time"], res.summary["decode_tokens"]
        except _OverBudget:
            stopped = True
            sim, tokens = env.now, float(run.req.gen.sum())
        wall = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        row = {"policy": policy, "engine": "fast", "stopped": stopped, "wall_time": wall,
               "build_time": built, "sim_time": sim, "decode_tokens": tokens,
               "sim_s_per_wall_min": 60 * sim / wall, "tokens_per_wall_s": tokens / wall,
               "peak_rss_bytes": rss}
        out.append(row)
        print(f"{policy:<9} {'stopped at budget' if stopped else 'done':<18} wall {wall:7.1f} s "
              f"(build {built:.1f} s)  simulated {sim:6.2f} s  "
              f"{row['sim_s_per_wall_min']:.2f} sim s / wall min  "
              f"{row['tokens_per_wall_s']:,.0f} tokens/s  peak {rss / 1e9:.2f} GB", flush=True)
        del run
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
