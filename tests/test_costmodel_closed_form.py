"""The closed-form cost model: known answers first, then properties, then the simulated oracle."""

import math

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

import topologies
from simulator.costmodel import OPTIONS, Phases
from simulator.costmodel import CostModel as _CostModel
from simulator.errors import UserError
from simulator.gpu import KernelModel
from simulator.hardware import STACKS
from simulator.models import Architecture, model
from simulator.network import Fabric
from simulator.units import GBps, Gbps, us
from tests.strategies import architectures, bandwidths, replay_round, rounds, two_node_graph


def CostModel(*args, **kwargs):  # noqa: N802 - the class under test, at the roofline's kernels
    """The closed form with the roofline kernels (:class:`KernelModel`): these tests check its
    documented formulas (docs/costmodel.md), which the roofline's constants make hand-checkable;
    the measured profiles go through the same closed form (tests/test_gpu_*.py, the engines)."""
    kwargs.setdefault("kernels", KernelModel())
    return _CostModel(*args, **kwargs)


HOME = "n0/gpu0"
PEER = "n0/gpu1"  # same machine, over NVSwitch
REMOTE = "n1/gpu0"  # other machine, over PCIe → NIC → leaf → NIC → PCIe
G = two_node_graph()
pairs = st.sampled_from([(HOME, PEER), (HOME, REMOTE), (REMOTE, HOME), (HOME, "n1/gpu1")])
stacks = st.sampled_from(sorted(STACKS))


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


# -- known answers ---------------------------------------------------------------------------


def test_route_known_answer_across_nodes_with_ibgda():
    cm = CostModel("deepseek-v3.2", G, "ibgda")
    # Lamina §6.3: 33.0 µs RTT → per-message overhead 16.5 − 2.2 = 14.3 µs (hardware.STACKS);
    # path latency 4 × 0.3 (PCIe) + 2 × 0.2 (IB) = 1.6 µs; rate 45.7/50 × 50 GB/s = 45.7 GB/s.
    fixed = us(14.3) + us(1.6)
    rate = GBps(45.7)
    k = KernelModel()
    p = cm.route(HOME, REMOTE, blocks=32, batch=1)
    assert p.probe == pytest.approx(fixed, rel=1e-12)
    assert p.transfer == pytest.approx(147_456 / rate, rel=1e-12)  # 128 heads × 1,152 B
    assert p.ret == pytest.approx(fixed + 131_584 / rate, rel=1e-12)  # 128 × (1,024 + 4) B
    # Owner's kernel: 2,048 tokens × 1,152 B + rows; 2,048 × 2·(576+512)·128 FLOP, sparse eff.
    h100 = cm.gpu_spec(REMOTE)
    mem = (2048 * 1152 + 147_456 + 131_584) / (h100.hbm_bandwidth * k.memory_efficiency)
    flops = 2048 * 2 * (576 + 512) * 128 / (h100.peak_flops * k.sparse_compute_efficiency)
    assert p.compute == pytest.approx(k.launch_time + max(mem, flops), rel=1e-12)
    assert p.merge == pytest.approx(k.launch_time + 3 * 131_584 / (h100.hbm_bandwidth
                                                                    * k.memory_efficiency),
                                    rel=1e-12)
    assert p.total == pytest.approx(p.probe + p.transfer + p.compute + p.ret + p.merge)


def test_fetch_known_answer_across_nodes_with_ibgda():
    cm = CostModel("deepseek-v3.2", G, "ibgda")
    fixed, rate = us(15.9), GBps(45.7)
    f = cm.fetch(HOME, REMOTE, blocks=32, batch=2)
    assert f.probe == pytest.approx(fixed + 8 * 32 * 2 / rate, rel=1e-12)
    moved = 2 * 32 * 64 * 1152  # 2 queries × 2,048 tokens × 1,152 B
    assert cm.fetch_bytes(32, 2) == moved
    assert f.transfer == pytest.approx(fixed + moved / rate, rel=1e-12)
    assert f.ret == 0.0
    assert cm.layout == "scattered"  # DSA selection scatters the blocks
    assert f.compute == pytest.approx(cm.attention_time(HOME, 32, 2)
                                      + KernelModel().gather_time(cm.gpu_spec(HOME), moved))
    # Reused 4 times, the fabric part and the gather are amortized, the attention is not.
    f4 = cm.fetch(HOME, REMOTE, blocks=32, batch=2, reuse=4)
    assert f4.transfer == pytest.approx(f.transfer / 4)
    assert f4.compute < f.compute


