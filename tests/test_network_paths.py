"""simulator.network.paths: which path a message takes, and that the choice never depends on luck.

Known answers on small hand graphs first, then hypothesis properties (edge insertion order does
not matter; ECMP is stable), then an oracle: brute force over all simple paths.
"""

from __future__ import annotations

import zlib

import networkx as nx
import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

import topologies
from simulator.costmodel import CostModel
from simulator.network import Fabric
from simulator.network.paths import (
    MAX_EQUAL_COST_PATHS,
    NoPathError,
    PathCache,
    PathInfo,
    _equal_cost_paths,
    gpu_path,
    path_info,
    paths_among,
)

US = 1e-6


def link(g: nx.DiGraph, a: str, b: str, latency: float, bandwidth: float = 1e9,
         kind: str = "ib") -> None:
    g.add_edge(a, b, latency=latency, bandwidth=bandwidth, kind=kind)
    g.add_edge(b, a, latency=latency, bandwidth=bandwidth, kind=kind)


def diamond(top: float, bottom: float, detour_hops: int = 0) -> nx.DiGraph:
    """a → x → b (latency ``top`` per hop) and a → y → b (``bottom`` per hop)."""
    g = nx.DiGraph()
    for n in "abxy":
        g.add_node(n, kind="gpu" if n in "ab" else "leaf")
    link(g, "a", "x", top, bandwidth=2e9)
    link(g, "x", "b", top, bandwidth=5e9)
    link(g, "a", "y", bottom, bandwidth=3e9)
    link(g, "y", "b", bottom, bandwidth=4e9)
    return g


def test_least_latency_wins_and_its_figures_are_summed():
    p = path_info(diamond(top=2 * US, bottom=1 * US), "a", "b")
    assert p == PathInfo(("a", "y", "b"), (("a", "y"), ("y", "b")), 2 * US, 3e9, False)
    assert p.hops == 2
    p = path_info(diamond(top=1 * US, bottom=2 * US), "a", "b")
    assert p.nodes == ("a", "x", "b") and p.bottleneck_bandwidth == 2e9


def test_equal_latency_ties_go_to_fewer_hops_then_to_the_smaller_name():
    g = diamond(top=1 * US, bottom=1 * US)
    assert gpu_path(g, "a", "b") == ["a", "x", "b"]  # "x" < "y"
    assert gpu_path(g, "b", "a") == ["b", "x", "a"]
    # A direct link with the same summed latency (2 µs) but one hop wins.
    link(g, "a", "b", 2 * US)
    assert gpu_path(g, "a", "b") == ["a", "b"]


def test_inter_node_is_true_exactly_when_a_nic_is_crossed():
    g = diamond(top=1 * US, bottom=2 * US)
    assert not path_info(g, "a", "b").inter_node
    g.nodes["x"]["kind"] = "nic"
    assert path_info(g, "a", "b").inter_node


def test_degenerate_and_impossible_requests():
    g = diamond(1 * US, 1 * US)
    same = path_info(g, "a", "a")
    assert same.nodes == ("a",) and same.hops == 0 and same.latency_time == 0
    assert same.bottleneck_bandwidth == float("inf")
    g.add_node("z", kind="gpu")
    with pytest.raises(NoPathError, match="no path from 'a' to 'z'"):
        path_info(g, "a", "z")
    with pytest.raises(NoPathError, match="'nowhere' is not in the topology"):
        path_info(g, "a", "nowhere")
    with pytest.raises(NoPathError, match="'elsewhere' is not in the topology"):
        path_info(g, "elsewhere", "a")  # the missing end is named, whichever it is
    with pytest.raises(NoPathError, match="not in the topology"):
        path_info(g, "nowhere", "nowhere")


def test_path_cache_memoizes_path_info():
    g = topologies.build("dgx_h100", nodes=2)
    cache = PathCache(g)
    first = cache("n0/gpu0", "n1/gpu5")
    assert cache("n0/gpu0", "n1/gpu5") is first
    assert first == path_info(g, "n0/gpu0", "n1/gpu5")


@pytest.mark.parametrize(("preset", "nodes"), [("dgx_h100", 2), ("dgx_h100", 4)])
def test_the_cache_chooses_every_preset_path_as_path_info_does(preset, nodes):
    g = topologies.build(preset, nodes=nodes)
    ends = sorted(topologies.gpus(g))[::3] + [n for n in g if g.nodes[n].get("kind") == "host"]
    cache = PathCache(g)
    for src in ends:
        for dst in ends:
            assert cache(src, dst) == path_info(g, src, dst), (src, dst)


# -- ECMP ---------------------------------------------------------------------------------------

