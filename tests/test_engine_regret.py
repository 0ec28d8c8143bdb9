"""Regret against the best static policy of the same run, and what an adaptive policy chose over
time: known answers, then ``kvfabric run``'s table, JSON and summary.json."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from clitools import SMALL

from simulator import run
from simulator.cli import main
from simulator.engine.regret import STATIC, choices_over_time, regret, report
from simulator.testing.invariants import small_scenario
from workloads.schema import make_trace, write_trace


def summary(p50, p99, thr):
    return {"tbt_p50": p50, "tbt_p99": p99, "throughput_tokens_per_s": thr}


def test_regret_is_zero_for_the_best_static_policy_per_metric():
    runs = {"route": summary(2.0, 8.0, 100.0), "fetch": summary(1.0, 10.0, 90.0),
            "local": summary(3.0, 9.0, 80.0), "adaptive": summary(0.9, 8.8, 101.0)}
    rep = regret(runs)
    assert rep["baseline"] == {"tbt_p50": "fetch", "tbt_p99": "route",
                               "throughput_tokens_per_s": "route"}
    assert rep["policies"]["fetch"]["tbt_p50"] == 0.0
    assert rep["policies"]["route"]["tbt_p99"] == 0.0
    assert rep["policies"]["route"]["throughput_tokens_per_s"] == 0.0
    # lower is better for latencies, higher for throughput; better than every static: < 0
    assert rep["policies"]["route"]["tbt_p50"] == pytest.approx(1.0)
    assert rep["policies"]["local"]["throughput_tokens_per_s"] == pytest.approx(0.2)
    assert rep["policies"]["adaptive"]["tbt_p50"] == pytest.approx(-0.1)
    assert rep["policies"]["adaptive"]["tbt_p99"] == pytest.approx(0.1)
    assert rep["policies"]["adaptive"]["throughput_tokens_per_s"] == pytest.approx(-0.01)
    # every static policy's regret is ≥ 0, and 0 for at least one per metric
    for key in ("tbt_p50", "tbt_p99", "throughput_tokens_per_s"):
        values = [rep["policies"][p][key] for p in STATIC]
        assert min(values) == 0.0 and all(v >= 0 for v in values)


def test_without_a_static_policy_or_a_metric_there_is_nothing_to_compare():
    assert regret({"adaptive": summary(1.0, 2.0, 3.0)}) is None
    rep = regret({"route": summary(math.nan, 2.0, 3.0), "adaptive": summary(1.0, 2.0, 3.0)})
    assert rep["baseline"]["tbt_p50"] is None
    assert math.isnan(rep["policies"]["adaptive"]["tbt_p50"])


def test_a_metric_that_is_not_finite_or_a_best_of_zero_has_no_regret():
    # a policy whose metric is infinite or missing is not ranked against the best (NaN, not
    # ±inf); a best throughput of 0 leaves nothing to divide by
    runs = {"route": summary(1.0, math.inf, 0.0), "fetch": summary(2.0, 4.0, 0.0),
            "adaptive": summary(math.inf, None, 5.0)}
    rep = regret(runs)
    assert rep["baseline"] == {"tbt_p50": "route", "tbt_p99": "fetch",
                               "throughput_tokens_per_s": "route"}
    got = rep["policies"]
    assert got["fetch"]["tbt_p50"] == pytest.approx(1.0) and got["fetch"]["tbt_p99"] == 0.0
    assert math.isnan(got["route"]["tbt_p99"])  # inf against a finite best
    assert math.isnan(got["adaptive"]["tbt_p50"]) and math.isnan(got["adaptive"]["tbt_p99"])
    for p in runs:  # the best throughput is 0
        assert math.isnan(got[p]["throughput_tokens_per_s"])


def test_choices_over_time_counts_only_the_rounds_a_policy_decided():
    rounds = pd.DataFrame({
        "started_at": [0.5, 1.5, 1.6, 9.9, 5.0, 5.1],
        "src": ["a", "a", "a", "a", "a", "a"],
        "owner": ["b", "b", "c", "b", "n0/host", "a"],  # a host fetch, a forced recompute
        "option": ["route", "fetch", "fetch", "local", "fetch", "local"],
    })
    c = choices_over_time(rounds, end_at=10.0, bins=5)
    assert c["start_at"] == [0.0, 2.0, 4.0, 6.0, 8.0] and c["bin_time"] == 2.0
    assert c["rounds"] == [3, 0, 0, 0, 1]
    assert c["route"][0] == pytest.approx(1 / 3) and c["fetch"][0] == pytest.approx(2 / 3)
    assert c["local"][4] == 1.0 and math.isnan(c["route"][2])


def test_choices_over_a_short_run_and_at_its_very_end():
    # a run of 40 ms in 4 spans of 10 ms; a round that starts at the run's last instant counts
    # in the last span, not past it
    rounds = pd.DataFrame({"started_at": [0.001, 0.015, 0.039, 0.04], "src": ["a"] * 4,
                           "owner": ["b"] * 4, "option": ["route", "fetch", "fetch", "local"]})
    c = choices_over_time(rounds, end_at=0.04, bins=4)
    assert c["bin_time"] == pytest.approx(0.01)
    assert c["start_at"] == pytest.approx([0.0, 0.01, 0.02, 0.03])
    assert c["rounds"] == [1, 1, 0, 2]
    assert c["fetch"][3] == 0.5 and c["local"][3] == 0.5 and c["route"][0] == 1.0
    # a run that ended at 0 (nothing simulated): every round in the first span, spans of 0 s
    c = choices_over_time(rounds, end_at=0.0, bins=4)
    assert c["bin_time"] == 0.0 and c["start_at"] == [0.0] * 4 and c["rounds"] == [4, 0, 0, 0]


def test_a_real_run_reports_regret_and_choices():
    sc = small_scenario("dgx_h100:nodes=2", scheme="hash", max_batch=4)
    trace = make_trace(arrival_at=[0.0, 0.0, 0.01], input_tokens=[6000, 6000, 5000],
                       output_tokens=[12, 10, 8],
                       block_ids=[list(range(94)), list(range(94)), list(range(200, 279))],
                       block_tokens=64)
    results = {p: run(sc, p, trace=trace) for p in ("route", "fetch", "adaptive")}
    rep = report(results)
    assert set(rep["policies"]) == {"route", "fetch", "adaptive"}
    assert min(rep["policies"][p]["tbt_p50"] for p in ("route", "fetch")) == 0.0
    assert list(rep["choices"]) == ["adaptive"]  # static policies' choices say nothing
    c = rep["choices"]["adaptive"]
    decided = results["adaptive"].rounds
    decided = decided[decided["owner"].astype(str) != decided["src"].astype(str)]
    assert sum(c["rounds"]) == len(decided)


#: tests/clitools.SMALL on two DGX H100 nodes, comparing three policies.
SCENARIO = SMALL.format(
    name="tiny", top='stack = "ibgda"\npolicies = ["route", "fetch", "adaptive"]').replace(
    'spec = "single_node:gpus=2"', 'spec = "dgx_h100:nodes=2"')


def test_kvfabric_run_prints_and_writes_the_regret(tmp_path, capsys):
    trace = make_trace(arrival_at=[0.0, 0.01, 0.02], input_tokens=[3000, 3500, 4000],
                       output_tokens=[6, 8, 4], block_ids=[list(range(47)), list(range(55)),
                                                           list(range(63))], block_tokens=64)
    write_trace(trace, tmp_path / "tiny.parquet")
    (tmp_path / "tiny.toml").write_text(SCENARIO)
    out_dir = tmp_path / "out"
    call(["run", str(tmp_path / "tiny.toml"), "--out", str(out_dir), "--json"])
    payload = json.loads(capsys.readouterr().out)
    saved = json.loads((out_dir / "summary.json").read_text())
    for rep in (payload["regret"], saved["regret"]):
        assert set(rep["policies"]) == {"route", "fetch", "adaptive"}
        assert set(rep["baseline"]) == {"tbt_p50", "tbt_p99", "throughput_tokens_per_s"}
        assert list(rep["choices"]) == ["adaptive"]
    call(["run", str(tmp_path / "tiny.toml"), "--no-write"])
    text = capsys.readouterr().out
    assert "regret against the best static policy" in text
    assert "options chosen over time" in text
    # a single policy compares nothing: no regret
    call(["run", str(tmp_path / "tiny.toml"), "--no-write", "--policy", "adaptive", "--json"])
    assert "regret" not in json.loads(capsys.readouterr().out)
    # two compare: their regret; two static ones: no table of choices
    call(["run", str(tmp_path / "tiny.toml"), "--no-write", "--policy", "route,fetch", "--json"])
    assert set(json.loads(capsys.readouterr().out)["regret"]["policies"]) == {"route", "fetch"}
    call(["run", str(tmp_path / "tiny.toml"), "--no-write", "--policy", "route,fetch"])
    text = capsys.readouterr().out
    assert "regret against the best static policy" in text
    assert "options chosen over time" not in text


def call(argv) -> None:
    """``kvfabric ARGV``, which must succeed."""
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None)
