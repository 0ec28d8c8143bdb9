"""The fast engine held to the exact one: a validation suite from light to heavy contention.

For each scenario of :data:`SUITE` and each of its policies it runs the exact engine and the fast
engine on the same trace and seed, and compares the summary metrics the contract names
(docs/performance.md, *The fast engine*):

- at p50 — TTFT p50, TBT p50, throughput, bytes moved, copy hit rate — within 5 % (relative);
- at p99 — TTFT p99, TBT p99 — within 10 %;
- per scenario, the best policy by TBT p50 and by throughput the same (a *tie* when the exact
  engine's best two are within 1 % of each other: then either may come first).

It prints one row per (scenario, policy) — each metric's relative difference, flagged ``!`` where
it breaks the contract — then the best-policy check per scenario, the wall times and speed-ups,
and a last line ``contract held: N of M`` (exit status 1 if any metric fails). ``--noise`` adds,
per row, the exact engine's own sensitivity: the same run with the per-step host overhead moved
by one part in a million (a perturbation far below any modelled effect); differences of that size
are the chaos of discrete choices (which GPU is least loaded, who is batched with whom), not
model error — the last line then counts the breaking rows whose every break is no larger than
that sensitivity (the verdict and the exit status stay the contract's). The noise row's
``stepΔ`` is the perturbed run's against the exact one, and with ``--seeds`` a ``(noise)`` row
under each mean says how far the mean over those seeds moves by chaos alone; a last line
says on how many rows the perturbed exact run itself would hold the contract against the exact
run — what the per-run contract can ask of any method where the runs are chaotic.

A per-run quantile can also be *ill-conditioned*: where the distribution has a gap or a jump (a
TBT that is bimodal in the batch size, a p99 between the steps that carry a prefill chunk and
those that do not), a shift of a few tokens moves the quantile by tens of percent though the two
distributions agree. Every row therefore also says, for each quantile metric that breaks the
contract, whether the fast engine's value lies inside the exact run's own neighbouring quantiles
(:data:`BANDS`: q ± 0.02 at p50, q ± 0.005 at p99; :func:`band`). Such a break is printed ``~``
instead of ``!`` and the last line counts the rows that break the contract only that way (again
the verdict and the exit status stay the contract's).

With ``--seeds`` every seed gets its rows, and then, per scenario, a row per policy compares
the fast engine's mean over the seeds with the exact engine's (:func:`mean_over_seeds`), the
best policy is judged on those means, and a line counts the rows whose means hold the contract:
the contract over seeds, for rows whose single runs are chaotic (the verdict and the exit status
stay the per-seed contract's).

Two more columns tell *where* a break comes from: ``home=``, the share of requests that end
on the same home GPU in both runs (:func:`same_home`: homes are picked least-loaded when a
session's first request enters, so one near-tie decided differently cascades into a different
placement), and ``stepΔ``, how much longer the fast engine's decode steps take than the exact
engine's at the same batch size, on average over the batch sizes (:func:`step_time_diff`: the
step's cost itself, though under ``route`` it includes the wait for owners whose load depends on
the placement). A break with
``stepΔ`` near 0 and ``home=`` far below 100 % is placement divergence, not step-cost error.

    .venv/bin/python benchmarks/validate_fast.py                 # the whole suite (~30 min here)
    .venv/bin/python benchmarks/validate_fast.py --quick         # agentic-4 only (seconds)
    .venv/bin/python benchmarks/validate_fast.py --only agentic-16,mooncake-1000 --noise
    .venv/bin/python benchmarks/validate_fast.py --json out.json
    .venv/bin/python benchmarks/validate_fast.py --only default --policies route --seeds 0,1,2  # chaos: per seed and the mean
    .venv/bin/python benchmarks/validate_fast.py --only default --policies route --seeds 0,1,2 --noise
        # and the exact engine's own sensitivity per seed (stepΔ too) and in the mean over seeds
    .venv/bin/python benchmarks/validate_fast.py --only default-16 --policies route --seeds 0,1,2,3,4,5 --noise
        # the default on 16 GPUs (EXTRA, not in the whole suite): seconds a seed
    .venv/bin/python benchmarks/validate_fast.py --only default --policies adaptive --noise --nudges 5
        # five nudged exact runs: "(max|5|)", the largest change any makes; a break no larger
        # is chaos (one nudge is one sample: docs/performance.md, Stop 35)

The test suite runs a small slice (``tests/test_engine_fast.py``) through :func:`compare`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import cliargs
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: (metric, tolerance): relative difference allowed between the engines.
METRICS: tuple[tuple[str, float], ...] = (
    ("ttft_p50", 0.05), ("ttft_p99", 0.10), ("tbt_p50", 0.05), ("tbt_p99", 0.10),
    ("throughput_tokens_per_s", 0.05), ("bytes_moved", 0.05), ("copy_hit_rate", 0.05),
)
SHORT = {"ttft_p50": "TTFT50", "ttft_p99": "TTFT99", "tbt_p50": "TBT50", "tbt_p99": "TBT99",
         "throughput_tokens_per_s": "tput", "bytes_moved": "bytes", "copy_hit_rate": "hit"}
#: Quantile metrics' neighbourhoods for the conditioning check: metric → (quantile, half-width).
BANDS: dict[str, tuple[float, float]] = {
    "ttft_p50": (0.5, 0.02), "ttft_p99": (0.99, 0.005),
    "tbt_p50": (0.5, 0.02), "tbt_p99": (0.99, 0.005),
}
#: Exact-engine best two closer than this (relative) are a tie for the best-policy check.
TIE = 0.01
POLICIES = ("route", "fetch", "adaptive")

#: name → (scenario file, changes: {"agentic": {...}, "<section>": {...}, "stack": ...}).
SUITE: dict[str, tuple[str, dict]] = {
    "agentic-4": ("agentic_repo.toml", {"agentic": {"subagents": 4}}),
    "agentic-16": ("agentic_repo.toml", {"agentic": {"subagents": 16}}),
    "agentic-32": ("agentic_repo.toml", {}),
    "agentic-32-nccl": ("agentic_repo.toml", {"stack": "nccl"}),
    # HBM for KV cut to ~4,450 blocks per GPU: the 4,096-block repository's owner demotes
    # blocks to host DRAM (readers fetch them over PCIe) and fetched copies are evicted (LRU)
    "host-32": ("agentic_repo.toml", {"placement": {"weights_per_gpu": 52e9}}),
    "host-32-nccl": ("agentic_repo.toml", {"stack": "nccl",
                                           "placement": {"weights_per_gpu": 52e9}}),
    "mooncake-1000": ("mooncake_conversation.toml", {"engine": {"max_requests": 1000}}),
    "mooncake-1000-nccl": ("mooncake_conversation.toml", {"engine": {"max_requests": 1000},
                                                          "stack": "nccl"}),
    # causal agentic traces: sub-agents start after their plan, turns after the previous turn
    # (no 32 cold prefills of the repository at once); ``default`` is ``kvfabric run``'s
    "agentic-16-causal": ("agentic_repo.toml", {"agentic": {"subagents": 16, "causal": True}}),
    "agentic-32-causal": ("agentic_repo.toml", {"agentic": {"causal": True}}),
    "default": ("agentic_cluster.toml", {}),
    # deployments (issue 16): DeepSeek's EP144 decode unit (two-batch overlap, the all-to-all
    # on the fabric), and an EP32 prefill unit handing KV to it layer by layer
    "deepseek-ep": ("deepseek_v32_ep.toml", {}),
    "deepseek-pd": ("deepseek_v32_pd.toml", {}),
}
#: Scenarios for ``--only`` outside the whole suite: ``default-16`` is the default run on 16
#: GPUs with 16 sub-agents per task (seconds a run), for the chaos check over many seeds
#: (``--seeds 0,...,29 --noise``; docs/performance.md, *Stop 33*).
EXTRA: dict[str, tuple[str, dict]] = {
    "default-16": ("agentic_cluster.toml", {"topology": {"nodes": 2},
                                           "agentic": {"subagents": 16}}),
}


def scenario(name: str):
    """The suite's scenario ``name`` (a :class:`~simulator.scenario.Scenario`)."""
    from simulator.scenario import Scenario

    path, changes = SUITE[name] if name in SUITE else EXTRA[name]
    sc = Scenario.load(ROOT / "scenarios" / path)
    for key, value in changes.items():
        if key == "agentic":
            params = dict(sc.workload.agentic)
            params.update(value)
            sc = sc.with_changes(workload=dataclasses.replace(
                sc.workload, agentic=tuple(sorted(params.items()))))
        elif isinstance(value, dict):
            sc = sc.with_changes(**{key: dataclasses.replace(getattr(sc, key), **value)})
        else:
            sc = sc.with_changes(**{key: value})
    return sc


