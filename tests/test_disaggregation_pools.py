"""The pool loops' shared parts (simulator/disaggregation/pools.py, shards.py, byte_pool.py,
ring.py) with known answers: a GPU's share of the KV heads, the layer folding, the served
architecture, the per-request state, the byte pool's ledger, a ring's fabric."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from simulator.disaggregation.byte_pool import BytePool
from simulator.disaggregation.pools import Requests, idle_fraction, mean_batch
from simulator.disaggregation.ring import Ring
from simulator.disaggregation.shards import fold_layers, head_shard, served_arch, split_heads
from simulator.models import model
from simulator.scenario import Scenario
from workloads import make_trace


def test_a_shard_of_kv_heads_carries_its_share_of_the_query_heads_bytes_and_flops():
    a = model("llama-3-70b")  # 64 query heads, 8 KV heads
    s = head_shard(a, 2)
    assert (s.query_heads, s.kv_heads) == (16, 2)
    assert s.kv_bytes_per_token_bf16 == a.kv_bytes_per_token_bf16 / 4
    assert s.kv_bytes_per_token_fp8 == a.kv_bytes_per_token_fp8 / 4
    assert s.attention_flops_per_token == a.attention_flops_per_token / 4
    assert s.layers == a.layers and s.hidden_size == a.hidden_size
    # a shard whose query heads would round to none keeps one
    few = dataclasses.replace(a, query_heads=4)  # 4 query heads over 8 KV heads
    assert head_shard(few, 1).query_heads == 1 and head_shard(few, 4).query_heads == 2


def test_kv_heads_split_as_evenly_as_possible_larger_shares_first():
    assert split_heads(8, 3) == [3, 3, 2]
    assert split_heads(8, 8) == [1] * 8
    assert split_heads(7, 2) == [4, 3]


@pytest.mark.parametrize("layers, groups, multiple, expect", [
    (80, 0, 1, [1] * 80),  # every layer
    (80, 80, 1, [1] * 80),
    (61, 61, 2, [1] * 61),  # as many groups as layers: every layer, whatever the slices
    (80, 200, 1, [1] * 80),
    (80, 1, 1, [80]),  # one slot stands for all
    (80, 4, 1, [20] * 4),
    (80, 4, 2, [20] * 4),  # already a multiple of the slices
    (80, 3, 2, [20] * 4),  # 3 slots rounded to 4 for two slices
    (61, 1, 2, [30, 31]),  # at least one slot per slice
    (61, 5, 3, [10, 10, 10, 11, 10, 10]),  # 30.5 rounds to even
    (5, 4, 3, [2, 1, 2]),
])
def test_folded_slots_cover_every_layer_in_a_multiple_of_the_slices(layers, groups, multiple,
                                                                    expect):
    got = fold_layers(layers, groups, multiple)
    assert got.tolist() == expect and got.sum() == layers


def scenario(name: str, selection: str) -> Scenario:
    return Scenario.from_dict({"model": {"name": name, "selection": selection},
                               "topology": {"spec": "lamina_h100_h20:h100_nodes=1,h20_nodes=1"},
                               "workload": {"kind": "trace", "trace": "azure_llm_2023_code"}})


def test_a_sparse_model_run_dense_attends_its_whole_context():
    v32 = model("deepseek-v3.2")
    assert v32.sparse and v32.attention == "mla_dsa"
    dense = served_arch(scenario("deepseek-v3.2", "dense"))
    assert not dense.sparse and dense.topk_tokens is None and dense.attention == "mla"
    assert served_arch(scenario("deepseek-v3.2", "dsa")) == v32
    other = model("llama-3-70b")
    assert served_arch(scenario("deepseek-v3.2", "dense"), arch=other) is other


def test_each_finish_is_counted_and_told():
    tr = make_trace(arrival_at=[0.0, 0.1, 0.2], input_tokens=[10, 20, 30],
                    output_tokens=[1, 2, 3], block_ids=[np.arange(1)] * 3)
    told, heard = [], []
    req = Requests(tr, lambda done, n: told.append((done, n)))
    req.on_finish = heard.append
    req.finish(1, 0.5)
    req.finish(0, 0.7, "too large")
    assert req.finished == 2 and told == [(1, 3), (2, 3)] and heard == [1, 0]
    assert req.finish_at[[0, 1]].tolist() == [0.7, 0.5] and req.reason[0] == "too large"
    assert req.home == ["", "", ""] and not req.entered.any()


def iterations(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["started_at", "finished_at", "batch"], dtype=float)


def test_the_mean_batch_weights_each_step_by_its_length_over_the_whole_span():
    # steps of 2 (1 s) and 4 (3 s) requests on one unit, 1 request (2 s) on another, over 5 s
    it = iterations([(0.0, 1.0, 2), (1.0, 4.0, 4), (3.0, 5.0, 1)])
    assert mean_batch(it) == (2 * 1 + 4 * 3 + 1 * 2) / 5
    assert mean_batch(iterations([])) == 0.0
    assert mean_batch(iterations([(2.0, 2.0, 3)])) == 0.0  # no time passed


def test_the_idle_share_is_what_the_gpus_did_not_use_of_the_span():
    assert idle_fraction([1.0, 0.0], 4.0) == 1 - 1 / 8
    assert idle_fraction([3.0], 2.0) == 0.0  # never below nothing
    assert idle_fraction([], 4.0) == 0.0 and idle_fraction([1.0], 0.0) == 0.0


# -- the byte pool -------------------------------------------------------------------------------

def byte_pool(capacity: float, reserve: bool, computes: int = 0) -> BytePool:
    """A pool of ``capacity`` bytes at 10 B a token over three requests of 10, 20 and 30 prompt
    tokens and 1, 2 and 3 output tokens; ``computes`` prompt tokens to compute at admission."""
    tr = make_trace(arrival_at=[0.0, 0.1, 0.2], input_tokens=[10, 20, 30],
                    output_tokens=[1, 2, 3], block_ids=[np.arange(1)] * 3)
    return BytePool(Requests(tr, None), 10.0, capacity, reserve, lambda r: computes)


def test_a_byte_pool_fills_to_its_capacity_exactly_and_keeps_its_peak():
    pool = byte_pool(400.0, reserve=False)
    assert (pool.used, pool.peak) == (0.0, 0.0)
    assert pool.admit(0) == 0 and pool.used == 100.0  # a prefilled prompt: its 10 tokens
    assert pool.admit(1) == 0 and pool.used == 300.0
    assert pool.admit(2) == -1 and pool.used == 300.0  # 300 more do not fit: wait
    assert pool.grow(0, 10) and pool.used == 400.0 == pool.peak  # up to capacity: fits
    assert not pool.can_fit(1, 1e-9) and not pool.grow(1, 1)
    pool.release(0)
    assert (pool.used, pool.peak, pool.held) == (200.0, 400.0, {1: 200.0})
    pool.release(0)  # nothing held: nothing given back
    assert pool.used == 200.0
    pool.give(1, 500.0)  # never below empty
    assert pool.used == 0.0


def test_a_request_larger_than_the_whole_pool_is_refused_and_one_that_fills_it_is_not():
    pool = byte_pool(330.0, reserve=True)  # request 2 needs (30 + 3) × 10 = 330 B
    assert pool.fits_alone(2, 330.0) and not pool.fits_alone(2, 330.1)
    assert pool.admit(2) == 0 and pool.used == 330.0  # reserved: prompt and output at once
    assert pool.grow(2, 3) and pool.used == 330.0  # nothing grows under a reservation
    small = byte_pool(329.0, reserve=True)
    assert small.admit(2) is None and small.used == 0.0


def test_a_prompt_computed_here_takes_only_what_was_computed_before_at_admission():
    pool = byte_pool(1000.0, reserve=False, computes=25)
    pool.req.gen[2] = 5  # 30 prompt + 5 generated before a preemption; 25 to compute again
    assert pool.admit(2) == 25 and pool.used == 100.0 and pool.held == {2: 100.0}


def test_growing_each_stops_at_the_first_request_that_does_not_fit():
    pool = byte_pool(325.0, reserve=False)
    pool.admit(0)
    pool.admit(1)  # 300 B
    assert pool.grow_each([1, 0, 1, 0]) == 2  # 310, 320; the third (330) would not fit
    assert pool.used == 320.0 == pool.peak and pool.held == {0: 110.0, 1: 210.0}
    assert pool.grow_each([]) == 0 and pool.used == 320.0
    assert byte_pool(0.0, reserve=True).grow_each([0, 1]) == 2


def test_a_group_on_one_node_all_reduces_over_nvlink_else_over_rdma():
    assert Ring.fabric_of(None, ["n0/gpu0", "n0/gpu3"]) == "nvlink"
    assert Ring.fabric_of(None, ["n0/gpu0"]) == "nvlink"
    assert Ring.fabric_of(None, ["n0/gpu0", "n1/gpu0"]) == "rdma"


# -- the ring all-reduce (Ring) on a real Fabric -------------------------------------------------

RING = ["n0/gpu0", "n0/gpu1", "n1/gpu0", "n1/gpu1"]  # two NVLink hops and two that leave a node


def _fabric():
    import simpy

    import topologies
    from simulator.network.fabric import Fabric

    env = simpy.Environment()
    return env, Fabric(env, topologies.parse_spec("dgx_h100:nodes=2"), "nccl")


def test_a_ring_sends_to_the_next_gpu_and_waits_its_slowest_hop_per_step():
    _, fab = _fabric()
    ring = Ring(fab, RING)
    assert ring.t == 4
    assert ring.hops == [("n0/gpu0", "n0/gpu1"), ("n0/gpu1", "n1/gpu0"),
                         ("n1/gpu0", "n1/gpu1"), ("n1/gpu1", "n0/gpu0")]
    nvlink, rdma = fab.message_time("n0/gpu0", "n0/gpu1", 0), fab.message_time(
        "n0/gpu1", "n1/gpu0", 0)
    assert rdma > nvlink > 0 and ring.msg0 == rdma  # a step waits for the node-leaving hop
    # 3 layers' two all-reduces of X bytes: each GPU sends 2·3·2·(4−1)/4·X = 9X in 36 steps
    X = 1e6
    sent, extra = ring.plan(3, X)
    assert sent == pytest.approx(9 * X, rel=1e-15) and extra == pytest.approx(35 * rdma)
    slowest = max(fab.message_time(a, b, 9 * X) for a, b in ring.hops)
    assert slowest == fab.message_time("n0/gpu1", "n1/gpu0", 9 * X)
    assert ring.wire_time(3, X) == pytest.approx(slowest + 35 * rdma, rel=1e-12)
    assert ring.time(3, X) == ring.wire_time(3, X)  # nothing measured: the wire's time


def test_the_measured_all_reduce_time_is_waited_out_when_it_exceeds_the_wire():
    _, fab = _fabric()
    wire = Ring(fab, RING).wire_time(2, 4e6)
    slow = Ring(fab, RING, measured=lambda nbytes: wire)  # one all-reduce: the wire's 4 ×
    assert slow.protocol_time(2, 4e6) == pytest.approx(3 * wire)
    assert slow.time(2, 4e6) == pytest.approx(2 * 2 * wire)  # 2 layers × 2 all-reduces
    fast = Ring(fab, RING, measured=lambda nbytes: wire / 100)  # faster than the wire: ignored
    assert fast.protocol_time(2, 4e6) == 0.0 and fast.time(2, 4e6) == wire


@pytest.mark.parametrize("gpus", [["n0/gpu0"], []])
def test_a_ring_of_one_gpu_or_none_costs_nothing(gpus):
    env, fab = _fabric()
    ring = Ring(fab, gpus, measured=lambda nbytes: 1.0)
    assert ring.msg0 == 0.0
    assert ring.wire_time(5, 1e6) == ring.protocol_time(5, 1e6) == ring.time(5, 1e6) == 0.0
    assert ring.shape(5, 1e6)[3:] == (0.0, 0.0)
    env.process(ring.run(env, 5, 1e6))
    env.run()
    assert env.now == 0.0


def test_no_bytes_cost_nothing_and_one_byte_costs_the_messages():
    env, fab = _fabric()
    ring = Ring(fab, RING, measured=lambda nbytes: 1.0)
    assert ring.time(1, 0) == 0.0 and ring.shape(1, 0)[0] == ()
    one = Ring(fab, RING)
    # one layer's two all-reduces of 1 B: 3 B each way in 12 steps
    assert one.time(1, 1) == pytest.approx(fab.message_time("n0/gpu1", "n1/gpu0", 3.0)
                                           + 11 * one.msg0, rel=1e-12)
    # one byte is an all-reduce like any other: the measured time, on the fabric too
    assert ring.time(1, 1) == 2.0 and len(ring.shape(1, 1)[0]) == 4
    env.process(ring.run(env, 1, 1))
    env.run()
    assert env.now == pytest.approx(2.0, rel=1e-9)


def test_a_ring_of_two_gpus_waits_its_messages_too():
    _, fab = _fabric()
    pair = Ring(fab, ["n0/gpu0", "n1/gpu0"])
    assert pair.hops == [("n0/gpu0", "n1/gpu0"), ("n1/gpu0", "n0/gpu0")]
    assert pair.msg0 == fab.message_time("n0/gpu0", "n1/gpu0", 0) > 0
    # one layer: 2 all-reduces × 2 (t − 1) = 4 steps, each GPU sending 2 · 2 · 1/2 · X = 2X
    assert pair.plan(1, 1e6) == pytest.approx((2e6, 3 * pair.msg0), rel=1e-12)


@pytest.mark.parametrize("measured", [None, 3e-4])
@pytest.mark.parametrize("gpus", [["n0/gpu0", "n1/gpu0"], ["n0/gpu0", "n0/gpu1", "n0/gpu2"]])
def test_a_ring_alone_on_the_fabric_takes_its_time_and_its_shape(gpus, measured):
    # rings whose hops share no link (one rail across nodes, or NVLink inside one): the
    # fabric's time is the uncontended one, and with a measured time above the wire's, that
    env, fab = _fabric()
    ring = Ring(fab, gpus, measured=None if measured is None else (lambda nbytes: measured))
    expected = ring.time(2, 2e6)
    if measured is not None:
        assert expected == pytest.approx(4 * measured, rel=1e-12)
    env.process(ring.run(env, 2, 2e6))
    env.run()
    assert env.now == pytest.approx(expected, rel=1e-9)
    sids, starts, ends, sent, total = ring.shape(2, 2e6)
    assert len(sids) == len(gpus) and sent == ring.plan(2, 2e6)[0]
    assert total == pytest.approx(expected, rel=1e-9)
    for (a, b), s, e in zip(ring.hops, starts, ends, strict=True):
        assert e == pytest.approx(fab.message_time(a, b, sent), rel=1e-12)
        assert s == fab.message_route(a, b)[0]


# -- a pool loop's result (build_result) ---------------------------------------------------------

def _built(now: float, iters: list[tuple], cost_per_hour: float, bins: list | None = None):
    """build_result over two finished requests on a real (idle) Fabric at ``now`` [s]; the bin
    widths the Fabric's link timeline is asked for go to ``bins``."""
    from simulator.disaggregation.pools import build_result

    env, fabric = _fabric()
    if now > 0:
        env.run(until=now)
    tr = make_trace(arrival_at=[0.0, 0.0], input_tokens=[64, 64], output_tokens=[2, 2],
                    block_ids=[np.arange(1)] * 2)
    reqs = Requests(tr, None)
    for r in range(2):
        reqs.first_at[r] = now / 2
        reqs.gen[r] = 2
        reqs.finish(r, now)
    if bins is not None:
        timeline = fabric.link_timeline
        fabric.link_timeline = lambda width: bins.append(width) or timeline(width)
    gpus = pd.DataFrame({"gpu": ["u0"], "busy_time": [now]})
    return build_result("homogeneous", 3, env, fabric, reqs, 64, iters, ["u0"], gpus,
                        cost_per_hour, 1.0, {"note": "x"})


