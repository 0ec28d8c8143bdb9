"""The GPU runtime: a compute stream where kernels serialize, busy time, and HBM accounting.

:class:`GPU` gives a simulation a compute stream on which kernels serialize
(``simpy.Resource(capacity=1)``, one process per kernel), busy-time accounting, and HBM capacity
accounting in bytes; kernel durations come from :class:`~simulator.gpu.kernels.KernelModel`. The
engine's fast FIFO stream (:class:`~simulator.gpu.streams.Stream`) gives the same schedule
without a process per kernel.
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from simulator.errors import UserError
from simulator.gpu.kernels import KernelModel
from simulator.hardware import GPUSpec
from simulator.models import Architecture


class HBMFullError(UserError):
    """A reservation that does not fit in a GPU's free HBM."""


class GPU:
    """One GPU in a simulation: a compute stream where kernels serialize, and HBM accounting.

    Args:
        env: the simulation's environment.
        name: the topology node name, e.g. ``"n0/gpu3"``.
        spec: the GPU's catalog spec.
        kernels: the kernel-time model (default coefficients if None).
    """

    def __init__(self, env: simpy.Environment, name: str, spec: GPUSpec,
                 kernels: KernelModel | None = None) -> None:
        self.env = env
        self.name = name
        self.spec = spec
        self.kernels = kernels if kernels is not None else KernelModel()
        self.stream = simpy.Resource(env, capacity=1)
        self.hbm_bytes: float = spec.hbm_bytes
        self.used_bytes: float = 0.0
        self.kernels_run: int = 0
        self._busy_done: float = 0.0
        self._busy_since: float | None = None

    # -- compute -------------------------------------------------------------------------------

    def run(self, duration: float) -> simpy.Process:
        """A process that waits for the stream, holds it for ``duration`` [s], then fires."""
        if duration < 0:
            raise ValueError(f"GPU {self.name}: kernel duration must be >= 0, got {duration}")
        return self.env.process(self._run(float(duration)))

    def _run(self, duration: float) -> Generator[simpy.Event, None, None]:
        with self.stream.request() as req:
            yield req
            self._busy_since = self.env.now
            try:
                yield self.env.timeout(duration)
            finally:
                self._busy_done += self.env.now - self._busy_since
                self._busy_since = None
            self.kernels_run += 1

    @property
    def busy_time(self) -> float:
        """Seconds the stream has been running kernels so far (the one in progress included)."""
        running = 0.0 if self._busy_since is None else self.env.now - self._busy_since
        return self._busy_done + running

    def utilization(self) -> float:
        """Busy time / elapsed simulated time (0 at time 0)."""
        return self.busy_time / self.env.now if self.env.now > 0 else 0.0

    # -- kernel times on this GPU ----------------------------------------------------------------

    def attention_time(self, arch: Architecture, batch: float, tokens: float,
                       heads: int | None = None) -> float:
        """:meth:`KernelModel.attention_time` on this GPU [s]."""
        return self.kernels.attention_time(self.spec, arch, batch, tokens, heads)

    def merge_time(self, arch: Architecture, batch: float, partials: int = 2,
                   heads: int | None = None) -> float:
        """:meth:`KernelModel.merge_time` on this GPU [s]."""
        return self.kernels.merge_time(self.spec, arch, batch, partials, heads)

    # -- memory --------------------------------------------------------------------------------

    @property
    def free_bytes(self) -> float:
        """HBM not reserved [B]."""
        return self.hbm_bytes - self.used_bytes

    def reserve(self, nbytes: float) -> None:
        """Reserve ``nbytes`` of HBM; :class:`HBMFullError` (nothing reserved) if it won't fit."""
        if nbytes < 0:
            raise ValueError(f"GPU {self.name}: cannot reserve a negative size {nbytes}")
        if self.used_bytes + nbytes > self.hbm_bytes:
            raise HBMFullError(
                f"GPU {self.name}: cannot reserve {nbytes:.4g} B, only {self.free_bytes:.4g} B of "
                f"{self.hbm_bytes:.4g} B HBM free; use fewer blocks per GPU or a larger GPU")
        self.used_bytes += nbytes

    def release(self, nbytes: float) -> None:
        """Give back ``nbytes`` of HBM reserved earlier (more than reserved is an error)."""
        if nbytes < 0 or nbytes > self.used_bytes * (1 + 1e-12) + 1e-9:
            raise ValueError(f"GPU {self.name}: cannot release {nbytes} B, "
                             f"{self.used_bytes} B reserved")
        self.used_bytes = max(0.0, self.used_bytes - nbytes)
