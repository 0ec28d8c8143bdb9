"""A scenario's requests as the engines get them (simulator/engine/trace.py): cut by count and
by duration, arrivals scaled, refined to the engine's block size, indexed from 0."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator.engine.trace import load_trace
from simulator.testing.invariants import small_scenario
from workloads.schema import make_trace, write_trace


@pytest.fixture
def trace_file(tmp_path):
    """Four requests of 512-token blocks (Mooncake's size), one arriving exactly at 3 s."""
    df = make_trace(arrival_at=[0.0, 1.0, 3.0, 5.0], input_tokens=[600, 512, 100, 1_100],
                    output_tokens=[5, 5, 5, 5], block_ids=[[7, 8], [7], [9], [7, 8, 10]],
                    block_tokens=512, after_id=[-1, 0, -1, -1], after_time=[0.0, 0.5, 0.0, 0.0])
    return write_trace(df, tmp_path / "four.parquet")


def _scenario(path, *, time_scale=1.0, concurrency=None, **engine):
    sc = small_scenario(**engine)
    return sc.with_changes(workload=dataclasses.replace(
        sc.workload, trace=str(path), time_scale=time_scale, concurrency=concurrency))


def test_a_trace_is_refined_to_the_engine_pages_and_indexed_from_zero(trace_file):
    df = load_trace(_scenario(trace_file), 0)
    assert (df["block_tokens"] == 64).all() and list(df.index) == [0, 1, 2, 3]
    assert "index" not in df.columns
    # 600 tokens: 10 pages of 64 — block 7's eight pages, then two of block 8's
    assert df["block_ids"].iloc[0].tolist() == [56, 57, 58, 59, 60, 61, 62, 63, 64, 65]
    assert [len(b) for b in df["block_ids"]] == [10, 8, 2, 18]


def test_arrivals_and_follow_gaps_are_scaled_together(trace_file):
    df = load_trace(_scenario(trace_file, time_scale=2.0), 0)
    np.testing.assert_allclose(df["arrival_at"], [0.0, 2.0, 6.0, 10.0])
    np.testing.assert_allclose(df["after_time"], [0.0, 1.0, 0.0, 0.0])
    same = load_trace(_scenario(trace_file), 0)
    np.testing.assert_allclose(same["arrival_at"], [0.0, 1.0, 3.0, 5.0])
    np.testing.assert_allclose(same["after_time"], [0.0, 0.5, 0.0, 0.0])


def test_a_run_cut_at_a_duration_replays_what_arrives_before_it(trace_file):
    # arrivals in [0, 3): the request at exactly 3 s is past the cut
    assert len(load_trace(_scenario(trace_file, duration=3.0), 0)) == 2
    assert len(load_trace(_scenario(trace_file, duration=3.001), 0)) == 3
    assert len(load_trace(_scenario(trace_file, max_requests=3), 0)) == 3
    one = load_trace(_scenario(trace_file, max_requests=1), 0)  # refined all the same
    assert len(one) == 1 and one["block_tokens"].tolist() == [64]
    # a closed loop ignores arrival times: every request may enter, the cut does not apply
    closed = _scenario(trace_file, concurrency=2, duration=3.0)
    closed = closed.with_changes(workload=dataclasses.replace(
        closed.workload, trace=str(write_trace(
            load_trace(_scenario(trace_file), 0).drop(columns=["after_id", "after_time"]),
            trace_file.parent / "open.parquet"))))
    assert len(load_trace(closed, 0)) == 4


def test_a_cut_that_leaves_no_request_gives_an_empty_trace(tmp_path):
    df = make_trace(arrival_at=[0.5, 0.9], input_tokens=[512, 512], output_tokens=[5, 5],
                    block_ids=[[1], [2]], block_tokens=512)
    path = write_trace(df, tmp_path / "late.parquet")
    got = load_trace(_scenario(path, duration=0.25), 0)
    assert len(got) == 0 and list(got.columns) == list(df.columns)


def test_a_cut_keeps_the_followers_of_the_requests_it_keeps(tmp_path):
    # A request that follows another enters when that one has finished and its gap has passed,
    # whatever its arrival_at (the trace's nominal schedule, e.g. the agentic generator's
    # 50 tokens/s): B follows A, nominally at 10 s, but A is done well before the cut at 3 s,
    # so B enters and completes before it. D follows C, which arrives after the cut: neither
    # can enter. Until the audit of the summary metrics the cut dropped every row whose
    # arrival_at was past it, B too: a causal trace's run lost requests it served (a causal
    # agentic run cut at 12 s kept 10 of its 35 requests, 267 of 629 tokens, none reported)
    from simulator import run

    df = make_trace(arrival_at=[0.0, 4.0, 4.5, 10.0], input_tokens=[128, 128, 128, 192],
                    output_tokens=[2, 2, 2, 2], block_ids=[[1, 2], [3, 4], [5, 6], [1, 2, 7]],
                    block_tokens=64, after_id=[-1, -1, 1, 0], after_time=[0.0, 0.0, 0.0, 0.1])
    path = write_trace(df, tmp_path / "chains.parquet")
    sc = _scenario(path, duration=3.0)
    got = load_trace(sc, 0)
    assert got["request_id"].tolist() == [0, 3]
    res = run(sc, "route")
    req = res.requests
    assert req["completed"].tolist() == [True, True]
    assert req["arrival_at"][1] == pytest.approx(req["finished_at"][0] + 0.1, abs=1e-12)
    assert req["finished_at"].max() < 3.0
