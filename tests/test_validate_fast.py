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
