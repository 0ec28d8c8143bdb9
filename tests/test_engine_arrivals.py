"""Arrivals: open loop replays trace times, a closed loop keeps N outstanding; the capacity window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import simpy

from simulator import run
from simulator.engine.arrivals import Arrivals, follows_of
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


# -- requests that follow others (after_id / after_time) -----------------------------------------


def _follow_story(service, after, gap, stop=None):
    """Like ``_story`` with followers: ``after[r]`` (-1 none) and ``gap[r]`` [s]."""
    env = simpy.Environment()
    arrival = np.array([0.0, 1.0, 2.0, 3.0])
    log = []

    def serve(r):
        yield env.timeout(service[r])
        entry.finished(r)

    def deliver(r):
        log.append((r, env.now))
        env.process(serve(r))

    entry = Arrivals(env, arrival, None, deliver,
                     (np.array(after, np.int64), np.array(gap, float)))
    env.process(entry.process())
    env.run(until=stop)
    return log, arrival, entry


def test_a_follower_enters_its_gap_after_the_request_it_follows_finishes_not_at_its_trace_time():
    # 0 runs 10 s; 1 follows 0 by 0.5 s; 2 follows 1 by 0 s; 3 is independent (trace time 3)
    log, arrival, entry = _follow_story([10.0, 4.0, 1.0, 1.0], [-1, 0, 1, -1],
                                        [0.0, 0.5, 0.0, 0.0])
    assert log == [(0, 0.0), (3, 3.0), (1, 10.5), (2, 14.5)]
    assert arrival.tolist() == [0.0, 10.5, 14.5, 3.0]
    assert entry.entered.all()


def test_follows_of_reads_who_follows_whom_from_the_trace():
    # request ids start at 0: a trace whose only follower follows request 0 has followers
    trace = pd.DataFrame({"request_id": [0, 1, 2], "after_id": pd.array([None, 0, None],
                                                                        dtype="Int64"),
                          "after_time": [0.0, 0.25, 0.0]})
    after, gap = follows_of(trace)
    assert after.tolist() == [-1, 0, -1] and gap.tolist() == [0.0, 0.25, 0.0]
    # a follower of a request outside the trace (cut by max_requests) follows nobody
    trace["after_id"] = pd.array([None, 7, 1], dtype="Int64")
    after, gap = follows_of(trace)
    assert after.tolist() == [-1, -1, 1] and gap.tolist() == [0.0, 0.0, 0.0]
    trace["after_id"] = pd.array([None, None, None], dtype="Int64")
    assert follows_of(trace) is None
    assert follows_of(trace.drop(columns=["after_id", "after_time"])) is None


def test_a_follower_of_a_request_that_never_finishes_never_enters():
    log, arrival, entry = _follow_story([10.0, 1.0, 1.0, 1.0], [-1, 0, 1, -1],
                                        [0.0, 0.0, 0.0, 0.0], stop=9.0)
    assert log == [(0, 0.0), (3, 3.0)]
    assert entry.entered.tolist() == [True, False, False, True]


def _causal_trace():
    """An orchestrator prefilling a 40-block repository and two sub-agents that follow it
    (0.25 s stagger), the second with a second turn (1 s think time)."""
    repo = list(range(40))
    return make_trace(arrival_at=[0.0, 0.01, 0.02, 0.03], input_tokens=[64 * 41, 64 * 42,
                      64 * 42, 64 * 43], output_tokens=[4, 3, 3, 3],
                      block_ids=[repo + [100], repo + [200, 201], repo + [300, 301],
                                 repo + [300, 301, 302]],
                      block_tokens=64, session_id=[0, 1, 2, 2], parent_id=[-1, 0, 0, 0],
                      after_id=[-1, 0, 0, 2], after_time=[0.0, 0.25, 0.25, 1.0])


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_sub_agents_wait_for_their_plan_and_reuse_its_repository_instead_of_prefilling_it(engine):
    sc = small_scenario("single_node:gpus=2", mode=engine)
    trace = _causal_trace()
    res = run(sc, "route", trace=trace)
    check_run(res, trace)
    req = res.requests.set_index("request_id").sort_index()
    assert req["completed"].all()
    # each follower entered exactly its gap after the one it follows finished
    for r, a, gap in ((1, 0, 0.25), (2, 0, 0.25), (3, 2, 1.0)):
        assert req.loc[r, "arrival_at"] == pytest.approx(req.loc[a, "finished_at"] + gap,
                                                         abs=1e-12)
        assert req.loc[r, "first_token_at"] > req.loc[a, "finished_at"]
    # the repository was prefilled once: the sub-agents computed only their own blocks
    assert req.loc[[1, 2], "prefilled_blocks"].tolist() == [2, 2]
    again = run(sc, "route", trace=trace)
    pd.testing.assert_frame_equal(res.requests, again.requests)


def test_a_follower_whose_request_is_cut_by_the_duration_is_accounted_as_never_entered():
    sc = small_scenario("single_node:gpus=2", duration=0.05)
    trace = _causal_trace()
    res = run(sc, "route", trace=trace)
    req = res.requests.set_index("request_id").sort_index()
    assert len(req) == 4 and not req["completed"].any()
    assert req.loc[[1, 2, 3], "reason"].str.startswith("never entered").all()
    assert req.loc[[1, 2, 3], "arrival_at"].isna().all()
    assert req.loc[0, "reason"].startswith("not finished")


def test_a_follower_whose_gap_outlasts_the_run_says_so_not_that_its_request_never_finished():
    # B follows A with a 5 s gap; A completes at ~0.15 s, the run stops at 3 s: B never
    # entered because its gap had not passed. Until the audit of the summary metrics its reason
    # said the request it follows "had not finished", which A had
    from simulator.engine.arrivals import NOT_DUE, NOT_ENTERED

    trace = make_trace(arrival_at=[0.0, 1.0], input_tokens=[128, 192], output_tokens=[2, 2],
                       block_ids=[[1, 2], [1, 2, 7]], block_tokens=64, after_id=[-1, 0],
                       after_time=[0.0, 5.0])
    res = run(small_scenario(duration=3.0), "route", trace=trace)
    check_run(res, trace)
    req = res.requests
    assert req["completed"].tolist() == [True, False] and req["finished_at"][0] < 3.0
    assert req["reason"][1] == NOT_DUE and np.isnan(req["arrival_at"][1])
    assert res.summary["unfinished"] == {NOT_DUE: 1}
    assert not res.summary.get("notes") or not any(NOT_DUE in n for n in res.summary["notes"])
    # the followers of _causal_trace's orchestrator, unfinished at 0.05 s, keep their reason
    cut = run(small_scenario("single_node:gpus=2", duration=0.05), "route", trace=_causal_trace())
    assert cut.requests["reason"].tolist()[1:] == [NOT_ENTERED] * 3


def test_a_closed_loop_over_a_causal_trace_is_refused_before_any_work(tmp_path):
    from simulator.engine.trace import load_trace
    from simulator.errors import UserError
    from workloads.schema import write_trace

    path = write_trace(_causal_trace(), tmp_path / "causal.parquet")
    sc = small_scenario("single_node:gpus=2")
    sc = sc.with_changes(workload=sc.workload.__class__(kind="trace", trace=str(path),
                                                        concurrency=2))
    with pytest.raises(UserError, match="concurrency = 2 .*after_id"):
        load_trace(sc, 0)
