"""simulator.network.paths at its tolerances: which paths count as equal in cost, and the hop term.

Two paths from ``a`` to ``b`` (``a → x → b`` and ``a → y → b``, or a direct link) on hand-built
graphs whose latencies sit just inside or just outside the equal-cost tolerance
(``latency ≤ best × (1 + 1e-12) + 1e-18``), and a one-hop-longer path whose latency saving
exceeds the per-hop tie-break term (1e-15 s) of the path search.
"""

from __future__ import annotations

import zlib

import networkx as nx
import pytest

from simulator.network.paths import (
    PathCache,
    _equal_cost_paths,
    gpu_path,
    path_info,
    paths_among,
)

US = 1e-6
TOP = ["a", "x", "b"]
BOTTOM = ["a", "y", "b"]


def two_ways(top: tuple[float, float], bottom: tuple[float, float], a: str = "a",
             b: str = "b") -> nx.DiGraph:
    """a → x → b with hop latencies ``top``; a → y → b with ``bottom`` (one direction only)."""
    g = nx.DiGraph()
    for n in (a, b):
        g.add_node(n, kind="gpu")
    for n in "xy":
        g.add_node(n, kind="leaf")
    g.add_edge(a, "x", latency=top[0], bandwidth=1e9)
    g.add_edge("x", b, latency=top[1], bandwidth=1e9)
    g.add_edge(a, "y", latency=bottom[0], bandwidth=2e9)
    g.add_edge("y", b, latency=bottom[1], bandwidth=2e9)
    return g


@pytest.mark.parametrize("top, bottom, equal", [
    # zero-latency best: the absolute term alone, 1e-18 s, is the tolerance
    ((0.0, 0.0), (0.0, 1e-18), True),  # exactly at the tolerance: still equal
    ((0.0, 0.0), (0.0, 1.5e-18), False),  # past it
    # a best of 1 ms: the relative term, 1e-12 × 1e-3 s = 1e-15 s, dominates
    ((0.5e-3, 0.5e-3), (0.5e-3, 0.5e-3 + 0.5e-15), True),
    ((0.5e-3, 0.5e-3), (0.5e-3, 0.5e-3 + 1.5e-15), False),
])
def test_equal_cost_paths_are_those_within_the_tolerance(top, bottom, equal):
    g = two_ways(top, bottom)
    assert _equal_cost_paths(g, "a", "b") == ([TOP, BOTTOM] if equal else [TOP])


def test_ecmp_spreads_only_over_paths_within_the_tolerance():
    # The pair ("s", "d") hashes to the second of two equal paths (crc32(b"s->d") is odd): the
    # one through "y", sorted after the one through "x".
    assert zlib.crc32(b"s->d") % 2 == 1
    inside = two_ways((0.0, 0.0), (0.0, 1e-18), "s", "d")
    assert gpu_path(inside, "s", "d", ecmp=True) == ["s", "y", "d"]
    assert path_info(inside, "s", "d", ecmp=True).bottleneck_bandwidth == 2e9
    assert PathCache(inside, ecmp=True)("s", "d").nodes == ("s", "y", "d")
    rel_inside = two_ways((0.5e-3, 0.5e-3), (0.5e-3, 0.5e-3 + 0.5e-15), "s", "d")
    assert gpu_path(rel_inside, "s", "d", ecmp=True) == ["s", "y", "d"]
    # Just past the tolerance the "y" path costs more: ECMP has one path, through "x".
    outside = two_ways((0.0, 0.0), (0.0, 1.5e-18), "s", "d")
    assert gpu_path(outside, "s", "d", ecmp=True) == ["s", "x", "d"]
    assert path_info(outside, "s", "d", ecmp=True).bottleneck_bandwidth == 1e9
    rel_outside = two_ways((0.5e-3, 0.5e-3), (0.5e-3, 0.5e-3 + 1.5e-15), "s", "d")
    assert gpu_path(rel_outside, "s", "d", ecmp=True) == ["s", "x", "d"]


def test_a_latency_saving_beyond_the_hop_term_beats_a_shorter_path():
    # a → b directly in 1 µs, or a → x → b in 1 µs − 1.5 fs: the saving (1.5e-15 s) exceeds the
    # one extra hop's tie-break term (1e-15 s), so least latency wins over fewer hops.
    g = nx.DiGraph()
    for n in "abx":
        g.add_node(n, kind="gpu" if n in "ab" else "leaf")
    g.add_edge("a", "b", latency=1 * US, bandwidth=1e9)
    g.add_edge("a", "x", latency=0.5 * US, bandwidth=3e9)
    g.add_edge("x", "b", latency=0.5 * US - 1.5e-15, bandwidth=4e9)
    p = path_info(g, "a", "b")
    assert p.nodes == ("a", "x", "b") and p.hops == 2 and p.bottleneck_bandwidth == 3e9
    assert p.latency_time == pytest.approx(1 * US - 1.5e-15, rel=0, abs=1e-21)
    assert PathCache(g)("a", "b").nodes == ("a", "x", "b")
    # With a saving below the hop term (0.5 fs), the direct link's single hop wins.
    g.edges["x", "b"]["latency"] = 0.5 * US - 0.5e-15
    assert gpu_path(g, "a", "b") == ["a", "b"]
    assert PathCache(g)("a", "b").nodes == ("a", "b")


@pytest.mark.parametrize("best, extra, equal", [
    (0.0, 0.5e-18, True), (0.0, 1.5e-18, False),  # the absolute term, 1e-18 s
    (0.5e-3, 0.5e-15, True), (0.5e-3, 1.5e-15, False),  # the relative term, 1e-12 × 1 ms
])
def test_without_ecmp_a_costlier_smaller_name_wins_only_within_the_tolerance(best, extra, equal):
    # Through "x" (the smaller name) costs ``extra`` more than through "y": within the tolerance
    # the two are equal and "x" wins by name; past it "y" wins by latency — for path_info, the
    # cache (one Dijkstra per destination) and paths_among alike.
    g = two_ways((best, best + extra), (best, best))
    g.add_edge("b", "a", latency=0.0, bandwidth=1e9)  # paths_among also routes b → a
    want = TOP if equal else BOTTOM
    assert gpu_path(g, "a", "b") == want
    assert PathCache(g)("a", "b").nodes == tuple(want)
    assert paths_among(g, ["a", "b"])[("a", "b")].nodes == tuple(want)
