"""Model-attention disaggregation (Lamina) vs a homogeneous baseline, at equal hardware cost.

Two decode loops replace the engine's per-GPU loop when a policy names one (its ``loop``
attribute; :mod:`simulator.policies.disaggregated`, :mod:`simulator.policies.homogeneous`):

- :mod:`~simulator.disaggregation.lamina` — model workers run projections + FFN, attention
  workers hold the KV and run attention; ``n`` micro-batches over ``n − 1`` model slices; its
  parts: each iteration's plan and closed form (:mod:`~simulator.disaggregation.lamina_plan`),
  the attention workers' KV pool (:mod:`~simulator.disaggregation.attention_pool`), and the fast
  mode's slots composed at once (:mod:`~simulator.disaggregation.lamina_fast`);
- :mod:`~simulator.disaggregation.homogeneous` — vLLM-like tensor-parallel replicas;
- :mod:`~simulator.disaggregation.pools` — what both share: the run's set-up (:class:`PoolRun`),
  requests, results;
- :mod:`~simulator.disaggregation.shards` — what one GPU serves of the model (head shards, the
  attended tokens, layer folding);
- :mod:`~simulator.disaggregation.ring` — a tensor-parallel group's all-reduce ring on the fabric;
- :mod:`~simulator.disaggregation.byte_pool` — the KV pool counted in bytes both loops schedule
  against;
- :mod:`~simulator.disaggregation.staggered` — the staggered pipeline's closed form;
- :mod:`~simulator.disaggregation.compare` — run both, the comparison table, the stack study;
- :mod:`~simulator.disaggregation.spec` — the ``[disaggregation]`` scenario section.

May import: everything the engine may, and the engine's shared parts (records, results, trace
loading). Never the scenario module (the scenario imports this package's ``spec``). Exports
:func:`simulate`, :func:`compare`, :func:`comparison_frame`, :func:`comparison_table`,
:func:`stack_study`, ``LOOPS``, :class:`DisaggregationSpec`, :func:`spec_of`,
:func:`validate_disaggregation`, :func:`simulate_disaggregated`, :func:`simulate_homogeneous`.
"""

from simulator.disaggregation.compare import (
    LOOPS,
    compare,
    comparison_frame,
    comparison_table,
    simulate,
    stack_study,
)
from simulator.disaggregation.homogeneous import simulate_homogeneous
from simulator.disaggregation.lamina import simulate_disaggregated
from simulator.disaggregation.spec import (
    DisaggregationSpec,
    check_against,
    spec_of,
    validate_disaggregation,
)

__all__ = ["LOOPS", "DisaggregationSpec", "check_against", "compare", "comparison_frame",
           "comparison_table", "simulate", "simulate_disaggregated", "simulate_homogeneous",
           "spec_of", "stack_study", "validate_disaggregation"]
