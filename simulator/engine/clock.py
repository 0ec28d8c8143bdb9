"""Running a loop's clock, with progress in simulated time when the run has a duration.

A run without a duration ends when its requests do, so its progress is requests finished (the
loops' bookkeeping reports it). A run cut at ``[engine] duration`` may finish few of its requests
(a minute of a 1,024-GPU cluster finishes 656 of 31,846), so its progress is the simulated time
reached: :func:`run_clock` steps the environment as ``env.run(until=duration)`` does — the same
stop event, scheduled the same way, so the same events in the same order and the same event
count — and calls ``progress(now, duration)`` [s] as the clock passes each 1/200 of the duration.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy
from simpy.core import URGENT, StopSimulation

__all__ = ["run_clock", "requests_progress", "TICKS"]

#: Progress calls over a duration-limited run.
TICKS = 200


def requests_progress(progress: Callable | None, duration: float | None) -> Callable | None:
    """The callback a loop's request bookkeeping reports finished requests to: ``progress``
    for a run without a duration; None for one with a duration, whose progress is the
    simulated time :func:`run_clock` reports (the two kinds never mix)."""
    return progress if duration is None else None


def run_clock(env: simpy.Environment, duration: float | None,
              progress: Callable[[float, float], None] | None = None) -> None:
    """Run ``env`` to ``duration`` [s] (None: until no events are left), calling
    ``progress(now, duration)`` as simulated time advances when both are given."""
    if duration is None or progress is None:
        env.run(until=duration) if duration is not None else env.run()
        return
    if duration <= env.now:
        raise ValueError(f"duration ({duration}) must be greater than the current time")
    stop = simpy.Event(env)  # as Environment.run(until=number) builds its stop event
    stop._ok = True
    stop._value = None
    env.schedule(stop, URGENT, duration - env.now)
    stop.callbacks.append(StopSimulation.callback)
    step, peek = env.step, env.peek
    tick = duration / TICKS
    next_at = tick
    try:
        while True:
            while peek() < next_at:
                step()
            progress(min(next_at, duration), duration)
            next_at += tick
    except StopSimulation:  # the stop event is in the queue until its time: never empty
        progress(duration, duration)
