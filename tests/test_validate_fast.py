"""The fast engine's contract, judged (benchmarks/validate_fast.py): the functions that say a
row holds or breaks, and that the best policy is the same, against known answers. The suite's
slice in test_engine_fast.py asserts that real rows hold; these make sure a row that does not
hold would be told."""

from __future__ import annotations

import math

import pytest
from benchtools import benchmark

vf = benchmark("validate_fast")
METRICS = [m for m, _ in vf.METRICS]


def test_relative_differences_and_their_undefined_cases():
    assert vf.rel(2.0, 2.1) == pytest.approx(0.05)
    assert vf.rel(-2.0, -2.1) == pytest.approx(-0.05)  # against |exact|
    assert vf.rel(0.0, 0.0) == 0.0 and vf.rel(0.0, 1e-9) == math.inf
    assert vf.rel(None, None) == 0.0 and vf.rel(math.nan, math.nan) == 0.0  # both undefined
    assert math.isnan(vf.rel(1.0, math.nan)) and math.isnan(vf.rel(None, 1.0))


def test_the_contract_is_5_percent_at_p50_and_10_at_p99():
    assert dict(vf.METRICS) == {"ttft_p50": 0.05, "ttft_p99": 0.10, "tbt_p50": 0.05,
                                "tbt_p99": 0.10, "throughput_tokens_per_s": 0.05,
                                "bytes_moved": 0.05, "copy_hit_rate": 0.05}


@pytest.mark.parametrize("metric", METRICS)
def test_each_metric_breaks_past_its_tolerance_in_either_direction(metric):
    tol = dict(vf.METRICS)[metric]
    ok = dict.fromkeys(METRICS, 0.0)
    assert vf.breaks(ok | {metric: tol}) == []  # at the edge: holds
    assert vf.breaks(ok | {metric: -tol}) == []
    assert vf.breaks(ok | {metric: tol * 1.001}) == [metric]
    assert vf.breaks(ok | {metric: -tol * 1.001}) == [metric]
    assert vf.breaks(ok | {metric: math.nan}) == [metric]  # undefined: not held
    assert vf.breaks(ok | {metric: math.inf}) == [metric]


def rows(**values):
    """One row per policy: ``policy=(exact value, fast value)`` of both criteria's metrics."""
    return [{"policy": p, "exact": {"tbt_p50": e, "throughput_tokens_per_s": 1 / e},
             "fast": {"tbt_p50": f, "throughput_tokens_per_s": 1 / f}}
            for p, (e, f) in values.items()]


def test_the_best_policy_must_be_the_same_unless_the_exact_engine_s_best_two_tie():
    same = vf.best_check(rows(route=(1.0, 1.0), fetch=(0.9, 0.92), local=(2.0, 2.0)))
    assert [(c, e, f, v) for c, e, f, v in same] == [
        ("tbt_p50", "fetch", "fetch", "same"),  # the lowest TBT
        ("throughput_tokens_per_s", "fetch", "fetch", "same")]  # the highest tokens/s
    swapped = vf.best_check(rows(route=(1.0, 0.9), fetch=(0.9, 1.0)))
    assert [v for *_, v in swapped] == ["DIFFERENT", "DIFFERENT"]
    assert [(e, f) for _, e, f, _ in swapped] == [("fetch", "route"), ("fetch", "route")]
    # the exact engine's best two within 1 %: a tie, not a different verdict
    tied = vf.best_check(rows(route=(1.0, 0.9), fetch=(0.995, 1.0)))
    assert [v for *_, v in tied] == ["tie", "tie"]
    apart = vf.best_check(rows(route=(1.0, 0.9), fetch=(0.985, 1.0)))
    assert [v for *_, v in apart] == ["DIFFERENT", "DIFFERENT"]


def summary(tbt: float) -> dict:
    """A summary whose every metric is 1 but TBT p50 (``tbt``)."""
    return dict.fromkeys(METRICS, 1.0) | {"tbt_p50": tbt}