def two_tier(spines: int) -> nx.DiGraph:
    """Two leaves joined by ``spines`` equal spines; two GPUs under each leaf."""
    g = nx.DiGraph()
    for leaf in ("leaf0", "leaf1"):
        g.add_node(leaf, kind="leaf")
        for j in range(spines):
            g.add_node(f"spine{j}", kind="spine")
            link(g, leaf, f"spine{j}", 0.2 * US)
    for i in range(4):
        g.add_node(f"g{i}", kind="gpu")
        link(g, f"g{i}", f"leaf{i // 2}", 0.2 * US)
    return g


def test_ecmp_picks_by_a_stable_hash_of_the_endpoints():
    g = two_tier(spines=4)
    plain = gpu_path(g, "g0", "g2")
    assert plain == ["g0", "leaf0", "spine0", "leaf1", "g2"]
    for src, dst in (("g0", "g2"), ("g0", "g3"), ("g1", "g2"), ("g3", "g1")):
        chosen = gpu_path(g, src, dst, ecmp=True)
        spine = zlib.crc32(f"{src}->{dst}".encode()) % 4  # spines sort as spine0 … spine3
        assert chosen[2] == f"spine{spine}"
        assert path_info(g, src, dst, ecmp=True).latency_time == pytest.approx(0.8 * US)
    # Pairs are spread over more than one spine.
    used = {gpu_path(g, s, d, ecmp=True)[2] for s in ("g0", "g1") for d in ("g2", "g3")}
    assert len(used) > 1
    # Without equal-cost alternatives ECMP changes nothing.
    assert gpu_path(g, "g0", "g1", ecmp=True) == gpu_path(g, "g0", "g1") == ["g0", "leaf0", "g1"]


# -- properties: insertion order never matters --------------------------------------------------

def rebuilt(g: nx.DiGraph, node_order: list, edge_order: list) -> nx.DiGraph:
    h = nx.DiGraph()
    for n in node_order:
        h.add_node(n, **g.nodes[n])
    for u, v in edge_order:
        h.add_edge(u, v, **g.edges[u, v])
    return h


@given(st.randoms(use_true_random=False))
def test_paths_do_not_depend_on_edge_insertion_order(rnd):
    g = two_tier(spines=3)
    nodes, edges = list(g.nodes), list(g.edges)
    rnd.shuffle(nodes)
    rnd.shuffle(edges)
    h = rebuilt(g, nodes, edges)
    for ecmp in (False, True):
        for src in ("g0", "g1", "g2", "g3"):
            for dst in ("g0", "g1", "g2", "g3"):
                assert gpu_path(h, src, dst, ecmp) == gpu_path(g, src, dst, ecmp)


@given(st.randoms(use_true_random=False))
def test_preset_paths_do_not_depend_on_edge_insertion_order(rnd):
    g = topologies.build("dgx_h100", nodes=2, spines=3)
    edges = list(g.edges)
    rnd.shuffle(edges)
    h = rebuilt(g, sorted(g.nodes, reverse=True), edges)
    pairs = [("n0/gpu0", "n1/gpu3"), ("n1/gpu6", "n0/gpu1"), ("n0/gpu2", "n0/gpu7")]
    for src, dst in pairs:
        for ecmp in (False, True):
            assert path_info(h, src, dst, ecmp) == path_info(g, src, dst, ecmp)


# -- oracle: brute force over all simple paths --------------------------------------------------

@st.composite
def small_graphs(draw):
    """Up to 6 nodes, links with latencies of 0–3 tenths of a µs (sums stay exact enough)."""
    n = draw(st.integers(2, 6))
    names = [f"v{i}" for i in range(n)]
    g = nx.DiGraph()
    for name in names:
        g.add_node(name, kind=draw(st.sampled_from(["gpu", "nic", "leaf", "host"])))
    pairs = [(a, b) for a in names for b in names if a != b]
    for a, b in draw(st.lists(st.sampled_from(pairs), max_size=14, unique=True)):
        g.add_edge(a, b, latency=draw(st.integers(0, 3)) * 0.1 * US,
                   bandwidth=draw(st.sampled_from([1e9, 2e9, 5e9])), kind="ib")
    return g


def brute_force(g: nx.DiGraph, src: str, dst: str) -> list[str] | None:
    """Least (latency in 0.1 µs units, hops, node names) over every simple path through no GPU
    or host but the endpoints — or over every simple path where there is no such path."""
    every = list(nx.all_simple_paths(g, src, dst))
    clean = [p for p in every if not any(g.nodes[n]["kind"] in ("gpu", "host") for n in p[1:-1])]
    best = None
    for p in clean or every:
        lat = sum(g.edges[u, v]["latency"] for u, v in zip(p, p[1:], strict=False))
        key = (round(lat / (0.1 * US)), len(p), p)
        best = key if best is None or key < best else best
    return None if best is None else best[2]


