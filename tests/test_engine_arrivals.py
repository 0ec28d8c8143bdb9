"""Arrivals: open loop replays trace times, a closed loop keeps N outstanding; the capacity window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import simpy

from simulator import run
from simulator.engine.arrivals import Arrivals
from simulator.engine.records import capacity_window
from simulator.testing.invariants import check_run, small_scenario
from workloads.schema import make_trace


def _story(concurrency, service):
    """Requests that each take ``service[r]`` seconds once they enter; the log of entries."""
    env = simpy.Environment()
    arrival = np.array([0.0, 1.0, 2.0, 3.0])
    log = []

    def serve(r):
        yield env.timeout(service[r])
        entry.finished()

    def deliver(r):
        log.append((r, env.now))
        env.process(serve(r))

    entry = Arrivals(env, arrival, concurrency, deliver)
    env.process(entry.process())
    env.run()
    return log, arrival


def test_an_open_loop_lets_requests_in_at_their_trace_times():
    log, arrival = _story(None, [5.0, 5.0, 5.0, 5.0])
    assert log == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]
    assert arrival.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_closed_loop_lets_the_next_in_when_one_leaves_and_rewrites_its_arrival():
    log, arrival = _story(2, [4.0, 1.0, 2.0, 1.0])
    # 0 and 1 enter at 0; 1 leaves at 1 → 2 enters; 2 leaves at 3 → 3 enters (0 leaves at 4)
    assert log == [(0, 0.0), (1, 0.0), (2, 1.0), (3, 3.0)]
    assert arrival.tolist() == [0.0, 0.0, 1.0, 3.0]


def test_the_capacity_window_runs_from_the_first_cohort_to_the_last_entry():
    requests = pd.DataFrame({
        "arrival_at": [0.0, 0.0, 1.0, 3.0], "finished_at": [4.0, 1.0, 3.0, 6.0],
        "first_token_at": [0.5, 0.5, 1.5, 3.5], "completed": [True] * 4})
    iterations = pd.DataFrame({"finished_at": [0.5, 1.5, 2.0, 2.5, 3.0, 4.0],
                               "tokens": [9, 2, 3, 4, 5, 6]})
    # the 2nd completion (3.0) is the last entry (3.0): an empty window is not a measurement
    assert all(np.isnan(capacity_window(requests, iterations, 2)))
    requests.loc[3, "arrival_at"] = 5.0
    start, end, rate = capacity_window(requests, iterations, 2)
    # window (3, 5]: the iteration ending at 4.0 (6 tokens) and the first token at 3.5
    assert (start, end) == (3.0, 5.0) and rate == pytest.approx((6 + 1) / 2.0)


def test_a_closed_loop_run_accounts_for_every_request():
    trace = make_trace(arrival_at=np.linspace(0, 100, 8), input_tokens=[640] * 8,
                       output_tokens=[6] * 8, block_ids=[list(range(k * 10, k * 10 + 10))
                                                         for k in range(8)], block_tokens=64)
    sc = small_scenario("single_node:gpus=2")
    sc = sc.with_changes(workload=sc.workload.__class__(kind="trace", trace="<given>",
                                                        concurrency=3))
    res = run(sc, "route", trace=trace)
    check_run(res, trace)
    req = res.requests.sort_values("request_id")
    # arrivals were rewritten: nothing waited 100 s for a trace time, and at most 3 overlap
    assert req["arrival_at"].max() < 1.0
    events = sorted([(t, 1) for t in req["arrival_at"]] + [(t, -1) for t in req["finished_at"]])
    assert max(np.cumsum([d for _, d in events])) <= 3
    # the capacity window: from the 3rd completion (the first cohort replaced) to the last entry
    start, end = res.summary["capacity_window"]
    assert start == sorted(req["finished_at"])[2] and end == req["arrival_at"].max()
    assert end > start
    in_window = res.iterations["finished_at"].between(start, end, inclusive="right")
    tokens = res.iterations.loc[in_window, "tokens"].sum() + req["first_token_at"].between(
        start, end, inclusive="right").sum()
    assert tokens > 0
    assert res.summary["capacity_tokens_per_s"] == pytest.approx(tokens / (end - start))
