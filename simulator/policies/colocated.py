"""``colocated``: as if every block were already on the home GPU — the no-network lower bound.

The engine sees ``colocated = True`` and attends every selected block locally: no rounds, no
bytes; only the home GPU's kernels (and their queueing) remain.
"""

from __future__ import annotations

from simulator.policies.base import Policy, PolicyContext, Round


class Colocated(Policy):
    """Never leaves home (``choose`` is not consulted; kept for the interface)."""

    name = "colocated"
    pure = True
    options = ("local",)
    colocated = True

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        return "local"
