"""Deployments in the exact engine: an EP layer alone equals its closed form, a lone decode step
equals the closed form composed layer by layer, no request decodes before its KV arrived, bytes
are conserved per traffic class, every request is accounted for, and the same seed gives the same
result."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import simpy

import topologies
from simulator import Scenario, hardware, run
from simulator.costmodel import moe
from simulator.costmodel.experts import popularity
from simulator.costmodel.rank_kernels import RankKernels
from simulator.engine import TOO_LARGE
from simulator.engine.exchange import MoEReplay
from simulator.engine.fast_instances import FastInstanceLoop
from simulator.engine.fast_links import Links
from simulator.engine.instances import fold_slots
from simulator.engine.reuse import rotary_time
from simulator.engine.scheduler import default_step_overhead_time
from simulator.gpu.profiled import default_kernels
from simulator.gpu.streams import Stream
from simulator.models import model
from simulator.network import Fabric
from simulator.network.paths import paths_among
from simulator.network.traffic import TRAFFIC_CLASSES
from workloads.schema import make_trace

ARCH = model("deepseek-v3.2")

BASE = """
name = "ep"
seed = 3
stack = "ibgda"
policies = ["route"]
[topology]
spec = "dgx_h100:nodes={nodes}"
[model]
name = "deepseek-v3.2"
selection = "{selection}"
[workload]
kind = "trace"
trace = "unused.parquet"
[engine]
max_batch = 16
layer_groups = {groups}
[deployment]
attention_dp = 16
redundant_experts = 16
{extra}
"""


def scenario(nodes=2, selection="dsa", extra="", groups=4) -> Scenario:
    return Scenario.from_dict(__import__("tomllib").loads(
        BASE.format(nodes=nodes, selection=selection, extra=extra, groups=groups)),
        source="ep.toml")


def trace(n, inp=640, out=3, shared=0, gap=0.0):
    """``n`` requests of ``inp`` prompt tokens (the first ``shared`` shared by all) and ``out``
    output tokens (a value, or values repeated over the requests), ``gap`` seconds apart."""
    blocks = []
    for i in range(n):
        nb = -(-inp // 64)
        sb = shared // 64
        blocks.append(np.concatenate([np.arange(sb) + 1, 10_000 * (i + 1) + np.arange(nb - sb)]))
    return make_trace(arrival_at=np.arange(n) * gap, input_tokens=np.full(n, inp),
                      output_tokens=np.resize(np.asarray(out), n), block_ids=blocks,
                      block_tokens=64)


def moe_ends(m: pd.DataFrame) -> pd.Series:
    """When each MoE record's layer ends: its start plus its four phases [s]."""
    return m["started_at"] + m[["dispatch_time", "expert_time", "combine_time",
                                "post_time"]].sum(axis=1)


def ep_group():
    """An EP16 group of DeepSeek-V3.2 on 2 × DGX H100 (Zipf popularity, low-latency kernels):
    the topology, its GPU names and the group."""
    g = topologies.build("dgx_h100", nodes=2)
    names = list(topologies.gpus(g))
    rk = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH)
    probs = popularity("zipf", ARCH.experts, np.random.default_rng(1), 1.0)
    return g, names, moe.ExpertParallel(names, g, ARCH, probs, 17, "low_latency", [rk] * 16,
                                        paths_among(g, names))


def test_an_exchange_that_stays_on_its_ranks_takes_its_fixed_time_and_moves_nothing():
    g, names, ep = ep_group()
    pairs = np.diag(np.full(16, 1e6))  # every rank's tokens to its own experts
    assert not ep.loads(pairs).any()
    for on_fabric in (True, False):
        env = simpy.Environment()
        fabric = Fabric(env, g, "ibgda")
        replay = MoEReplay(env, fabric, ep, [Stream(env) for _ in names], on_fabric)
        env.run(replay.exchange(pairs, "dispatch"))
        assert env.now == ep.fixed_time(pairs, "dispatch")
        assert sum(fabric.sent_by_class) == 0.0