def _step(started_at: float, finished_at: float, cf_time: float) -> tuple:
    # gpu, iteration, started_at, finished_at, batch, prefill_time, tokens, prefill_tokens,
    # preempted, then the closed form's predicted time
    return (0, 0, started_at, finished_at, 2, 0.0, 2, 0, 0, cf_time)


def test_the_closed_form_error_is_relative_to_the_prediction_over_predicted_steps():
    # steps of 3, 6 and 5 s predicted at 2, 4 and 10 s: errors 0.5, 0.5 and 0.5; a step without
    # a finite positive prediction is left out
    steps = [_step(0.0, 3.0, 2.0), _step(3.0, 9.0, 4.0), _step(9.0, 14.0, 10.0),
             _step(14.0, 15.0, 0.0), _step(15.0, 16.0, float("nan"))]
    s = _built(16.0, steps, 2.0).summary
    assert s["closed_form_error_p50"] == pytest.approx(0.5, rel=1e-12)
    assert s["closed_form_error_p99"] == pytest.approx(0.5, rel=1e-12)
    s = _built(16.0, [_step(0.0, 1.0, 4.0)], 2.0).summary  # 1 s against 4: 0.75 (not 12)
    assert s["closed_form_error_p50"] == pytest.approx(0.75, rel=1e-12)
    assert np.isnan(_built(16.0, [_step(0.0, 1.0, 0.0)], 2.0).summary["closed_form_error_p50"])