def test_dense_model_splices_contiguous_chunks():
    cm = CostModel("llama-3-70b", G, "nccl")
    assert cm.layout == "contiguous"
    k = KernelModel()
    f = cm.fetch(HOME, REMOTE, blocks=16, batch=3)
    assert f.compute == pytest.approx(cm.attention_time(HOME, 16, 3) + 3 * k.splice_time / 80)


def test_local_uses_no_fabric():
    cm = CostModel("llama-33b", G, "ibgda")
    p = cm.local(HOME, REMOTE, blocks=8)
    assert p.probe == p.transfer == p.ret == 0.0
    assert p.compute > cm.attention_time(HOME, 8)


def test_intra_node_route_beats_fetch_and_crossover_across_nodes():
    # On NVLink the fetch's extra gather kernel never pays off; across nodes fetching one
    # 73.7 KB block beats routing 279 KB of query and result, and two blocks do not.
    cm = CostModel("deepseek-v3.2", topologies.build("dgx_h100", nodes=2), "ibgda")
    assert cm.crossover("n0/gpu0", "n0/gpu1") is None
    assert cm.decide("n0/gpu0", "n0/gpu1", blocks=1) == "route"
    k = cm.crossover("n0/gpu0", "n1/gpu0")
    assert 1 < k < 2
    assert cm.decide("n0/gpu0", "n1/gpu0", blocks=1) == "fetch"
    assert cm.decide("n0/gpu0", "n1/gpu0", blocks=2) == "route"
    assert cm.decide("n0/gpu0", "n1/gpu0", blocks=32) == "route"


def test_per_token_scales_by_layers_and_json_keys():
    cm = CostModel("glm-5", G, "ibgda")
    p = cm.route(HOME, REMOTE, 4)
    assert cm.per_token(p).total == pytest.approx(78 * p.total)
    assert set(p.as_dict()) == {"probe", "transfer", "compute", "return", "merge", "total"}


def test_compare_reports_decision_and_margin():
    cm = CostModel("deepseek-v3.2", G, "ibgda")
    c = cm.compare(HOME, REMOTE, 32)
    totals = sorted(c.option(o).total for o in OPTIONS)
    assert c.decision == "route" and c.margin_time == pytest.approx(totals[1] - totals[0])
    assert cm.decide(HOME, REMOTE, 32, options=("fetch", "local")) == "fetch"


def test_same_gpu_costs_no_fabric():
    cm = CostModel("deepseek-v3", G, "nccl")
    assert cm.message_time(HOME, HOME, 1e6) == 0.0
    assert cm.route(HOME, HOME, 4).probe == 0.0


def test_bad_inputs_are_user_errors():
    cm = CostModel("deepseek-v3.2", G, "ibgda")
    with pytest.raises(UserError, match="blocks"):
        cm.route(HOME, REMOTE, -1)
    with pytest.raises(UserError, match="batch"):
        cm.fetch(HOME, REMOTE, 1, batch=0)
    with pytest.raises(UserError, match="reuse"):
        cm.fetch(HOME, REMOTE, 1, reuse=0.5)
    with pytest.raises(UserError, match="n9/gpu0"):
        cm.route(HOME, "n9/gpu0", 1)
    with pytest.raises(UserError, match="option"):
        cm.option("teleport", HOME, REMOTE, 1)
    with pytest.raises(UserError, match="layout"):
        CostModel("deepseek-v3.2", G, layout="diagonal")
    with pytest.raises(UserError, match="blocks=K"):
        cm.crossover(HOME, REMOTE, over="bandwidth")
    with pytest.raises(UserError, match="unknown model"):
        CostModel("nope", G)


# -- properties ------------------------------------------------------------------------------


@given(architectures(), rounds(), pairs, stacks, st.sampled_from(list(OPTIONS)))
def test_phases_sum_to_totals(arch, rnd, pair, stack, option):
    p = CostModel(arch, G, stack).option(option, *pair, **rnd)
    assert min(p.probe, p.transfer, p.compute, p.ret, p.merge) >= 0
    assert p.total == pytest.approx(p.probe + p.transfer + p.compute + p.ret + p.merge,
                                    rel=1e-12)


@given(architectures(), rounds(), st.integers(0, 4096), pairs, stacks)
def test_fetch_never_falls_as_blocks_grow(arch, rnd, more, pair, stack):
    cm = CostModel(arch, G, stack)
    k = rnd.pop("blocks")
    assert cm.fetch(*pair, k, **rnd).total <= cm.fetch(*pair, k + more, **rnd).total


