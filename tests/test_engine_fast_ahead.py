"""Quiet slots composed ahead of the clock (simulator/engine/fast_ahead.py): the same records as
with an event per slot, bit for bit, with far fewer events; the bounds that allow it, known
answer by known answer; and the tie-break that keeps the order of simultaneous events
independent of when they were scheduled."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import run
from simulator.engine.fast import FastRun
from simulator.engine.fast_ahead import GpuTimeout, Lookahead
from simulator.runner import load_trace
from simulator.scenario import EngineSpec, Scenario
from simulator.testing.invariants import small_cases, small_scenario
from workloads.schema import make_trace

ROOT = Path(__file__).resolve().parents[1]
INF = math.inf
TABLES = ("requests", "rounds", "links", "gpus", "iterations", "link_timeline")


def runs(monkeypatch, sc, trace, policy: str):
    """``(without, with)``: the fast engine's run of ``trace`` on ``sc`` under ``policy`` with
    every quiet slot waiting for the events due before it, and composed ahead where it may."""
    got = []
    for ahead in (False, True):
        monkeypatch.setattr(FastRun, "look_ahead", ahead)
        got.append(run(sc, policy, 0, trace=trace, engine="fast"))
    return got


def same_records(a, b) -> None:
    """Every table bit for bit, and the summary but for the SimPy event count and wall time."""
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    skip = {"events", "wall_time"}
    assert a.summary.keys() == b.summary.keys()
    for key, x in a.summary.items():
        y = b.summary[key]
        assert key in skip or x == y or (x != x and y != y), key  # NaN: undefined in both
    assert a.extras["pushed_steps"] == b.extras["pushed_steps"]


# -- whole runs: the same records ------------------------------------------------------------


def mooncake(requests: int) -> tuple:
    sc = Scenario.load(ROOT / "scenarios" / "mooncake_conversation.toml")
    sc = sc.with_changes(engine=EngineSpec(max_batch=sc.engine.max_batch, layer_groups=0,
                                           duration=None, max_requests=requests))
    return sc, load_trace(sc, 0)


def test_the_mooncake_prefix_with_every_layer_under_adaptive_makes_a_fifth_of_the_events(
        monkeypatch):
    # adaptive routes nothing here, but may: every quiet slot of its steps waited for the
    # events due before it (~60 a decode token); composed ahead, the same records
    sc, trace = mooncake(24)
    off, on = runs(monkeypatch, sc, trace, "adaptive")
    same_records(off, on)
    assert on.summary["events"] < off.summary["events"] / 3


def test_a_run_cut_at_its_duration_composes_nothing_past_it(monkeypatch):
    # a slot past the cut would add its kernels to the GPUs' counts
    sc, trace = mooncake(24)
    sc = sc.with_changes(engine=EngineSpec(max_batch=sc.engine.max_batch, layer_groups=0,
                                           duration=3.0, max_requests=24))
    off, on = runs(monkeypatch, sc, trace, "adaptive")
    same_records(off, on)
    assert on.summary["events"] < off.summary["events"]


def test_route_keeps_its_records_too(monkeypatch):
    sc, trace = mooncake(5)
    off, on = runs(monkeypatch, sc, trace, "route")
    same_records(off, on)


def test_a_prefill_only_step_under_a_policy_that_never_routes_is_composed_at_once(monkeypatch):
    # no GPU's kernel reaches another's stream: its layers need no events
    sc = small_scenario("single_node:gpus=2", layer_groups=0,
                        serving={"max_num_batched_tokens": 256, "chunked_prefill": True})
    trace = make_trace(arrival_at=[0.0, 0.0], input_tokens=[2048, 2048], output_tokens=[4, 4],
                       block_ids=[list(range(32)), list(range(100, 132))], block_tokens=64)
    off, on = runs(monkeypatch, sc, trace, "fetch")
    same_records(off, on)
    # every prefill chunk's ~61 layer slots waited for the other GPU's events
    assert on.summary["events"] < off.summary["events"] / 5


def test_followers_and_a_closed_loop_keep_their_records(monkeypatch):
    # entries at a finish plus a gap, and at a finish: bounds the engine reads from Arrivals
    blocks = [list(range(k * 20, k * 20 + 20)) for k in range(6)]
    trace = make_trace(arrival_at=[0.0, 0.0, 0.1, 0.1, 9.0, 9.0], input_tokens=[1280] * 6,
                       output_tokens=[12, 9, 7, 11, 8, 10], block_ids=blocks, block_tokens=64,
                       after_id=[-1, -1, 0, 1, 2, -1], after_time=[0, 0, 0.01, 0, 0.02, 0])
    sc = small_scenario("single_node:gpus=4", layer_groups=0)
    off, on = runs(monkeypatch, sc, trace, "adaptive")
    same_records(off, on)
    closed = sc.with_changes(workload=sc.workload.__class__(kind="trace", trace="<given>",
                                                            concurrency=2))
    plain = trace.drop(columns=["after_id", "after_time"])
    off, on = runs(monkeypatch, closed, plain, "adaptive")
    same_records(off, on)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(case=small_cases(), policy=st.sampled_from(["route", "adaptive", "fetch"]),
       layer_groups=st.sampled_from([0, 3]))
def test_any_small_run_keeps_its_records(case, policy, layer_groups):
    sc, trace = case
    sc = sc.with_changes(engine=EngineSpec(max_batch=sc.engine.max_batch,
                                           layer_groups=layer_groups))
    with pytest.MonkeyPatch.context() as mp:
        off, on = runs(mp, sc, trace, policy)
    same_records(off, on)


# -- the bounds --------------------------------------------------------------------------------


class _Entry:
    def __init__(self, at: float) -> None:
        self.at = at

    def next_entry_at(self) -> float:
        return self.at


def lookahead(n: int = 3, routes: bool = True, until: float = INF, entry: float = INF,
              wake=None) -> Lookahead:
    env = simpy.Environment()
    return Lookahead(env, n, routes, until, _Entry(entry), wake or [None] * n)


def ends(la: Lookahead, *at: float) -> None:
    """Each GPU in a step without rounds that ends no earlier than ``at[h]`` [s]."""
    for h, t in enumerate(at):
        la._rounds[h] = []
        la._publish(h, 0, 0.0, t, t)


def test_a_gpu_may_compose_ahead_until_another_may_route_a_request_arrives_or_the_run_ends():
    la = lookahead()
    ends(la, 5.0, 7.0, 6.0)
    assert la.bound(0) == 6.0  # the earliest other GPU's (its own 5.0 does not count)
    assert la.bound(2) == 5.0
    ends(la, 5.0, 2.0, 6.0)
    assert la.bound(0) == 2.0
    assert lookahead(entry=1.5).bound(0) == -INF  # others unpublished: bounded by now
    la.entry.at = 1.5
    assert la.bound(0) == 1.5
    la.until = 1.25
    assert la.bound(0) == 1.25


def test_nothing_bounds_a_gpu_whose_policy_never_routes_but_the_run_s_end():
    la = lookahead(routes=False, until=9.0, entry=0.0)
    assert la.bound(1) == 9.0  # other GPUs unpublished, a request entering now: no matter
    la.foreign_at[1] = 1.0  # its items elsewhere issued later than now: not before them
    assert la.bound(1) == -INF


def test_a_waiting_gpu_counts_only_once_a_request_woke_it():
    env = simpy.Environment()
    wake = [None, env.event(), None]
    la = Lookahead(env, 3, True, INF, _Entry(INF), wake)
    ends(la, -INF, -INF, 4.0)
    assert la.bound(0) == 4.0  # GPU 1 waits: its stale bound does not count
    wake[1].succeed()
    assert la.bound(0) == -INF  # woken, not yet run: it may route now
    ends(la, 6.0, -INF, 4.0)
    assert la.bound(1) == 4.0  # its own wake is not another's


def test_a_gpu_with_items_elsewhere_not_yet_issued_waits_for_them():
    la = lookahead()
    ends(la, INF, INF, INF)
    la.foreign_at[0] = 0.5
    assert la.bound(0) == -INF and la.bound(1) == INF
    la.env.run(until=0.5)  # issued by now: can no longer be pushed back
    assert la.bound(0) == INF
    assert Lookahead(simpy.Environment(), 600, True, INF, _Entry(INF),
                     [None] * 600).bound(0) == -INF  # too many GPUs to look


def holders(*slots) -> list:
    """A step's holder groups per slot: ``(holder, queries, blocks)`` for each holder named."""
    return [[(k, 1, None) for k in ks] for ks in slots]


