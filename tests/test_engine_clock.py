"""A duration-limited run reports progress in simulated time, and reporting changes nothing; a
clock runs with fewer garbage collections and puts the collector back as it was."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pandas as pd
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import run
from simulator.disaggregation.homogeneous import simulate_homogeneous
from simulator.disaggregation.lamina import simulate_disaggregated
from simulator.disaggregation.spec import DisaggregationSpec
from simulator.engine.clock import (
    TICKS,
    YOUNG_THRESHOLD,
    GpuTimeout,
    fewer_collections,
    run_clock,
)
from simulator.scenario import Scenario
from simulator.testing.invariants import small_scenario
from workloads.schema import make_trace


def world(env: simpy.Environment, log: list, gaps: list[list[float]]) -> None:
    """Processes that log (time, who) at each of their timeouts; two of them at once at 0."""
    def proc(k, seq):
        for gap in seq:
            yield env.timeout(gap)
            log.append((env.now, k))
    for k, seq in enumerate(gaps):
        env.process(proc(k, seq))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 3.0]), max_size=12),
                min_size=1, max_size=4),
       st.sampled_from([0.5, 1.0, 2.0, 7.3]))
def test_the_clock_runs_the_same_events_as_env_run_and_reports_time_reached(gaps, duration):
    a, b = simpy.Environment(), simpy.Environment()
    log_a, log_b, seen = [], [], []
    world(a, log_a, gaps)
    world(b, log_b, gaps)
    a.run(until=duration)
    run_clock(b, duration, lambda now, total: seen.append((now, total, b.now)))
    assert log_a == log_b  # the same events in the same order
    assert a.now == b.now == duration
    assert next(a._eid) == next(b._eid)  # the same event count (the stop event included)
    assert seen[-1][:2] == (duration, duration)
    done = [s[0] for s in seen]
    assert done == sorted(done) and TICKS <= len(seen) <= TICKS + 2
    # a report at each tick of the duration (not the duration at once), then the end
    ticks = [min(duration / TICKS * (i + 1), duration) for i in range(len(seen) - 1)]
    assert done[:-1] == pytest.approx(ticks, rel=1e-9)
    # each report comes when the clock has reached it: no event before it is left to run
    assert all(clock <= reached + 1e-9 for reached, _, clock in seen)


def test_without_a_duration_or_a_callback_it_is_env_run():
    env = simpy.Environment()
    log: list = []
    world(env, log, [[1.0, 2.0]])
    run_clock(env, None, lambda *_: pytest.fail("no duration: no time reports"))
    assert log == [(1.0, 0), (3.0, 0)] and env.now == 3.0


def test_a_clock_started_late_stops_at_its_duration_and_refuses_one_not_ahead():
    env = simpy.Environment()
    log: list = []
    world(env, log, [[1.0, 1.0, 1.0]])
    env.run(until=0.5)
    for duration in (0.5, 0.25):  # at the present, and in the past
        with pytest.raises(ValueError, match="greater than the current time"):
            run_clock(env, duration, lambda *_: None)
    assert env.now == 0.5
    seen: list = []
    run_clock(env, 2.5, lambda now, total: seen.append(now))  # 2.5 s from 0, not from 0.5
    assert env.now == 2.5 and seen[-1] == 2.5 and log == [(1.0, 0), (2.0, 0)]


def trace3() -> pd.DataFrame:
    return make_trace(arrival_at=[0.0, 0.01, 0.02], input_tokens=[640] * 3,
                      output_tokens=[2000] * 3, block_ids=[list(range(10))] * 3,
                      block_tokens=64)


def same(a, b) -> None:
    for name in ("requests", "rounds", "iterations"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    drop = {"wall_time", "events_per_wall_s", "decode_tokens_per_wall_s"}
    keep = [k for k in a.summary if k not in drop]
    assert keep == [k for k in b.summary if k not in drop]
    # repr: NaN (no token in the run) reads equal to NaN
    assert [repr(a.summary[k]) for k in keep] == [repr(b.summary[k]) for k in keep]


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_duration_limited_run_reports_simulated_time_and_the_same_records(engine):
    sc = small_scenario("single_node:gpus=2", duration=0.05)
    seen: list = []
    quiet = run(sc, "route", trace=trace3(), engine=engine)
    told = run(sc, "route", trace=trace3(), engine=engine,
               progress=lambda done, total: seen.append((done, total)))
    same(quiet, told)
    # no request finishes inside 0.05 s: progress by requests would never move
    assert told.summary["completed"] == 0
    assert seen[-1] == (0.05, 0.05) and len(seen) >= TICKS // 2
    assert all(t == 0.05 for _, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_without_a_duration_progress_counts_requests():
    sc = small_scenario("single_node:gpus=2")
    tr = make_trace(arrival_at=[0.0, 0.01], input_tokens=[640] * 2, output_tokens=[3] * 2,
                    block_ids=[list(range(10))] * 2, block_tokens=64)
    seen: list = []
    run(sc, "route", trace=tr, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]


@pytest.mark.parametrize("loop, spec", [
    (simulate_homogeneous, None),
    (simulate_disaggregated, DisaggregationSpec(model_gpus=4, micro_batches=2))])
def test_the_pool_loops_report_simulated_time_under_a_duration(loop, spec):
    sc = Scenario.from_dict({
        "topology": {"spec": "lamina_h100_h20:h100_nodes=1,h20_nodes=1,gpus_per_node=4"},
        "model": {"name": "llama-3-70b"},
        "workload": {"kind": "trace", "trace": "azure_llm_2023_code"},
        "engine": {"duration": 0.2}, "stack": "ideal"})
    tr = make_trace(arrival_at=np.zeros(4), input_tokens=[2000] * 4, output_tokens=[500] * 4,
                    block_ids=[list(range(4 * i, 4 * i + 4)) for i in range(4)])
    seen: list = []
    quiet = loop(sc, spec=spec, trace=tr)
    told = loop(sc, spec=spec, trace=tr, progress=lambda done, total: seen.append((done, total)))
    pd.testing.assert_frame_equal(quiet.requests, told.requests)
    assert seen[-1] == (0.2, 0.2) and all(t == 0.2 for _, t in seen)


# -- fewer garbage collections while a clock runs ---------------------------------------------


@pytest.fixture
def thresholds():
    """The collector's thresholds, put back after the test whatever it did."""
    saved = gc.get_threshold()
    yield saved
    gc.set_threshold(*saved)