@pytest.mark.parametrize("on_fabric", [True, False])
@pytest.mark.parametrize("spread", [False, True])
def test_the_fast_engines_exchange_on_idle_links_takes_the_exact_replays_time(on_fabric, spread):
    # one all-to-all alone on idle links, from 0.25 s: the fast engine's aggregates per link
    # (or, off the fabric, the closed form's slowest link) end when the exact engine's flows
    # on the Fabric do; an exchange that stays on its ranks takes its fixed time on both
    g, names, ep = ep_group()
    rng = np.random.default_rng(7)
    pairs = (rng.uniform(1e5, 1e6, (16, 16)) if spread else np.diag(np.full(16, 1e6)))
    assert ep.loads(pairs).any() == spread
    env = simpy.Environment()
    fabric = Fabric(env, g, "ibgda")
    replay = MoEReplay(env, fabric, ep, [Stream(env) for _ in names], on_fabric)
    env.run(0.25)
    env.run(replay.exchange(pairs, "dispatch"))
    exact = env.now
    env = simpy.Environment()
    fabric = Fabric(env, g, "ibgda")
    loop = SimpleNamespace(ep=ep, d=SimpleNamespace(spec=SimpleNamespace(moe_on_fabric=on_fabric)),
                           run=SimpleNamespace(links=Links(env, fabric, [0.0] * 16)))
    fast = FastInstanceLoop._exchange(loop, pairs, "dispatch", 0.25, 0, 1)
    assert fast == pytest.approx(exact, rel=1e-9)
    if not spread:
        assert fast == 0.25 + ep.fixed_time(pairs, "dispatch")


def test_dense_layers_get_a_slot_of_their_own():
    b = fold_slots(61, 3, 4)
    assert b[0] == 0 and b[1] == 3 and b[-1] == 61 and len(b) == 5
    assert list(fold_slots(61, 3, 0)) == list(range(62))
    assert len(fold_slots(61, 3, 1)) == 3  # a dense slot and a MoE slot, never mixed


@pytest.mark.parametrize("mode", ["low_latency", "normal"])
def test_an_ep_layer_alone_equals_its_closed_form(mode):
    g = topologies.build("dgx_h100", nodes=2)
    names = list(topologies.gpus(g))
    rk = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH)
    probs = popularity("zipf", ARCH.experts, np.random.default_rng(1), 1.0)
    ep = moe.ExpertParallel(names, g, ARCH, probs, 17, mode, [rk] * 16, paths_among(g, names))
    tokens = np.array([0, 1, 5, 9, 64, 3, 3, 3, 7, 0, 0, 2, 40, 1, 1, 12])
    plan = ep.layer(np.random.default_rng(2), tokens)
    shared = np.array([rk.shared_time(int(t)) for t in tokens])
    post = np.array([rk.post_time(int(t)) for t in tokens])
    cf = ep.closed_form(plan, shared, post)
    for on_fabric in (True, False):
        env = simpy.Environment()
        fabric = Fabric(env, g, "ibgda")
        streams = [Stream(env) for _ in names]
        replay = MoEReplay(env, fabric, ep, streams, on_fabric)
        out = []

        def go(replay=replay, out=out):
            out.append((yield from replay.play(plan, shared, post)))

        env.process(go())
        env.run()
        (sim,) = out
        for phase in ("dispatch", "experts", "combine", "post"):
            assert getattr(sim, phase) == pytest.approx(getattr(cf, phase), rel=1e-9, abs=1e-15)
        assert env.now == pytest.approx(cf.total, rel=1e-9)
        if on_fabric:  # the payload is counted once per class, sent and delivered
            assert fabric.sent_by_class[TRAFFIC_CLASSES.index("moe_dispatch")] == pytest.approx(
                plan.dispatch_bytes)
            assert fabric.delivered_by_class == pytest.approx(fabric.sent_by_class)
        # a kernel on a rank only where it has work: shared experts, routed experts, the add
        work = (shared > 0).astype(int) + (plan.expert_time > 0) + (post > 0)
        assert [s.kernels_run for s in streams] == work.tolist()
        # ranks without tokens of their own run only the experts other ranks' tokens reach
        assert sorted(set(work.tolist())) == [1, 3]