def breaks(diff: dict[str, float]) -> list[str]:
    """The metrics whose relative differences ``diff`` break the contract (NaN breaks it)."""
    return [m for m, tol in METRICS if not abs(diff[m]) <= tol]


def rel(exact: float, fast: float) -> float:
    """Relative difference ``(fast − exact) / |exact|`` (0 if both are 0, NaN if undefined)."""
    if exact is None or fast is None or math.isnan(exact) or math.isnan(fast):
        return 0.0 if (exact is None or math.isnan(exact)) and (
            fast is None or math.isnan(fast)) else float("nan")
    if exact == 0:
        return 0.0 if fast == 0 else float("inf")
    return (fast - exact) / abs(exact)


def band(res, metric: str) -> tuple[float, float]:
    """The run ``res``'s values of ``metric``'s quantile at q − δ and q + δ (:data:`BANDS`):
    TTFT over completed requests, TBT over iterations weighted by their tokens, as the summary
    computes them [s]."""
    from simulator.engine.records import tbt_samples, weighted_quantile

    q, d = BANDS[metric]
    lo, hi = max(q - d, 0.0), min(q + d, 1.0)
    if metric.startswith("ttft"):
        req = res.requests[res.requests["completed"]]
        x = (req["first_token_at"] - req["arrival_at"]).to_numpy(float)
        if not len(x):
            return math.nan, math.nan
        return float(np.quantile(x, lo)), float(np.quantile(x, hi))
    dur, w = tbt_samples(res.iterations)
    return weighted_quantile(dur, w, lo), weighted_quantile(dur, w, hi)


