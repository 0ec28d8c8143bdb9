"""simulator.network.paths: a GPU or a host is an endpoint, never a transit node of another pair.

On a RoCE fabric (switch hops of 0.5 µs) the least-latency walk of the bare graph between GPUs
on different rails relayed through a neighbour GPU over NVLink (0.5 µs shorter than the
leaf→spine→leaf detour) or through the host's root complex (0.4 µs shorter), to leave by that
GPU's NIC: in ``lamina_h100_h20`` 112 of the 128 inter-machine pairs did, so a GPU had its
neighbours' NICs too. Paths now pass through no GPU or host but their endpoints — unless a pair
has no such path (GPUs chained by direct links), where the whole graph is used by the same rule.
"""

from __future__ import annotations

import networkx as nx
import pytest
import simpy

import topologies
from simulator.hardware import LINKS
from simulator.network import Fabric
from simulator.network.paths import PathCache, gpu_path, path_info, paths_among

US = 1e-6


def transits(g: nx.DiGraph, nodes) -> list[str]:
    """The GPUs and hosts a path passes through (its endpoints excluded)."""
    return [n for n in nodes[1:-1] if g.nodes[n]["kind"] in ("gpu", "host")]


@pytest.mark.parametrize("preset, params", [
    ("lamina_h100_h20", {}),
    ("dgx_h100", {"nic": "roce400"}),
])
def test_a_gpu_leaves_its_machine_by_its_own_nic_on_roce(preset, params):
    g = topologies.build(preset, **params)
    want = ("n0/gpu0", "n0/pcie0", "n0/nic0", "su0/leaf0", "spine", "su0/leaf3", "n1/nic3",
            "n1/pcie3", "n1/gpu3")
    info = path_info(g, "n0/gpu0", "n1/gpu3")
    assert info.nodes == want
    # by hand: four PCIe hops (0.3 µs) and four RoCE hops (0.5 µs)
    assert info.latency_time == pytest.approx(4 * 0.3 * US + 4 * 0.5 * US)
    assert PathCache(g)("n0/gpu0", "n1/gpu3") == info


@pytest.mark.parametrize("preset, params", [
    ("lamina_h100_h20", {}),
    ("dgx_h100", {"nic": "roce400"}),
    ("dgx_h100", {}),
])
def test_paths_among_agrees_with_path_info_and_no_pair_passes_a_gpu_or_host(preset, params):
    g = topologies.build(preset, **params)
    gpus = sorted(topologies.gpus(g))
    got = paths_among(g, gpus)
    cache = PathCache(g)
    for (s, d), info in got.items():
        assert info == path_info(g, s, d) == cache(s, d), (s, d)
        assert transits(g, info.nodes) == [], (s, d, info.nodes)
        assert transits(g, path_info(g, s, d, ecmp=True).nodes) == [], (s, d)
        if info.inter_node:  # out by the source's own NIC, in by the destination's
            assert info.nodes[2] == s.replace("/gpu", "/nic"), (s, d, info.nodes)
            assert info.nodes[-3] == d.replace("/gpu", "/nic"), (s, d, info.nodes)
        else:  # NVLink through the NVSwitch
            assert info.nodes[1].endswith("/nvswitch"), (s, d, info.nodes)


def test_one_gpu_sending_to_two_machines_gpus_shares_its_own_nic():
    # n0/gpu0 sends 50 MB to n1/gpu0 and 50 MB to n1/gpu1: both leave by n0/nic0 (50 GB/s,
    # the bottleneck: PCIe 64 GB/s, each leaf's uplink 2 × 50 GB/s / 2 spines). The first flow
    # starts after its latency (2 PCIe + 2 RoCE hops + 2 PCIe = 2.2 µs), the second 1 µs later
    # (the spine detour); the NIC carries 100 MB without a pause from 2.2 µs on.
    g = topologies.build("lamina_h100_h20", gpus_per_node=2)
    nic = LINKS["roce400"]
    pcie = LINKS["pcie5"]
    assert nic.bandwidth < pcie.bandwidth
    first_latency = 4 * pcie.latency + 2 * nic.latency
    hand = first_latency + 2 * 50e6 / nic.bandwidth
    env = simpy.Environment()
    fabric = Fabric(env, g, "ideal")
    ends = []

    def send(dst):
        yield fabric.transfer("n0/gpu0", dst, 50e6)
        ends.append(env.now)

    for dst in ("n1/gpu0", "n1/gpu1"):
        env.process(send(dst))
    env.run()
    assert max(ends) == pytest.approx(hand, rel=1e-9)  # 2002.2 µs; 1002.7 µs with a relay


def ring(with_switch: bool) -> nx.DiGraph:
    """Four GPUs in a ring of direct 0.1 µs links; optionally a 1 µs switch joined to each."""
    g = nx.DiGraph()
    links = [(f"g{i}", f"g{(i + 1) % 4}", 0.1 * US) for i in range(4)]
    if with_switch:
        g.add_node("sw", kind="nvswitch")
        links += [(f"g{i}", "sw", 1 * US) for i in range(4)]
    for i in range(4):
        g.add_node(f"g{i}", kind="gpu")
    for a, b, lat in links:
        g.add_edge(a, b, latency=lat, bandwidth=1e9, kind="nvlink")
        g.add_edge(b, a, latency=lat, bandwidth=1e9, kind="nvlink")
    return g


def test_a_path_through_a_switch_beats_a_shorter_one_through_a_gpu():
    g = ring(with_switch=True)
    # g0 → g1 → g2 takes 0.2 µs but relays through g1; the switch takes 2 µs and relays nothing
    assert gpu_path(g, "g0", "g2") == ["g0", "sw", "g2"]
    assert gpu_path(g, "g0", "g1") == ["g0", "g1"]  # a direct link passes through nothing
    assert PathCache(g)("g0", "g2").nodes == ("g0", "sw", "g2")
    got = paths_among(g, ["g0", "g1", "g2", "g3"])
    assert got[("g0", "g2")].nodes == ("g0", "sw", "g2")
    assert got[("g3", "g1")].nodes == ("g3", "sw", "g1")
    for (s, d), info in got.items():
        assert info == path_info(g, s, d), (s, d)


def test_gpus_chained_only_by_direct_links_stay_routable_through_each_other():
    g = ring(with_switch=False)
    # no path avoids a GPU: the whole graph, least latency then the smallest node sequence
    assert gpu_path(g, "g0", "g2") == ["g0", "g1", "g2"]  # g0 g1 g2 < g0 g3 g2
    assert gpu_path(g, "g1", "g3") == ["g1", "g0", "g3"]
    info = path_info(g, "g0", "g2")
    assert info.latency_time == pytest.approx(0.2 * US)
    assert PathCache(g)("g0", "g2") == info
    assert path_info(g, "g0", "g2", ecmp=True).hops == 2
    got = paths_among(g, ["g0", "g1", "g2", "g3"])
    assert len(got) == 12
    for (s, d), p in got.items():
        assert p == path_info(g, s, d) == PathCache(g)(s, d), (s, d)
    # a mixed case: g0 reaches g1 directly, g2 only through a GPU
    h = nx.DiGraph(g)
    h.remove_edges_from([("g2", "g3"), ("g3", "g2")])
    assert gpu_path(h, "g0", "g2") == ["g0", "g1", "g2"]
    assert gpu_path(h, "g3", "g2") == ["g3", "g0", "g1", "g2"]
    for (s, d), p in paths_among(h, ["g0", "g1", "g2", "g3"]).items():
        assert p == path_info(h, s, d), (s, d)