@given(architectures(), rounds(), st.integers(0, 4096), pairs, stacks)
def test_route_transfer_does_not_depend_on_blocks(arch, rnd, other, pair, stack):
    cm = CostModel(arch, G, stack)
    k = rnd.pop("blocks")
    assert cm.route(*pair, k, **rnd).transfer == cm.route(*pair, other, **rnd).transfer
    assert cm.route(*pair, k, **rnd).probe == cm.route(*pair, other, **rnd).probe


@given(architectures(), rounds(), pairs, stacks, bandwidths(), st.floats(1.0, 100.0))
def test_more_bandwidth_never_increases_any_option(arch, rnd, pair, stack, bw, factor):
    slow = CostModel(arch, G, stack, bandwidth=bw)
    fast = slow.replace(bandwidth=bw * factor)
    for option in OPTIONS:
        assert fast.option(option, *pair, **rnd).total <= slow.option(option, *pair, **rnd).total
    # The same on real graphs: every link of the faster one is at least as fast.
    g_slow = two_node_graph(net=bw, pcie=bw)
    g_fast = two_node_graph(net=bw * factor, pcie=bw * factor, nvlink=GBps(450) * factor)
    for option in OPTIONS:
        t_slow = CostModel(arch, g_slow, stack).option(option, *pair, **rnd).total
        assert CostModel(arch, g_fast, stack).option(option, *pair, **rnd).total <= t_slow


@given(architectures(), rounds(), pairs, stacks)
def test_decide_is_the_argmin_of_the_totals(arch, rnd, pair, stack):
    cm = CostModel(arch, G, stack)
    totals = {o: cm.option(o, *pair, **rnd).total for o in OPTIONS}
    best = min(OPTIONS, key=lambda o: (totals[o], OPTIONS.index(o)))
    assert cm.decide(*pair, **rnd) == best


@given(architectures(), rounds(), pairs, stacks, st.sampled_from(list(OPTIONS)))
def test_batching_never_costs_more_per_query(arch, rnd, pair, stack, option):
    cm = CostModel(arch, G, stack)
    batch = rnd.pop("batch")
    single = cm.option(option, *pair, batch=1, **rnd).total
    assert cm.option(option, *pair, batch=batch, **rnd).total <= batch * single * (1 + 1e-12)


@given(architectures(), rounds(), stacks)
def test_reuse_never_makes_a_fetch_dearer(arch, rnd, stack):
    cm = CostModel(arch, G, stack)
    reuse = rnd.pop("reuse")
    assert (cm.fetch(HOME, REMOTE, reuse=reuse, **rnd).total
            <= cm.fetch(HOME, REMOTE, reuse=1.0, **rnd).total)


# -- oracles: the Fabric and the GPU runtime -------------------------------------------------

DGX4 = topologies.build("dgx_h100", nodes=4)



@given(st.floats(0, 1e9), st.sampled_from(["n0/gpu0", "n0/gpu5", "n1/gpu3", "n3/gpu7"]),
       st.sampled_from(["n0/gpu1", "n2/gpu0", "n3/gpu7"]), stacks)
def test_message_time_equals_what_the_fabric_simulates(nbytes, src, dst, stack):
    g = DGX4
    env = simpy.Environment()
    fabric = Fabric(env, g, stack)
    done = fabric.transfer(src, dst, nbytes)
    env.run()
    simulated = done.value.finished_at - done.value.issued_at
    closed = CostModel("deepseek-v3.2", g, stack).message_time(src, dst, nbytes)
    assert closed == fabric.message_time(src, dst, nbytes)
    assert simulated == pytest.approx(closed, rel=1e-9, abs=1e-15)


@given(architectures(), st.integers(0, 2048), st.integers(1, 16), pairs, stacks,
       st.sampled_from(list(OPTIONS)))
def test_replayed_round_equals_the_closed_form(arch, blocks, batch, pair, stack, option):
    cm = CostModel(arch, G, stack)
    closed = cm.option(option, *pair, blocks, batch)
    simulated = replay_round(cm, option, *pair, blocks, batch)
    for name in ("probe", "transfer", "compute", "ret", "merge"):
        assert getattr(simulated, name) == pytest.approx(getattr(closed, name), rel=1e-9,
                                                         abs=1e-15)
    assert simulated.total == pytest.approx(closed.total, rel=1e-9)


