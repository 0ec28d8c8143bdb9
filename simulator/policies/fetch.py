"""``fetch``: always move the selected blocks to the query; the engine keeps the copies (LRU)."""

from __future__ import annotations

from simulator.policies.base import Policy, PolicyContext, Round


class Fetch(Policy):
    """Fetch every round."""

    name = "fetch"
    pure = True
    options = ("fetch",)

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        return "fetch"