@pytest.mark.parametrize(("selection", "groups"), [("dense", 4), ("dsa", 4), ("dense", 40)])
def test_a_lone_decode_step_equals_the_closed_form_composed_layer_by_layer(selection, groups):
    # under DSA the step also runs the indexer over the query's context each layer: 641
    # tokens (the prompt and the first token); its top-k reads all 10 blocks, as dense does.
    # 40 groups: MoE slots of one and two layers in turn
    sc = scenario(selection=selection, groups=groups)
    res = run(sc, "route", trace=trace(1, inp=640, out=3))
    it = res.iterations
    assert list(it["batch"]) == [0, 1, 1]  # prefill, then two decode steps
    step = it.iloc[1]
    m = res.extras["moe"]
    assert (m[[f"{p}_time" for p in ("dispatch", "expert", "combine", "post")]].to_numpy()
            == pytest.approx(m[[f"cf_{p}_time" for p in ("dispatch", "expert", "combine",
                                                          "post")]].to_numpy(), rel=1e-9))
    rk = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH)
    from simulator.costmodel import CostModel

    g = topologies.build("dgx_h100", nodes=2)
    cm = CostModel(ARCH, g, "ibgda")
    home = res.requests["home"].iloc[0]
    attn = cm.attention_time(home, 10, 1)  # 640 tokens: 10 blocks, all selected (dense)
    bounds = fold_slots(61, 3, groups)
    layer_moe = m[m["iteration"] == 1].set_index("layer")
    expect = default_step_overhead_time(True)
    indexer = (default_kernels().indexer_time(hardware.gpu("H100"), ARCH, 1, 641.0)
               if selection == "dsa" else 0.0)
    for s in range(len(bounds) - 1):
        layers = int(bounds[s + 1] - bounds[s])
        moe_s = s > 0
        per = attn + rk.pre_time(1) + rk.ffn_time(1, moe_s) + indexer
        if moe_s:
            row = layer_moe.loc[s]
            per += row.cf_dispatch_time + row.cf_expert_time + row.cf_combine_time + \
                row.cf_post_time
        expect += per * layers
    expect += rk.step_time(1, 1)
    assert step.finished_at - step.started_at == pytest.approx(expect, rel=1e-9)
    assert res.summary["moe_closed_form_error_p99"] < 1e-9


def test_a_pd_request_decodes_only_after_its_kv_arrived():
    extra = """
[deployment.prefill]
attention_dp = 16
[deployment.transfer]
layerwise = {layerwise}
"""
    for layerwise in ("true", "false"):
        sc = scenario(nodes=4, extra=extra.format(layerwise=layerwise))
        tr = trace(12, inp=1500, out=[4, 9, 2, 5] * 3, shared=512, gap=0.01)
        res = run(sc, "route", trace=tr)
        req = res.requests
        kv = res.extras["kv_transfers"]
        assert res.summary["completed"] == 12 == len(kv)
        assert set(kv["prefill_gpu"]) <= {f"n{i}/gpu{j}" for i in (0, 1) for j in range(8)}
        assert set(kv["decode_gpu"]) <= {f"n{i}/gpu{j}" for i in (2, 3) for j in range(8)}
        merged = req.merge(kv, on="request_id")
        assert (merged["home"] == merged["decode_gpu"]).all()
        # no first token before the KV is on the decode GPU: TTFT includes the transfer
        assert (merged["first_token_at"] >= merged["arrived_at"]).all()
        assert (merged["arrived_at"] >= merged["prefilled_at"]).all()
        wait = (kv["arrived_at"] - kv["prefilled_at"]).to_numpy()
        assert res.summary["kv_transfer_wait_p50"] == pytest.approx(np.quantile(wait, 0.5))
        assert res.summary["kv_transfer_wait_p50"] <= res.summary["kv_transfer_time_p50"]
        assert (merged["tokens_generated"] == merged["output_tokens"]).all()
        # every decode iteration runs on a decode GPU, every prefill on a prefill GPU
        it = res.iterations
        dec = it[it["batch"] > 0]
        assert set(dec["gpu"].astype(str)) <= set(kv["decode_gpu"]) | {
            f"n{i}/gpu{j}" for i in (2, 3) for j in range(8)}
        assert not set(dec["gpu"].astype(str)) & {f"n0/gpu{j}" for j in range(8)}
        pre = it[it["prefill_tokens"] > 0]
        assert set(pre["gpu"].astype(str)) <= {f"n{i}/gpu{j}" for i in (0, 1) for j in range(8)}
        # the shared 512 tokens are computed once, then reused (not moved again)
        assert kv["bytes"].sum() < 12 * 1500 * ARCH.kv_bytes_per_token * ARCH.layers
        # each request sends the KV of its prompt less the blocks it reused: the partial last
        # block's 28 tokens, not its page (stop 68), posted layer by layer or at once alike
        own = (merged["input_tokens"] - merged["reused_blocks"] * 64).to_numpy()
        assert set(own) == {1500, 1500 - 512}
        assert merged["bytes"].to_numpy() == pytest.approx(
            own * ARCH.kv_bytes_per_token * ARCH.layers, rel=1e-12)
        if layerwise == "false":  # one message each, posted at once: alone it is the formula
            first = kv.iloc[0]
            assert first["messages"] == 1
            assert first["transfer_time"] == pytest.approx(first["cf_transfer_time"],
                                                           rel=1e-9)
        else:
            # per simulated slot (all folded here), its first layers' KV when its first layer
            # ends and its last layer's when that ends
            assert (kv["messages"] == 8).all()


