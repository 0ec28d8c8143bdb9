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


def test_a_layers_phases_add_up():
    assert moe.MoEPhases(1.0, 2.0, 3.0, 4.0).total == 10.0


@pytest.mark.parametrize("mode", ["low_latency", "normal"])
def test_one_pair_alone_is_its_path_at_the_stacks_rate(mode):
    # every (source, destination) pair alone: the mode's overhead, the stack's (inter- or
    # intra-node), the path's latency and its bytes at the efficiency × bottleneck line rate;
    # normal mode adds the NVLink forwarding hop's overhead across nodes. Each path's slowest
    # link is among the links kept, each at its own pairs' efficiency
    g, ep = group(nodes=2, mode=mode)
    cache = PathCache(g)
    stack = hardware.stack("ibgda")
    for a, b in [(0, 1), (3, 7), (0, 8), (2, 10), (9, 4), (15, 14)]:
        pairs = np.zeros((16, 16))
        pairs[a, b] = 3e6
        info = cache(ep.ranks[a], ep.ranks[b])
        inter = info.inter_node
        fixed = ep.overheads[1] + stack.overhead_time(inter) + info.latency_time
        if mode == "normal" and inter:
            fixed += stack.overhead_time(False)
        assert ep.fixed_time(pairs, "combine") == pytest.approx(fixed, rel=1e-12)
        want = fixed + 3e6 / (stack.efficiency(inter) * info.bottleneck_bandwidth)
        assert ep.exchange_time(pairs, "combine") == pytest.approx(want, rel=1e-12)
    # no bytes: the kernel's overhead alone
    assert ep.fixed_time(np.zeros((16, 16)), "dispatch") == ep.overheads[0]
    assert ep.exchange_time(np.zeros((16, 16)), "dispatch") == ep.overheads[0]


def test_a_one_rank_group_moves_nothing():
    g = topologies.build("dgx_h100", nodes=1)
    rk = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH)
    probs = expert_popularity("uniform", ARCH.experts, np.random.default_rng(0))
    ep = moe.ExpertParallel(["n0/gpu0"], g, ARCH, probs, 256, "low_latency", [rk],
                            paths_among(g, ["n0/gpu0"]))
    assert ep.links == [] and ep.exchange_time(np.zeros((1, 1)), "combine") == ep.overheads[1]
    plan = ep.plan(ep.route(np.random.default_rng(0), np.array([5])))
    assert plan.rows.tolist() == [5 * ep.k] and plan.dispatch_bytes == 0.0


def test_the_relay_of_a_cross_node_hop_is_the_gpu_of_the_same_rail():
    # normal mode forwards across nodes to the destination node's GPU with the sender's local
    # index; on a node with fewer ranks, its last one
    _, ep = group(nodes=2, mode="normal")
    for s in range(16):
        assert ep.relay[s].tolist() == [s % 8, 8 + s % 8]
    g = topologies.build("dgx_h100", nodes=2)
    names = [f"n0/gpu{i}" for i in range(8)] + [f"n1/gpu{i}" for i in range(3)]
    rk = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH)
    probs = expert_popularity("uniform", ARCH.experts, np.random.default_rng(0))
    ep = moe.ExpertParallel(names, g, ARCH, probs, 24, "normal", [rk] * 11,
                            paths_among(g, names))
    assert ep.relay[:, 1].tolist() == [8, 9, 10, 10, 10, 10, 10, 10, 8, 9, 10]
    assert ep.relay[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2]


def test_every_pick_goes_to_a_replica_of_its_expert_in_turn_by_token():
    _, ep = group(nodes=2, slots=20, popularity="zipf", seed=4)  # 320 slots: 64 replicas
    r = ep.route(np.random.default_rng(1), np.full(16, 40))
    assert (ep.placement.ravel()[r.slot] == r.expert).all()
    count = np.bincount(ep.placement.ravel(), minlength=ARCH.experts)
    t = np.arange(len(r.src))[:, None] + np.arange(ep.k)[None, :]
    # the (t + j)-th replica of the expert, in slot order
    for e in np.flatnonzero(count > 1)[:5]:
        reps = np.flatnonzero(ep.placement.ravel() == e)
        mine = r.expert == e
        assert (r.slot[mine] == reps[t[mine] % count[e]]).all()
    empty = ep.route(np.random.default_rng(1), np.zeros(16, np.int64))
    assert empty.expert.shape == (0, ep.k) and empty.slot.shape == (0, ep.k)
    one = ep.route(np.random.default_rng(1), np.eye(16, dtype=np.int64)[3])
    assert one.expert.shape == (1, ep.k) and one.src.tolist() == [3]


