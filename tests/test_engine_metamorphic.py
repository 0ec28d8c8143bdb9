"""Metamorphic properties of both engines: what a run must not depend on.

A request's id and its session's id are names. Relabelling them (any injective map into the
ids a trace may hold, `workloads.schema.MAX_REQUEST_ID`) must change no record: the engines
use a request id only to name the blocks its generated tokens fill, and a session id only as a
key. (Row order is not such a property: requests that arrive at the same instant enter in row
order and take the least loaded home in that order, by design. Nor is a shift of every arrival:
it moves sums of floats by rounding, and measures over [0, now] by the idle start; stop 68
probed both, docs/invariants.md.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import run
from simulator.testing.invariants import small_cases
from workloads.schema import MAX_REQUEST_ID, validate

#: Summary keys that measure the machine, not the simulation.
WALL = ("wall_time",)


def relabel(trace: pd.DataFrame, ids: dict[int, int], sessions: dict[int, int]) -> pd.DataFrame:
    """``trace`` with every request id (and the ids naming requests: ``after_id``,
    ``parent_id``) mapped through ``ids`` and session ids through ``sessions``."""
    def named(col: str) -> pd.Series:
        v = trace[col].to_numpy(dtype=np.int64, na_value=-1)
        out = np.array([ids[int(x)] if x >= 0 else 0 for x in v], np.int64)
        return pd.Series(pd.arrays.IntegerArray(out, v < 0))

    t = trace.assign(request_id=[ids[int(x)] for x in trace["request_id"]],
                     session_id=[sessions[int(x)] for x in trace["session_id"]])
    t["after_id"] = named("after_id")
    t["parent_id"] = named("parent_id")
    return validate(t)


def summary(res) -> dict:
    """The run's summary, less the machine's wall time, with NaN (no samples) comparable."""
    return {k: "nan" if isinstance(v, float) and np.isnan(v) else v
            for k, v in res.summary.items() if k not in WALL}


@settings(max_examples=12, deadline=None)
@given(small_cases(max_requests=8), st.sampled_from(["route", "fetch", "local", "adaptive"]),
       st.sampled_from(["exact", "fast"]), st.randoms(use_true_random=False),
       st.sampled_from([1, 1000, MAX_REQUEST_ID - 100]))
def test_relabelling_requests_and_sessions_changes_no_record(case, policy, engine, rnd, offset):
    sc, trace = case
    rids = trace["request_id"].tolist()
    new = [r + offset if r + offset <= MAX_REQUEST_ID else r for r in rids]
    rnd.shuffle(new)
    ids = dict(zip(rids, new, strict=True))
    sids = sorted(set(trace["session_id"].tolist()))
    moved = list(sids)
    rnd.shuffle(moved)
    sessions = {s: 3 * m + 7 for s, m in zip(sids, moved, strict=True)}
    a = run(sc, policy, trace=trace, engine=engine)
    b = run(sc, policy, trace=relabel(trace, ids, sessions), engine=engine)
    assert summary(a) == summary(b)
    back = {v: k for k, v in ids.items()}
    ra = a.requests.sort_values("request_id").reset_index(drop=True)
    rb = b.requests.assign(request_id=b.requests["request_id"].map(back))
    rb = rb.sort_values("request_id").reset_index(drop=True)
    keep = [c for c in ra.columns if c != "session_id"]
    pd.testing.assert_frame_equal(ra[keep], rb[keep], check_exact=True)
    for table in ("iterations", "rounds", "links"):
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table), check_exact=True)