@pytest.mark.parametrize("cost, expect", [(2.0, 0.5), (0.5, 2.0), (0.0, 0.0)])
def test_tokens_per_dollar_hour_is_throughput_over_the_hourly_cost_and_0_without_one(cost,
                                                                                      expect):
    s = _built(4.0, [_step(0.0, 4.0, 4.0)], cost).summary
    tput = s["throughput_tokens_per_s"]  # 4 tokens over 4 s
    assert tput == pytest.approx(1.0, rel=1e-12)
    assert s["tokens_per_s_per_dollar_hour"] == pytest.approx(expect * tput, rel=1e-12)
    assert s["cost_per_hour"] == cost and s["note"] == "x" and s["seed"] == 3


@pytest.mark.parametrize("now, width", [(50.0, 0.5), (5e-5, 1e-6), (1e-3, 1e-5)])
def test_the_link_timeline_has_a_hundredth_of_the_run_per_bin_and_at_least_a_microsecond(
        now, width):
    bins = []
    _built(now, [_step(0.0, now, now)], 1.0, bins)
    assert bins == [pytest.approx(width, rel=1e-12)]


def test_a_run_that_took_no_time_has_no_link_timeline():
    bins = []
    result = _built(0.0, [], 1.0, bins)
    assert bins == [] and result.link_timeline.empty