def test_a_step_publishes_the_least_start_of_its_next_slot_with_rounds():
    import numpy as np

    la = lookahead()
    quiet = np.array([1.0, 2.0, 4.0, 8.0])  # attention + projections + FFN per slot [s]
    folds = np.array([1, 2, 1, 3])
    la.plan(0, 10.0, quiet, 0.5, folds, [2], holders([], [], [1], []))
    # slots 0 and 1 (1·1 + 2·2 = 5 s) before slot 2: 15 s less the margins
    assert la.route_at[0] == pytest.approx(15.0 - 1e-6, abs=1e-8) and la.route_at[0] < 15.0
    la.rounds_done(0, 2, 13.0)
    # slot 2 composed, slot 3 next starts at 13: no slot with rounds left, so the step's end
    # 13 + 8·3 = 37 s
    assert la.route_at[0] == pytest.approx(37.0 - 1e-6, abs=1e-7) and la.route_at[0] < 37.0
    assert la.foreign_at[0] == 13.0
    la.plan(1, 0.0, quiet, 0.5, folds, [1, 3], holders([], [2], [], [0]))
    assert la.route_at[1] == pytest.approx(1.0 - 1e-6, abs=1e-9)
    la.rounds_done(1, 1, 2.0)  # slot 2 (4 s) before slot 3
    assert la.route_at[1] == pytest.approx(6.0 - 1e-6, abs=1e-8)
    la.plan(2, 3.0, quiet, 0.5, folds, [0, 1, 2, 3],  # every slot has rounds: the next one's
            holders([0], [1], [0], [1]))
    assert la.route_at[2] == 3.0 - 1e-6
    la.rounds_done(2, 0, 3.5)
    assert la.route_at[2] == 3.5 - 1e-6
    la.prefill(2, 1.0, 2.0)
    assert la.route_at[2] == pytest.approx(3.0 - 1e-6, abs=1e-8) and la.route_at[2] < 3.0
    off = lookahead(routes=False)
    off.plan(0, 10.0, quiet, 0.5, folds, [2], holders([], [], [1], []))
    off.prefill(0, 10.0, 1.0)
    assert off.route_at[0] == -INF  # nothing published where no GPU routes