def same_home(req_a, req_b) -> float:
    """Share of the requests (``request_id``s with a home in both ``requests`` tables) that end
    on the same home GPU in both runs (NaN if none has one, or the tables name no homes)."""
    if "home" not in req_a or "home" not in req_b:
        return math.nan
    a = req_a.set_index("request_id")["home"].dropna()
    b = req_b.set_index("request_id")["home"].dropna()
    both = a.index.intersection(b.index)
    if not len(both):
        return math.nan
    return float((a.loc[both] == b.loc[both]).mean())


def step_time_diff(it_a, it_b, min_steps: int = 100) -> float:
    """How much longer run b's decode steps take than run a's at the same batch size: the
    relative difference ``(b − a) / a`` of the mean decode-only step time [s] (steps with no
    prefill tokens) per batch size, averaged over the batch sizes with at least ``min_steps``
    such steps in both ``iterations`` tables, each weighted by the smaller of its two step
    counts; NaN if there is none."""
    cols = {"batch", "prefill_tokens", "started_at", "finished_at"}
    if not cols <= set(it_a.columns) or not cols <= set(it_b.columns):
        return math.nan
    means, counts = [], []
    for it in (it_a, it_b):
        d = it[it["prefill_tokens"] == 0]
        g = (d["finished_at"] - d["started_at"]).groupby(d["batch"])
        means.append(g.mean())
        counts.append(g.size())
    both = means[0].index.intersection(means[1].index)
    weight = np.minimum(counts[0].loc[both], counts[1].loc[both])
    both = both[(weight >= min_steps).to_numpy()]
    if not len(both):
        return math.nan
    weight = weight.loc[both].to_numpy(float)
    rel_diff = ((means[1].loc[both] - means[0].loc[both]) / means[0].loc[both]).to_numpy()
    return float(np.dot(weight, rel_diff) / weight.sum())