def test_lamina_topology_reads_each_gpus_own_spec():
    g = topologies.build("lamina_h100_h20")
    gpus = topologies.gpus(g)
    kinds = {g.nodes[n]["gpu"] for n in gpus}
    assert kinds == {"H100", "H20"}
    h100 = next(n for n in gpus if g.nodes[n]["gpu"] == "H100")
    h20 = next(n for n in gpus if g.nodes[n]["gpu"] == "H20")
    cm = CostModel("llama-65b", g, "ibgda")
    # The same kernel is faster on the H20's 4.0 TB/s HBM than on the H100's 3.35 TB/s.
    assert cm.attention_time(h20, 64, 8) < cm.attention_time(h100, 64, 8)
    assert math.isfinite(cm.route(h100, h20, 64, 8).total)


def test_custom_architecture_in_the_cost_model():
    arch = Architecture.custom("two-coeff", 40, routed_payload_bytes=2e5,
                               moved_bytes_per_token=1000.0)
    cm = CostModel(arch, G, "ibgda")
    r = cm.route(HOME, REMOTE, 10)
    fixed, rate = us(15.9), GBps(45.7)
    assert r.probe + r.transfer + r.ret == pytest.approx(2 * fixed + 2e5 / rate, rel=1e-12)
    assert cm.fetch_bytes(10) == 10 * 64 * 1000.0
    assert isinstance(cm.route(HOME, REMOTE, 10), Phases)
    assert model("deepseek-v3.2").name == "deepseek-v3.2"
    assert Gbps(400) == GBps(50)


@given(architectures(), rounds(), pairs, stacks, st.sampled_from(list(OPTIONS)))
def test_bulk_messages_account_for_the_fabric_phases(arch, rnd, pair, stack, option):
    cm = CostModel(arch, G, stack)
    p = cm.option(option, *pair, **rnd)
    msgs = cm.bulk_messages(option, *pair, **rnd)
    wire = sum(cm.wire_time(a, b, n) for a, b, n in msgs)
    fixed = sum(cm.message_fixed_time(a, b) for a, b, _ in msgs)
    if option == "fetch":
        fixed /= rnd["reuse"]
    assert p.probe + p.transfer + p.ret == pytest.approx(wire + fixed, rel=1e-9, abs=1e-18)
    assert all(cm.path_rate(a, b) == cm.rate(a, b) for a, b, _ in msgs if a != b)


# -- boundaries (survivors of benchmarks/mutation.py) -----------------------------------------


def _cm(**kw):
    from simulator.testing.costs import two_node_graph

    return _CostModel("deepseek-v3.2", two_node_graph(), "ibgda", kernels=KernelModel(), **kw)


def test_constructor_boundaries():
    assert _cm(block_tokens=1).block_tokens == 1
    with pytest.raises(UserError, match="block_tokens"):
        _cm(block_tokens=0)
    assert _cm(bandwidth=0.5).bandwidth == 0.5
    with pytest.raises(UserError, match="bandwidth"):
        _cm(bandwidth=0.0)


def test_wire_time_is_zero_only_for_no_bytes_or_the_same_gpu():
    cm = _cm()
    a, b = "n0/gpu0", "n1/gpu0"
    assert cm.wire_time(a, a, 1e6) == 0.0 and cm.wire_time(a, b, 0) == 0.0
    assert cm.wire_time(a, b, -5) == 0.0
    assert cm.wire_time(a, b, 0.5) == pytest.approx(0.5 / cm.rate(a, b), rel=1e-12)
    assert cm.message_time(a, a, 1e6) == 0.0


def test_attention_roofline_is_the_attention_time_in_parts():
    cm = _cm()
    parts = cm.attention_roofline("n0/gpu0", 8, 2)
    assert parts.total == pytest.approx(cm.attention_time("n0/gpu0", 8, 2), rel=1e-12)


def test_nothing_fetched_costs_no_install_no_message_and_only_the_merge():
    a, b = "n0/gpu0", "n1/gpu0"
    for layout in ("scattered", "contiguous"):
        cm = _cm(layout=layout)
        assert cm.install_time(a, 0, 2) == 0.0 and cm.install_time(a, 2, 0) == 0.0
        assert cm.install_time(a, 0.5, 1) > 0
        assert cm.bulk_messages("fetch", a, b, 0) == []
        assert len(cm.bulk_messages("fetch", a, b, 0.5)) == 2
        assert cm.fetch(a, b, 0) == Phases(0.0, 0.0, 0.0, 0.0, cm.merge_time(a))


