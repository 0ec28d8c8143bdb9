"""When requests enter a run: at their trace times (open loop) or as earlier ones finish (closed loop).

Open loop (the default) replays the trace's arrival times. A closed loop (``[workload]
concurrency = N``) keeps ``N`` requests outstanding: the first ``N`` enter at time 0, and each
time one finishes (completed or rejected) the next in trace order enters; its ``arrival_at`` is
rewritten to that moment, so its time to first token counts from when it entered. A closed loop
measures a deployment at capacity — arrivals never outrun service and never leave it idle —
which is how throughput comparisons at equal cost are made (the Lamina study); the run's
steady throughput is measured over a window that leaves out the warm-up and the drain
(:func:`simulator.engine.records.capacity_window`).

A request that *follows* another (the trace's ``after_id``: a sub-agent its orchestrator's
plan, a turn the previous turn) does not enter at its trace time but ``after_time`` seconds after
the request it follows finishes (completed or not): the run stays causal however slow it is.
Its ``arrival_at`` is rewritten to that moment. One it follows that never finishes before the
run stops leaves it outside the run (``entered`` false: the engines give it a reason of its
own). Open loop only: a closed loop decides entries itself (:func:`check_follows`).

Shared by every engine: each gives :class:`Arrivals` a ``deliver(r)`` callback (put request ``r``
in a queue, wake the loop) and calls :meth:`Arrivals.finished` with ``r`` when a request leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
import simpy

from simulator.errors import UserError

#: Why a request did not complete when the request it follows had not finished by the end.
NOT_ENTERED = "never entered: the request it follows had not finished when the run stopped"
#: Why a request that follows another never entered though that one finished: its gap after it
#: had not passed when the run stopped.
NOT_DUE = ("never entered: the request it follows finished, but the gap after it had not "
           "passed when the run stopped")


def follows_of(trace) -> tuple[np.ndarray, np.ndarray] | None:
    """Per row of ``trace``: the row it follows (-1: none) and the gap after that row finishes
    [s]; None when no row follows another (or the trace predates the columns)."""
    if "after_id" not in trace.columns:
        return None
    after_id = trace["after_id"].to_numpy(dtype=np.int64, na_value=-1)
    if not (after_id >= 0).any():
        return None
    row = pd.Index(trace["request_id"].to_numpy(np.int64)).get_indexer(after_id)
    known = (after_id >= 0) & (row >= 0)
    gap = trace["after_time"].to_numpy(np.float64)
    # a follower whose request is not in the run (cut by max_requests) enters at its trace time
    return np.where(known, row, -1).astype(np.int64), np.where(known, gap, 0.0)


def check_follows(trace, concurrency: int | None, source: str) -> None:
    """Refuse a closed loop over a trace whose requests follow others (UserError)."""
    if concurrency is not None and follows_of(trace) is not None:
        raise UserError(f"{source}: [workload] concurrency = {concurrency} with a trace whose "
                        "requests follow others (after_id): a closed loop decides when requests "
                        "enter; drop concurrency, or generate the trace with causal = false")


class Arrivals:
    """The arrival process of one run.

    Args:
        env: the run's environment.
        arrival: arrival time of each request [s] (rewritten in a closed loop).
        concurrency: requests kept outstanding (closed loop), or None (open loop).
        deliver: called as ``deliver(r)`` when request ``r`` enters.
        follows: per request the request it follows (-1: none) and the gap after that one
            finishes [s] (:func:`follows_of`), or None; open loop only.
    """

    def __init__(self, env: simpy.Environment, arrival: np.ndarray, concurrency: int | None,
                 deliver: Callable[[int], None],
                 follows: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.env = env
        self.arrival = arrival
        self.concurrency = concurrency
        self.deliver = deliver
        self.outstanding = 0
        self._room: simpy.Event | None = None
        self.entered = np.zeros(len(arrival), bool)
        self.after = self.gap = None
        self.followers: dict[int, list[int]] = {}
        if follows is not None:
            if concurrency is not None:
                raise ValueError("a closed loop cannot keep requests that follow others")
            self.after, self.gap = follows
            for r in np.flatnonzero(self.after >= 0).tolist():
                self.followers.setdefault(int(self.after[r]), []).append(r)

    def _enter(self, r: int, _event=None) -> None:
        self.arrival[r] = self.env.now
        self.entered[r] = True
        self.deliver(r)

    def process(self):
        """The SimPy process that lets requests in."""
        env = self.env
        n = len(self.arrival)
        if self.concurrency is None:
            after = self.after
            for r in range(n):
                if after is not None and after[r] >= 0:
                    continue  # it enters when the request it follows finishes
                dt = self.arrival[r] - env.now
                if dt > 0:
                    yield env.timeout(dt)
                # the clock reaches ``now + dt``, which can differ from the trace time by an
                # ulp: the request enters on the one clock, so the record says when
                self._enter(r)
            return
        for r in range(n):
            while self.outstanding >= self.concurrency:
                self._room = env.event()
                yield self._room
            self.outstanding += 1
            self._enter(r)

    def finished(self, r: int = -1) -> None:
        """Request ``r`` left the run (completed, rejected or cut off): the requests that
        follow it enter after their gaps (always through an event, never inside the caller);
        in a closed loop, the next one may enter."""
        for d in self.followers.pop(r, ()):
            self.env.timeout(float(self.gap[d])).callbacks.append(partial(self._enter, d))
        if self.concurrency is None:
            return
        self.outstanding -= 1
        room = self._room
        if room is not None and not room.triggered:
            room.succeed()