#: policy → per seed (exact TBT p50, fast TBT p50): route breaks on seed 0 (+15 %), holds on
#: seed 1 (−5 %, the edge) and holds in the mean (2.0 against 2.0); fetch holds on seed 0,
#: breaks on seed 1 (+30 %) and in the mean (+15 %)
SEEDED = {"route": [(1.0, 1.15), (3.0, 2.85)], "fetch": [(1.0, 1.0), (1.0, 1.3)]}


def seeded_rows(seed: int, table: dict = SEEDED) -> list[dict]:
    """:func:`compare`'s rows for ``seed`` of ``table`` (policy → per seed (exact, fast) TBT p50)."""
    out = []
    for p, runs in table.items():
        e, f = runs[seed]
        diff = {m: vf.rel(summary(e)[m], summary(f)[m]) for m in METRICS}
        out.append({"policy": p, "exact": summary(e), "fast": summary(f), "diff": diff,
                    "fail": vf.breaks(diff), "in_band": [], "exact_wall": 1.0,
                    "fast_wall": 1.0, "same_home": 1.0, "step_diff": 0.0})
    return out


def test_the_mean_over_seeds_compares_the_means_not_the_seeds_differences():
    per_seed = [seeded_rows(0), seeded_rows(1)]
    means = {r["policy"]: r for r in vf.mean_rows(per_seed)}
    assert means["route"]["exact"]["tbt_p50"] == pytest.approx(2.0)
    assert means["route"]["fast"]["tbt_p50"] == pytest.approx(2.0)
    assert means["fetch"]["fast"]["tbt_p50"] == pytest.approx((1 + 1.3) / 2)
    assert means["fetch"]["exact"]["bytes_moved"] == 1.0
    diff = vf.mean_over_seeds(per_seed)
    # route: the seeds' differences are +15 % and −5 % (their mean +5 %), the means' is 0
    assert diff["route"]["tbt_p50"] == pytest.approx(0.0, abs=1e-12)
    assert diff["fetch"]["tbt_p50"] == pytest.approx(0.15)
    assert vf.breaks(diff["route"]) == [] and vf.breaks(diff["fetch"]) == ["tbt_p50"]


def test_seeds_end_with_the_contract_counted_on_the_means(monkeypatch, capsys):
    monkeypatch.setattr(vf, "scenario", lambda name: name)
    monkeypatch.setattr(vf, "compare", lambda sc, policies, noise, seed: seeded_rows(seed))
    status = vf.main(["--only", "agentic-4", "--policies", "route,fetch", "--seeds", "0,1"])
    out = capsys.readouterr().out
    assert status == 1  # the verdict stays the per-seed contract's: 2 of 4 rows hold
    assert "contract held: 2 of 4 (scenario, policy) rows" in out
    assert ("in the mean over 2 seeds: contract held on 1 of 2 (scenario, policy) rows; "
            "best policy the same (or tied) everywhere") in out
    assert "best by TBT50 in the mean: exact fetch, fast fetch — same" in out
    mean_lines = [x for x in out.splitlines() if x.startswith("agentic-4 mean")]
    assert [x.split()[2] for x in mean_lines] == ["route", "fetch"]
    assert "!" not in mean_lines[0] and "+15.0!" in mean_lines[1]


def test_the_best_policy_in_the_mean_can_differ_where_each_seed_agrees(monkeypatch, capsys):
    # per seed the engines agree on the best (each seed has one policy far ahead), but the
    # means order them the other way on the fast engine
    runs = {"route": [(1.0, 1.0), (4.0, 4.4)], "fetch": [(2.0, 2.0), (2.9, 3.5)]}
    monkeypatch.setattr(vf, "scenario", lambda name: name)
    monkeypatch.setattr(vf, "compare",
                        lambda sc, policies, noise, seed: seeded_rows(seed, runs))
    vf.main(["--only", "agentic-4", "--policies", "route,fetch", "--seeds", "0,1"])
    out = capsys.readouterr().out
    # exact means: route 2.5, fetch 2.45 (fetch best, 2 % apart: no tie); fast: 2.7 and 2.75
    assert "best by TBT50 in the mean: exact fetch, fast route — DIFFERENT" in out
    assert ("in the mean over 2 seeds: contract held on 0 of 2 (scenario, policy) rows; "
            "best policy DIFFERENT somewhere") in out