def two_micro_batches_routing_to_one_owner(groups: int, engine: str, out: int):
    """A route run of 32 requests on 16 ranks (two micro-batches of one on each), every query
    routed to the rank holding their 100-block prefix, at ``layer_groups = groups``."""
    sc = scenario(extra="two_batch_overlap = true\nexternal_prefill = true", groups=groups)
    return run(sc, "route", trace=trace(32, inp=64 * 200, out=out, shared=64 * 100),
               engine=engine)


def test_two_micro_batches_fold_with_the_time_of_every_layer_simulated():
    # two micro-batches of one request on each of 16 ranks, every query routed to the rank
    # holding a 100-block prefix: at every layer the two contend for its stream. A folded slot
    # plays one layer of the two-stage pipeline (the second micro-batch's attention beside the
    # first's all-to-all and experts) and repeats its longer layer for both, so 4 layer groups
    # give the steps of every layer simulated; folded micro-batch by micro-batch (each with its
    # own first layer, the second playing after the first had finished) they came out 33 %
    # shorter on the exact engine and 24 % on the fast one, each against itself unfolded
    step = {}
    for engine in ("exact", "fast"):
        for groups in (0, 4):
            res = two_micro_batches_routing_to_one_owner(groups, engine, out=4)
            r = res.rounds
            assert (r["owner"] == r["owner"].iloc[0]).all()
            assert set(res.extras["moe"]["lane"]) == {0, 1}
            it = res.iterations
            it = it[(it["prefill_tokens"] == 0) & (it["batch"] == 2)]
            step[engine, groups] = float((it["finished_at"] - it["started_at"]).mean())
    assert step["exact", 4] == pytest.approx(step["exact", 0], rel=0.03)
    assert step["fast", 4] == pytest.approx(step["fast", 0], rel=0.05)
    # the fast engine against the exact one: the contract's bound at p50
    assert step["fast", 4] == pytest.approx(step["exact", 4], rel=0.05)
    assert step["fast", 0] == pytest.approx(step["exact", 0], rel=0.08)


