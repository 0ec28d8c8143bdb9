"""The closed-form cost model: route, fetch or recompute one round, and where they cross.

- :mod:`~simulator.costmodel.closed_form` — :class:`CostModel`: the building blocks of a round
  (messages on a path, kernels per GPU kind), each option's five phases (probe, transfer,
  compute, return, merge), the predicate ``decide``;
- :mod:`~simulator.costmodel.phases` — :class:`Phases` and :class:`Comparison`, and each
  option's formula composed from the cost model's building blocks;
- :mod:`~simulator.costmodel.crossover` — the crossover search (over blocks, bandwidth or probe
  latency), a part the cost model holds;
- :mod:`~simulator.costmodel.maps` — decision maps over (blocks × a fabric parameter);
- :mod:`~simulator.costmodel.contention` — many identical rounds at once on a real Fabric: where
  the formula breaks.

May import: ``units``, ``errors``, ``hardware``, ``models``, ``network``, ``gpu``. Exports
:class:`CostModel`, :class:`Phases`, :class:`Comparison`, ``OPTIONS``, ``LAYOUTS``,
``REQUEST_BYTES_PER_BLOCK``, ``PARTIALS``, ``CROSSOVER_VARIABLES``.
"""

from simulator.costmodel.closed_form import (
    LAYOUTS,
    OPTIONS,
    PARTIALS,
    REQUEST_BYTES_PER_BLOCK,
    CostModel,
)
from simulator.costmodel.crossover import CROSSOVER_VARIABLES, CrossoverSearch, check_round
from simulator.costmodel.phases import Comparison, Phases

__all__ = ["CROSSOVER_VARIABLES", "LAYOUTS", "OPTIONS", "PARTIALS", "REQUEST_BYTES_PER_BLOCK",
           "Comparison", "CostModel", "CrossoverSearch", "Phases", "check_round"]
