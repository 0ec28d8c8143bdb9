"""GPUs: kernel times, the runtime that runs kernels, compute streams, and calibration.

- :mod:`~simulator.gpu.kernels` — the kernel-time model (:class:`KernelModel`, a roofline per
  kernel with efficiencies and a launch overhead);
- :mod:`~simulator.gpu.runtime` — :class:`GPU`: a SimPy compute stream, busy time, HBM bytes;
- :mod:`~simulator.gpu.streams` — :class:`Stream`, the engine's closed-form FIFO stream (and
  :class:`GPUStream` over the runtime, to cross-check it);
- :mod:`~simulator.gpu.calibration` — fit kernel and fabric coefficients from measurements;
  ``run_kernels`` picks a run's kernel model (the roofline, or measured profiles);
- kernel profiles from measurements (``calibration/``): :mod:`~simulator.gpu.table_loaders`
  (measurement folders read into rows), :mod:`~simulator.gpu.tables` (measured rows and their
  log–log lookup), :mod:`~simulator.gpu.operators` (the fitted model of every
  operator), :mod:`~simulator.gpu.fitting` (robust least squares on relative error),
  :mod:`~simulator.gpu.profile` (:class:`KernelProfile`: one GPU's operators, arrays in and out,
  each answer with its source), :mod:`~simulator.gpu.answers` (a table's answer where it covers a
  shape, the model's elsewhere, and their sources), :mod:`~simulator.gpu.profiles` (the shipped profiles: find,
  build, load), :mod:`~simulator.gpu.layers` (decoder layers composed from the operators) and
  :mod:`~simulator.gpu.profiled` (:class:`ProfiledKernels`, the profiles behind
  :class:`KernelModel`'s interface).

May import: ``units``, ``errors``, ``fileio``, ``hardware``, ``models``. Exports
:class:`KernelModel`, :class:`Roofline`, :class:`GPU`, :class:`HBMFullError`, :class:`Stream`,
:class:`GPUStream`, :class:`KernelProfile`, :class:`ProfiledKernels`.
"""

from simulator.gpu.kernels import KernelModel, Roofline
from simulator.gpu.profile import KernelProfile
from simulator.gpu.profiled import ProfiledKernels
from simulator.gpu.runtime import GPU, HBMFullError
from simulator.gpu.streams import GPUStream, Stream

__all__ = ["GPU", "GPUStream", "HBMFullError", "KernelModel", "KernelProfile", "ProfiledKernels",
           "Roofline", "Stream"]
