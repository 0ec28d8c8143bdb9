"""The Lamina run's own loop (simulator/disaggregation/lamina.py), worked out by hand: what it
builds (the head split at its edge, the pools' round trip, the DSA indexer), how many requests a
micro-batch may take (its even share, under ``max_batch``), where each request is recorded as
served, how the iterations are numbered, how an idle micro-batch sleeps and wakes, what a run
reports of its pools (idle share, utilization, KV capacity), and a prompt's work after a
preemption."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import numpy as np
import pytest
from test_disaggregation import ideal_graph, scenario, small, trace
from test_disaggregation_plan import lamina, shipped

from simulator.disaggregation import spec_of
from simulator.disaggregation.lamina import simulate_disaggregated
from simulator.disaggregation.spec import DisaggregationSpec
from simulator.hardware import gpu
from simulator.models import model

LLAMA = "lamina_llama3_70b"  # Llama-3-70B: 8 KV heads; 2 H100s and 4 H20s, two micro-batches


def ideal_run(spec: DisaggregationSpec, tr, serving: dict | None = None):
    """Llama-3-70B cut to 4 layers on Lamina's pools over an ideal network, with the roofline
    kernels: ``tr`` run under ``spec``."""
    sc = scenario(serving=serving).with_changes(calibration=(("profile", "roofline"),))
    return simulate_disaggregated(sc, trace=tr, spec=spec, arch=small("llama-3-70b", 4),
                                  graph=ideal_graph())


def test_eight_kv_heads_split_over_eight_attention_gpus_one_head_each():
    run = lamina(LLAMA, topology__spec="lamina_h100_h20:h100_nodes=1,h20_nodes=2,"
                 "gpus_per_node=4", disaggregation__attention_gpus=8)
    assert run.split == "heads"
    np.testing.assert_array_equal(run.share, np.full(8, 1 / 8))
    assert [s.kv_heads for s in run.shards] == [1] * 8


def test_the_pools_round_trip_is_the_two_paths_latency_and_the_stacks_overhead():
    # one model GPU to the first attention GPU and back, a message of no bytes each way
    run = lamina(LLAMA)
    fab, src, dst = run.fabric, run.model_names[0], run.att_names[0]
    paths = [fab.paths(src, dst), fab.paths(dst, src)]
    way = [fab.stack.overhead_time(p.inter_node) + p.latency_time for p in paths]
    assert way[0] > 0
    assert run.rt0 == pytest.approx(sum(way), rel=1e-12)


@pytest.mark.parametrize("max_batch, limits", [
    (0, [4, 4]),  # no cap: an even share of the 3 running and 4 queued, ceil(7 / 2)
    (5, [4, 3]),  # 2 more may start in all: micro-batch 0 holds 2 (+2 = 4), 1 holds 1 (+2 = 3)
    (2, [2, 1]),  # already over the cap: none more, each keeps what it runs
])
def test_a_micro_batch_takes_its_even_share_under_max_batch(max_batch, limits):
    run = lamina(LLAMA, disaggregation__max_batch=max_batch)
    run.scheds = [[0, 1], [2]]  # running requests per micro-batch
    run.queue = [3, 4, 5, 6]
    assert [run._seq_limit(j) for j in (0, 1)] == limits


def test_max_batch_caps_the_requests_decoding_at_once_and_every_request_finishes():
    sc, tr = shipped(LLAMA, disaggregation__max_batch=3)
    res = simulate_disaggregated(sc, trace=tr, spec=spec_of(sc))
    r = res.requests
    start, end = r["admitted_at"].to_numpy(), r["finished_at"].to_numpy()
    held = [int(((start <= t) & (t < end)).sum()) for t in start]  # at each admission
    assert max(held) == 3 and res.summary["completed"] == 6


@pytest.mark.parametrize("split", ["requests", "heads"])
def test_each_request_is_served_where_its_kv_is_and_iterations_count_from_zero(split):
    """By requests, a request is served by the attention GPU with the most free KV memory when
    it is admitted (the first four in turn; then the two holding the smallest prompts, of 800
    and 1,800 tokens); by heads, by the whole pool."""
    sc, tr = shipped(LLAMA, disaggregation__attention_split=split)
    res = simulate_disaggregated(sc, trace=tr, spec=spec_of(sc))
    att = [f"n1/gpu{i}" for i in range(4)]
    want = att + att[:2] if split == "requests" else ["attention pool"] * 6
    assert res.requests["home"].tolist() == want
    it = res.iterations
    for _, rows in it.groupby("gpu", observed=True):
        assert rows["iteration"].tolist() == list(range(len(rows)))


def test_an_idle_micro_batch_wakes_for_an_arrival_and_drops_its_plan_when_idle_again():
    """Request 0 (20 tokens) starts on micro-batch 0 alone; micro-batch 1, with nothing to
    take, sleeps until request 1 (3 tokens) arrives at 20 ms and serves it at once. Once
    request 1 is done micro-batch 1 sleeps again and leaves the closed form: on an ideal
    network the prediction of micro-batch 0's iterations (with the step's 1 ms host overhead)
    is then its simulated time again."""
    res = ideal_run(DisaggregationSpec(micro_batches=2, attention_gpus=1),
                    trace([1500, 700], [20, 3], [0.0, 0.02]), {"step_overhead_time": 1e-3})
    it = res.iterations
    mb0, mb1 = (it[it["gpu"] == f"microbatch{j}"] for j in (0, 1))
    assert mb1["started_at"].iloc[0] == 0.02 and res.requests["admitted_at"].tolist() == [0, 0.02]
    assert (mb1["batch"] <= 1).all() and mb1["batch"].sum() == 2  # request 1's two decodes
    took = mb0["finished_at"] - mb0["started_at"]
    alone = mb0["started_at"] >= mb1["finished_at"].max()
    assert alone.sum() >= 5 and (took[alone] > 2e-3).all()
    np.testing.assert_allclose(mb0.loc[alone, "cf_time"], took[alone], rtol=1e-9)
    assert (mb0.loc[~alone, "cf_time"] > 0).all()


def test_a_finish_wakes_the_micro_batch_that_may_take_the_next_request():
    """At most 3 requests at once: micro-batch 0 takes requests 0-2 and micro-batch 1 none,
    and sleeps. When request 0 (3 tokens) finishes, micro-batch 0 already runs more than its
    share (2 of the 4 left), so micro-batch 1, woken by the finish, takes request 3 then,
    and request 4 when request 3 is done — not when 1 and 2 (20 tokens) are."""
    res = ideal_run(DisaggregationSpec(micro_batches=2, attention_gpus=1, max_batch=3),
                    trace([1000] * 5, [3, 20, 20, 5, 5]))
    r = res.requests
    done = r["finished_at"].to_numpy()
    np.testing.assert_array_equal(r["admitted_at"], [0, 0, 0, done[0], done[3]])
    assert done[4] < done[1] == done[2]
    it = res.iterations
    first = it.groupby("gpu", observed=True)["started_at"].min()
    assert first["microbatch1"] == done[0] and first["microbatch0"] == 0


def test_the_pools_idle_share_counts_from_the_first_iteration_and_the_run_times_itself():
    """A lone request arriving at 0.25 s: each pool's idle share is its GPUs' idle time from
    the first iteration's start (not from 0, nor from its end) to the run's end; each GPU's
    utilization is its busy share of the whole run."""
    t0 = time.perf_counter()
    res = ideal_run(DisaggregationSpec(micro_batches=2, attention_gpus=2),
                    trace([1000], [8], [0.25]))
    took = time.perf_counter() - t0
    it, g, s = res.iterations, res.gpus, res.summary
    assert it["started_at"].min() == 0.25
    span = it["finished_at"].max() - 0.25
    for pool in ("model", "attention"):
        busy = g.loc[g["pool"] == pool, "busy_time"]
        assert busy.sum() > 0
        assert s[f"{pool}_pool_idle"] == pytest.approx(1 - busy.sum() / (len(busy) * span),
                                                        rel=1e-12)
    end = it["finished_at"].max()
    cap = gpu("H20").hbm_bytes * (1 - scenario().placement.reserve_fraction)  # all H20s'
    assert g["kv_capacity_bytes"].tolist() == [0.0] * 2 + [cap] * 2
    np.testing.assert_allclose(g["utilization"], g["busy_time"] / end, rtol=1e-12)
    assert 0 < s["wall_time"] <= took


def test_only_a_dsa_model_run_sparse_pays_the_indexer():
    assert lamina("lamina_deepseek_v32").indexer
    assert not lamina("lamina_deepseek_v32", model__selection="dense").indexer
    # a GQA model given a top-k selection is sparse, but has no DSA indexer to run
    topk = dataclasses.replace(model("llama-3-70b"), topk_tokens=2048)
    assert topk.sparse and not lamina(LLAMA, arch=topk).indexer


def test_a_prompt_prefilled_here_computes_its_context_again_after_a_preemption():
    run = lamina(LLAMA, disaggregation__prefill="local")
    run.req.gen[2] = 7  # request 2: 2,800 prompt tokens, 7 generated before it was preempted
    assert run.prompt_work(2) == 2807
    sched = SimpleNamespace(prefill_left={2: 807})  # a 1,000-token chunk leaves 807
    assert run.cached(sched, 2, 1000) == 1000
    assert run.cached(SimpleNamespace(prefill_left={}), 2, 2807) == 0
    assert lamina(LLAMA).prompt_work(2) == 0  # prompts arrive prefilled by default


def test_a_prompt_prefilled_elsewhere_computes_its_context_here_after_a_preemption():
    # the prefill cluster wrote its KV once; preempted, the KV is gone, and the pool computes
    # the context again (as the engines' admission does), not 0 tokens at no cost
    run = lamina(LLAMA)
    assert run.prompt_work(2) == 0  # first admission: arrived prefilled
    run.req.gen[2] = 7  # 7 tokens generated before it was preempted
    assert run.prompt_work(2) == 2807
    sched = SimpleNamespace(prefill_left={2: 807})
    assert run.cached(sched, 2, 1000) == 1000