# -- simultaneous events -----------------------------------------------------------------------


def test_simultaneous_gpu_events_come_in_gpu_order_after_the_others_however_scheduled():
    env = simpy.Environment()
    order = []

    def wait(name, event):
        yield event
        order.append(name)

    env.process(wait("gpu 2", GpuTimeout(env, 1.0, 2)))
    env.process(wait("gpu 0", GpuTimeout(env, 1.0, 0)))
    env.process(wait("plain", env.timeout(1.0)))
    env.process(wait("gpu 1 earlier", GpuTimeout(env, 0.5, 1)))
    env.run()
    assert order == ["gpu 1 earlier", "plain", "gpu 0", "gpu 2"]
    with pytest.raises(ValueError):
        GpuTimeout(env, -1.0, 0)


def test_a_gpu_is_bounded_only_by_the_slots_that_reach_it_and_the_others_step_ends():
    import numpy as np

    la = lookahead(n=3)
    quiet = np.array([1.0, 1.0, 1.0, 1.0])
    folds = np.array([1, 1, 1, 1])
    # GPU 1: rounds with holder 2 at slot 1, with holders 0 and 2 at slot 3; its end at 4 s
    la.plan(1, 0.0, quiet, 0.5, folds, [1, 3], holders([], [2], [], [0, 2]))
    la.plan(0, 0.0, quiet, 0.5, folds, [], holders([], [], [], []))  # GPU 0: quiet to 4 s
    la.plan(2, 0.0, quiet, 0.5, folds, [], holders([], [], [], []))
    assert la.route_at[1] == pytest.approx(1.0 - 1e-6, abs=1e-8)
    # for GPU 2, GPU 1's slot 1 (it holds a group there); for GPU 0, its slot 3 (2.5 s: the
    # slot with rounds before it takes at least 0.5 s), not slot 1
    assert la.bound(2) == pytest.approx(1.0 - 1e-6, abs=1e-8)
    assert la.bound(0) == pytest.approx(2.5 - 1e-6, abs=1e-8)
    la.rounds_done(1, 1, 1.25)
    la.env.run(until=1.25)
    assert la.bound(2) == pytest.approx(2.25 - 1e-6, abs=1e-8)  # now slot 3, after slot 2
    la.rounds_done(1, 3, 3.5)
    la.env.run(until=3.5)
    # no slot with rounds left: its end (its next step may reach anyone), and GPU 2's own end
    assert la.bound(0) == pytest.approx(3.5 - 1e-6, abs=1e-8)
    la.plan(1, 4.0, quiet, 0.5, folds, [0], holders([1], [], [], []))  # reaches only itself
    assert la.bound(0) == pytest.approx(4.0 - 1e-6, abs=1e-8)  # GPU 2's end (0 + 4 s)
    la.prefill(2, 3.5, 10.0)
    assert la.bound(0) == pytest.approx(7.5 - 1e-6, abs=1e-7)  # GPU 1's end (4 + 0.5 + 3)
