"""When requests enter a run: at their trace times (open loop) or as earlier ones finish (closed loop).

Open loop (the default) replays the trace's arrival times. A closed loop (``[workload]
concurrency = N``) keeps ``N`` requests outstanding: the first ``N`` enter at time 0, and each
time one finishes (completed or rejected) the next in trace order enters; its ``arrival_at`` is
rewritten to that moment, so its time to first token counts from when it entered. A closed loop
measures a deployment at capacity — arrivals never outrun service and never leave it idle —
which is how throughput comparisons at equal cost are made (the Lamina study); the run's
steady throughput is measured over a window that leaves out the warm-up and the drain
(:func:`simulator.engine.records.capacity_window`).

Shared by every engine: each gives :class:`Arrivals` a ``deliver(r)`` callback (put request ``r``
in a queue, wake the loop) and calls :meth:`Arrivals.finished` when a request leaves.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy


class Arrivals:
    """The arrival process of one run.

    Args:
        env: the run's environment.
        arrival: arrival time of each request [s] (rewritten in a closed loop).
        concurrency: requests kept outstanding (closed loop), or None (open loop).
        deliver: called as ``deliver(r)`` when request ``r`` enters.
    """

    def __init__(self, env: simpy.Environment, arrival: np.ndarray, concurrency: int | None,
                 deliver: Callable[[int], None]) -> None:
        self.env = env
        self.arrival = arrival
        self.concurrency = concurrency
        self.deliver = deliver
        self.outstanding = 0
        self._room: simpy.Event | None = None

    def process(self):
        """The SimPy process that lets requests in."""
        env = self.env
        n = len(self.arrival)
        if self.concurrency is None:
            for r in range(n):
                dt = self.arrival[r] - env.now
                if dt > 0:
                    yield env.timeout(dt)
                    # the clock reaches ``now + dt``, which can differ from the trace time by
                    # an ulp: the request enters on the one clock, so the record says when
                    self.arrival[r] = env.now
                self.deliver(r)
            return
        for r in range(n):
            while self.outstanding >= self.concurrency:
                self._room = env.event()
                yield self._room
            self.arrival[r] = env.now
            self.outstanding += 1
            self.deliver(r)

    def finished(self) -> None:
        """A request left the run (completed, rejected or cut off): in a closed loop, the next
        one may enter."""
        if self.concurrency is None:
            return
        self.outstanding -= 1
        room = self._room
        if room is not None and not room.triggered:
            room.succeed()
