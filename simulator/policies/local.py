"""``local``: recompute missing KV on the home GPU — a cluster without cross-instance sharing.

No byte crosses the fabric; the recomputed KV is kept like a fetched copy (LRU), so a block is
recomputed once per home GPU and layer while it stays cached.
"""

from __future__ import annotations

from simulator.policies.base import Policy, PolicyContext, Round


class Local(Policy):
    """Recompute every round."""

    name = "local"
    pure = True
    options = ("local",)

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        return "local"
