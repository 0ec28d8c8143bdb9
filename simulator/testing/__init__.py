"""Testing aids for kvfabric and for users' own policies: hypothesis strategies, naive oracles and
invariant checks. The project's own tests import these through ``tests/strategies.py``.

- :mod:`simulator.testing.fabric` — topology and flow-set strategies, the naive fabric oracle.
- :mod:`simulator.testing.traces` — request-trace strategies.
- :mod:`simulator.testing.costs` — cost-model strategies.
"""