@pytest.mark.parametrize("cut", [0.15, 0.2, 0.25])
def test_a_deployment_cut_inside_a_step_records_what_ended_before_the_clock_stopped(cut):
    # the clock stops inside the third or fourth decode step of 32 requests routing to one
    # owner (steps of ~50 ms, 4 layer groups). The fast engine composes a whole instance step
    # ahead; its records, like the exact engine's, hold the rounds and MoE layers that ended
    # before the stop and the messages (all-to-alls' aggregates too) delivered by then. Folded,
    # the two engines' steps agree here, so do their records at the cut
    sc = scenario(extra="two_batch_overlap = true\nexternal_prefill = true", groups=4)
    sc = dataclasses.replace(sc, engine=dataclasses.replace(sc.engine, duration=cut))
    tr = trace(32, inp=64 * 200, out=4, shared=64 * 100)
    got = {}
    for engine in ("exact", "fast"):
        res = run(sc, "route", trace=tr, engine=engine)
        r, m = res.rounds, res.extras["moe"]
        assert ((r["started_at"] + r["sim_time"]) < cut).all()
        assert len(m) and (moe_ends(m) < cut).all()
        assert res.summary["moe_layers"] == len(m)
        sent = res.extras["bytes_by_class"]  # sent, delivered or not
        got[engine] = (len(r), res.summary["bytes_moved"], len(m), res.fabric_bytes,
                       sent["moe_dispatch"], sent["moe_combine"])
    assert got["fast"] == pytest.approx(got["exact"], rel=1e-9)


@pytest.mark.parametrize("engine", ["exact", "fast"])
@pytest.mark.parametrize("groups", [4, 40])  # 40: slots of 1 and 2 layers in turn
def test_two_micro_batches_run_as_a_pipeline_and_fold_with_the_longer_layer(engine, groups):
    # from the records: each micro-batch's slot starts when its rounds do, its simulated layer
    # ends with its MoE layer. The second's attention starts when the first's ends (the first's
    # MoE start); after a folded slot both start the next at the later start plus the layers
    # times the longer layer; after a slot of one layer each goes on from its own end
    res = two_micro_batches_routing_to_one_owner(groups, engine, out=3)
    m = res.extras["moe"]
    m = m.assign(end=moe_ends(m)).set_index(["iteration", "layer", "lane"])
    starts = res.rounds.groupby(["iteration", "layer"])["started_at"].unique()
    checked = {"folded": 0, "one layer": 0}
    for (it, s), t in starts.items():
        if (it, s + 1) not in starts.index or s == 0:  # the dense slot has no MoE record
            continue
        t0, t1 = sorted(t)
        nxt0, nxt1 = sorted(starts[it, s + 1])
        end0, end1 = m.loc[(it, s, 0), "end"], m.loc[(it, s, 1), "end"]
        gate = m.loc[(it, s + 1, 0), "started_at"]  # the first's next attention is done
        layers = int(m.loc[(it, s, 0), "layers"])
        if layers > 1:
            want = t1 + layers * max(end0 - t0, end1 - t1)
            assert nxt0 == pytest.approx(want, rel=1e-9)
            assert nxt1 == pytest.approx(gate, rel=1e-12)
            checked["folded"] += 1
        else:
            assert nxt0 == pytest.approx(end0, rel=1e-12)
            assert nxt1 == pytest.approx(max(end1, gate), rel=1e-12)
            checked["one layer"] += 1
    assert checked["folded"] > 0 and (checked["one layer"] > 0) == (groups == 40)
    # a step ends after both micro-batches' last layers (with 40 groups the last slot has one
    # layer, so they end apart)
    last = m.xs(int(m.index.get_level_values("layer").max()), level="layer")
    step_end = res.iterations.groupby("iteration")["finished_at"].max()
    for it, lane_ends in last.groupby(level="iteration")["end"]:
        assert step_end[it] >= lane_ends.max() - 1e-12


def test_bytes_are_conserved_per_class_and_every_request_is_accounted_for():
    sc = scenario(extra="two_batch_overlap = true")
    tr = trace(40, inp=1200, out=[3, 20, 7, 11], shared=640, gap=0.002)
    res = run(sc, "route", trace=tr)
    s = res.summary
    assert s["requests"] == 40
    req = res.requests
    assert ((req["completed"]) | (req["reason"] != "")).all()
    assert s["completed"] == 40
    by_class = res.extras["bytes_by_class"]
    assert {"kv_route", "moe_dispatch", "moe_combine"} <= set(by_class)
    m = res.extras["moe"]
    assert by_class["moe_dispatch"] == pytest.approx(m["dispatch_bytes"].sum(), rel=1e-9)
    assert by_class["moe_combine"] == pytest.approx(m["combine_bytes"].sum(), rel=1e-9)
    assert set(m["lane"]) == {0, 1}  # two micro-batches
    links = res.extras["link_classes"]
    assert {"moe_dispatch", "moe_combine", "kv_route"} <= set(links["traffic_class"])
    timeline = res.extras["class_timeline"]
    assert timeline.groupby("traffic_class")["bytes"].sum()["moe_dispatch"] == pytest.approx(
        links[links.traffic_class == "moe_dispatch"]["bytes"].sum(), rel=1e-9)


