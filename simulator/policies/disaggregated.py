"""``disaggregated``: Lamina-style model-attention disaggregation (two GPU pools).

Not a per-round choice: the policy names its own decode loop (``loop = "disaggregated"``,
:func:`simulator.disaggregation.lamina.simulate_disaggregated`), configured by the scenario's
``[disaggregation]`` section (:mod:`simulator.disaggregation.spec`). The engine hands the whole
run to that loop; ``choose`` is never consulted.
"""

from __future__ import annotations

from typing import ClassVar

from simulator.errors import UserError
from simulator.policies.base import Policy, PolicyContext, Round


class Disaggregated(Policy):
    """Model workers + attention workers with staggered pipelining
    (:mod:`simulator.disaggregation.lamina`)."""

    name = "disaggregated"
    loop: ClassVar[str] = "disaggregated"

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        raise UserError("policy 'disaggregated' runs its own decode loop; run it through "
                        "simulator.run (or simulator.disaggregation.simulate), not per round")
