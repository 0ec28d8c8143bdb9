"""Parameter sweeps: many scenarios (or closed-form rounds) on local processes or a Dask cluster.

- :mod:`~simulator.sweep.spec` — a sweep as validated data (:class:`Sweep`) and its points;
- :mod:`~simulator.sweep.points` — one point computed in a worker (a pure function);
- :mod:`~simulator.sweep.executor` — the backends, atomic per-point results, resume.

May import: everything below it (:func:`simulator.runner.run`, the scenario, the cost model).
Imported by: the CLI. Exports :class:`Sweep`, :func:`execute`, :class:`SweepResult`,
:class:`Point`, :func:`point_id`, ``KINDS``, ``BACKENDS``.
"""

from simulator.sweep.executor import BACKENDS, SweepResult, execute
from simulator.sweep.spec import KINDS, Distribution, Point, Sweep, derive_seed, point_id

__all__ = ["BACKENDS", "KINDS", "Distribution", "Point", "Sweep", "SweepResult", "derive_seed",
           "execute", "point_id"]