def test_same_seed_same_result_and_the_routing_stream_is_the_runs():
    sc = scenario(extra='popularity = "zipf"\nzipf_exponent = 1.1')
    tr = trace(10, inp=700, out=[5, 3], gap=0.001)
    a = run(sc, "fetch", trace=tr)
    b = run(sc, "fetch", trace=tr)
    for x, y in ((a.requests, b.requests), (a.iterations, b.iterations),
                 (a.extras["moe"], b.extras["moe"])):
        pd.testing.assert_frame_equal(x, y, check_exact=True)
    c = run(sc, "fetch", seed=4, trace=tr)
    assert not a.extras["moe"]["max_rows"].equals(c.extras["moe"]["max_rows"])


def test_external_prefill_admits_prefilled_prompts_without_computing_them():
    sc = scenario(extra="external_prefill = true")
    tr = trace(16, inp=1500, out=[4, 2], gap=0.0)
    res = run(sc, "route", trace=tr)
    req = res.requests
    assert res.summary["completed"] == 16
    assert (req["tokens_generated"] == req["output_tokens"]).all()
    it = res.iterations
    assert (it["prefill_tokens"] == 0).all()  # the prompts were computed outside the run
    assert "pd_transfer" not in res.extras["bytes_by_class"]
    # every request's first token comes with the first step that admits it: one step, not a
    # prefill of 1,500 tokens
    first = it.groupby("iteration")["finished_at"].first().iloc[0]
    assert (req["first_token_at"] <= first + 1e-12).all()


