"""A run's per-request arrays: what every request was, and what happened to it.

The decode-loop engines (:mod:`simulator.engine.admission`) and the disaggregated pool loops
(:mod:`simulator.disaggregation.pools`) keep the same numpy arrays, one entry per trace row —
the trace's ids, arrival times and token counts, and the times, generated tokens and reasons
the run fills in — and settle the requests that did not complete the same way when the clock
stops.
"""

from __future__ import annotations

import numpy as np

from simulator.engine.arrivals import NOT_DUE, NOT_ENTERED, follows_of

#: Why a request did not complete: the run stopped first.
NOT_FINISHED = "not finished when the run stopped (duration limit)"
#: Why a request of an open loop that follows none never entered: the run stopped before its
#: trace time (a trace handed to ``run`` whole; :func:`~simulator.engine.trace.load_trace`
#: leaves out the rows at or after ``[engine] duration``).
NOT_ARRIVED = "never entered: the run stopped before its arrival"


def init_request_arrays(state, trace) -> None:
    """Set a run's per-request arrays on ``state`` from ``trace`` (one row per request): ``n``,
    the trace's ids, arrival [s] and token counts, and the times (NaN until they happen),
    generated tokens and reasons the run fills in. Shared by the engine and the
    disaggregated loops."""
    n = state.n = len(trace)
    state.rid = trace["request_id"].to_numpy(np.int64)
    state.sid = trace["session_id"].to_numpy(np.int64)
    state.arrival = trace["arrival_at"].to_numpy(float, copy=True)  # a closed loop rewrites it
    state.inp = trace["input_tokens"].to_numpy(np.int64)
    state.out = trace["output_tokens"].to_numpy(np.int64)
    state.admitted_at = np.full(n, np.nan)
    state.first_at = np.full(n, np.nan)
    state.finish_at = np.full(n, np.nan)
    state.gen = np.zeros(n, np.int64)
    state.reason = [""] * n
    state.follows = follows_of(trace)  # (row followed, gap [s]) or None


def settle_unfinished(state, entered: np.ndarray, closed: bool = False) -> None:
    """When the clock has stopped: give every request of ``state`` (arrays as
    :func:`init_request_arrays` sets them) that did not complete a reason — never entered (what
    it follows, or in a closed loop the request whose place it waited for, never finished; what
    it follows completed but the gap after it had not passed; in
    an open loop one that follows none arrives after the run stopped; its arrival is then NaN:
    it never arrived) or not finished. ``entered``: per request, whether it entered the run
    (:attr:`Arrivals.entered`); ``closed``: a closed loop (``[workload] concurrency``). Shared
    by the engine and the disaggregated loops."""
    after = state.follows[0] if state.follows is not None else None
    for r in range(state.n):
        if not entered[r]:
            late = not closed and (after is None or after[r] < 0)  # it follows no request
            # one that follows a request that completed waited out the gap after it
            due = not late and not closed and not np.isnan(state.finish_at[after[r]]) \
                and not state.reason[after[r]]
            state.reason[r] = NOT_ARRIVED if late else NOT_DUE if due else NOT_ENTERED
            state.arrival[r] = np.nan
        elif not state.reason[r] and (np.isnan(state.finish_at[r])
                                      or state.gen[r] < state.out[r]):
            state.reason[r] = NOT_FINISHED
