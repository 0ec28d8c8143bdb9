"""Host↔device copies as the hardware does them: DMA copy engines over PCIe, at measured times.

**Time of one copy** (:class:`HostCopyTime`): pinned host↔device copies measured on an H200 over
PCIe Gen5 x16 (``calibration/h200/pcie_sweep.csv``: one ``cudaMemcpyAsync`` of 1 KB–1 GB per
direction, CUDA events around it). A copy of ``n`` bytes takes the table's time interpolated
log-log between the measured sizes: ~21 µs up to 256 KB (the per-copy latency: launch, DMA setup,
completion), then the bandwidth's share, reaching 55.3 GB/s at 1 GB (86% of the 64 GB/s line
rate). Below the smallest row the copy costs that row's time; above the largest the rest goes at
the last row's rate. Over a slower or faster host link (PCIe Gen4 on an A100) the bandwidth part
— time beyond the 1 KB copy's — scales with the link's rate against Gen5's (an extrapolation).

**Concurrency** (:class:`CopyEngines`), by the rules of the CUDA C++ Programming Guide
("Asynchronous Concurrent Execution": *Concurrent Data Transfers* and *Overlap of Data Transfer
and Kernel Execution*):

- copies run on the GPU's copy engines, not its SMs: they overlap with kernel execution;
- a copy host→device and one device→host overlap (devices with ``asyncEngineCount`` ≥ 2 — every
  data-center GPU here; the H200 measured has 3);
- copies in the same direction do not overlap each other, whatever stream issued them: they run
  one after the other, in issue order (one engine per direction; pinned memory, as measured).

So each GPU has two FIFO queues, one per direction (:class:`~simulator.gpu.streams.Stream`s, whose
end times are known when a copy is issued). The host KV tier's reads (a fetch from host DRAM)
are host→device copies on the reader's engine; demotions to the host tier are device→host copies
on the holder's. The Fabric's links keep their max-min sharing for everything else.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np
import simpy

from simulator.gpu.streams import Stream
from simulator.units import GBps

DIRECTIONS: tuple[str, ...] = ("h2d", "d2h")
#: The line rate the table was measured over: PCIe Gen5 x16 (REFERENCE.md).
MEASURED_LINK = GBps(64)


class HostCopyTime:
    """One pinned host↔device copy's time [s] from a measured table (see the module docstring).

    Args:
        path: a CSV with columns ``direction`` (``h2d``/``d2h``), ``bytes``, ``time_s``.
    """

    def __init__(self, path: str | Path) -> None:
        rows: dict[str, list[tuple[float, float]]] = {d: [] for d in DIRECTIONS}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                rows[row["direction"]].append((float(row["bytes"]), float(row["time_s"])))
        self.path = str(path)
        self._x: dict[str, np.ndarray] = {}
        self._t: dict[str, np.ndarray] = {}
        for d, pts in rows.items():
            pts.sort()
            self._x[d] = np.log(np.array([p[0] for p in pts]))
            # up to 256 KiB the medians sit on the launch floor and wander within their p10–p90
            # (19.6–22.1 µs): a running maximum keeps a copy of more bytes never faster
            self._t[d] = np.log(np.maximum.accumulate(np.array([p[1] for p in pts])))
        # the rate beyond the largest copy: the last two rows' slope [B/s]
        self._tail = {d: float((np.exp(self._x[d][-1]) - np.exp(self._x[d][-2]))
                               / (np.exp(self._t[d][-1]) - np.exp(self._t[d][-2])))
                      for d in DIRECTIONS}

    def measured(self, direction: str, nbytes: float) -> float:
        """The time over the measured link (PCIe Gen5 x16) [s]."""
        x, t = self._x[direction], self._t[direction]
        if nbytes <= np.exp(x[0]):
            return float(np.exp(t[0]))
        if nbytes >= np.exp(x[-1]):
            return float(np.exp(t[-1]) + (nbytes - np.exp(x[-1])) / self._tail[direction])
        return float(np.exp(np.interp(np.log(nbytes), x, t)))

    def time(self, direction: str, nbytes: float, link_bandwidth: float = MEASURED_LINK) -> float:
        """One copy of ``nbytes`` in ``direction`` over a host link of ``link_bandwidth`` [s]
        (0 for nothing)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r}: give one of {', '.join(DIRECTIONS)}")
        if nbytes <= 0:
            return 0.0
        t = self.measured(direction, nbytes)
        if link_bandwidth == MEASURED_LINK:
            return t
        floor = float(np.exp(self._t[direction][0]))
        return floor + (t - floor) * MEASURED_LINK / link_bandwidth


@lru_cache(maxsize=1)
def host_copy_time() -> HostCopyTime:
    """The shipped measurement (``calibration/h200/pcie_sweep.csv``)."""
    from simulator.gpu.profiles import calibration_dir

    return HostCopyTime(calibration_dir() / "h200" / "pcie_sweep.csv")


class CopyEngines:
    """One GPU's copy engines: a FIFO queue per direction (see the module docstring)."""

    __slots__ = ("h2d", "d2h")

    def __init__(self, env: simpy.Environment) -> None:
        self.h2d = Stream(env)
        self.d2h = Stream(env)

    def issue(self, direction: str, duration: float) -> float:
        """Queue a copy of ``duration`` [s] now; returns when it ends [s]."""
        return (self.h2d if direction == "h2d" else self.d2h).issue(duration)

    @property
    def busy_time(self) -> float:
        """Seconds the engines have been copying, both directions summed [s]."""
        return self.h2d.busy_time + self.d2h.busy_time
