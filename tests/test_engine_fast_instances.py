"""Deployments on the fast engine held to the exact one: a request alone takes the exact engine's
time at every step and every MoE layer its closed form's; the all-to-all's aggregates on the
link calendars (alone: the closed form; together: FIFO at line rate; the payload counted once);
and on every run bytes conserved per class, no decode before the KV arrived, every request
accounted for, same seed same result."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import simpy
from benchtools import benchmark
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_fast import same_steps, same_traffic
from test_engine_instances import scenario, trace

import topologies
from simulator import run
from simulator.engine import fast_sharing
from simulator.engine.fast_links import Links
from simulator.engine.fast_sharing import max_min_finish, shared_finish
from simulator.network import Fabric
from simulator.network.traffic import MOE_DISPATCH, TRAFFIC_CLASSES

PHASES = ("dispatch", "expert", "combine", "post")
#: a prompt hashed over all 16 GPUs: every layer's rounds go to many owners at once
HASHED = '[placement]\nscheme = "hash"\n'


def moe_phases(res) -> tuple[np.ndarray, np.ndarray]:
    m = res.extras["moe"].sort_values(["instance", "lane", "iteration", "layer"])
    return (m[[f"{p}_time" for p in PHASES]].to_numpy(float),
            m[[f"cf_{p}_time" for p in PHASES]].to_numpy(float))


CASES = [(p, e, "dense") for p in ("route", "fetch", "local", "adaptive")
         for e in ("", 'moe_kernels = "normal"\n', "two_batch_overlap = true\n",
                   "moe_on_fabric = false\n")]


@pytest.mark.parametrize(("policy", "extra", "selection"),
                         [*CASES, ("route", "", "dsa"), ("fetch", "two_batch_overlap = true\n",
                                                         "dsa")])
def test_a_request_alone_takes_the_exact_engines_time_at_every_step(policy, extra, selection):
    sc = scenario(selection=selection, extra=extra + HASHED)
    tr = trace(1, inp=64 * 40, out=4)
    exact = run(sc, policy, trace=tr)
    fast = run(sc, policy, trace=tr, engine="fast")
    assert fast.summary["engine"] == "fast" and "engine_fallback" not in fast.summary
    assert exact.summary["engine"] == "exact"
    assert len(exact.rounds) > 0  # rounds in every decode step's layers
    same_steps(exact, fast, rel=1e-9)
    sim_e, cf_e = moe_phases(exact)
    sim_f, cf_f = moe_phases(fast)
    assert len(sim_f) == len(sim_e) > 0
    np.testing.assert_allclose(sim_f, sim_e, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(cf_f, cf_e, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(sim_f, cf_f, rtol=1e-9, atol=1e-15)  # alone: the closed form
    # every kernel on every stream: the shared experts, the experts, the adds, the rounds'
    np.testing.assert_allclose(fast.gpus["busy_time"], exact.gpus["busy_time"], rtol=1e-9)
    np.testing.assert_array_equal(fast.gpus["kernels"], exact.gpus["kernels"])
    same_traffic(exact, fast)


def test_a_pd_request_alone_takes_the_exact_engines_times():
    extra = "[deployment.prefill]\nattention_dp = 16\n"
    sc = scenario(nodes=4, selection="dense", extra=extra)
    tr = trace(1, inp=1500, out=5)
    exact = run(sc, "route", trace=tr)
    fast = run(sc, "route", trace=tr, engine="fast")
    same_steps(exact, fast, rel=1e-9)
    ke, kf = exact.extras["kv_transfers"], fast.extras["kv_transfers"]
    cols = ["bytes", "messages", "posted_at", "prefilled_at", "arrived_at", "transfer_time"]
    np.testing.assert_allclose(kf[cols].to_numpy(float), ke[cols].to_numpy(float), rtol=1e-9)
    for key in ("ttft_p50", "tbt_p50", "sim_time"):
        assert fast.summary[key] == pytest.approx(exact.summary[key], rel=1e-9)


def test_one_simpy_event_per_instance_step():
    sc = scenario(selection="dense", extra=HASHED)
    tr = trace(1, inp=64 * 40, out=30)
    exact = run(sc, "route", trace=tr)
    fast = run(sc, "route", trace=tr, engine="fast")
    steps = fast.iterations["iteration"].nunique()
    # a step's overhead and its end; the arrival, a wake-up, one start per process
    assert fast.summary["events"] <= 2 * steps + 8
    assert exact.summary["events"] > 20 * steps


@pytest.mark.parametrize("extra", ["", "two_batch_overlap = true\n"])
def test_ranks_reading_one_owner_share_its_links_and_stream_as_on_the_exact_engine(extra):
    # six requests share a 50-block prefix: the first's rank holds it, the other five route to
    # it in every layer at once — one phase whose messages share the owner's links (max-min)
    # and whose kernels queue on its stream in arrival order, as the exact engine's flows and
    # kernels do (composed rank after rank on FIFO calendars, the first ranks' queries would
    # pass first and the owner's work would pipeline behind them)
    sc = scenario(selection="dense", extra="external_prefill = true\n" + extra)
    tr = trace(6, inp=64 * 60, out=5, shared=64 * 50, gap=0.0)
    exact = run(sc, "route", trace=tr)
    fast = run(sc, "route", trace=tr, engine="fast")
    r = exact.rounds
    assert r["owner"].nunique() == 1 and r.groupby(["iteration", "layer"]).size().max() == 5
    same_steps(exact, fast, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e-3), st.floats(1e3, 1e7)), min_size=2, max_size=30))
def test_processor_sharing_on_one_link_is_max_min(flows):
    starts = [s for s, _ in flows]
    nbytes = [b for _, b in flows]
    n = len(flows)
    args = (starts, nbytes, [1e30] * n, [(0,)] * n, [5e9])
    np.testing.assert_allclose(shared_finish(*args), max_min_finish(*args), rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 60), st.floats(0.0, 1e-5))
def test_batched_filling_is_max_min_without_batches_and_never_beats_a_lone_flow(seed, n, spread):
    rng = np.random.default_rng(seed)
    line = rng.uniform(1e9, 5e9, 8).tolist()
    links = [tuple(sorted(set(rng.choice(8, rng.integers(1, 4), replace=False).tolist())))
             for _ in range(n)]
    nbytes = rng.uniform(1e4, 1e6, n).tolist()
    starts = rng.uniform(0.0, spread, n).tolist()
    caps = [min(line[i] for i in path) * rng.uniform(0.5, 1.0) for path in links]
    args = (starts, nbytes, caps, links, line)
    exact = np.array(max_min_finish(*args))
    np.testing.assert_allclose(fast_sharing.batched_max_min_finish(*args, tolerance=0.0), exact, rtol=1e-9)
    batched = np.array(fast_sharing.batched_max_min_finish(*args))
    lone = np.array(starts) + np.array(nbytes) / np.array(caps)
    assert (batched >= lone * (1 - 1e-12)).all() and (exact >= lone * (1 - 1e-12)).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 120))
def test_processor_sharing_across_links_bounds_a_phase_as_max_min_does(seed, n):
    rng = np.random.default_rng(seed)
    line = rng.uniform(1e9, 5e9, 12).tolist()
    links = [tuple(sorted(set(rng.choice(12, rng.integers(1, 4), replace=False).tolist())))
             for _ in range(n)]
    nbytes = rng.uniform(1e4, 1e6, n).tolist()
    lone_rate = [min(line[i] for i in path) for path in links]  # as a route's lone rate
    args = ([0.0] * n, nbytes, lone_rate, links, line)
    ps, mm = np.array(shared_finish(*args)), np.array(max_min_finish(*args))
    load = np.zeros(12)
    for path, b in zip(links, nbytes, strict=True):
        load[list(path)] += b
    bound = float((load / line).max())  # the busiest link must carry its load
    # together: the phase ends when the busiest link has carried its load (max-min's lower
    # bound, which max-min may exceed); each flow no earlier than its worst link's PS share
    assert ps.max() == pytest.approx(bound, rel=1e-9)
    assert mm.max() >= bound * (1 - 1e-9)
    assert (ps >= np.array(nbytes) / lone_rate * (1 - 1e-12)).all()


def links_on(graph, until: float = float("inf")):
    env = simpy.Environment()
    fabric = Fabric(env, graph, "ibgda")
    return env, fabric, Links(env, fabric, [0.0] * 16, until)


def test_aggregates_alone_take_the_closed_form_and_together_share_a_link_fifo():
    g = topologies.build("dgx_h100", nodes=2)
    env, fabric, links = links_on(g)
    (u, v), (w, x) = list(g.edges)[:2]
    line = fabric.link_bandwidth
    i = fabric.link_route(u, v)[0]
    load, rate = 4e6, 0.8 * line[i]
    # alone: start + load / capped rate, the slowest link's
    end = links.aggregate([(u, v), (w, x)], [load, load / 2], [rate, rate], 1e-3, 0, 1,
                          MOE_DISPATCH, payload=3e6)
    assert end == pytest.approx(1e-3 + load / rate, rel=1e-12)
    # a second exchange on the same link at the same time waits for the first's line-rate work
    again = links.aggregate([(u, v)], [load], [rate], 1e-3, 1, 1, MOE_DISPATCH)
    assert again == pytest.approx(1e-3 + 2 * load / line[i], rel=1e-12)
    assert again > 1e-3 + load / rate and links.contended == 1
    # the payload counts once per class; the links carry their loads
    links.flush()
    tag = TRAFFIC_CLASSES.index("moe_dispatch")
    assert tag == MOE_DISPATCH
    assert fabric.sent_by_class[tag] == pytest.approx(3e6 + load, rel=1e-12)
    assert fabric.delivered_by_class[tag] == pytest.approx(fabric.sent_by_class[tag])
    assert fabric.bytes_sent == pytest.approx(load + load / 2 + load, rel=1e-12)
    per_link = fabric.links_frame().set_index(["src", "dst"])["bytes"]
    assert per_link[(u, v)] == pytest.approx(2 * load, rel=1e-12)
    with pytest.raises(Exception, match="not a link"):
        fabric.link_route(u, "nowhere")


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(1, 200)), min_size=2, max_size=7),
       st.randoms(use_true_random=False))
def test_an_aggregate_behind_known_work_ends_with_its_max_min_share_as_on_the_fabric(flows,
                                                                                       rnd):
    # flows ``(start [µs], time alone [µs])`` on one link, uncapped: the Fabric shares it
    # max-min, which
    # on one link is processor sharing. The last flow is composed after the others (in any
    # order): it ends with its share among them, as on the Fabric, unless FIFO behind the
    # work issued before it is sooner (a flow that starts later takes a share on the Fabric,
    # not in the FIFO); alone on the link, at its closed form
    g = topologies.build("dgx_h100", nodes=2)
    env, fabric, links = links_on(g)
    # the rail's slowest link (a NIC's)
    hops = list(fabric.path("n0/gpu0", "n1/gpu0").edges)
    rate = {h: fabric.link_bandwidth[fabric.link_route(*h)[0]] for h in hops}
    (u, v), line = min(rate.items(), key=lambda x: x[1])
    flows = [(t * 1e-6, w * 1e-6 * line) for t, w in flows]  # (start [s], bytes)
    others, (start, load) = flows[:-1], flows[-1]
    for t, b in rnd.sample(others, len(others)):
        links.aggregate([(u, v)], [b], [line], t)
    end = links.aggregate([(u, v)], [load], [line], start)
    # the oracle: every flow on the Fabric from its start
    got = {}
    for k, (t, b) in enumerate(flows):
        fabric.transfer_link(u, v, b, lambda rec, k=k: got.__setitem__(k, env.now),
                             delay_time=t)
    env.run()
    shared = got[len(flows) - 1]
    fifo = 0.0  # FIFO behind the work issued before it (at the same time: composed first)
    for t, b in sorted(others):
        if t <= start:
            fifo = max(fifo, t) + b / line
    fifo = max(fifo, start) + load / line
    assert end == pytest.approx(min(shared, fifo), rel=1e-9, abs=1e-15)
    assert end >= start + load / line * (1 - 1e-12)


def test_an_aggregate_ending_as_the_clock_stops_is_sent_not_delivered():
    # the Fabric's clock stops before a flow that ends at that instant is delivered; an
    # uncapped aggregate alone on an idle link is its closed form, not contended
    g = topologies.build("dgx_h100", nodes=2)
    env, fabric, links = links_on(g, until=1e-3)
    u, v = next(iter(g.edges))
    line = fabric.link_bandwidth[fabric.link_route(u, v)[0]]
    load = 1e-3 * line
    assert load / line == 1e-3  # it ends at the stop exactly
    assert links.aggregate([(u, v)], [load], [line], 0.0, tag=MOE_DISPATCH) == 1e-3
    assert links.contended == 0
    links.flush()
    assert links.messages == 0
    assert fabric.bytes_sent == load and fabric.bytes_delivered == 0.0
    assert fabric.sent_by_class[MOE_DISPATCH] == load


@pytest.mark.parametrize("policy", ["route", "fetch"])
def test_deepseeks_decode_unit_times_its_cold_steps_first_moe_layer_as_the_exact_engine(policy):
    # DeepSeek's EP144 decode unit (the suite's ``deepseek-ep``: 1,152 requests, two-batch
    # overlap) cut after the first MoE layer of its first, cold decode step. The first
    # micro-batch's dispatch starts with the second one's attention, whose messages load the
    # same links (fetched blocks; routed queries into the owner's NIC), and its combine runs
    # beside them: the Fabric shares the links max-min. The fast engine composes the dispatch
    # after that attention and gives each all-to-all its share of the work known on a link.
    # Before, under fetch: the dispatch at its time alone (43 µs against 560) and the combine
    # FIFO behind the fetches (3.47 ms against 1.56); each alone 20 % off the cold step
    sc = benchmark("validate_fast").scenario("deepseek-ep")
    sc = sc.with_changes(engine=dataclasses.replace(sc.engine, duration=0.03))
    moe = {e: run(sc, policy, engine=e).extras["moe"] for e in ("exact", "fast")}
    exact, fast = moe["exact"], moe["fast"]
    assert len(exact) == len(fast) == 2  # one layer of each micro-batch
    phases = ["dispatch_time", "expert_time", "combine_time", "post_time"]
    first = exact.iloc[0]
    assert first["dispatch_time"] > 10 * exact.iloc[1]["dispatch_time"]  # contended
    for col in ("dispatch_time", "combine_time", "post_time"):
        assert fast.iloc[0][col] == pytest.approx(first[col], rel=0.03)
    assert fast.iloc[0][phases].sum() == pytest.approx(first[phases].sum(), rel=0.02)


def test_every_fast_deployment_run_conserves_bytes_and_accounts_for_every_request():
    sc = scenario(extra="two_batch_overlap = true")
    tr = trace(40, inp=1200, out=[3, 20, 7, 11], shared=640, gap=0.002)
    res = run(sc, "route", trace=tr, engine="fast")
    s = res.summary
    assert s["engine"] == "fast" and s["requests"] == 40 == s["completed"]
    req = res.requests
    assert (req["tokens_generated"] == req["output_tokens"]).all()
    by_class = res.extras["bytes_by_class"]
    m = res.extras["moe"]
    assert set(m["lane"]) == {0, 1}
    assert by_class["moe_dispatch"] == pytest.approx(m["dispatch_bytes"].sum(), rel=1e-9)
    assert by_class["moe_combine"] == pytest.approx(m["combine_bytes"].sum(), rel=1e-9)
    links = res.extras["link_classes"]
    assert {"moe_dispatch", "moe_combine", "kv_route"} <= set(links["traffic_class"])
    # each MoE layer starts when its lane's attention is done and its phases are causal
    assert (m[[f"{p}_time" for p in PHASES]].to_numpy() >= -1e-15).all()
    it = res.iterations
    assert (it["finished_at"] >= it["started_at"]).all()


def test_pd_on_the_fast_engine_decodes_only_after_the_kv_arrived():
    extra = "[deployment.prefill]\nattention_dp = 16\n"
    sc = scenario(nodes=4, extra=extra)
    tr = trace(12, inp=1500, out=[4, 9, 2, 5] * 3, shared=512, gap=0.01)
    res = run(sc, "fetch", trace=tr, engine="fast")
    kv = res.extras["kv_transfers"]
    assert res.summary["completed"] == 12 == len(kv)
    merged = res.requests.merge(kv, on="request_id")
    assert (merged["home"] == merged["decode_gpu"]).all()
    assert (merged["first_token_at"] >= merged["arrived_at"]).all()
    assert (merged["arrived_at"] >= merged["prefilled_at"]).all()
    assert (merged["tokens_generated"] == merged["output_tokens"]).all()


def test_same_seed_same_result_on_the_fast_engine():
    sc = scenario(extra='popularity = "zipf"\nzipf_exponent = 1.1\ntwo_batch_overlap = true')
    tr = trace(10, inp=700, out=[5, 3], gap=0.001)
    a = run(sc, "adaptive", trace=tr, engine="fast")
    b = run(sc, "adaptive", trace=tr, engine="fast")
    for x, y in ((a.requests, b.requests), (a.iterations, b.iterations),
                 (a.extras["moe"], b.extras["moe"]), (a.rounds, b.rounds)):
        pd.testing.assert_frame_equal(x, y, check_exact=True)


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_an_observing_policy_is_told_of_every_ranks_decode_step(engine):
    # adaptive learns copies used, tokens left and KV room from each decode step, as it does
    # without a deployment (an instance's steps went unreported before: it decided blind)
    from simulator.engine.exact import _Run
    from simulator.engine.fast import FastRun
    from simulator.policies import get

    sc = scenario(extra=HASHED)
    tr = trace(24, inp=64 * 30, out=[3, 8, 5], shared=64 * 10, gap=0.001)
    cls = FastRun if engine == "fast" else _Run
    r = cls(sc, get("adaptive"), 0, tr, None)
    res = r.execute()
    it = res.iterations
    decoded = it[it["batch"] > 0].groupby("gpu", observed=True).size()
    steps = r.observed.steps
    assert decoded.sum() > 24
    for gpu, n in decoded.items():
        assert steps[r.names.index(str(gpu))] == n
    # its ranks step together: a routed kernel on one of them delays the whole instance
    ranks = [r.names.index(str(g)) for g in decoded.index]
    assert r.observed.lockstep[ranks].all()
    assert (r.observed.queries == 0).all()  # every instance went idle at the end: no batch
