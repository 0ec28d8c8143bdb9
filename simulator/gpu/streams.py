"""GPU compute streams for the engine: kernels serialize FIFO on each GPU.

:class:`Stream` is the fast one. Every kernel's duration is known when it is issued, so FIFO
service needs no queue: a kernel issued at ``t`` ends at ``max(t, free_at) + duration`` — one
SimPy timeout per kernel instead of a resource request, a process and a release. It gives the same
schedule as :meth:`simulator.gpu.GPU.run`. :class:`GPUStream` offers the same interface over that
SimPy resource (``run(..., exact_streams=True)``) to cross-check it.
"""

from __future__ import annotations

import numpy as np
import simpy
from simpy.events import NORMAL

from simulator.gpu.runtime import GPU


class Stream:
    """A GPU compute stream where kernels serialize FIFO, as ``simpy.Resource(capacity=1)``.

    Every kernel's duration is known when it is issued, so FIFO service needs no queue: a
    kernel issued at ``t`` ends at ``max(t, free_at) + duration`` — one timeout per kernel
    instead of a request, a process and a release (the same times as :meth:`GPU.run`).
    """

    __slots__ = ("env", "free_at", "busy", "kernels_run", "gaps")
    #: :meth:`issue` returns the kernel's end (callers may act on it without an event).
    predicts = True

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.free_at = 0.0
        self.busy = 0.0
        self.kernels_run = 0
        self.gaps: list[tuple] = []  # idle spans queued ahead by quiet_layer / chain [s]

    def issue(self, duration: float) -> float:
        """Queue a kernel of ``duration`` [s] now; returns when it will finish [s]."""
        now = self.env.now
        start = self.free_at if self.free_at > now else now
        self.free_at = start + duration
        self.busy += duration
        self.kernels_run += 1
        return self.free_at

    def issue_at(self, at: float, duration: float) -> float:
        """Queue a kernel (or copy) of ``duration`` [s] issued at ``at`` >= now [s], ahead of
        the clock (the fast engine composes a step at its start): it starts at ``at`` or when
        the stream is free, whichever is later. The idle span before it is kept (``gaps``), so
        :attr:`busy_time` read before it starts does not count that span. Returns its end [s]."""
        now = self.env.now
        if at > self.free_at and at > now:  # idle until then: not busy time
            self._idle(now, self.free_at, at)
            self.free_at = at
        return self.issue(duration)

    def _idle(self, now: float, free: float, at: float) -> None:
        """Keep the idle span from ``free`` (or ``now``, if later) to ``at`` [s] among the
        ``gaps`` (:attr:`busy_time` read before ``at`` leaves it out)."""
        _prune(self.gaps, now)
        self.gaps.append((free if free > now else now, at))

    def quiet_layer(self, at: float, attention: float, rest: float, factor: int) -> float:
        """A layer with nothing to exchange, started at ``at`` >= now [s]: the home's attention
        (``attention`` [s]; 0 = no kernel), then projections + FFN (``rest`` [s]), then
        ``factor − 1`` more layers' worth of the same time (folding), as
        ``issue``/``after`` would do at ``at``. Only valid while nothing else can be queued
        before ``at`` (the engine's chained layers). Returns when the next layer starts [s]."""
        now = self.env.now
        free = self.free_at
        if at > free and at > now:  # the stream idles until then
            self._idle(now, free, at)
        start = free if free > at else at
        if attention:
            start += attention
            self.kernels_run += 2
        else:
            self.kernels_run += 1
        end = self.free_at = start + rest
        self.busy += attention + rest
        return end + (end - at) * (factor - 1)

    def chain(self, at: float, kernels: np.ndarray, waits: np.ndarray,
              total: float | None = None) -> np.ndarray:
        """Kernels of ``kernels`` [s] each, the first at ``at`` >= now [s] and each next one
        ``waits[i]`` [s] after kernel ``i`` ends (nothing else queued meanwhile: the stream
        idles through the waits, as :meth:`quiet_layer` would record them). Returns the
        cumulative times ``[at, end₀, end₀ + waits₀, end₁, …]`` [s] — kernel ``i`` ends at
        ``[2i + 1]``, the chain at ``[-1]`` (after the last wait). Sums run left to right, as
        issuing the kernels one by one would. ``total``: ``float(kernels.sum())`` if the caller
        has it."""
        now = self.env.now
        n = len(kernels)
        seq = np.empty(2 * n + 1)
        seq[0] = at
        seq[1::2] = kernels
        seq[2::2] = waits
        times = np.add.accumulate(seq, out=seq)  # np.cumsum, without its wrapper
        if n == 0:
            return times
        _prune(self.gaps, now)
        self.gaps.append(_ChainSpans(self.free_at if self.free_at > now else now, times))
        self.free_at = float(times[-2])
        self.busy += float(kernels.sum()) if total is None else total
        self.kernels_run += n
        return times

    def run(self, duration: float) -> simpy.Event:
        """An event that fires when a kernel of ``duration`` [s] issued now has finished."""
        return self.env.timeout(self.issue(duration) - self.env.now)

    def after(self, duration: float, t0: float, factor: int) -> simpy.Event:
        """Run a kernel of ``duration`` [s], then wait ``(factor − 1) × (its end − t0)``."""
        end = self.issue(duration)
        return self.env.timeout(end - self.env.now + (end - t0) * (factor - 1))

    def after_then(self, event: simpy.Event, duration: float, t0: float, factor: int) -> None:
        """Like :meth:`after`, but fire the pending ``event`` at that time (no new event).

        Sets the event's value as :meth:`simpy.Event.succeed` does and schedules it with a delay,
        as :class:`simpy.Timeout` does: the waiting process resumes at the same time as
        ``yield self.after(...)`` issued now would.
        """
        end = self.issue(duration)
        event._ok = True
        event._value = None
        self.env.schedule(event, NORMAL, end - self.env.now + (end - t0) * (factor - 1))

    @property
    def busy_time(self) -> float:
        """Kernel time run so far [s] (a kernel still running counts up to now)."""
        now = self.env.now
        ahead = self.free_at - now  # queued time not yet run, less the idle spans in it
        if ahead <= 0.0:
            return self.busy
        return self.busy - ahead + sum(max(0.0, b - max(a, now)) for a, b in _spans(self.gaps))


