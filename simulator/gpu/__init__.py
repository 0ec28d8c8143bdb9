"""GPUs: kernel times, the runtime that runs kernels, compute streams, and calibration.

- :mod:`~simulator.gpu.kernels` — the kernel-time model (:class:`KernelModel`, a roofline per
  kernel with efficiencies and a launch overhead);
- :mod:`~simulator.gpu.runtime` — :class:`GPU`: a SimPy compute stream, busy time, HBM bytes;
- :mod:`~simulator.gpu.streams` — :class:`Stream`, the engine's closed-form FIFO stream (and
  :class:`GPUStream` over the runtime, to cross-check it);
- :mod:`~simulator.gpu.calibration` — fit kernel and fabric coefficients from measurements.

May import: ``units``, ``errors``, ``hardware``, ``models``. Exports :class:`KernelModel`,
:class:`Roofline`, :class:`GPU`, :class:`HBMFullError`, :class:`Stream`, :class:`GPUStream`.
"""

from simulator.gpu.kernels import KernelModel, Roofline
from simulator.gpu.runtime import GPU, HBMFullError
from simulator.gpu.streams import GPUStream, Stream

__all__ = ["GPU", "GPUStream", "HBMFullError", "KernelModel", "Roofline", "Stream"]
