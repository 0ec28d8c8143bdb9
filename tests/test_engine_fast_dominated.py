"""Links that keep no calendar on the fast engine (:mod:`simulator.engine.dominance`).

A link whose every message also crosses a link no faster than it never decides a message's
time, a push or an idle check, so :class:`~simulator.engine.fast_links.Links` leaves it out of
its calendars. These tests hold that claim: the known answer on a DGX pair, every answer of a
``Links`` that drops them equal to one that keeps every calendar under random contended
traffic (the oracle is the full set of calendars), and whole runs with the same records — for
both ways of finding them (the routes, :func:`dominated_links`; the graph's neighbours,
:func:`funnel_links`, held to the first: never more, on the presets the same).
"""

from __future__ import annotations

import networkx as nx
import pandas as pd
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from simulator import run
from simulator.engine import fast_links
from simulator.engine.dominance import dominated_links, funnel_links
from simulator.engine.fast_links import Links
from simulator.network import Fabric
from simulator.testing.invariants import small_cases

GPUS = [f"n{n}/gpu{i}" for n in range(2) for i in range(8)]


def _fabric(stack: str = "ibgda") -> tuple[simpy.Environment, Fabric]:
    env = simpy.Environment()
    return env, Fabric(env, topologies.build("dgx_h100", nodes=2), stack)


def test_a_dgx_pair_drops_the_pcie_hops_behind_each_nic_and_nothing_inside_a_node():
    _, fabric = _fabric()
    dropped = dominated_links(fabric, GPUS)
    name = {i: pair for pair, i in fabric.link_index.items()}
    # each GPU's PCIe hop to its NIC and back, both directions, on both nodes: 16 GPUs × 4
    assert len(dropped) == 64
    assert all({"pcie" in u or "pcie" in v for u, v in [name[i]]} == {True} for i in dropped)
    assert {fabric.link_bandwidth[i] for i in dropped} == {64e9}
    for a in GPUS:
        for b in GPUS:
            if a == b:
                continue
            links = fabric.message_route(a, b)[2]
            kept = [i for i in links if i not in dropped]
            if a[:2] == b[:2]:  # NVLink through the switch: both hops kept
                assert kept == list(links)
            else:  # six hops on one rail, eight across: the four PCIe hops dropped, the
                # NICs' and the switches' kept, the slowest among them
                assert len(links) in (6, 8) and len(kept) == len(links) - 4
                assert min(fabric.link_bandwidth[i] for i in kept) == \
                    min(fabric.link_bandwidth[i] for i in links)


def test_links_of_the_same_routes_and_rate_keep_one_and_a_faster_subset_is_dropped():
    # n0/gpu0 → n1/gpu0 only: every link of the route carries the same one route, so all but
    # the slowest (the NIC and switch hops, 50 GB/s) are dominated; of those four, equal in
    # rate and routes, the one of lowest index is kept
    _, fabric = _fabric()
    links = fabric.message_route("n0/gpu0", "n1/gpu0")[2]
    dropped = dominated_links(fabric, ["n0/gpu0", "n1/gpu0"])
    kept = [i for i in links if i not in dropped]
    slowest = [i for i in links if fabric.link_bandwidth[i] == 50e9]
    assert kept == [min(slowest)]


def test_links_finds_them_by_routes_up_to_the_limit_then_by_neighbours(monkeypatch):
    env, fabric = _fabric()
    assert Links(env, fabric).dominated == frozenset()  # no endpoints: every calendar kept
    by_routes = Links(env, fabric, endpoints=GPUS).dominated
    assert len(by_routes) == 64
    # 16 GPUs: 240 ordered pairs, found among the routes up to the limit, then from the
    # neighbours; the second asks no route (a pair not routed yet stays so)
    monkeypatch.setattr(Links, "DOMINANCE_PAIRS", 16 * 15)
    assert Links(env, fabric, endpoints=GPUS).dominated == by_routes
    monkeypatch.setattr(Links, "DOMINANCE_PAIRS", 16 * 15 - 1)
    env, fabric = _fabric()
    assert Links(env, fabric, endpoints=GPUS).dominated == by_routes
    assert not fabric._routes


def _crossed(fabric, ends) -> set[int]:
    """The links some route between two of ``ends`` crosses."""
    return {i for a in ends for b in ends if a != b for i in fabric.message_route(a, b)[2]}


