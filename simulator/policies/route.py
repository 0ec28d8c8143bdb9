"""``route``: always move the query to the blocks (partial attention at the owner, LSE merge)."""

from __future__ import annotations

from simulator.policies.base import Policy, PolicyContext, Round


class Route(Policy):
    """Route every round."""

    name = "route"
    pure = True

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        return "route"