@given(small_graphs())
def test_path_choice_matches_brute_force(g):
    for src in g.nodes:
        for dst in g.nodes:
            if src == dst:
                continue
            expected = brute_force(g, src, dst)
            if expected is None:
                with pytest.raises(NoPathError):
                    gpu_path(g, src, dst)
                with pytest.raises(NoPathError):
                    PathCache(g)(src, dst)
                continue
            info = path_info(g, src, dst)
            assert list(info.nodes) == expected
            # the cache finds it by one Dijkstra per destination, not by enumerating paths
            assert PathCache(g)(src, dst) == info
            assert info.bottleneck_bandwidth == min(g.edges[e]["bandwidth"] for e in info.edges)
            assert info.inter_node == any(g.nodes[n]["kind"] == "nic" for n in expected)
            # ECMP picks a path of the same cost.
            alt = path_info(g, src, dst, ecmp=True)
            assert alt.latency_time == pytest.approx(info.latency_time, abs=1e-15)
            assert alt.hops == info.hops


# -- many pairs at once, a primed cache, edges without a latency, the ECMP cap -------------------

@given(small_graphs())
def test_paths_among_is_path_info_pair_by_pair(g):
    nodes = sorted(g.nodes)
    reachable = [(s, d) for s in nodes for d in nodes if s != d and nx.has_path(g, s, d)]
    if len(reachable) < len(nodes) * (len(nodes) - 1):
        with pytest.raises(NoPathError):
            paths_among(g, nodes)
        return
    got = paths_among(g, nodes)
    assert set(got) == set(reachable)
    for (s, d), info in got.items():
        assert info == path_info(g, s, d), (s, d)


def test_paths_among_a_preset_and_a_primed_cache():
    g = topologies.build("dgx_h100", nodes=2)
    ends = sorted(topologies.gpus(g))[::5]
    got = paths_among(g, ends)
    assert len(got) == len(ends) * (len(ends) - 1)
    cache = PathCache(g)
    cache.prime(got)
    for key, info in got.items():
        assert cache(*key) is info  # taken as given, not computed again
        assert info == path_info(g, *key)
    # with ECMP a primed path is ignored: every pair is chosen among its equal-cost paths
    fake = PathInfo(("x",), (), 0.0, 1.0, False)
    ecmp = PathCache(g, ecmp=True)
    ecmp.prime({(ends[0], ends[1]): fake})
    assert ecmp(ends[0], ends[1]) == path_info(g, ends[0], ends[1], ecmp=True)


def test_an_edge_without_a_latency_costs_none():
    g = diamond(top=1 * US, bottom=2 * US)
    for u, v in (("a", "x"), ("x", "b")):
        del g.edges[u, v]["latency"]
    # a → x → b now has no latency at all: it wins, with 0 s summed
    info = path_info(g, "a", "b")
    assert info.nodes == ("a", "x", "b") and info.latency_time == 0.0
    assert PathCache(g)("a", "b") == info
    assert paths_among(g, ["a", "b"])[("a", "b")] == info
    # and it has no equal-cost rival for ECMP (named so that the hash would take the second)
    h = nx.relabel_nodes(g, {"a": "src", "b": "dst"})
    assert gpu_path(h, "src", "dst", ecmp=True) == ["src", "x", "dst"]


def test_ecmp_over_two_paths_uses_the_hash_and_a_cache_with_ecmp_does_too():
    # a diamond of equal arms from "src" to "dst": crc32("src->dst") is odd, so ECMP takes the
    # second of the two sorted paths (via y), where the plain rule takes the first (via x)
    g = nx.relabel_nodes(diamond(top=1 * US, bottom=1 * US), {"a": "src", "b": "dst"})
    assert zlib.crc32(b"src->dst") % 2 == 1
    assert gpu_path(g, "src", "dst") == ["src", "x", "dst"]
    assert gpu_path(g, "src", "dst", ecmp=True) == ["src", "y", "dst"]
    assert PathCache(g, ecmp=True)("src", "dst").nodes == ("src", "y", "dst")
    assert PathCache(g)("src", "dst").nodes == ("src", "x", "dst")


def test_ecmp_chooses_among_at_most_256_equal_paths():
    g = two_tier(spines=300)
    assert len(_equal_cost_paths(g, "g0", "g2")) == MAX_EQUAL_COST_PATHS == 256


def test_a_fabric_shares_the_cost_models_path_cache():
    """A run's Fabric and CostModel find each path once (one cache); a cache of another graph,
    or with another ECMP setting, is refused."""
    g = topologies.build("dgx_h100", nodes=2)
    a, b = sorted(topologies.gpus(g))[:2]
    cm = CostModel("llama-3.1-8b", g, "ibgda")
    fabric = Fabric(simpy.Environment(), g, "ibgda", paths=cm.path_cache)
    assert fabric.paths is cm.path_cache
    assert fabric.path(a, b) is cm.path(a, b) == path_info(g, a, b)
    with pytest.raises(ValueError, match="same graph"):
        Fabric(simpy.Environment(), topologies.build("dgx_h100", nodes=2), paths=cm.path_cache)
    with pytest.raises(ValueError, match="ecmp"):
        Fabric(simpy.Environment(), g, ecmp=True, paths=cm.path_cache)