def test_up_to_the_limit_a_layer_is_routed_token_by_token():
    _, ep = group(nodes=2)
    tokens = np.full(16, moe.PER_TOKEN_LIMIT // 16)  # exactly the limit
    got = ep.layer(np.random.default_rng(9), tokens)
    want = ep.plan(ep.route(np.random.default_rng(9), tokens))
    assert np.array_equal(got.dispatch, want.dispatch) and np.array_equal(got.rows, want.rows)


@pytest.mark.parametrize("mode", ["low_latency", "normal"])
def test_an_aggregate_layer_sends_what_token_by_token_routing_sends_per_token(mode):
    # above the limit: rows sum to tokens × k, each rank's active experts are its slots with
    # rows, no rank sends to itself, combine is dispatch reversed at its own width, and the
    # bytes per token agree with routing token by token (a few %)
    _, ep = group(nodes=2, mode=mode)
    tokens = np.full(16, 2048)
    tokens[5] = 0  # a rank without tokens sends nothing
    plan = ep.layer(np.random.default_rng(3), tokens)
    assert plan.rows.sum() == tokens.sum() * ep.k
    assert (plan.active <= ep.slots).all() and (plan.active > 0).all()
    assert (np.diag(plan.dispatch) == 0).all()
    # a rank without tokens sends nothing of its own; in normal mode it forwards, as the relay
    # of its rail, what the other node sends to its node's ranks (NVLink only)
    assert (plan.dispatch[5, 8:] == 0).all()
    assert (plan.dispatch[5] == 0).all() == (mode == "low_latency")
    assert np.allclose(plan.combine / ep.c_bpt, (plan.dispatch / ep.d_bpt).T)
    small = np.full(16, 256)
    small[5] = 0
    exact = ep.plan(ep.route(np.random.default_rng(3), small))
    assert plan.dispatch_bytes / tokens.sum() == pytest.approx(exact.dispatch_bytes / small.sum(),
                                                               rel=0.05)
    # what crosses the nodes, per token, too
    cross = ~(ep.node[:, None] == ep.node[None, :])
    assert plan.dispatch[cross].sum() / tokens.sum() == pytest.approx(
        exact.dispatch[cross].sum() / small.sum(), rel=0.05)
    assert plan.expert_time.tolist() == [ep.kernels[r].expert_time(int(plan.rows[r]),
                                                                   int(plan.active[r]))
                                         for r in range(16)]


def test_the_layers_closed_form_worked_out_by_hand():
    # a hand-made plan: rank 0 sends 1 MB to rank 9 and gets 2 MB back; rank 1's shared experts
    # outlast the dispatch; rank 2 has no routed experts but long shared ones, so its add waits
    # for them; rank 3 adds nothing
    _, ep = group(nodes=2)
    dispatch, combine = np.zeros((16, 16)), np.zeros((16, 16))
    dispatch[0, 9], combine[9, 0] = 1e6, 2e6
    d = ep.exchange_time(dispatch, "dispatch")
    c = ep.exchange_time(combine, "combine")
    expert = np.full(16, 50e-6)
    expert[2] = 0.0
    shared = np.full(16, 10e-6)
    shared[1] = d + 30e-6
    shared[2] = d + 200e-6
    post = np.full(16, 5e-6)
    post[3] = 0.0
    plan = moe.LayerPlan(np.ones(16), np.ones(16), np.ones(16), dispatch, combine, expert)
    ph = ep.closed_form(plan, shared, post)
    assert ph.dispatch == d
    # experts end when the slowest rank's do: rank 1, 30 µs after the dispatch, then its 50 µs
    assert ph.experts == pytest.approx(80e-6, rel=1e-12)
    assert ph.combine == c
    # rank 2's add starts after its shared experts (d + 200 µs), later than the combine's end
    t3 = d + 80e-6 + c
    assert ph.post == pytest.approx(max(d + 200e-6, t3) + 5e-6 - t3, rel=1e-9)
    assert d + 200e-6 > t3
    # with every rank idle by then, each add runs after the combine
    ph2 = ep.closed_form(plan, np.full(16, 10e-6), post)
    assert ph2.experts == pytest.approx(50e-6, rel=1e-12) and ph2.post == pytest.approx(5e-6)
    # no routed experts anywhere and no add: the dispatch and combine alone
    none = moe.LayerPlan(np.ones(16), np.zeros(16), np.zeros(16), dispatch, combine,
                         np.zeros(16))
    ph3 = ep.closed_form(none, np.full(16, 10e-6), np.zeros(16))
    assert (ph3.experts, ph3.post) == (0.0, 0.0) and ph3.total == d + c


@pytest.mark.parametrize("mode", ["low_latency", "normal"])
def test_a_few_tokens_leave_slots_idle_and_travel_in_whole_tokens(mode):
    # 2 tokens on each of 4 ranks: most expert slots get no row; a rank's active experts are
    # the distinct slots its rows go to. Dispatch and combine move whole tokens, one reversed
    # of the other, none to the sender itself
    _, ep = group(nodes=2, mode=mode)
    tokens = np.zeros(16, np.int64)
    tokens[[0, 3, 9, 14]] = 2
    r = ep.route(np.random.default_rng(6), tokens)
    plan = ep.plan(r)
    dst = r.slot // ep.slots
    for rank in range(16):
        assert plan.active[rank] == len(set(r.slot[dst == rank].tolist()))
    assert plan.active.sum() < 16 * ep.slots and plan.rows.sum() == 8 * ep.k
    sent = plan.dispatch / ep.d_bpt
    assert (np.diag(sent) == 0).all() and np.array_equal(sent, np.round(sent)) and sent.sum() > 0
    assert np.array_equal(plan.combine / ep.c_bpt, sent.T)


def test_an_aggregate_layer_counts_only_the_slots_its_rows_reach():
    # a popularity table that never picks the odd experts: above the limit, a rank's active
    # experts are its slots with rows, here its even experts' slots only
    g = topologies.build("dgx_h100", nodes=2)
    names = list(topologies.gpus(g))
    rk = RankKernels(default_kernels(), hardware.gpu("H100"), ARCH)
    probs = expert_popularity(np.tile([1.0, 0.0], ARCH.experts // 2), ARCH.experts, None)
    ep = moe.ExpertParallel(names, g, ARCH, probs, 16, "low_latency", [rk] * 16,
                            paths_among(g, names))
    plan = ep.layer(np.random.default_rng(2), np.full(16, 2048))
    even = (ep.placement % 2 == 0).sum(axis=1)
    assert plan.rows.sum() == 16 * 2048 * ep.k
    assert plan.active.tolist() == even.tolist() and (even < ep.slots).any()


def test_an_aggregate_layer_over_four_nodes_crosses_them_as_often_as_tokens_do():
    # normal mode over 4 nodes: a token reaches another node when one of its 8 picks is there
    # (1 − (3/4)^8 ≈ 0.9 for uniform experts), and crosses once per node it reaches: the
    # aggregate's cross-node bytes per token are token-by-token routing's (a few %)
    _, ep = group(nodes=4, mode="normal", slots=9)
    plan = ep.layer(np.random.default_rng(4), np.full(32, 1024))
    exact = ep.plan(ep.route(np.random.default_rng(4), np.full(32, 128)))
    cross = ep.node[:, None] != ep.node[None, :]
    assert plan.dispatch[cross].sum() / (32 * 1024) == pytest.approx(
        exact.dispatch[cross].sum() / (32 * 128), rel=0.03)