def test_without_weights_per_gpu_each_rank_holds_its_pools_weights_and_its_experts():
    # EP16 with 16 redundant experts: each rank holds the non-expert weights and 17 experts of
    # each of the 58 MoE layers (fp8: a byte per parameter), not a sixteenth of the model
    expert = 3 * 7168 * 2048
    weights = 671e9 - 58 * 256 * expert + 17 * 58 * expert  # 60.51 GB
    block_bytes = 64 * 1152 * 61
    want = int((80e9 * 0.9 - weights) // block_bytes)
    sc = scenario(nodes=2)
    assert sc.placement.weights_per_gpu is None
    res = run(sc, "route", trace=trace(1))
    assert want == 2_553 and (res.gpus["capacity_blocks"] == want).all()


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_request_too_large_for_its_rank_is_rejected_and_the_others_served(engine):
    # each rank has KV room for 2,553 blocks (above); a prompt of 2,600 blocks cannot fit its
    # rank even alone: it ends too large, and the two requests beside it are served
    big = 2_600 * 64
    tr = make_trace(arrival_at=[0.0, 0.0, 0.0], input_tokens=[640, big, 640],
                    output_tokens=[3, 3, 3], block_tokens=64,
                    block_ids=[np.arange(10) + 1, np.arange(2_600) + 100_000,
                               np.arange(10) + 200_000])
    res = run(scenario(nodes=2), "route", trace=tr, engine=engine)
    assert res.summary["engine"] == engine
    r = res.requests
    assert r["completed"].tolist() == [True, False, True]
    assert r["reason"][1] == TOO_LARGE and r["tokens_generated"].tolist() == [3, 0, 3]


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_ranks_kv_grows_with_every_token_its_request_makes(engine):
    # a prompt of 640 tokens (10 blocks) making 70 tokens: its context ends at 710 tokens,
    # 12 blocks held on its rank, and nothing anywhere else
    res = run(scenario(nodes=2), "route", trace=trace(1, inp=640, out=70), engine=engine)
    owned = res.gpus.set_index(res.gpus["gpu"].astype(str))["owned_blocks"]
    home = str(res.requests["home"][0])
    assert owned[home] == 12 and owned.sum() == 12


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_ranks_prefill_chunks_attend_the_context_computed_before_them(engine):
    # a 640-token prompt under a 256-token budget: chunks of 256, 256 and 128 tokens, each
    # attending the tokens before it (0, 256, 512). A deployment's iteration records each
    # step's chunk attention, all layers: the kernel model's, worked out here
    sc = scenario(extra="[serving]\nmax_num_batched_tokens = 256")
    res = run(sc, "route", trace=trace(1, inp=640, out=2), engine=engine)
    it = res.iterations
    home = str(res.requests["home"][0])
    mine = it[it["gpu"].astype(str) == home].sort_values("iteration")
    assert mine["prefill_tokens"].tolist()[:3] == [256, 256, 128]
    km, h100 = default_kernels(), hardware.gpu("H100")
    want = [km.prefill_attention_time(h100, ARCH, c, cached)
            for c, cached in ((256, 0), (256, 256), (128, 512))]
    assert mine["prefill_time"].tolist()[:3] == pytest.approx(want, rel=1e-9)
    assert want[0] < want[1]  # the same chunk, after 256 cached tokens: more to attend


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_with_two_micro_batches_a_chunk_joins_the_lighter_one(engine):
    # one session (one rank): three requests decode, split 2 / 1 over the micro-batches; a
    # fourth's prompt arrives and its chunk (the 256-token budget less the 3 decode tokens)
    # joins micro-batch 1, the one with fewer tokens
    sc = scenario(extra="two_batch_overlap = true\n[serving]\nmax_num_batched_tokens = 256")
    tr = make_trace(arrival_at=[0.0, 0.0, 0.0, 1.0], input_tokens=[64, 64, 64, 1280],
                    output_tokens=[200, 200, 200, 2], block_tokens=64,
                    block_ids=[[1], [2], [3], list(range(100, 120))], session_id=[0] * 4)
    res = run(sc, "route", trace=tr, engine=engine)
    assert res.requests["home"].nunique() == 1
    m = res.extras["moe"]
    last = m[m["layer"] == m["layer"].max()]

    def lanes(iteration):
        step = last[last["iteration"] == iteration]
        return dict(zip(step["lane"], step["tokens"], strict=True))

    # the three 64-token prompts first: to 0 (a tie), 1, then 0 again (64 against 64 + 0)
    assert lanes(last["iteration"].min()) == {0: 128, 1: 64}
    later = last[(last["started_at"] >= 1.0) & (last["tokens"] > 3)]
    assert lanes(later["iteration"].min()) == {0: 2, 1: 1 + 253}


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_ranks_chunk_pays_the_rotary_pass_of_the_span_blocks_it_reuses(engine):
    # span reuse on a rank: the second request reads the first's two documents in the other
    # order, so 16 blocks take the rotary pass and its last block is prefilled after 17
    # reused ones; its step's chunk attention is that block's and the pass
    docs = [list(range(1, 9)), list(range(9, 17))]
    sc = scenario(extra='[placement]\nreuse = "span"')
    tr = make_trace(arrival_at=[0.0, 5.0], input_tokens=[18 * 64] * 2, output_tokens=[2, 2],
                    block_tokens=64, session_id=[0, 0], spans=[[1, 9, 9, 17]] * 2,
                    block_ids=[[0, *docs[0], *docs[1], 100], [0, *docs[1], *docs[0], 200]])
    res = run(sc, "route", trace=tr, engine=engine)
    assert res.requests["reused_blocks"].tolist() == [0, 17]
    it = res.iterations
    second = it[(it["started_at"] >= 5.0) & (it["prefill_tokens"] > 0)]
    assert second["prefill_tokens"].tolist() == [64]
    km, h100 = default_kernels(), hardware.gpu("H100")
    want = (km.prefill_attention_time(h100, ARCH, 64, 17 * 64)
            + rotary_time(km, h100, ARCH, 16 * 64))
    assert second["prefill_time"].iloc[0] == pytest.approx(want, rel=1e-9)


def _last_layer_ends(res) -> pd.Series:
    """Each step's end of its last simulated MoE layer (the later micro-batch's) [s]."""
    m = res.extras["moe"]
    return moe_ends(m)[m["layer"] == m["layer"].max()].groupby(m["iteration"]).max()


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_step_of_two_micro_batches_ends_after_the_later_ones_last_layer_and_lm_head(engine):
    # two micro-batches of one request on each of 16 ranks, no query routed (each context is
    # its own rank's), every layer simulated: the two end their last MoE layer apart, and the
    # step ends when the later one has, plus each rank's final norm and LM head over its two
    # rows. No kernel of the step is pushed by one composed after it on the fast engine
    sc = scenario(extra="two_batch_overlap = true\nexternal_prefill = true", groups=40)
    res = run(sc, "route", trace=trace(32, inp=64 * 200, out=3), engine=engine)
    assert len(res.rounds) == 0
    m = res.extras["moe"]
    m = m[m["layer"] == m["layer"].max()]
    apart = moe_ends(m).groupby(m["iteration"]).agg(lambda t: t.max() - t.min())
    assert (apart > 1e-6).all()  # the lanes' last layers do not end together
    ends = _last_layer_ends(res)
    finished = res.iterations.groupby("iteration")["finished_at"].max().loc[ends.index]
    final = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH).step_time(2, 2)
    assert len(ends) == 2
    assert finished.to_numpy() == pytest.approx((ends + final).to_numpy(), rel=1e-12)
    assert res.extras.get("pushed_steps", 0) == 0


