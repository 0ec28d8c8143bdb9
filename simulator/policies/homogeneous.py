"""``homogeneous``: the vLLM-like baseline — tensor-parallel replicas of one GPU kind.

Not a per-round choice: the policy names its own decode loop (``loop = "homogeneous"``,
:func:`simulator.disaggregation.homogeneous.simulate_homogeneous`), sized by the ``baseline_*``
fields of the scenario's ``[disaggregation]`` section. The engine hands the whole run to that loop;
``choose`` is never consulted."""

from __future__ import annotations

from typing import ClassVar

from simulator.errors import UserError
from simulator.policies.base import Policy, PolicyContext, Round


class Homogeneous(Policy):
    """Whole-model replicas, each holding its own KV (see simulator.disaggregation.homogeneous)."""

    name = "homogeneous"
    loop: ClassVar[str] = "homogeneous"

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        raise UserError("policy 'homogeneous' runs its own decode loop; run it through "
                        "simulator.run (or simulator.disaggregation.simulate), not per round")