def test_local_checks_its_round_and_its_owner():
    cm = _cm()
    with pytest.raises(UserError):
        cm.local("n0/gpu0", "n1/gpu0", -1)
    with pytest.raises(UserError, match="not in the topology"):
        cm.local("n0/gpu0", "n9/gpu0", 4)


def test_compare_margin_is_to_the_runner_up_and_zero_alone():
    cm = _cm()
    a, b = "n0/gpu0", "n1/gpu0"
    alone = cm.compare(a, b, 32, options=("route",))
    assert alone.decision == "route" and alone.margin_time == 0.0
    two = cm.compare(a, b, 32, options=("route", "fetch"))
    assert two.margin_time == pytest.approx(abs(two.route.total - two.fetch.total), rel=1e-12)
    three = cm.compare(a, b, 32)
    totals = sorted(p.total for p in (three.route, three.fetch, three.local))
    assert three.margin_time == pytest.approx(totals[1] - totals[0], rel=1e-12)


def test_a_fetch_from_host_dram_is_one_pcie_copy_known_answer():
    """From the host tier no message is sent: the home's copy engine copies the KV host→device
    at the measured pinned-copy time (calibration/h200/pcie_sweep.csv) over the GPU↔host link,
    amortized by the reuse; then the home's attention + gather, and the merge, as any fetch."""
    import networkx as nx

    from simulator.gpu.copyengines import host_copy_time
    from simulator.hardware import gpu
    from simulator.testing.oracle import Roof

    g = topologies.build("dgx_h100", nodes=1)
    cm = _CostModel("deepseek-v3.2", g, "ibgda", kernels=KernelModel())
    arch, home, host = cm.model, "n0/gpu3", "n0/host"
    assert cm.is_host(host) and not cm.is_host(home) and not cm.is_host("n7/host")
    blocks, batch, reuse = 10, 4, 3.0
    kv = batch * blocks * 64 * arch.kv_bytes_per_token
    path = nx.shortest_path(g, home, host)
    link = min(g.edges[e]["bandwidth"] for e in zip(path, path[1:], strict=False))
    copy = host_copy_time().time("h2d", kv, link)
    assert copy > 0
    roof, h100 = Roof(KernelModel()), gpu("H100")
    p = cm.fetch(home, host, blocks, batch, reuse=reuse)
    assert (p.probe, p.ret) == (0.0, 0.0)
    assert p.transfer == pytest.approx(copy / reuse, rel=1e-12)
    assert p.compute == pytest.approx(roof.attention_time(h100, arch, batch, blocks * 64)
                                      + roof.gather_time(h100, kv) / reuse, rel=1e-12)
    assert p.merge == pytest.approx(roof.merge_time(h100, arch, batch, 2), rel=1e-12)
    assert cm.host_copy_time(home, host, kv) == pytest.approx(copy, rel=1e-12)


def test_kernel_times_are_memoized_per_gpu_kind_not_per_node():
    # the closed form keeps attention, merge and gather times per (GPU kind, shape): two nodes
    # of one kind share an entry, a node of another kind gets its own — each value the kernel
    # model's own, whichever node asked first
    from simulator.gpu.profiled import default_kernels
    from simulator.hardware import gpu

    g = two_node_graph()
    for i in range(2):
        g.nodes[f"n1/gpu{i}"]["gpu"] = "H20"
    k = default_kernels()
    cm = _CostModel("deepseek-v3.2", g, "ibgda", kernels=k, layout="scattered")
    arch, h100, h20 = cm.model, gpu("H100"), gpu("H20")
    for blocks, batch in [(32, 1), (18.5, 2), (7, 3)]:
        tokens = blocks * cm.block_tokens
        for node, spec in [(HOME, h100), (REMOTE, h20), (PEER, h100), ("n1/gpu1", h20)]:
            assert cm.attention_time(node, blocks, batch) == \
                k.attention_time(spec, arch, batch, tokens, None)
            assert cm.merge_time(node, batch) == k.merge_time(spec, arch, batch, 2, None)
            assert cm.install_time(node, blocks, batch) == \
                k.gather_time(spec, cm.fetch_bytes(blocks, batch))
    assert cm.attention_time(HOME, 32, 1) != cm.attention_time(REMOTE, 32, 1)
    assert len(cm._attention_memo) == 6  # 3 shapes × 2 kinds, not × 4 nodes
