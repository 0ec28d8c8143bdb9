"""The max-min fairness check itself (simulator/testing/fabric.py's ``max_min_violations``): it
passes fair snapshots and names each way a snapshot can be unfair. The fabric's property test
leans on it; a check that cannot fail would let an unfair Fabric through."""

from __future__ import annotations

import networkx as nx
import pytest

from simulator.network import FlowState
from simulator.testing.fabric import duplex, max_min_violations

# a -> b (10 B/s) -> c (4 B/s): the parking lot's two links
AB, BC = ("a", "b"), ("b", "c")


@pytest.fixture
def graph() -> nx.DiGraph:
    g = nx.DiGraph()
    duplex(g, "a", "b", 10.0)
    duplex(g, "b", "c", 4.0)
    return g


def flow(fid: int, rate: float, *edges) -> FlowState:
    return FlowState(fid, edges[0][0], edges[-1][1], rate, 1.0, tuple(edges))


def test_a_fair_parking_lot_has_no_violation(graph):
    # the long flow and one short flow share b->c (2 each); the other short flow takes the
    # rest of a->b (8): every flow crosses a saturated link where no flow gets more
    fair = [flow(0, 2.0, AB, BC), flow(1, 2.0, BC), flow(2, 8.0, AB)]
    assert max_min_violations(fair, graph) == []


def test_a_link_above_its_bandwidth_is_named(graph):
    over = [flow(0, 2.5, AB, BC), flow(1, 2.0, BC)]
    problems = max_min_violations(over, graph)
    assert any("link ('b', 'c'): load 4.5 > bandwidth 4.0" in p for p in problems)
    # within the tolerance: a rounding error is not a violation
    assert max_min_violations([flow(0, 2.0 * (1 + 1e-10), BC), flow(1, 2.0, BC)], graph) == []


def test_a_flow_on_no_saturated_link_is_named(graph):
    slack = [flow(0, 1.0, BC)]  # b->c could carry 4
    assert max_min_violations(slack, graph) == ["flow 0 (1.0 B/s) has no bottleneck link"]


def test_a_flow_below_another_on_its_only_saturated_link_is_named(graph):
    unequal = [flow(0, 1.0, BC), flow(1, 3.0, BC)]  # saturated, but flow 0 gets less
    assert max_min_violations(unequal, graph) == ["flow 0 (1.0 B/s) has no bottleneck link"]
    # a hair below the top is a tie
    assert max_min_violations([flow(0, 2.0 * (1 - 1e-10), BC), flow(1, 2.0 * (1 + 1e-10), BC)],
                              graph) == []


def test_a_flow_at_its_cap_needs_no_bottleneck(graph):
    capped = [flow(0, 1.0, BC)]
    assert max_min_violations(capped, graph, caps={0: 1.0}) == []
    assert max_min_violations(capped, graph, caps={0: 1.0 * (1 + 1e-10)}) == []
    assert max_min_violations(capped, graph, caps={0: 1.5}) != []
    assert max_min_violations(capped, graph, caps={1: 1.0}) != []  # another flow's cap


def test_a_bottleneck_counts_on_any_of_the_flow_s_links(graph):
    # the long flow is capped by b->c (saturated with the short one), not by a->b (slack)
    assert max_min_violations([flow(0, 2.0, AB, BC), flow(1, 2.0, BC)], graph) == []
    # and by a->b where it is held there: the top rate on a saturated a->b
    assert max_min_violations([flow(0, 4.0, AB, BC), flow(1, 6.0, AB)], graph) == []
    assert max_min_violations([flow(0, 3.0, AB, BC), flow(1, 7.0, AB)], graph) == [
        "flow 0 (3.0 B/s) has no bottleneck link"]  # less than flow 1 there, b->c slack


def test_exact_edges_hold_at_no_tolerance(graph):
    # links exactly full, flows exactly level with the top, a flow exactly at its cap
    fair = [flow(0, 2.0, AB, BC), flow(1, 2.0, BC), flow(2, 8.0, AB)]
    assert max_min_violations(fair, graph, rel=0.0) == []
    assert max_min_violations([flow(0, 1.0, BC)], graph, caps={0: 1.0}, rel=0.0) == []


def test_a_slow_link_filled_by_one_flow_is_fair():
    g = nx.DiGraph()
    duplex(g, "a", "b", 0.5)  # under 1 B/s: the top rate starts from nothing, not 1 B/s
    assert max_min_violations([flow(0, 0.5, AB)], g, rel=0.0) == []
