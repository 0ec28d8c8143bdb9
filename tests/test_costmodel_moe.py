"""MoE layers under expert parallelism: routing, traffic per DeepEP mode, aggregate routing of
large layers, and link loads along the Fabric's paths."""

import numpy as np
import pytest

import topologies
from simulator import hardware
from simulator.costmodel import moe
from simulator.costmodel.experts import popularity as expert_popularity
from simulator.costmodel.rank_kernels import RankKernels
from simulator.gpu.profiled import default_kernels
from simulator.models import model
from simulator.network.paths import PathCache, paths_among

ARCH = model("deepseek-v3.2")


def group(nodes=2, mode="low_latency", slots=17, popularity="uniform", seed=0):
    g = topologies.build("dgx_h100", nodes=nodes)
    names = list(topologies.gpus(g))
    rk = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH)
    probs = expert_popularity(popularity, ARCH.experts, np.random.default_rng(seed))
    return g, moe.ExpertParallel(names, g, ARCH, probs, slots, mode, [rk] * len(names),
                                 paths_among(g, names))


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
