"""What a run's results become on disk (simulator/cli/results.py): the Parquet tables, each row
saying which policy and engine made it, ``summary.json`` with its traffic figures, notes and
regret, and the manifest — from a real two-policy run of two tiny requests, and from results
made by hand where an edge needs it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from simulator.cli import results as files
from simulator.runner import run
from simulator.scenario import Scenario
from tests.tracetools import two_prompts_sharing_a_prefix
from workloads import make_trace

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "mooncake_conversation.toml"


def one_node() -> Scenario:
    """The Mooncake replay's scenario (DeepSeek-V3.2, 64-token blocks) on one DGX H100."""
    sc = Scenario.load(SCENARIO)
    return sc.with_changes(topology=dataclasses.replace(sc.topology, nodes=1))


@pytest.fixture(scope="module")
def two_runs():
    """route (exact engine) and fetch (fast engine) over two 150-token prompts on one node."""
    sc, tr = one_node(), two_prompts_sharing_a_prefix()
    return sc, {"route": run(sc, "route", trace=tr, engine="exact"),
                "fetch": run(sc, "fetch", trace=tr, engine="fast")}


def frame(res, table: str) -> pd.DataFrame:
    return getattr(res, table) if hasattr(res, table) else res.extras[table]


def test_each_table_holds_every_policys_rows_marked_with_policy_and_engine(two_runs, tmp_path):
    _, results = two_runs
    written, skipped = files.write_outputs(results, tmp_path, "tiny")
    names = sorted(p.name for p in written)
    for table in ("requests", "rounds", "iterations", "gpus", "links", "link_timeline",
                  "link_classes", "class_timeline"):
        assert f"{table}.parquet" in names
        got = pq.read_table(tmp_path / f"{table}.parquet").to_pandas()
        want = [frame(r, table).assign(policy=p, engine=r.summary["engine"])
                for p, r in results.items() if len(frame(r, table))]
        assert list(got.columns[:2]) == ["policy", "engine"]
        assert len(got) == sum(len(w) for w in want)
        assert got["policy"].tolist() == [p for w in want for p in w["policy"]]
        assert got["engine"].tolist() == [e for w in want for e in w["engine"]]
        for col in got.columns[2:]:  # categories (GPU names) as plain text
            if any(isinstance(w[col].dtype, pd.CategoricalDtype) for w in want):
                assert not isinstance(got[col].dtype, pd.CategoricalDtype)
                assert got[col].tolist() == [str(v) for w in want for v in w[col]]
    assert "summary.json" in names
    plots = [p for p in written if p.suffix == ".png"]
    assert plots and all(p.parent == tmp_path and p.read_bytes()[:4] == b"\x89PNG"
                         for p in plots)
    assert all(isinstance(v, str) and v for v in skipped.values())


def test_the_summary_holds_each_policys_figures_and_the_regret(two_runs, tmp_path):
    _, results = two_runs
    files.write_outputs(results, tmp_path, "tiny")
    text = (tmp_path / "summary.json").read_text()
    summary = json.loads(text)
    assert text == json.dumps(summary, indent=2) + "\n"
    assert summary["scenario"] == "tiny" and list(summary["policies"]) == ["route", "fetch"]
    for p, r in results.items():
        mine = summary["policies"][p]
        assert mine["completed"] == r.summary["completed"] == 2
        assert mine["engine"] == r.summary["engine"]
        figures = files.traffic_figures(r)
        assert mine["decode_tokens_per_s_per_gpu"] == pytest.approx(
            figures["decode_tokens_per_s_per_gpu"], rel=1e-12)
    assert summary["regret"]["baseline"]["tbt_p50"] in ("route", "fetch")
    assert set(summary["regret"]["policies"]) == {"route", "fetch"}


