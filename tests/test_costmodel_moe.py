"""MoE layers under expert parallelism: routing, EPLB placement, traffic per DeepEP mode, link
loads, the DeepEP calibration, and the transfer engine's closed form."""

import numpy as np
import pytest

import topologies
from simulator import hardware
from simulator.costmodel import moe
from simulator.costmodel.transfer import transfer_time
from simulator.gpu.profiled import default_kernels
from simulator.models import model
from simulator.network.paths import PathCache, paths_among

ARCH = model("deepseek-v3.2")


def group(nodes=2, mode="low_latency", slots=17, popularity="uniform", seed=0):
    g = topologies.build("dgx_h100", nodes=nodes)
    names = list(topologies.gpus(g))
    rk = moe.RankKernels(default_kernels(), hardware.gpu("H100"), ARCH)
    probs = moe.popularity(popularity, ARCH.experts, np.random.default_rng(seed))
    return g, moe.ExpertParallel(names, g, ARCH, probs, slots, mode, [rk] * len(names),
                                 paths_among(g, names))


def test_topk_draws_k_distinct_experts_in_proportion_to_popularity():
    rng = np.random.default_rng(1)
    p = moe.popularity("zipf", 64, rng, zipf_exponent=1.2)
    x = moe.sample_topk(rng, np.cumsum(p), 40_000, 4)
    s = np.sort(x, axis=1)
    assert (s[:, 1:] != s[:, :-1]).all() and x.min() >= 0 and x.max() < 64
    # the first pick of each token follows the popularity exactly (Plackett–Luce)
    first = np.bincount(x[:, 0], minlength=64) / 40_000
    assert np.abs(first - p).max() < 0.01
    # hotter experts are in more top-k sets
    incl = np.bincount(x.ravel(), minlength=64)
    assert np.corrcoef(incl, p)[0, 1] > 0.9


def test_eplb_gives_replicas_to_the_hottest_experts_and_balances_ranks():
    p = moe.popularity("zipf", 16, np.random.default_rng(0), zipf_exponent=1.5)
    place = moe.place_experts(p, ranks=4, slots=5)  # 20 slots: 4 replicas
    assert place.shape == (4, 5) and sorted(set(place.ravel())) == list(range(16))
    count = np.bincount(place.ravel(), minlength=16)
    hottest = np.argsort(-p)[:4]
    assert count.sum() == 20 and set(np.flatnonzero(count > 1)) <= set(hottest)
    load = np.array([sum(p[e] / count[e] for e in row) for row in place])
    naive = p.reshape(4, 4).sum(axis=1)  # contiguous, no replicas
    assert load.max() - load.min() < naive.max() - naive.min()


