"""Links that keep no calendar on the fast engine (``fast_links.dominated_links``).

A link whose every message also crosses a link no faster than it never decides a message's
time, a push or an idle check, so :class:`~simulator.engine.fast_links.Links` leaves it out of
its calendars. These tests hold that claim: the known answer on a DGX pair, every answer of a
``Links`` that drops them equal to one that keeps every calendar under random contended
traffic (the oracle is the full set of calendars), and whole runs with the same records.
"""

from __future__ import annotations

import pandas as pd
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from simulator import run
from simulator.engine.fast_links import Links, dominated_links
from simulator.network import Fabric
from simulator.testing.invariants import small_cases

GPUS = [f"n{n}/gpu{i}" for n in range(2) for i in range(8)]


def _fabric(stack: str = "ibgda") -> tuple[simpy.Environment, Fabric]:
    env = simpy.Environment()
    return env, Fabric(env, topologies.build("dgx_h100", nodes=2), stack)


def test_a_dgx_pair_drops_the_pcie_hops_behind_each_nic_and_nothing_inside_a_node():
    _, fabric = _fabric()
    dropped = dominated_links(fabric, GPUS)
    name = {i: pair for pair, i in fabric._index.items()}
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


def test_links_keeps_every_calendar_when_the_endpoints_are_unknown_or_too_many(monkeypatch):
    env, fabric = _fabric()
    assert Links(env, fabric).dominated == frozenset()
    assert len(Links(env, fabric, endpoints=GPUS).dominated) == 64
    # 16 GPUs: 240 ordered pairs, looked for up to the limit and not past it
    monkeypatch.setattr(Links, "DOMINANCE_PAIRS", 16 * 15)
    assert len(Links(env, fabric, endpoints=GPUS).dominated) == 64
    monkeypatch.setattr(Links, "DOMINANCE_PAIRS", 16 * 15 - 1)
    assert Links(env, fabric, endpoints=GPUS).dominated == frozenset()


_message = st.tuples(st.sampled_from(GPUS), st.sampled_from(GPUS),
                     st.floats(1e3, 4e8),  # bytes: µs-scale to ~8 ms on a NIC
                     st.floats(0.0, 2e-3),  # issued at [s]: out of order, overlapping
                     st.integers(0, 5), st.sampled_from([1, 1, 3, 8]))


@settings(max_examples=150, deadline=None)
@given(st.lists(_message, min_size=1, max_size=40), st.sampled_from(["ibgda", "nccl"]),
       st.booleans())
def test_dropping_the_dominated_calendars_changes_no_answer_under_contention(messages, stack,
                                                                            phases):
    env, fabric = _fabric(stack)
    debts = {True: [0.0] * 6, False: [0.0] * 6}
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
@given(small_cases(), st.sampled_from(["route", "fetch", "adaptive"]))
def test_a_run_without_the_dominated_calendars_keeps_its_records(case, policy):
    scenario, trace = case
    pruned = run(scenario, policy, trace=trace, engine="fast")
    with pytest.MonkeyPatch.context() as mp:  # every link keeps its calendar
        mp.setattr(Links, "DOMINANCE_PAIRS", 0)
        full = run(scenario, policy, trace=trace, engine="fast")
    for table in ("requests", "rounds", "iterations", "gpus", "links", "link_timeline"):
        pd.testing.assert_frame_equal(getattr(pruned, table), getattr(full, table),
                                      check_exact=True)
    assert pruned.extras["contended_messages"] == full.extras["contended_messages"]
    assert pruned.extras["pushed_steps"] == full.extras["pushed_steps"]