def in_band(res_exact, fast: dict, metrics) -> list[str]:
    """Of ``metrics``, the quantile metrics whose fast-engine value (``fast``: its summary) lies
    inside the exact run's neighbouring quantiles (:func:`band`)."""
    out = []
    for m in metrics:
        if m in BANDS:
            lo, hi = band(res_exact, m)
            if lo <= fast[m] <= hi:
                out.append(m)
    return out


def nudge(k: int) -> float:
    """The ``k``-th relative nudge of the per-step host overhead (``--nudges``): 1e-6, −1e-6,
    2e-6, −2e-6, 3e-6, …"""
    return (k // 2 + 1) * 1e-6 * (1 if k % 2 == 0 else -1)


def sensitivity(nudged: list[dict[str, float]]) -> dict[str, float]:
    """Per metric, the largest magnitude of the relative changes the nudged exact runs made
    (``nudged``: one dict of relative differences per run): how far chaos alone moved it."""
    return {m: max(abs(d[m]) for d in nudged) for m, _ in METRICS}


def within_sensitivity(diff: dict[str, float], fail: list[str], sens: dict[str, float]) -> bool:
    """Whether a row that breaks the contract (``fail``: its breaking metrics) breaks it only
    by differences ``diff`` no larger than the exact engine's own ``sens`` (:func:`sensitivity`)."""
    return bool(fail) and all(abs(diff[m]) <= sens[m] for m in fail)


def compare(sc, policies=POLICIES, *, noise: bool | int = False,
            seed: int | None = None) -> list[dict]:
    """Run ``sc`` on both engines for each policy; one dict per policy with both summaries,
    the relative differences, which metrics break the contract, and wall times. ``noise``: how
    many exact runs with the per-step overhead nudged (:func:`nudge`) to add (True: one); the
    first is ``noise``, all are ``nudges``, their :func:`sensitivity` is ``sensitivity``."""
    from simulator.runner import load_trace, run
    from simulator.testing.invariants import nudged

    seed = sc.seed if seed is None else seed
    trace = load_trace(sc, seed)
    rows = []
    for p in policies:
        t = time.perf_counter()
        ex_res = run(sc, p, seed, trace=trace, engine="exact")
        ex = ex_res.summary
        t_ex = time.perf_counter() - t
        t = time.perf_counter()
        fa_res = run(sc, p, seed, trace=trace, engine="fast")
        fa = fa_res.summary
        t_fa = time.perf_counter() - t
        diff = {m: rel(ex[m], fa[m]) for m, _ in METRICS}
        bad = breaks(diff)
        row = {"policy": p, "exact": ex, "fast": fa, "diff": diff, "fail": bad,
               "in_band": in_band(ex_res, fa, bad),
               "exact_wall": t_ex, "fast_wall": t_fa, "fast_engine": fa.get("engine"),
               "same_home": same_home(ex_res.requests, fa_res.requests),
               "step_diff": step_time_diff(ex_res.iterations, fa_res.iterations)}
        row["nudges"] = []
        for k in range(int(noise)):
            ns_res = run(nudged(sc, nudge(k)), p, seed, trace=trace, engine="exact")
            ns = ns_res.summary
            row["nudges"].append({m: rel(ex[m], ns[m]) for m, _ in METRICS})
            if k == 0:
                row["noise"] = row["nudges"][0]
                row["noise_summary"] = ns
                row["noise_step_diff"] = step_time_diff(ex_res.iterations, ns_res.iterations)
        if row["nudges"]:
            row["sensitivity"] = sensitivity(row["nudges"])
        rows.append(row)
    return rows


def best(rows: list[dict], engine: str, metric: str, lower: bool) -> tuple[str, bool]:
    """The best policy by ``metric`` under ``engine``, and whether the best two tie (exact
    engine's values within :data:`TIE`)."""
    vals = sorted(((r[engine][metric], r["policy"]) for r in rows), reverse=not lower)
    tie = len(vals) > 1 and abs(rel(vals[0][0], vals[1][0])) <= TIE
    return vals[0][1], tie


def best_check(rows: list[dict]) -> list[tuple[str, str, str, str]]:
    """Per criterion: (criterion, exact's best, fast's best, "same" | "tie" | "DIFFERENT")."""
    out = []
    for metric, lower in (("tbt_p50", True), ("throughput_tokens_per_s", False)):
        e, tie = best(rows, "exact", metric, lower)
        f, _ = best(rows, "fast", metric, lower)
        verdict = "same" if e == f else ("tie" if tie else "DIFFERENT")
        out.append((metric, e, f, verdict))
    return out


def mean_rows(per_seed: list[list[dict]], side: str = "fast") -> list[dict]:
    """One row per policy whose ``exact`` and ``fast`` summaries are the means over the seeds
    of each metric (``per_seed``: :func:`compare`'s rows, one list per seed;
    ``side="noise_summary"``: the perturbed exact runs' mean as ``fast``), for
    :func:`mean_over_seeds` and :func:`best_check`."""
    out = []
    for p in [r["policy"] for r in per_seed[0]]:
        rows = [r for rs in per_seed for r in rs if r["policy"] == p]
        out.append({"policy": p, **{key: {m: sum(r[src][m] for r in rows) / len(rows)
                                          for m, _ in METRICS}
                                    for key, src in (("exact", "exact"), ("fast", side))}})
    return out


def mean_over_seeds(per_seed: list[list[dict]], side: str = "fast"
                    ) -> dict[str, dict[str, float]]:
    """Per policy: the relative difference of the fast engine's mean over the seeds from the
    exact engine's, per metric (``per_seed``: :func:`compare`'s rows, one list per seed);
    ``side="noise_summary"``: the perturbed exact runs' mean instead (``--noise``), i.e. how far
    the mean over these seeds moves by chaos alone."""
    return {r["policy"]: {m: rel(r["exact"][m], r["fast"][m]) for m, _ in METRICS}
            for r in mean_rows(per_seed, side)}


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.0%}"