def _spans(gaps: list):
    """The idle spans ``(start, end)`` [s] of a stream's ``gaps``, in order: each entry one span
    (a pair of floats, :meth:`Stream.quiet_layer`'s) or a chain's (:class:`_ChainSpans`)."""
    for x in gaps:
        if isinstance(x, _ChainSpans):
            yield from x.spans()
        else:
            yield x


class _ChainSpans:
    """The idle spans of a chain issued when the stream was free at ``free`` [s], whose
    cumulative ``times`` :meth:`Stream.chain` returned: before kernel 0 if ``free`` is before
    its start, before kernel i > 0 if it starts after kernel i − 1 ends. Found only when asked
    (a busy time read mid-chain), not for every chain."""

    __slots__ = ("free", "times")

    def __init__(self, free: float, times: np.ndarray) -> None:
        self.free = free
        self.times = times

    @property
    def last_end(self) -> float:
        """No span ends after the last kernel's start [s]."""
        return float(self.times[-3])

    def spans(self):
        t = self.times
        at = float(t[0])
        if at > self.free:
            yield self.free, at
        starts, before = t[2:-1:2], t[1:-2:2]
        idle = starts > before
        yield from zip(before[idle].tolist(), starts[idle].tolist(), strict=True)


def _prune(gaps: list, now: float) -> None:
    """Drop the entries of ``gaps`` whose spans all ended by ``now`` [s] (they add nothing to
    :attr:`Stream.busy_time` any more), when the first has."""
    if gaps and _last_end(gaps[0]) <= now:
        if _last_end(gaps[-1]) <= now:  # all of them (the usual case: a chain per step)
            gaps.clear()
        else:
            gaps[:] = [x for x in gaps if _last_end(x) > now]


def _last_end(entry) -> float:
    return entry.last_end if isinstance(entry, _ChainSpans) else entry[1]


class GPUStream:
    """The same interface as :class:`Stream` over :class:`simulator.gpu.GPU` (its resource and
    processes). Kernel ends are not predicted: callers wait for the events."""

    predicts = False

    def __init__(self, gpu: GPU) -> None:
        self.gpu = gpu
        self.free_at = 0.0  # when the queued kernels end [s] (FIFO: as Stream counts it)

    def _queued(self, duration: float) -> None:
        now = self.gpu.env.now
        self.free_at = (self.free_at if self.free_at > now else now) + duration

    def run(self, duration: float) -> simpy.Event:
        self._queued(duration)
        return self.gpu.run(duration)

    def issue(self, duration: float) -> None:
        self._queued(duration)
        self.gpu.run(duration)

    def after(self, duration: float, t0: float, factor: int) -> simpy.Event:
        env = self.gpu.env
        self._queued(duration)

        def proc():
            yield self.gpu.run(duration)
            if factor > 1:
                yield env.timeout((env.now - t0) * (factor - 1))

        return env.process(proc())

    def after_then(self, event: simpy.Event, duration: float, t0: float, factor: int) -> None:
        self.after(duration, t0, factor).callbacks.append(lambda _e: event.succeed())

    @property
    def busy_time(self) -> float:
        return self.gpu.busy_time

    @property
    def kernels_run(self) -> int:
        return self.gpu.kernels_run