def test_expert_rows_sum_to_tokens_times_top_k_and_travel_as_deepep_sends_them():
    g, ep = group(nodes=2, mode="low_latency")
    tokens = np.arange(16) * 3  # rank 0 has none
    rng = np.random.default_rng(2)
    r = ep.route(rng, tokens)
    plan = ep.plan(r)
    assert plan.rows.sum() == tokens.sum() * ARCH.experts_per_token
    assert (plan.active <= ep.slots).all() and (plan.active[plan.rows == 0] == 0).all()
    # low latency: one message per (token, expert) not on the sender
    remote = (r.slot // ep.slots) != r.src[:, None]
    assert plan.dispatch_bytes == pytest.approx(remote.sum() * ep.d_bpt)
    assert plan.combine_bytes == pytest.approx(remote.sum() * ep.c_bpt)
    assert np.array_equal(plan.combine / ep.c_bpt, (plan.dispatch / ep.d_bpt).T)
    assert ep.d_bpt == 7168 * (1 + 4 / 128) and ep.c_bpt == 7168 * 2
    # normal mode: once per destination rank, across nodes once per node (then NVLink)
    _, ep_n = group(nodes=2, mode="normal")
    plan_n = ep_n.plan(ep_n.route(np.random.default_rng(2), tokens))
    assert plan_n.rows.sum() == tokens.sum() * ARCH.experts_per_token
    assert plan_n.dispatch_bytes < plan.dispatch_bytes
    hops = plan_n.dispatch / ep_n.d_bpt
    inter = ep_n.inter
    node = ep_n.node
    for s in range(16):  # RDMA only to the same rail of the other node
        far = np.flatnonzero(inter[s] & (hops[s] > 0))
        assert all(t == ep_n.relay[s, node[t]] for t in far)


def test_large_layers_route_in_aggregate_with_the_same_row_total():
    _, ep = group(nodes=2, mode="normal")
    tokens = np.full(16, 4096)
    plan = ep.layer(np.random.default_rng(3), tokens)
    assert plan.rows.sum() == tokens.sum() * ARCH.experts_per_token
    exact = ep.plan(ep.route(np.random.default_rng(3), np.full(16, 256)))
    # per token, the aggregate traffic agrees with routing token by token within a few %
    assert plan.dispatch_bytes / tokens.sum() == pytest.approx(
        exact.dispatch_bytes / (256 * 16), rel=0.05)


def test_link_loads_follow_the_fabric_paths_and_leave_out_dominated_hops():
    g, ep = group(nodes=2)
    names = ep.ranks
    cache = PathCache(g)
    for a, b in [(0, 1), (0, 9), (5, 14)]:
        assert paths_among(g, [names[a], names[b]])[(names[a], names[b])] == cache(names[a],
                                                                                   names[b])
    pairs = np.zeros((16, 16))
    pairs[0, 9] = 1e6  # cross-node: GPU → PCIe → NIC → leaf … → GPU
    loads = ep.loads(pairs)
    loaded = {ep.links[i] for i in np.flatnonzero(loads)}
    on_path = set(cache(names[0], names[9]).edges)
    assert loaded <= on_path and any(g.nodes[u]["kind"] == "nic" for u, _ in loaded)
    assert ("n0/gpu0", "n0/pcie0") not in loaded  # PCIe is faster than the NIC it feeds
    t = ep.exchange_time(pairs, "dispatch")
    stack = hardware.stack("ibgda")
    info = cache(names[0], names[9])
    expect = (ep.overheads[0] + stack.overhead_time(True) + info.latency_time
              + 1e6 / (stack.efficiency(True) * info.bottleneck_bandwidth))
    assert t == pytest.approx(expect, rel=1e-12)


def test_deepep_low_latency_rows_are_reproduced_by_the_calibrated_model():
    d, c = moe.low_latency_overheads()
    assert 0 < d < 30e-6 and 0 < c < 40e-6
    for ep, disp, comb in moe.DEEPEP_LOW_LATENCY:
        mine_d = moe.deepep_model_time(ep, moe.dispatch_bytes_per_token(7168), overhead=d)
        mine_c = moe.deepep_model_time(ep, moe.combine_bytes_per_token(7168), overhead=c)
        tol = 0.25 if ep == 8 else 0.08  # EP 8 (NVLink only) is the model's worst row
        assert mine_d == pytest.approx(disp, rel=tol)
        assert mine_c == pytest.approx(comb, rel=tol)
    # normal kernels: the ibgda RDMA rate lies within the table's bottleneck bandwidths
    rate = hardware.stack("ibgda").efficiency(True) * hardware.LINKS["ib_ndr"].bandwidth
    rdma = [x for row in moe.DEEPEP_NORMAL if row[0] == "rdma" for x in row[2:]]
    assert min(rdma) <= rate <= max(rdma)
    assert moe.mode_overheads("normal")[0] > moe.mode_overheads("low_latency")[0]


def test_rank_kernels_split_the_profiles_layer_and_add_up_to_its_time():
    k = default_kernels()
    spec = hardware.gpu("H100")
    rk = moe.RankKernels(k, spec, ARCH)
    m = 64
    # without the routed experts, the parts are what the profile composes for one GPU
    parts = rk.pre_time(m) + rk.ffn_time(m, True) + rk.shared_time(m) + rk.post_time(m)
    ops = k.decode_ops(spec, ARCH, m, 1)
    moe_ops = [o for o in ops if o.per in ("layer", "moe_layer")
               and o.name not in ("experts_gate_up", "experts_activation", "experts_down")]
    gpu_time = sum(o.time * o.count for o in moe_ops)
    assert parts >= gpu_time and parts == pytest.approx(gpu_time, rel=0.3)
    assert rk.expert_time(0, 0) == 0.0
    assert rk.expert_time(512, 2) < rk.expert_time(512, 16)  # weights of active experts only
    assert rk.expert_time(4096, 16) > rk.expert_time(512, 16)


def test_transfer_engine_closed_form_paces_messages_per_nic():
    sizes = [1e6, 2e6, 3e6]

    def msg(b):
        return 10e-6 + b / 45e9

    t = transfer_time(sizes, 20e9, 2e-6, msg)
    assert t == pytest.approx(2e-6 + 1e6 / 20e9 + 2e-6 + 2e6 / 20e9 + 2e-6 + msg(3e6))
    assert transfer_time([], 20e9, 2e-6, msg) == 0.0
