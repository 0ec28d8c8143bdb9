"""Running a loop's clock, with progress in simulated time when the run has a duration.

A run without a duration ends when its requests do, so its progress is requests finished (the
loops' bookkeeping reports it). A run cut at ``[engine] duration`` may finish few of its requests
(a minute of a 1,024-GPU cluster finishes 656 of 31,846), so its progress is the simulated time
reached: :func:`run_clock` steps the environment as ``env.run(until=duration)`` does — the same
stop event, scheduled the same way, so the same events in the same order and the same event
count — and calls ``progress(now, duration)`` [s] as the clock passes each 1/200 of the duration.

**Fewer garbage collections while the clock runs** (:func:`fewer_collections`). A run allocates
millions of short-lived containers (SimPy events and their callback lists, a step's tuples and
records) beside large long-lived ones (record lists, memo dictionaries, the calendars' lists).
CPython's default collector runs a young pass every 700 net container allocations and a full
pass whenever the long-lived objects grew by a quarter; each full pass walks every long-lived
container, element by element. On the first 60 Mooncake requests under ``route`` (every layer)
that was 18 full passes, 1.16 s of a 14.9 s run, and 1.62 s in all (``gc.callbacks``, measured
at stop 60); with the young threshold at :data:`YOUNG_THRESHOLD` no full pass ran and the
collector took 0.21 s. The threshold is raised while the clock runs and put back after.
Collection decides when memory is reclaimed, never a result: cyclic garbage is still collected,
later, and the peak resident memory of those runs did not change.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import simpy
from simpy.core import NORMAL, URGENT, StopSimulation
from simpy.events import Timeout

__all__ = ["run_clock", "requests_progress", "fewer_collections", "TICKS", "YOUNG_THRESHOLD",
           "GpuTimeout"]

#: Progress calls over a duration-limited run.
TICKS = 200
#: The collector's young-generation threshold (net container allocations between young passes)
#: while a clock runs (CPython's default: 700). Measured, not derived (module docstring): 10,000
#: left one full pass in that run, 50,000 none.
YOUNG_THRESHOLD = 50_000

_lock = threading.Lock()
_entered = 0  # clocks running now, in any thread (the thresholds are the process's)
_saved: tuple[int, ...] = ()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collector's young threshold to :data:`YOUNG_THRESHOLD` inside the block, and
    put the thresholds back after it (the first of nested or concurrent blocks raises it, the
    last one out restores it). A collector turned off (threshold 0) or set higher is left
    alone."""
    global _entered, _saved
    with _lock:
        if not _entered:
            _saved = gc.get_threshold()
            young = _saved[0]
            if young and young < YOUNG_THRESHOLD:  # 0: the collector is off
                gc.set_threshold(YOUNG_THRESHOLD, *_saved[1:])
        _entered += 1
    try:
        yield
    finally:
        with _lock:
            _entered -= 1
            if not _entered:
                gc.set_threshold(*_saved)


def requests_progress(progress: Callable | None, duration: float | None) -> Callable | None:
    """The callback a loop's request bookkeeping reports finished requests to: ``progress``
    for a run without a duration; None for one with a duration, whose progress is the
    simulated time :func:`run_clock` reports (the two kinds never mix)."""
    return progress if duration is None else None


def run_clock(env: simpy.Environment, duration: float | None,
              progress: Callable[[float, float], None] | None = None) -> None:
    """Run ``env`` to ``duration`` [s] (None: until no events are left), calling
    ``progress(now, duration)`` as simulated time advances when both are given; with fewer
    garbage collections meanwhile (:func:`fewer_collections`)."""
    with fewer_collections():
        _run(env, duration, progress)


def _run(env: simpy.Environment, duration: float | None,
         progress: Callable[[float, float], None] | None) -> None:
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


class GpuTimeout(Timeout):
    """A timeout of GPU ``gpu``'s loop that, among the events due at one instant, comes after
    every other kind and after those of lower-numbered GPUs: its place there does not depend on
    when it was scheduled (SimPy breaks such ties by scheduling order), so a loop may compose
    its work at once, scheduling its next event earlier than an event per layer would, without
    moving what comes first at a tie. The fast engine's loops wait on these."""

    def __init__(self, env: simpy.Environment, delay: float, gpu: int) -> None:
        if delay < 0:
            raise ValueError(f"negative delay {delay}")
        self.env = env
        self.callbacks = []
        self._value = None
        self._delay = delay
        self._ok = True
        self.gpu = gpu
        env.schedule(self, NORMAL + 1 + gpu, delay)