def _seen_threshold(env: simpy.Environment, seen: list) -> None:
    def proc():
        yield env.timeout(1.0)
        seen.append(gc.get_threshold())
    env.process(proc())


@pytest.mark.parametrize(("duration", "progress", "young"), [
    (None, None, 700), (5.0, None, 700), (5.0, lambda now, d: None, 700),
    (None, None, 1), (None, None, YOUNG_THRESHOLD - 1)])
def test_a_clock_raises_the_young_threshold_while_it_runs_and_restores_it(
        thresholds, duration, progress, young):
    gc.set_threshold(young, 11, 12)
    env, seen = simpy.Environment(), []
    _seen_threshold(env, seen)
    run_clock(env, duration, progress)
    assert seen == [(YOUNG_THRESHOLD, 11, 12)]
    assert gc.get_threshold() == (young, 11, 12)


def test_a_failing_run_restores_the_thresholds(thresholds):
    gc.set_threshold(700, 10, 10)
    env = simpy.Environment()

    def boom():
        yield env.timeout(1.0)
        raise RuntimeError("boom")
    env.process(boom())
    with pytest.raises(RuntimeError, match="boom"):
        run_clock(env, None)
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("young", [0, YOUNG_THRESHOLD + 1])
def test_a_collector_turned_off_or_set_higher_is_left_alone(thresholds, young):
    gc.set_threshold(young, 10, 10)
    env, seen = simpy.Environment(), []
    _seen_threshold(env, seen)
    run_clock(env, None)
    assert seen == [(young, 10, 10)]
    assert gc.get_threshold() == (young, 10, 10)


def test_nested_blocks_restore_only_when_the_last_one_leaves(thresholds):
    gc.set_threshold(700, 10, 10)
    with fewer_collections():
        with fewer_collections():
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # the outer block still runs
    assert gc.get_threshold() == (700, 10, 10)


def test_concurrent_clocks_in_threads_leave_the_thresholds_as_they_were(thresholds):
    # the first in leaves first: the one still running keeps the raised threshold, and the
    # thresholds come back only when it leaves too
    gc.set_threshold(700, 10, 10)
    first_in, second_in, first_out = (threading.Event() for _ in range(3))
    seen = []

    def first():
        with fewer_collections():
            first_in.set()
            second_in.wait(timeout=10)
        first_out.set()

    def second():
        first_in.wait(timeout=10)
        with fewer_collections():
            second_in.set()
            first_out.wait(timeout=10)
            seen.append(gc.get_threshold()[0])
    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert seen == [YOUNG_THRESHOLD]
    assert gc.get_threshold() == (700, 10, 10)


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
    assert env.now == 1.0
    with pytest.raises(ValueError):
        GpuTimeout(env, -1.0, 0)


def test_a_gpu_timeout_is_a_timeout_as_simpy_makes_it():
    env = simpy.Environment()
    env.run(until=2.0)
    now = GpuTimeout(env, 0.0, 3)  # a zero delay is a timeout at now, not an error
    later = GpuTimeout(env, 0.5, 0)
    assert now.env is env and later.env is env
    assert repr(later).startswith("<GpuTimeout(0.5)") and later.triggered and later.ok
    seen = []

    def wait():
        for event in (now, later):
            value = yield event
            seen.append((env.now, value))

    env.process(wait())
    env.run()
    assert seen == [(2.0, None), (2.5, None)]
    assert now.value is None and later.value is None
