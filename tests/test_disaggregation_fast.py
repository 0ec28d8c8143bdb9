"""The homogeneous loop's fast mode is the exact loop without its events.

Its contract (simulator/disaggregation/homogeneous_fast.py): where no two rings' messages share a
link, composing a step at once gives the exact loop's times, link records and stream accounting
(to float rounding); where rings share links the run stays exact and says so. Each test runs
both loops on the same input and compares everything they record.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pandas as pd
import pytest

from simulator.disaggregation.homogeneous_fast import rings_unshared
from simulator.disaggregation.ring import Ring
from simulator.runner import run
from simulator.scenario import Scenario
from simulator.testing.invariants import check_ordering, check_steps
from workloads import make_trace


def scenario(topo: str, model: str, tp: int, gpus: int, concurrency: int | None = None,
             groups: int = 4, serving: dict | None = None, mode: str = "exact",
             prefill: str = "external") -> Scenario:
    workload = {"kind": "trace", "trace": "azure_llm_2023_conv"}
    if concurrency is not None:
        workload["concurrency"] = concurrency
    return Scenario.from_dict({
        "topology": {"spec": topo}, "model": {"name": model}, "stack": "nccl",
        "policies": ["homogeneous"], "workload": workload,
        "engine": {"layer_groups": groups, "mode": mode, "max_requests": 60},
        "serving": serving or {},
        "disaggregation": {"baseline_gpus": gpus, "baseline_gpu": "H100", "baseline_tp": tp,
                           "prefill": prefill}})


def trace(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    inp = rng.integers(200, 6000, n)
    out = rng.integers(2, 40, n)
    arrival = np.sort(rng.uniform(0.0, 1.5, n))
    blocks = [np.arange(-(-int(x) // 512), dtype=np.int64) + 10_000 * i
              for i, x in enumerate(inp)]
    return make_trace(arrival_at=arrival, input_tokens=inp, output_tokens=out, block_ids=blocks)


def both(sc: Scenario, tr: pd.DataFrame):
    return run(sc, "homogeneous", trace=tr, engine="exact"), run(sc, "homogeneous", trace=tr,
                                                                 engine="fast")


def assert_same(exact, fast) -> None:
    """Every record of the two runs equal (times to 1e-9 relative)."""
    assert exact.summary["engine"] == "exact" and fast.summary["engine"] == "fast"
    assert "engine_fallback" not in fast.summary
    pd.testing.assert_frame_equal(exact.requests, fast.requests, rtol=1e-9, atol=0)
    pd.testing.assert_frame_equal(exact.iterations.drop(columns=["engine"], errors="ignore"),
                                  fast.iterations.drop(columns=["engine"], errors="ignore"),
                                  rtol=1e-9, atol=1e-15)
    pd.testing.assert_frame_equal(exact.links, fast.links, rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(exact.gpus, fast.gpus, rtol=1e-9, atol=1e-15)
    # the all-reduces' bytes in their traffic class, sent and per link
    assert fast.extras["bytes_by_class"] == pytest.approx(exact.extras["bytes_by_class"],
                                                          rel=1e-12)
    assert exact.extras["bytes_by_class"].get("tp_collective", 0) > 0
    pd.testing.assert_frame_equal(exact.extras["link_classes"], fast.extras["link_classes"],
                                  rtol=1e-9, atol=1e-12)
    for key in ("bytes_moved", "tbt_p50", "tbt_p99", "ttft_p50", "ttft_p99",
                "throughput_tokens_per_s", "sim_time", "preemptions", "model_pool_idle"):
        assert fast.summary[key] == pytest.approx(exact.summary[key], rel=1e-9, abs=0), key
    # one event per step (plus arrivals and wake-ups), where the exact loop has several per slot
    assert fast.summary["events"] < exact.summary["events"] / 4
    check_ordering(fast)
    check_steps(exact)
    check_steps(fast)


def test_one_replica_open_loop_equals_the_exact_loop():
    sc = scenario("lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4", "llama-3-70b",
                  tp=4, gpus=4)
    exact, fast = both(sc, trace(40))
    assert exact.summary["completed"] == 40
    assert_same(exact, fast)


@pytest.mark.parametrize("duration", [0.9, 0.904, 0.908, 0.912, 0.916])
def test_a_run_cut_by_its_duration_mid_step_keeps_what_the_exact_loop_kept(duration):
    # the last step is composed past the end: only the kernels issued, the bytes sent and the
    # messages delivered before the cut count, as in the exact loop stopped there — the cut
    # in one slot or another of the step, or in its ring
    sc = scenario("lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4", "llama-3-70b",
                  tp=4, gpus=4)
    sc = sc.with_changes(engine=dataclasses.replace(sc.engine, duration=duration))
    exact, fast = both(sc, trace(40))
    assert exact.summary["sim_time"] == duration and exact.summary["completed"] < 40
    assert_same(exact, fast)


def test_two_replicas_at_capacity_with_chunked_prefill_and_preemption_equal_the_exact_loop():
    # two TP4 replicas on one 8-GPU node, 64 outstanding requests: batches fill, prefill is
    # chunked under a small token budget, and the KV runs out (preemptions) — every path of
    # the serving loop, with the all-reduces of both rings on the node's NVLinks at once
    sc = scenario("lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=8", "llama-3-70b",
                  tp=4, gpus=8, concurrency=64, groups=0,
                  serving={"max_num_batched_tokens": 1024})
    exact, fast = both(sc, trace(60, seed=3))
    assert exact.summary["completed"] == 60
    assert exact.iterations["prefill_tokens"].max() <= 1024
    assert_same(exact, fast)


@pytest.mark.parametrize("chunked", [True, False])
def test_prompts_prefilled_on_the_replica_equal_the_exact_loop(chunked):
    # prefill = "local": prompts computed in the replica's steps — in chunks beside the
    # decodes, or whole (without chunking: one prompt's every layer spread over the slots)
    sc = scenario("lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4", "llama-3-70b",
                  tp=4, gpus=4, concurrency=8, serving={"chunked_prefill": chunked},
                  prefill="local")
    exact, fast = both(sc, trace(16, seed=11))
    assert exact.iterations["prefill_tokens"].sum() == trace(16, seed=11)["input_tokens"].sum()
    assert_same(exact, fast)


def test_mla_with_data_parallel_attention_equals_the_exact_loop():
    # DeepSeek-V3.2 (one latent KV head: data-parallel attention, DSA's indexer) as one TP16
    # replica over two 8-GPU nodes: the ring leaves each node once. The nodes are in two
    # scalable units, so its two inter-node hops (n0/gpu7 → n1/gpu0, n1/gpu7 → n0/gpu0) go up
    # different leaves (su0/leaf7, su1/leaf7) and share no link (see the next test).
    sc = scenario("dgx_h100:nodes=2,nodes_per_su=1", "deepseek-v3.2",
                  tp=16, gpus=16, concurrency=16)
    exact, fast = both(sc, trace(24, seed=5))
    assert_same(exact, fast)


def test_a_ring_across_nodes_is_composed_with_its_inter_node_hop():
    # one TP16 replica over two 8-GPU nodes of two scalable units: two hops of the ring cross
    # the NICs (a slower hop sets the ring's time); still nothing shared, so the fast mode
    # applies and stays exact
    sc = scenario("dgx_h100:nodes=2,nodes_per_su=1", "llama-3-70b", tp=16, gpus=16)
    exact, fast = both(sc, trace(20, seed=7))
    assert_same(exact, fast)
    # Two nodes on one set of rail leaves: both inter-node hops (n0/gpu3 → n1/gpu0 and n1/gpu3
    # → n0/gpu0) go up leaf3 and down to leaf0 through the spine, each by its GPU's own NIC, so
    # they share links and the run stays exact, saying why. (Until GPUs stopped relaying, each
    # hop went over NVLink to the neighbour's NIC, on the same rail: nothing shared.)
    sc = scenario("lamina_h100_h20:h100_nodes=2,h20_nodes=1,gpus_per_node=4", "llama-3-70b",
                  tp=8, gpus=8)
    fast = run(sc, "homogeneous", trace=trace(20, seed=7), engine="fast")
    assert fast.summary["engine"] == "exact"
    assert "share fabric links" in fast.summary["engine_fallback"]


class _Fabric:
    """Routes by (src, dst) → link indices; nothing else of a Fabric is needed here."""

    def __init__(self, links: dict[tuple[str, str], tuple[int, ...]]) -> None:
        self.links = links

    def message_route(self, src: str, dst: str):
        return 0.0, 1.0, self.links[(src, dst)], 0

    def message_time(self, src: str, dst: str, nbytes: float) -> float:
        return 0.0


def test_replicas_of_one_gpu_have_no_ring_and_equal_the_exact_loop():
    # baseline_tp = 1: nothing to all-reduce — the fast mode used to stop on the one-GPU
    # ring's "hop" to itself (a route over no link) when checking that rings do not share links
    sc = scenario("lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4", "llama-3.1-8b",
                  tp=1, gpus=2)
    exact, fast = both(sc, trace(20, seed=4))
    assert fast.summary["engine"] == "fast" and "engine_fallback" not in fast.summary
    assert exact.summary["completed"] == 20 and fast.summary["bytes_moved"] == 0.0
    pd.testing.assert_frame_equal(exact.requests, fast.requests, rtol=1e-9, atol=0)
    pd.testing.assert_frame_equal(exact.gpus, fast.gpus, rtol=1e-9, atol=1e-15)
    for key in ("tbt_p50", "tbt_p99", "ttft_p50", "throughput_tokens_per_s", "sim_time"):
        assert fast.summary[key] == pytest.approx(exact.summary[key], rel=1e-9, abs=0), key


def test_rings_that_share_a_link_are_not_composed():
    ring = {("a", "b"): (0, 1), ("b", "a"): (2, 3), ("c", "d"): (4, 5), ("d", "c"): (6, 7)}
    fab = _Fabric(ring)
    r1, r2 = Ring(fab, ["a", "b"]), Ring(fab, ["c", "d"])
    assert rings_unshared(fab, [r1, r2])
    # the second ring's hop crosses a link of the first's
    fab.links[("d", "c")] = (6, 1)
    assert not rings_unshared(fab, [r1, r2])
    # one ring whose own two hops share a link (a bus): its messages share it
    fab.links[("d", "c")] = (6, 7)
    fab.links[("b", "a")] = (2, 0)
    assert not rings_unshared(fab, [r1])
    assert rings_unshared(fab, [r2])


def test_shared_rings_keep_the_exact_loop_and_say_why(monkeypatch):
    import simulator.disaggregation.homogeneous as homogeneous

    monkeypatch.setattr(homogeneous, "rings_unshared", lambda fabric, rings: False)
    sc = scenario("lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4", "llama-3-70b",
                  tp=4, gpus=4)
    tr = trace(6)
    res = run(sc, "homogeneous", trace=tr, engine="fast")
    assert res.summary["engine"] == "exact"
    assert "share fabric links" in res.summary["engine_fallback"]
    exact = run(sc, "homogeneous", trace=tr, engine="exact")
    assert res.summary["events"] == exact.summary["events"]



def _one_call_per_step(self, shape, times):
    """The fast mode's records as it handed them over before batching: one
    ``record_messages`` call per step, its class counters added from a list."""
    ke = times[1::2]
    sent = shape.sent.ravel()
    self.fabric.record_messages(shape.sid.ravel(), (ke[:, None] + shape.start).ravel(),
                                (ke[:, None] + shape.end).ravel(), sent, shape.tag.ravel(),
                                counted=sent.tolist())


@pytest.mark.parametrize("batch", [1, 7, 1 << 20])  # 1 << 20: only the flush at the end
def test_ring_records_handed_over_in_batches_equal_one_call_per_step(monkeypatch, batch):
    # two replicas' steps interleave: whatever the batch, every link record, class counter and
    # total is the one a record_messages call per step gives, bit for bit and in the same order
    import simulator.disaggregation.homogeneous as homogeneous
    import simulator.disaggregation.homogeneous_fast as homogeneous_fast

    sc = scenario("lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=8", "llama-3-70b",
                  tp=4, gpus=8, concurrency=24, mode="fast")
    tr = trace(40, seed=2)
    kept = []  # each run's lone-flow records as the Fabric holds them at the end, in order
    result = homogeneous.build_result

    def keep(policy, seed, env, fabric, *args, **kwargs):
        pieces = list(fabric._stats._pieces(("lo_route", "lo_start", "lo_end", "lo_bytes")))
        kept.append([np.concatenate(c) for c in zip(*pieces, strict=True)])
        return result(policy, seed, env, fabric, *args, **kwargs)

    monkeypatch.setattr(homogeneous, "build_result", keep)
    monkeypatch.setattr(homogeneous_fast, "DEFERRED_STEPS", batch)
    batched = run(sc, "homogeneous", trace=tr)
    monkeypatch.setattr(homogeneous_fast.ComposedSteps, "_defer", _one_call_per_step)
    single = run(sc, "homogeneous", trace=tr)
    for a, b in zip(*kept, strict=True):  # route, start, end, bytes: the same rows in order
        np.testing.assert_array_equal(a, b)
    assert batched.summary["engine"] == "fast" and len(batched.iterations) > 14
    for name in ("requests", "iterations", "links", "link_timeline", "gpus"):
        pd.testing.assert_frame_equal(getattr(batched, name), getattr(single, name),
                                      check_exact=True)
    assert batched.extras["bytes_by_class"] == single.extras["bytes_by_class"]
    pd.testing.assert_frame_equal(batched.extras["link_classes"], single.extras["link_classes"],
                                  check_exact=True)
    def summary(res):  # as summary.json has it (NaN equal to NaN), less the wall time
        return json.dumps({k: v for k, v in res.summary.items() if k != "wall_time"},
                          sort_keys=True, default=str)

    assert summary(batched) == summary(single)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_a_request_preempted_on_one_replica_is_taken_at_once_by_an_idle_one(mode):
    # two TP-2 replicas of Llama-3-70B with 6.5 GB of KV each (~19,800 tokens); three prompts of
    # 6,000 tokens arrive together and replica 0 admits all three before replica 1 looks, so
    # replica 1 waits, idle. Growing by a token a step, replica 0 runs out in its 614th step
    # and preempts one: replica 1 takes it at that instant (the preempting step wakes the idle
    # replicas), recomputes it — its 6,000 prompt tokens and the 613 it had generated, though
    # its prompt arrived prefilled (until then it came back at no cost) — and finishes it there.
    sc = scenario("lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4", "llama-3-70b",
                  tp=2, gpus=4, mode=mode)
    tr = make_trace(arrival_at=np.zeros(3), input_tokens=np.full(3, 6000),
                    output_tokens=np.full(3, 2000),
                    block_ids=[np.arange(12, dtype=np.int64) + 100 * i for i in range(3)])
    res = run(sc, "homogeneous", trace=tr)
    assert res.summary["engine"] == mode
    it = res.iterations
    preempting = it[it["preempted"] > 0]
    assert preempting["gpu"].tolist() == ["replica0"] and preempting["iteration"].tolist() == [613]
    second = it[it["gpu"] == "replica1"]
    assert second["started_at"].min() == preempting["started_at"].iloc[0]
    assert second["prefill_tokens"].tolist()[:2] == [6613, 0]
    assert it["prefill_tokens"].sum() == 6613  # the only prefill of the run
    assert res.requests["home"].tolist() == ["n0/gpu0", "n0/gpu0", "n0/gpu2"]
    assert res.requests["completed"].all()


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("arrival", [0.0, 0.5])
def test_a_run_whose_one_request_fits_no_replica_runs_no_step(mode, arrival):
    # 19,000 + 2,000 tokens of Llama-3-70B KV need more than a TP-2 replica's ~19,800 tokens:
    # refused when it arrives; no step runs, so no GPU worked: utilization 0, and the pool
    # idled the whole run (a run of no time: nothing to be idle over)
    sc = scenario("lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4", "llama-3-70b",
                  tp=2, gpus=2, mode=mode)
    tr = make_trace(arrival_at=np.full(1, arrival), input_tokens=np.full(1, 19_000),
                    output_tokens=np.full(1, 2_000), block_ids=[np.arange(38, dtype=np.int64)])
    t0 = time.perf_counter()
    res = run(sc, "homogeneous", trace=tr)
    took = time.perf_counter() - t0
    req = res.requests.iloc[0]
    assert not req["completed"] and req["reason"].startswith("its KV does not fit a replica")
    assert len(res.iterations) == 0
    assert res.summary["sim_time"] == arrival
    assert res.gpus["utilization"].tolist() == [0.0, 0.0]
    assert res.summary["model_pool_idle"] == (1.0 if arrival else 0.0)
    assert 0.0 < res.summary["wall_time"] <= took
