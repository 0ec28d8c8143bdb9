"""Causality across requests, on both engines: a request that arrives at ``T`` changes nothing
that ended before ``T`` — no step, no request, no round. An engine that looked ahead (composed
a step, drew a selection or chose a home knowing of a later arrival) or shared a random stream
in an order that a later request shifts would fail it. Checked by running a trace with and
without its last request (hypothesis over the small scenarios of ``check_run``'s tests); and a
run cut at a duration is the whole run until the cut."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simulator import run
from simulator.testing.invariants import check_run, small_cases
from simulator.testing.profiles import examples


def ended_before(res, t: float):
    """(steps, requests, round start times) of ``res`` that ended before ``t`` [s]."""
    it = res.iterations
    it = it[it["finished_at"] < t].drop(columns=["engine"], errors="ignore")
    it = it.assign(gpu=it["gpu"].astype(str)).sort_values(["gpu", "iteration"])
    req = res.requests
    req = req[req["finished_at"] < t][["request_id", "home", "admitted_at", "first_token_at",
                                       "finished_at", "tokens_generated", "reused_blocks",
                                       "prefilled_blocks", "completed"]]
    rd = res.rounds
    starts = (np.sort(rd.loc[rd["started_at"] + rd["sim_time"] < t, "started_at"].to_numpy())
              if len(rd) else np.zeros(0))
    return (it.reset_index(drop=True),
            req.assign(home=req["home"].astype(str)).reset_index(drop=True), starts)


@pytest.mark.parametrize("engine", ["exact", "fast"])
@settings(max_examples=examples(12))
@given(case=small_cases(max_requests=8),
       policy=st.sampled_from(["route", "fetch", "adaptive", "local"]))
def test_a_later_arrival_changes_nothing_that_ended_before_it(engine, case, policy):
    sc, trace = case
    assume(len(trace) >= 2)
    t = float(trace["arrival_at"].iloc[-1])
    assume(t > float(trace["arrival_at"].iloc[-2]))
    sc = sc.with_changes(engine=dataclasses.replace(sc.engine, mode=engine))
    full = ended_before(run(sc, policy, trace=trace), t)
    part = ended_before(run(sc, policy, trace=trace.iloc[:-1].reset_index(drop=True)), t)
    pd.testing.assert_frame_equal(full[0], part[0], check_exact=True)
    pd.testing.assert_frame_equal(full[1], part[1], check_exact=True)
    np.testing.assert_array_equal(full[2], part[2])


@pytest.mark.parametrize("engine", ["exact", "fast"])
@settings(max_examples=examples(12))
@given(case=small_cases(max_requests=8),
       policy=st.sampled_from(["route", "fetch", "adaptive", "local"]),
       cut=st.floats(0.001, 3.0))
def test_a_run_cut_at_a_duration_is_the_whole_run_until_then(engine, case, policy, cut):
    # [engine] duration stops the clock: what ended before the cut is the uncut run's, bit for
    # bit, no step ends after it, a request completes only if it did so before the cut, and
    # every invariant of a whole run holds (what did not finish is accounted with a reason)
    sc, trace = case
    sc = sc.with_changes(engine=dataclasses.replace(sc.engine, mode=engine))
    whole = run(sc, policy, trace=trace)
    part = run(sc.with_changes(engine=dataclasses.replace(sc.engine, duration=cut)), policy,
               trace=trace)
    check_run(part, trace)
    assert (part.iterations["finished_at"] <= cut).all()
    a, b = ended_before(whole, cut), ended_before(part, cut)
    pd.testing.assert_frame_equal(a[0], b[0], check_exact=True)
    pd.testing.assert_frame_equal(a[1], b[1], check_exact=True)
    np.testing.assert_array_equal(a[2], b[2])
    done = part.requests["completed"].to_numpy()
    assert (part.requests["finished_at"].to_numpy()[done] <= cut).all()
    assert done.sum() == (whole.requests["finished_at"] < cut).sum()