@pytest.mark.parametrize(("preset", "params"), [
    ("single_node", {}), ("single_node", {"gpus": 4}), ("dgx_h100", {"nodes": 1}),
    ("dgx_h100", {}), ("dgx_h100", {"nodes": 3, "nodes_per_su": 2, "spines": 1}),
    ("dgx_h100", {"nodes": 4, "nodes_per_su": 2, "oversubscription": 2.0}),
    ("fat_tree", {}), ("fat_tree", {"k": 6}), ("lamina_h100_h20", {}),
    ("lamina_h100_h20", {"h100_nodes": 2, "spines": 1})])
@pytest.mark.parametrize("stack", ["ibgda", "nccl"])
def test_the_neighbours_find_what_the_routes_find_on_every_preset(preset, params, stack):
    fabric = Fabric(simpy.Environment(), topologies.build(preset, **params), stack)
    ends = [n for n in fabric.graph if fabric.graph.nodes[n].get("kind") == "gpu"]
    by_routes = dominated_links(fabric, ends)
    # links no route crosses carry nothing either way: the neighbours may count them
    assert funnel_links(fabric, ends) & _crossed(fabric, ends) == by_routes


def test_the_neighbours_never_drop_a_link_the_routes_keep():
    # two GPUs of a DGX pair talk: every link of their one route carries the same route, so
    # the routes keep only the slowest of lowest index; the neighbours know only that the
    # PCIe hops lead to and from the NIC (the leaf switches have other ways), and keep more
    _, fabric = _fabric()
    ends = ["n0/gpu0", "n1/gpu0"]
    links = fabric.message_route(*ends)[2]
    by_neighbours = funnel_links(fabric, ends) & set(links)
    assert by_neighbours < dominated_links(fabric, ends)
    assert len(by_neighbours) == 4
    name = {i: pair for pair, i in fabric.link_index.items()}
    assert all("pcie" in u or "pcie" in v for u, v in (name[i] for i in by_neighbours))


def _graph(edges: list[tuple[str, str, float]], kinds: dict[str, str]) -> nx.DiGraph:
    g = nx.DiGraph()
    for n, kind in kinds.items():
        g.add_node(n, kind=kind)
    for u, v, bw in edges:  # both directions
        g.add_edge(u, v, bandwidth=bw, latency=1e-6)
        g.add_edge(v, u, bandwidth=bw, latency=1e-6)
    return g


def test_the_neighbours_find_nothing_where_a_route_must_pass_through_a_gpu():
    # a → s0 → b → s1 → c: a and c meet only through GPU b (the path rule allows it where a
    # pair has no other path). s0's other way (to s2) is a dead end; were b taken for no way
    # on (as it is where every pair has a path through switches only), a → s0 would seem to
    # lead only to s0 → s2, no faster, and be dropped — yet a → c crosses it, and s0 → s2 not
    kinds = {"a": "gpu", "b": "gpu", "c": "gpu", "s0": "nvswitch", "s1": "nvswitch",
             "s2": "nvswitch"}
    g = _graph([("a", "s0", 100e9), ("s0", "b", 100e9), ("b", "s1", 100e9),
                ("s1", "c", 100e9), ("s0", "s2", 50e9)], kinds)
    fabric = Fabric(simpy.Environment(), g, "ibgda")
    ends = ["a", "c"]
    assert fabric.path("a", "c").nodes == ("a", "s0", "b", "s1", "c")
    assert funnel_links(fabric, ends) == frozenset()
    # with b an endpoint too, every pair of ends is one hop from a switch: still b is passed
    # through between a and c, and nothing is found
    assert funnel_links(fabric, ["a", "b", "c"]) == frozenset()
    # nor where an end is not one (a switch), or there is none
    assert funnel_links(fabric, ["a", "s1", "c"]) == frozenset()
    assert funnel_links(fabric, []) == frozenset()
    # and where the switches connect every end, the same graph's funnels are found
    g.add_edge("s0", "s1", bandwidth=100e9, latency=1e-6)
    g.add_edge("s1", "s0", bandwidth=100e9, latency=1e-6)
    fabric = Fabric(simpy.Environment(), g, "ibgda")
    found = funnel_links(fabric, ends)
    assert found and found <= dominated_links(fabric, ends) | (
        set(range(len(fabric.link_bandwidth))) - _crossed(fabric, ends))


_message = st.tuples(st.sampled_from(GPUS), st.sampled_from(GPUS),
                     st.floats(1e3, 4e8),  # bytes: µs-scale to ~8 ms on a NIC
                     st.floats(0.0, 2e-3),  # issued at [s]: out of order, overlapping
                     st.integers(0, 5), st.sampled_from([1, 1, 3, 8]))


