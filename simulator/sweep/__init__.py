"""Parameter sweeps: many scenarios (or closed-form rounds) on local processes or a Dask cluster.

- :mod:`~simulator.sweep.spec` — a sweep as validated data (:class:`Sweep`), its points, their
  seeds (the workload fields only) and keys (everything that determines a result);
- :mod:`~simulator.sweep.check` — every point validated before any runs;
- :mod:`~simulator.sweep.points` — one point computed in a worker (a pure function);
- :mod:`~simulator.sweep.executor` — the backends, atomic per-point results, resume, Ctrl-C.

May import: everything below it (:func:`simulator.runner.run`, the scenario, the cost model).
Imported by: the CLI. Exports :class:`Sweep`, :func:`execute`, :class:`SweepResult`,
:class:`Interrupted`, :func:`check_points`, :class:`Point`, :func:`point_id`,
:func:`workload_fields`, ``KINDS``, ``BACKENDS``.
"""

from simulator.sweep.check import check_points
from simulator.sweep.executor import BACKENDS, Interrupted, SweepResult, execute
from simulator.sweep.spec import (
    KINDS,
    Distribution,
    Point,
    Sweep,
    derive_seed,
    point_id,
    workload_fields,
)

__all__ = ["BACKENDS", "KINDS", "Distribution", "Interrupted", "Point", "Sweep", "SweepResult",
           "check_points", "derive_seed", "execute", "point_id", "workload_fields"]