def test_a_fast_instance_step_pushed_by_its_own_later_composed_kernels_waits_the_push():
    # the fast engine composes a step micro-batch by micro-batch: with every query routed to
    # the rank holding the shared prefix, the second micro-batch's routed kernels, composed
    # after the owner's own kernels of the first, are issued before some of them and push them
    # back on the owner's calendar. The step does not recompute what followed; it waits the
    # largest such push over its ranks at its end, and counts itself pushed. The exact engine
    # plays the same kernels in issue order and ends at the last layer plus the LM head. A
    # second wave of requests, each reading only its own context, arrives after the first has
    # finished: its steps route nothing, are pushed by nothing, and wait nothing
    sc = scenario(extra="two_batch_overlap = true\nexternal_prefill = true", groups=40)
    first = trace(32, inp=64 * 200, out=3, shared=64 * 100)
    second = trace(32, inp=64 * 200, out=3)
    tr = pd.concat([first, second.assign(arrival_at=second["arrival_at"] + 1.0,
                                         request_id=second["request_id"] + 32,
                                         block_ids=second["block_ids"].map(lambda b: b + 10**6))],
                   ignore_index=True)
    rk = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH)
    late, pushed = {}, {}
    for engine in ("exact", "fast"):
        res = run(sc, "route", trace=tr, engine=engine)
        ends = _last_layer_ends(res)
        it = res.iterations.set_index("iteration")
        final = it["batch"].map(lambda b: rk.step_time(b, b) if b else 0.0)
        final = final.groupby(level=0).max()
        finished = it.groupby(level=0)["finished_at"].max()
        late[engine] = (finished - ends - final).loc[ends.index]
        pushed[engine] = res.extras.get("pushed_steps", 0)
        routed = res.rounds.groupby("iteration").size().reindex(ends.index, fill_value=0)
        assert (routed.iloc[:2] > 0).all() and (routed.iloc[2:] == 0).all()
        assert len(ends) == 4
    assert late["exact"].to_numpy() == pytest.approx(np.zeros(4), abs=1e-12)
    # the first wave's two decode steps are pushed and wait at least one routed kernel's time
    # (14 µs) each, a small part of their step; the second wave's wait nothing
    assert pushed["fast"] == 2
    step = float(ends.iloc[1] - ends.iloc[0])  # a decode step of the first wave [s]
    assert (late["fast"].iloc[:2] > 14e-6).all() and (late["fast"].iloc[:2] < 0.04 * step).all()
    assert late["fast"].iloc[2:].to_numpy() == pytest.approx([0.0, 0.0], abs=1e-12)