@settings(max_examples=150, deadline=None)
@given(st.lists(_message, min_size=1, max_size=40), st.sampled_from(["ibgda", "nccl"]),
       st.booleans(), st.booleans())
def test_dropping_the_dominated_calendars_changes_no_answer_under_contention(messages, stack,
                                                                            phases, routed):
    env, fabric = _fabric(stack)
    debts = {True: [0.0] * 6, False: [0.0] * 6}
    with pytest.MonkeyPatch.context() as mp:  # found by the routes, or by the neighbours
        mp.setattr(Links, "DOMINANCE_PAIRS", 16 * 15 if routed else 0)
        both = {pruned: Links(env, fabric, debts[pruned], endpoints=GPUS if pruned else None)
                for pruned in (True, False)}
    assert both[True].dominated and not both[False].dominated
    msgs = [m for m in messages if m[0] != m[1]]
    for k, (src, dst, nbytes, at, owner, fold) in enumerate(msgs):
        got = {}
        for pruned, links in both.items():
            # what an observing policy reads before the message, then the message itself:
            # alone, or in a phase with the next message (max-min among them, then FIFO)
            seen = (links.idle(src, dst, at), links.extra_time(src, dst, nbytes, at))
            if phases and k + 1 < len(msgs) and msgs[k + 1][0] != msgs[k + 1][1]:
                nxt = msgs[k + 1]
                timed = links.phase([(src, dst, nbytes, at), (nxt[0], nxt[1], nxt[2], at)],
                                    owner, fold)
            else:
                timed = [links.one(src, dst, nbytes, at, owner, fold)]
            got[pruned] = (seen, timed, links.contended, list(debts[pruned]))
        assert got[True] == got[False]
    # and the calendars kept hold what the full set holds on those links
    for i, cal in enumerate(both[False].cal):
        if i not in both[True].dominated:
            assert both[True].cal[i].end == cal.end and both[True].cal[i].end0 == cal.end0


@settings(max_examples=12, deadline=None)
@given(small_cases(), st.sampled_from(["route", "fetch", "adaptive"]), st.booleans())
def test_a_run_without_the_dominated_calendars_keeps_its_records(case, policy, routed):
    scenario, trace = case
    with pytest.MonkeyPatch.context() as mp:  # found by the routes, or by the neighbours
        mp.setattr(Links, "DOMINANCE_PAIRS", 10**9 if routed else 0)
        pruned = run(scenario, policy, trace=trace, engine="fast")
    with pytest.MonkeyPatch.context() as mp:  # every link keeps its calendar
        mp.setattr(fast_links, "dominated_links", lambda fabric, ends: frozenset())
        mp.setattr(fast_links, "funnel_links", lambda fabric, ends: frozenset())
        full = run(scenario, policy, trace=trace, engine="fast")
    for table in ("requests", "rounds", "iterations", "gpus", "links", "link_timeline"):
        pd.testing.assert_frame_equal(getattr(pruned, table), getattr(full, table),
                                      check_exact=True)
    assert pruned.extras["contended_messages"] == full.extras["contended_messages"]
    assert pruned.extras["pushed_steps"] == full.extras["pushed_steps"]


def test_the_neighbours_find_nothing_where_an_end_cannot_be_reached_or_left():
    # a ↔ s0 ↔ s1 ↔ b, links of one rate: a → s0 leads only on to s0 → s1 (found), unless an
    # end c enters s0 without a way back (pairs ending at c have no path: nothing is found),
    # or GPUs meet without switches at all
    kinds = {"a": "gpu", "b": "gpu", "c": "gpu", "s0": "nvswitch", "s1": "nvswitch"}
    g = _graph([("a", "s0", 100e9), ("s0", "s1", 100e9), ("s1", "b", 100e9)], kinds)
    assert funnel_links(Fabric(simpy.Environment(), g, "ibgda"), ["a", "b"])
    g.add_edge("c", "s0", bandwidth=100e9, latency=1e-6)
    fabric = Fabric(simpy.Environment(), g, "ibgda")
    assert funnel_links(fabric, ["a", "b", "c"]) == frozenset()
    g = _graph([("a", "b", 100e9), ("b", "c", 100e9)], {"a": "gpu", "b": "gpu", "c": "gpu"})
    assert funnel_links(Fabric(simpy.Environment(), g, "ibgda"), ["a", "b", "c"]) == frozenset()