def test_a_single_policy_has_no_regret_and_an_empty_run_still_writes_every_table(tmp_path):
    sc = one_node()
    empty = make_trace(arrival_at=np.zeros(0), input_tokens=np.zeros(0, np.int64),
                       output_tokens=np.zeros(0, np.int64), block_ids=[], block_tokens=64)
    res = run(sc, "fetch", trace=empty)
    assert files.regret_report({"fetch": res}) is None
    files.write_outputs({"fetch": res}, tmp_path, "empty")
    for table in ("requests", "rounds", "iterations"):
        got = pq.read_table(tmp_path / f"{table}.parquet").to_pandas()
        assert len(got) == 0 and list(got.columns[:2]) == ["policy", "engine"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "regret" not in summary
    assert summary["policies"]["fetch"]["notes"][0].startswith("no requests entered the run")


def test_traffic_figures_per_decoding_gpu_and_at_capacity_when_the_loop_is_closed():
    gpus = pd.DataFrame({"gpu": ["a", "b", "c", "d"]})

    def result(**summary):
        extras = summary.pop("extras", {})
        return SimpleNamespace(summary={"throughput_tokens_per_s": 400.0, **summary},
                               extras=extras, gpus=gpus)

    def per_gpu(res) -> float:
        return files.traffic_figures(res)["decode_tokens_per_s_per_gpu"]

    assert per_gpu(result()) == 100.0
    two = result(extras={"decode_gpus": 2, "bytes_by_class": {"kv_fetch": 5}})
    assert files.traffic_figures(two) == {"bytes_by_class": {"kv_fetch": 5},
                                          "decode_tokens_per_s_per_gpu": 200.0}
    assert per_gpu(result(capacity_tokens_per_s=800.0)) == 200.0  # a closed loop's rate
    assert per_gpu(result(capacity_tokens_per_s=math.nan)) == 100.0  # none measured
    no_gpus = SimpleNamespace(summary={"throughput_tokens_per_s": 3.0}, extras={},
                              gpus=pd.DataFrame({"gpu": []}))
    assert per_gpu(no_gpus) == 3.0


def test_clean_makes_any_figure_json_safe():
    got = files._clean({1: np.float64(2.5), "x": [np.int64(3), (math.nan, math.inf)],
                  "y": {"z": -math.inf, "s": "text", "n": None}})
    assert got == {"1": 2.5, "x": [3, [None, None]], "y": {"z": None, "s": "text", "n": None}}
    assert type(got["1"]) is float and type(got["x"][0]) is int
    json.dumps(got, allow_nan=False)


def test_notes_name_only_the_policies_with_something_to_say():
    quiet = {"requests": 5, "completed": 5, "rounds": 10}
    pool = {"requests": 5, "completed": 5, "rounds": 0}
    got = files.notes({"fetch": SimpleNamespace(summary=quiet),
                 "homogeneous": SimpleNamespace(summary=pool),
                 "local": SimpleNamespace(summary=pool)})
    assert list(got) == ["homogeneous", "local"]
    assert got["homogeneous"][0].startswith("no per-round records: this policy's own decode")
    assert got["local"][0].startswith("no rounds: no KV crossed between GPUs")


def test_the_manifest_says_what_made_the_result(two_runs):
    sc, results = two_runs
    got = files.manifest(sc, SCENARIO, 7, ["route", "fetch"], results)
    assert got == {"scenario": {"name": sc.name, "source": str(SCENARIO.resolve()),
                                "sha256": hashlib.sha256(SCENARIO.read_bytes()).hexdigest()},
                   "seed": 7, "policies": ["route", "fetch"],
                   "engine": {"route": "exact", "fetch": "fast"}}


def test_a_table_only_some_results_carry_holds_only_their_rows(two_runs, tmp_path):
    # an MoE table on one policy's result (a deployment run has one): written with its rows,
    # the other policy skipped; a table no result carries is not written
    _, results = two_runs
    moe = pd.DataFrame({"layer": [0, 1], "time": [1e-3, 2e-3]})
    results = {"route": results["route"],
               "fetch": dataclasses.replace(results["fetch"],
                                            extras={**results["fetch"].extras, "moe": moe})}
    names = {p.name for p in files.write_outputs(results, tmp_path, "tiny")[0]}
    got = pq.read_table(tmp_path / "moe.parquet").to_pandas()
    assert got.to_dict("list") == {"policy": ["fetch", "fetch"], "engine": ["fast", "fast"],
                                   "layer": [0, 1], "time": [1e-3, 2e-3]}
    assert "kv_transfers.parquet" not in names