def _signed(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:+.1f}"


def _noise_cells(diff: dict[str, float]) -> str:
    """A ``(noise)`` row's cells: each metric's difference, unflagged."""
    return "".join(_fmt(diff[m], False) + " " for m, _ in METRICS)


def _fmt(x: float, bad: bool, mark: str = "!") -> str:
    s = "    nan" if math.isnan(x) else f"{100 * x:+7.1f}"
    return s + (mark if bad else " ")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, type=cliargs.names([*SUITE, *EXTRA], "scenario"),
                    help="comma-separated scenario names")
    ap.add_argument("--quick", action="store_true", help="agentic-4 only")
    ap.add_argument("--noise", action="store_true", help="also the exact engine's sensitivity")
    ap.add_argument("--nudges", type=int, default=1,
                    help="with --noise: this many nudged exact runs (1e-6, -1e-6, 2e-6, ...); "
                    "a break is chaos when no larger than the largest change they make")
    ap.add_argument("--policies", default=list(POLICIES),
                    type=cliargs.policy_names,
                    help="comma-separated policies")
    ap.add_argument("--seeds", default=None, type=cliargs.ints,
                    help="comma-separated seeds (default: each scenario's own): a row per seed, "
                    "then the fast engine's mean over the seeds against the exact engine's")
    ap.add_argument("--json", dest="json_path", default=None)
    a = ap.parse_args(argv)
    if a.nudges < 1:
        ap.error("--nudges must be at least 1")
    policies = tuple(a.policies)
    seeds = [None] if a.seeds is None else a.seeds
    names = ["agentic-4"] if a.quick else (a.only or list(SUITE))
    head = "".join(f"{SHORT[m]:>9}" for m, _ in METRICS)
    print(f"{'scenario':<20}{'policy':<10}{head}{'exact s':>9}{'fast s':>8}{'×':>6}"
          f"{'home=':>7}{'stepΔ':>7}", flush=True)
    results, held, total, best_ok = {}, 0, 0, True
    chaotic = 0  # rows whose every break is no larger than the exact engine's own sensitivity
    noise_held = 0  # rows where the perturbed exact run holds the contract against the exact
    banded = 0  # rows whose every break is a quantile inside the exact run's own band
    runs = [(name, seed) for name in names for seed in seeds]
    for name, seed in runs:
        label = name if seed is None else f"{name}@{seed}"
        rows = compare(scenario(name), policies, noise=a.nudges if a.noise else 0, seed=seed)
        results[label] = rows
        for r in rows:
            total += 1
            held += not r["fail"]
            cells = "".join(_fmt(r["diff"][m], m in r["fail"],
                                 "~" if m in r["in_band"] else "!") + " " for m, _ in METRICS)
            banded += bool(r["fail"]) and set(r["fail"]) <= set(r["in_band"])
            print(f"{label:<20}{r['policy']:<10}{cells}{r['exact_wall']:>9.1f}"
                  f"{r['fast_wall']:>8.1f}{r['exact_wall'] / r['fast_wall']:>6.1f}"
                  f"{_pct(r['same_home']):>7}{_signed(r['step_diff']):>7}", flush=True)
            if a.noise:
                print(f"{'':<20}{'(noise)':<10}{_noise_cells(r['noise'])}{'':>30}"
                      f"{_signed(r['noise_step_diff']):>7}", flush=True)
                if a.nudges > 1:  # magnitudes: unsigned
                    cells = "".join(f"{100 * r['sensitivity'][m]:7.1f}  " for m, _ in METRICS)
                    print(f"{'':<20}{f'(max|{a.nudges}|)':<10}{cells}", flush=True)
                r["within_noise"] = within_sensitivity(r["diff"], r["fail"], r["sensitivity"])
                chaotic += r["within_noise"]
                noise_held += not breaks(r["noise"])
        for metric, e, f, verdict in best_check(rows):
            best_ok &= verdict != "DIFFERENT"
            print(f"{'':<20}best by {SHORT[metric]}: exact {e}, fast {f} — {verdict}", flush=True)
    if len(seeds) > 1:
        mean_held = mean_total = 0
        mean_best_ok = True
        for name in names:
            per_seed = [results[f"{name}@{x}"] for x in seeds]
            noise = mean_over_seeds(per_seed, "noise_summary") if a.noise else {}
            for p, diff in mean_over_seeds(per_seed).items():
                bad = breaks(diff)
                mean_total += 1
                mean_held += not bad
                cells = "".join(_fmt(diff[m], m in bad) + " " for m, _ in METRICS)
                print(f"{name + ' mean':<19} {p:<10}{cells}", flush=True)
                if p in noise:
                    print(f"{'':<20}{'(noise)':<10}{_noise_cells(noise[p])}", flush=True)
            if len(policies) > 1:
                for metric, e, f, verdict in best_check(mean_rows(per_seed)):
                    mean_best_ok &= verdict != "DIFFERENT"
                    print(f"{'':<20}best by {SHORT[metric]} in the mean: exact {e}, fast {f} "
                          f"— {verdict}", flush=True)
        print(f"in the mean over {len(seeds)} seeds: contract held on {mean_held} of "
              f"{mean_total} (scenario, policy) rows"
              + (f"; best policy {'the same (or tied) everywhere' if mean_best_ok else 'DIFFERENT somewhere'}"
                 if len(policies) > 1 else ""))
    print(f"contract held: {held} of {total} (scenario, policy) rows; best policy "
          f"{'the same (or tied) everywhere' if best_ok else 'DIFFERENT somewhere'}")
    if held < total:
        print(f"of the {total - held} rows that break it, {banded} break it only on quantiles "
              "the fast engine puts inside the exact run's own q ± δ band (~)")
    if a.noise and held < total:
        print(f"of the {total - held} rows that break it, {chaotic} break it only where the "
              "exact engine's own sensitivity (noise"
              + (f", the largest of {a.nudges} nudges" if a.nudges > 1 else "")
              + ") is as large or larger")
    if a.noise:
        print(f"the exact engine against itself perturbed (noise) holds it on {noise_held} of "
              f"{total} rows")
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0 if held == total and best_ok else 1


if __name__ == "__main__":
    sys.exit(main())
