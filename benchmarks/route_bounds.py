"""Could a kinder owner make ``route`` win? Two optimistic bounds, measured on the exact engine.

Both engines put a routed query's attention on the owner as a kernel of its own, FIFO on the
owner's one compute stream, behind the owner's own kernels and every other home's rounds
(docs/accuracy.md, *What is still assumed*). A serving stack could do better for route in two
ways, and this script prices each at its most optimistic, by replaying ``route`` with the
owner's kernel changed and nothing else:

- ``batched``: the owner folds the query into a batch of :data:`BATCH_REF` other queries; the
  round pays only its marginal time there, ``attention(b + 16) − attention(16)`` of the kernel
  model in use (an attention server that always has a full batch waiting);
- ``no-wait``: the kernel starts when the query arrives (a stream that serves routed queries
  before anything queued), and only the owner's work issued after it is pushed back by it.
  Work already queued on the owner keeps its times, so the GPU briefly does more than it can:
  a bound, not a model;
- ``both``: the two at once. ``fifo`` is the model as it is.

Each variant replaces the owner's stream for the one call in
:meth:`~simulator.engine.rounds.RoundReplay._route_sent` that issues the routed kernel; the
script counts the rounds it changed and stops if there were none (the engine no longer issues
routed kernels there). Prints, per scenario, route's TBT p50 / p99 and tokens/s under each
variant beside ``fetch``'s (and, for ``mixed_fleet``, the median per-request TBT of each
population), and whether any variant makes route the better of the two.

    python benchmarks/route_bounds.py                                # mixed_fleet and default
    python benchmarks/route_bounds.py --scenarios mixed_fleet,mooncake-1000
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import cliargs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import validate_adaptive  # noqa: E402  (benchmarks/ is put on the path above)

#: Queries already in the owner's batch when a routed round joins it (``batched``).
BATCH_REF = 16
VARIANTS: tuple[str, ...] = ("fifo", "batched", "no-wait", "both")


class _KindOwner:
    """The owner's stream as one routed round sees it under a variant (``issue`` only)."""

    predicts = True

    def __init__(self, stream, rnd, batched: bool, no_wait: bool, counts: dict) -> None:
        self.stream, self.rnd, self.batched, self.no_wait = stream, rnd, batched, no_wait
        self.counts = counts

    def issue(self, duration: float) -> float:
        """The routed kernel of ``duration`` [s] (the round's closed-form compute) under the
        variant; returns its end [s]."""
        rnd, s = self.rnd, self.stream
        if duration != rnd.cf.compute:
            raise RuntimeError("route_bounds: the routed kernel is no longer the round's "
                               "closed-form compute; update the script")
        self.counts["rounds"] += 1
        if self.batched:
            run, per = rnd.run, rnd.n_blocks / rnd.batch
            duration = (run.cm.attention_time(rnd.owner, per, rnd.batch + BATCH_REF)
                        - run.cm.attention_time(rnd.owner, per, BATCH_REF))
        if not self.no_wait:
            return s.issue(duration)
        now = s.env.now
        s.free_at = max(s.free_at, now) + duration
        s.busy += duration
        s.kernels_run += 1
        return now + duration


@contextlib.contextmanager
def variant(name: str, counts: dict):
    """Route's owner kernel under variant ``name`` while the block runs."""
    from simulator.engine.rounds import RoundReplay

    if name == "fifo":
        yield
        return
    batched, no_wait = name in ("batched", "both"), name in ("no-wait", "both")
    original = RoundReplay._route_sent

    def _route_sent(self, rec) -> None:
        streams = self.run.streams
        real = streams[self.k]
        if not getattr(real, "predicts", False):
            raise RuntimeError("route_bounds needs the closed-form streams")
        streams[self.k] = _KindOwner(real, self, batched, no_wait, counts)
        try:
            original(self, rec)
        finally:
            streams[self.k] = real

    RoundReplay._route_sent = _route_sent
    try:
        yield
    finally:
        RoundReplay._route_sent = original


def measure(name: str) -> list[dict]:
    """Route under every variant and fetch, on the exact engine: a row per run."""
    from simulator import run
    from simulator.runner import load_trace

    scenario = validate_adaptive.suite(name)
    trace = load_trace(scenario, scenario.seed)
    population = trace.attrs.get("population")
    rows = []
    for policy, var in [("route", v) for v in VARIANTS] + [("fetch", "fifo")]:
        counts = {"rounds": 0}
        with variant(var, counts):
            res = run(scenario, policy, seed=scenario.seed, trace=trace, engine="exact")
        if var != "fifo" and counts["rounds"] == 0:
            raise RuntimeError(f"route_bounds: variant {var} changed no round on {name}")
        s = res.summary
        row = {"scenario": name, "policy": policy, "variant": var,
               "tbt_p50": s["tbt_p50"], "tbt_p99": s["tbt_p99"],
               "tokens_per_s": s["throughput_tokens_per_s"], "changed": counts["rounds"]}
        if population is not None:
            row["populations"] = validate_adaptive.population_tbt(res.requests, population)
        rows.append(row)
        print(f"  {name}: {policy} {var} done ({s['wall_time']:.0f} s)", file=sys.stderr,
              flush=True)
    return rows


def print_rows(rows: list[dict]) -> None:
    """The table, and per scenario whether route beats fetch under any variant."""
    print("| scenario | policy | owner | TBT p50 [ms] | TBT p99 [ms] | tokens/s | rounds changed |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['scenario']} | {r['policy']} | {r['variant']} | {r['tbt_p50'] * 1e3:.2f} | "
              f"{r['tbt_p99'] * 1e3:.2f} | {r['tokens_per_s']:.2f} | {r['changed']:,} |")
    for name in dict.fromkeys(r["scenario"] for r in rows):
        mine = [r for r in rows if r["scenario"] == name]
        fetch = next(r for r in mine if r["policy"] == "fetch")
        if "populations" in fetch:
            print(f"\n{name}: median per-request TBT [ms] by population")
            print("| population | " + " | ".join(f"route {r['variant']}" for r in mine[:-1])
                  + " | fetch |")
            print("|---|" + "---:|" * len(mine))
            for pop in fetch["populations"]:
                print(f"| {pop} | " + " | ".join(f"{r['populations'][pop] * 1e3:.2f}"
                                                 for r in mine) + " |")
        wins = [r["variant"] for r in mine[:-1] if r["tbt_p50"] < fetch["tbt_p50"]]
        print(f"\n{name}: route's TBT p50 below fetch's under: {', '.join(wins) or 'none'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default=["mixed_fleet", "default"],
                    type=cliargs.names(validate_adaptive.SCENARIOS, "scenario"))
    args = ap.parse_args(argv)
    rows = [r for name in args.scenarios for r in measure(name)]
    print_rows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
