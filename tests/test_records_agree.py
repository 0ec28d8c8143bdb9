"""A run's written records agree with its ``summary.json`` and with each other: the headline
figures recomputed here from the Parquet files by docs/records.md's definitions, with plain
numpy and pandas (not the simulator's summary code), on both decode-loop engines.

The case: two GPUs with KV room for 50 blocks each and chunked prefill of 256 tokens beside a
decode. On GPU 0, A (20 blocks, 960 tokens out) decodes while B (40 blocks) is prefilled; A's
growth preempts B part-way through its prompt, and B later reuses the whole blocks its chunks
filled. On GPU 1, C and D read A's 20 blocks from GPU 0 (rounds). Prompts and chunks are whole
blocks, so the blocks the requests say they computed are the steps' prompt tokens / 64.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from simulator import plots, run
from simulator.cli.results import write_outputs
from simulator.testing.invariants import small_scenario
from workloads.schema import make_trace

#: A DeepSeek-V3.2 KV block: 64 tokens × 1,152 B × 61 layers [B].
BLOCK = 64 * 1152 * 61
POLICIES = ("route", "fetch")


def case():
    """``(scenario, trace)`` of the module docstring."""
    sc = small_scenario("single_node:gpus=2", weights_per_gpu=80e9 * 0.9 - 50.5 * BLOCK,
                        serving={"chunked_prefill": True, "max_num_batched_tokens": 257},
                        max_batch=4)
    ids = [list(range(20)), list(range(100, 140)), list(range(20)) + list(range(200, 210)),
           list(range(20)) + list(range(300, 305))]
    trace = make_trace(arrival_at=[0.0, 1.0, 1.5, 1.6], input_tokens=[64 * len(x) for x in ids],
                       output_tokens=[960, 4, 40, 40], block_ids=ids, block_tokens=64,
                       session_id=[0, 0, 1, 2])
    return sc, trace


@pytest.fixture(scope="module", params=["exact", "fast"])
def written(request, tmp_path_factory):
    """``(tables, summary)`` read back from what ``write_outputs`` wrote for one engine."""
    sc, trace = case()
    results = {p: run(sc, p, trace=trace, engine=request.param) for p in POLICIES}
    folder = tmp_path_factory.mktemp(request.param)
    mp = pytest.MonkeyPatch()
    mp.setattr(plots, "write_all", lambda results, folder: ([], {}))  # no PNGs
    try:
        write_outputs(results, folder, "agree")
    finally:
        mp.undo()
    tables = {f.stem: pd.read_parquet(f) for f in folder.glob("*.parquet")}
    return tables, json.loads((folder / "summary.json").read_text())


def policy_rows(tables: dict, name: str, policy: str) -> pd.DataFrame:
    t = tables[name]
    return t[t["policy"] == policy].reset_index(drop=True)


def lower_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` × the total."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q * cum[-1] * (1 - 1e-12))])


@pytest.mark.parametrize("policy", POLICIES)
def test_latency_throughput_and_counts_follow_their_definitions(written, policy):
    tables, summary = written
    s = summary["policies"][policy]
    req, it = policy_rows(tables, "requests", policy), policy_rows(tables, "iterations", policy)
    rd = policy_rows(tables, "rounds", policy)
    done = req[req["completed"]]
    assert (s["requests"], s["completed"]) == (len(req), len(done)) == (4, 4)
    ttft = (done["first_token_at"] - done["arrival_at"]).to_numpy()
    assert s["ttft_p50"] == pytest.approx(np.quantile(ttft, 0.5), rel=1e-12)
    assert s["ttft_p99"] == pytest.approx(np.quantile(ttft, 0.99), rel=1e-12)
    step = (it["finished_at"] - it["started_at"]).to_numpy()
    tokens = it["tokens"].to_numpy(float)
    decoded = tokens > 0
    assert s["tbt_p50"] == pytest.approx(lower_quantile(step[decoded], tokens[decoded], 0.5))
    assert s["tbt_p99"] == pytest.approx(lower_quantile(step[decoded], tokens[decoded], 0.99))
    assert s["tbt_mean"] == pytest.approx((step * tokens).sum() / tokens.sum(), rel=1e-12)
    # TPOT: a request's decode span over its tokens after the first, vLLM's way
    tpot = [(f - t) / (n - 1) for f, t, n in zip(done["finished_at"], done["first_token_at"],
                                                   done["tokens_generated"], strict=True) if n > 1]
    assert s["tpot_p50"] == pytest.approx(np.quantile(tpot, 0.5), rel=1e-12)
    assert s["tpot_p99"] == pytest.approx(np.quantile(tpot, 0.99), rel=1e-12)
    generated = req["tokens_generated"].sum()
    assert s["decode_tokens"] == generated == req["output_tokens"].sum()
    assert s["throughput_tokens_per_s"] == pytest.approx(generated / s["sim_time"], rel=1e-12)
    assert s["decode_tokens_per_s_per_gpu"] == pytest.approx(
        s["throughput_tokens_per_s"] / len(policy_rows(tables, "gpus", policy)), rel=1e-12)
    assert s["prefill_tokens"] == it["prefill_tokens"].sum()
    assert s["preemptions"] == it["preempted"].sum() == 1
    assert s["rounds"] == len(rd) > 0
    assert s["options"] == rd["option"].value_counts().to_dict()
    assert s["bytes_moved"] == pytest.approx((rd["bytes"] * rd["layers"]).sum(), rel=1e-12)
    err = (abs(rd["sim_time"] - rd["cf_time"]) / rd["cf_time"])[rd["cf_time"] > 0]
    assert s["closed_form_error_p50"] == pytest.approx(np.quantile(err, 0.5), abs=1e-12)
    assert s["closed_form_error_p99"] == pytest.approx(np.quantile(err, 0.99), abs=1e-12)


@pytest.mark.parametrize("policy", POLICIES)
def test_each_request_agrees_with_its_home_gpus_steps(written, policy):
    tables, _ = written
    req, it = policy_rows(tables, "requests", policy), policy_rows(tables, "iterations", policy)
    # blocks computed = the steps' prompt tokens / 64 (whole blocks, whole chunks), B's part-way
    # admission included: its chunks' blocks once, not the whole prompt it set out to compute
    assert req["prefilled_blocks"].sum() * 64 == it["prefill_tokens"].sum()
    assert req["prefilled_blocks"].tolist() == [20, 40, 10, 5]
    for r in req.itertuples():
        ends = it.loc[it["gpu"] == r.home, "finished_at"].to_numpy()
        assert np.isclose(ends, r.first_token_at, rtol=0, atol=1e-9).any()
        assert np.isclose(ends, r.finished_at, rtol=0, atol=1e-9).any()
        # every token after the first came with a step of its home
        between = (ends > r.first_token_at + 1e-12) & (ends <= r.finished_at + 1e-12)
        assert between.sum() >= r.tokens_generated - 1
    rd = policy_rows(tables, "rounds", policy)
    step = it[["gpu", "iteration", "started_at", "finished_at"]].rename(
        columns={"gpu": "src", "started_at": "step_at", "finished_at": "step_end_at"})
    steps = rd.merge(step, on=["src", "iteration"], validate="many_to_one")
    assert len(steps) == len(rd)  # every round belongs to a recorded step of its home
    assert (steps["started_at"] >= steps["step_at"] - 1e-12).all()
    assert (steps["started_at"] + steps["sim_time"] <= steps["step_end_at"] + 1e-12).all()


@pytest.mark.parametrize("policy", POLICIES)
def test_links_and_gpus_add_up_over_the_run(written, policy):
    tables, summary = written
    sim_time = summary["policies"][policy]["sim_time"]
    links = policy_rows(tables, "links", policy)
    assert links["utilization"].to_numpy() == pytest.approx(
        (links["bytes"] / (links["bandwidth"] * sim_time)).to_numpy(), rel=1e-9, abs=1e-15)
    key = ["src", "dst"]
    per_link = links.set_index(key)["bytes"]
    for name in ("link_timeline", "link_classes"):
        summed = policy_rows(tables, name, policy).groupby(key)["bytes"].sum()
        assert summed.reindex(per_link.index, fill_value=0.0).to_numpy() == pytest.approx(
            per_link.to_numpy(), rel=1e-9, abs=1.0), name
    gpus = policy_rows(tables, "gpus", policy)
    assert gpus["utilization"].to_numpy() == pytest.approx(
        (gpus["busy_time"] / sim_time).to_numpy(), rel=1e-12)
