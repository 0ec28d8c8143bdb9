"""Prefill→decode KV transfers' records (``kv_transfers``, the ``pd_transfer`` traffic class)
agree with each other, with the requests' and the steps' records and with what happened, on both
engines, the KV handed over whole or layer by layer.

The deployment (``tests/test_engine_instances.py``): four DGX H100 nodes, an EP16 prefill unit on
n0–n1 and an EP16 decode unit on n2–n3, DeepSeek-V3.2 (a token's KV is 1,152 B in each of 61
layers), 4 layer slots of 15–16 layers. What is checked, per request that was handed over:

- **one transfer, of its prompt's KV**: whole, the tokens its prefill computed — the prompt less
  the blocks it reused — × 1,152 B × 61 layers, in one message (none when nothing was computed);
  layer-wise, the same bytes in two messages per slot and prefill step (its first layers', then
  its last layer's) — and every token a prefill step computed, so a chunk recomputed after a
  preemption is sent again;
- **causality**: posted after its admission (whole: when the prompt is done), arrived after the
  prompt is done, and the decode step that made its first token started after it arrived — so
  TTFT holds the prefill and the transfer;
- **bytes**: ``bytes_by_class["pd_transfer"]`` and the links out of each prefill GPU and into each
  decode GPU carry the transfers' bytes (the Fabric's own records); the summary's figures are the
  rows'.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_instances import scenario
from test_engine_instances_edges import TIGHT, TIGHT_ROOM, prefill_unit

from simulator import run
from simulator.testing.profiles import examples
from simulator.testing.traces import request_traces
from workloads.schema import make_trace

#: A DeepSeek-V3.2 token's KV in every layer: 576 bf16 latent elements × 61 layers [B].
KV_TOKEN = 1152 * 61
#: Messages per prefill step, layer-wise: 4 slots of 15–16 layers, two messages each.
LAYERWISE_MESSAGES = 8
PREFILL_NODES = ("n0/", "n1/")


def pd(layerwise: bool, extra: str = "", duration: float | None = None):
    sc = scenario(nodes=4, selection="dense", extra=prefill_unit(layerwise) + extra)
    if duration is not None:
        sc = sc.with_changes(engine=dataclasses.replace(sc.engine, duration=duration))
    return sc


def agree(res, layerwise: bool) -> None:
    """The checks of the module docstring, on a run that was not cut."""
    req = res.requests.set_index("request_id")
    kv = res.extras["kv_transfers"]
    it = res.iterations.assign(gpu=res.iterations["gpu"].astype(str))
    # one transfer per request that entered, from the prefill pool to its decode GPU
    assert kv["request_id"].is_unique and sorted(kv["request_id"]) == sorted(
        req.index[req["admitted_at"].notna()])
    kv = kv.set_index("request_id")
    assert kv["prefill_gpu"].str.startswith(PREFILL_NODES).all()
    assert (kv["decode_gpu"] == req.loc[kv.index, "home"].astype(str)).all()
    assert not kv["decode_gpu"].str.startswith(PREFILL_NODES).any()
    # bytes: the prompt's KV, less the blocks reused
    prompt = np.maximum(req["input_tokens"] - 64 * req["reused_blocks"], 0).loc[kv.index]
    prefill = it[it["gpu"].str.startswith(PREFILL_NODES)]
    if layerwise:  # every computed token's KV: a recomputed chunk again
        assert kv["bytes"].sum() == prefill["prefill_tokens"].sum() * KV_TOKEN
        assert (kv["bytes"] >= prompt * KV_TOKEN).all()
        if res.summary["preemptions"] == 0:
            assert (kv["bytes"] == prompt * KV_TOKEN).all()
        assert (kv["messages"] % LAYERWISE_MESSAGES == 0).all()
        assert ((kv["messages"] > 0) == (kv["bytes"] > 0)).all()
    else:
        assert (kv["bytes"] == prompt * KV_TOKEN).all()
        assert (kv["messages"] == (kv["bytes"] > 0)).all()
    # causality
    for r, t in kv.iterrows():
        q = req.loc[r]
        assert q["admitted_at"] <= t["posted_at"] <= t["prefilled_at"] <= t["arrived_at"]
        if not layerwise:
            assert t["posted_at"] == t["prefilled_at"]
        mine = prefill[prefill["gpu"] == t["prefill_gpu"]]
        assert (np.abs(mine["finished_at"] - t["prefilled_at"]) < 1e-12).any()
        steps = it[it["gpu"] == t["decode_gpu"]]
        first = steps[np.abs(steps["finished_at"] - q["first_token_at"]) < 1e-12]
        assert len(first) == 1 and first["started_at"].iloc[0] >= t["arrived_at"]
        assert q["first_token_at"] - q["arrival_at"] > t["arrived_at"] - q["arrival_at"]
    assert np.allclose(kv["transfer_time"], kv["arrived_at"] - kv["posted_at"], rtol=0,
                       atol=1e-15)
    # the closed form prices the transfer alone: never more than it took
    assert (kv["cf_transfer_time"] <= kv["transfer_time"] * (1 + 1e-9) + 1e-15).all()
    # the Fabric's records of the class
    sent = res.extras["bytes_by_class"].get("pd_transfer", 0.0)
    assert sent == pytest.approx(kv["bytes"].sum(), rel=1e-12)
    lc = res.extras["link_classes"]
    lc = lc[lc["traffic_class"] == "pd_transfer"]
    for col, end in (("src", "prefill_gpu"), ("dst", "decode_gpu")):
        carried = lc.groupby(lc[col].astype(str))["bytes"].sum()
        want = kv.groupby(end)["bytes"].sum()
        want = want[want > 0]
        assert carried.reindex(want.index).to_numpy() == pytest.approx(want.to_numpy(),
                                                                      rel=1e-9)
    s = res.summary
    assert s["kv_transfers"] == len(kv)
    wait = (kv["arrived_at"] - kv["prefilled_at"]).to_numpy()
    assert s["kv_transfer_wait_p50"] == pytest.approx(np.quantile(wait, 0.5), abs=1e-15)
    assert s["kv_transfer_time_p99"] == pytest.approx(np.quantile(kv["transfer_time"], 0.99),
                                                      abs=1e-15)


@pytest.mark.parametrize("engine", ["exact", "fast"])
@pytest.mark.parametrize("layerwise", [False, True])
def test_each_request_moves_its_prompts_new_kv_once_after_its_prefill(layerwise, engine):
    # A (24 blocks) at 0 s; at 2 s, after A is done, B with A's 24 blocks (held on the decode
    # GPU: nothing computed, nothing sent) and C with A's first 10 blocks and 360 tokens of
    # its own (its 360 tokens' KV). One prefill step each (8,192-token budget).
    # catches: a transfer of the whole prompt (reused blocks again), of one layer or one slot,
    # a message per layer, a request decoded before its KV arrived, or a hand-off recorded
    # twice
    a = list(range(24))
    trace = make_trace(arrival_at=[0.0, 2.0, 2.0], input_tokens=[1536, 1536, 1000],
                       output_tokens=[3, 3, 3], block_tokens=64,
                       block_ids=[a, a, a[:10] + list(range(100, 106))])
    res = run(pd(layerwise), "route", trace=trace, engine=engine)
    assert res.requests["completed"].all()
    assert res.requests["reused_blocks"].tolist() == [0, 24, 10]
    kv = res.extras["kv_transfers"].set_index("request_id").sort_index()
    assert kv["bytes"].tolist() == [1536 * KV_TOKEN, 0.0, 360 * KV_TOKEN]
    per_step = LAYERWISE_MESSAGES if layerwise else 1
    assert kv["messages"].tolist() == [per_step, 0, per_step]
    assert kv.loc[1, "transfer_time"] == 0.0 == kv.loc[1, "cf_transfer_time"]
    assert res.extras["bytes_by_class"]["pd_transfer"] == 1896 * KV_TOKEN
    agree(res, layerwise)


def test_layerwise_a_chunk_recomputed_after_a_preemption_is_sent_again():
    # TIGHT ranks (30 blocks each) whose transfer engine paces a NIC at 0.1 GB/s, 100-token
    # chunks. P0 (10 blocks) and P1 (20 blocks) are prefilled on n0/gpu0; P1's KV stays there
    # until its slow transfer is done (~1.40 s). P2 (20 blocks) arrives at 1.075 s on the same
    # rank: 10 blocks free, so 6 chunks fit (600 tokens, 10 pages) and the 7th (11 pages)
    # does not: P2 is preempted, keeps its 9 whole blocks (576 tokens) and computes the 704
    # tokens after them in 8 more chunks. Each chunk's KV left as it was computed, so 600 + 704
    # = 1,304 tokens' KV went over (14 steps × 8 messages), 24 tokens more than the prompt —
    # as many as the prefill steps computed (whole hand-offs send the prompt once)
    extra = TIGHT.replace("layerwise = false", "layerwise = true\nbandwidth = 1e8")
    sc = scenario(nodes=4, selection="dense",
                  extra=extra + "[serving]\nmax_num_batched_tokens = 100\n")
    trace = make_trace(arrival_at=[0.0, 0.5, 1.075], input_tokens=[640, 1280, 1280],
                       output_tokens=[2, 2, 2], block_tokens=64,
                       block_ids=[np.arange(10) + 1, np.arange(20) + 100, np.arange(20) + 200])
    for engine in ("exact", "fast"):
        res = run(sc, "route", trace=trace, engine=engine)
        kv = res.extras["kv_transfers"].set_index("request_id").sort_index()
        assert (kv["prefill_gpu"] == "n0/gpu0").all() and res.summary["preemptions"] == 1
        assert kv["bytes"].tolist() == [640 * KV_TOKEN, 1280 * KV_TOKEN, 1304 * KV_TOKEN]
        assert kv["messages"].tolist() == [7 * 8, 13 * 8, 14 * 8]
        assert res.requests["prefilled_blocks"].tolist() == [10, 20, 21]
        agree(res, layerwise=True)


@pytest.mark.parametrize("layerwise", [False, True])
def test_a_transfer_cut_in_flight_is_sent_but_not_handed_over(layerwise):
    # one 1,536-token prompt; the run cut between its prefill's end and its KV's arrival
    # (whole), or part-way through its prefill (layer-wise: 41 of 61 layers posted): the bytes
    # posted count as sent (bytes_by_class), no row records a hand-off that did not happen
    trace = make_trace(arrival_at=[0.0], input_tokens=[1536], output_tokens=[3],
                       block_tokens=64, block_ids=[list(range(24))])
    whole = run(pd(layerwise), "route", trace=trace).extras["kv_transfers"].iloc[0]
    if layerwise:
        cut, posted = (whole["posted_at"] + whole["prefilled_at"]) / 2, 41
    else:
        cut, posted = (whole["prefilled_at"] + whole["arrived_at"]) / 2, 61
    for engine in ("exact", "fast"):
        res = run(pd(layerwise, duration=float(cut)), "route", trace=trace, engine=engine)
        assert len(res.extras["kv_transfers"]) == 0 and "kv_transfers" not in res.summary
        assert res.extras["bytes_by_class"]["pd_transfer"] == pytest.approx(
            1536 * 1152 * posted, rel=1e-12)


@settings(max_examples=examples(10))
@given(trace=request_traces(max_requests=5, max_blocks=24, vocab=40, block_tokens=st.just(64)),
       layerwise=st.booleans(), tight=st.booleans(), chunk=st.sampled_from([None, 100, 256]),
       policy=st.sampled_from(["route", "fetch"]), engine=st.sampled_from(["exact", "fast"]))
def test_every_hand_off_agrees_with_the_requests_steps_and_links(trace, layerwise, tight, chunk,
                                                                policy, engine):
    # catches what the known answers catch, over shared prefixes, prompts ending part-way into
    # a block, tight KV (prompts waiting on their prefill rank, preemptions) and chunking
    extra = (TIGHT_ROOM if tight else "") + (
        f"[serving]\nmax_num_batched_tokens = {chunk}\n" if chunk else "")
    res = run(pd(layerwise, extra), policy, trace=trace, engine=engine)
    agree(res, layerwise)
