"""Policies: route the query, fetch the blocks, recompute locally, or decide per round.

``disaggregated`` and ``homogeneous`` are not per-round choices: they name their own decode loop
(class attribute ``loop``), to which :func:`simulator.runner.run` hands the whole run.

``POLICIES`` is the one registry: name → policy class. A user's policy is one small class
(see :mod:`simulator.policies.base` and docs/policies.md) added with :func:`register`.
"""

from __future__ import annotations

from simulator.errors import UserError
from simulator.policies.adaptive import Adaptive, AdaptiveLive, AdaptiveStatic
from simulator.policies.base import OPTIONS, Policy, PolicyContext, Round
from simulator.policies.colocated import Colocated
from simulator.policies.disaggregated import Disaggregated
from simulator.policies.fetch import Fetch
from simulator.policies.homogeneous import Homogeneous
from simulator.policies.local import Local
from simulator.policies.observed import Observed
from simulator.policies.route import Route

#: name → policy class; the only place a policy is registered.
POLICIES: dict[str, type[Policy]] = {
    "route": Route,
    "fetch": Fetch,
    "local": Local,
    "adaptive": Adaptive,
    "adaptive_static": AdaptiveStatic,
    "adaptive_live": AdaptiveLive,
    "colocated": Colocated,
    "disaggregated": Disaggregated,
    "homogeneous": Homogeneous,
}


def register(cls: type[Policy]) -> type[Policy]:
    """Add a policy class to :data:`POLICIES` under ``cls.name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise UserError(f"{cls!r} is not a Policy subclass; subclass simulator.policies.Policy")
    if not cls.name or cls.name == "base":
        raise UserError(f"policy class {cls.__name__} needs a `name` class attribute")
    POLICIES[cls.name] = cls
    return cls


def get(name: str | Policy | type[Policy]) -> Policy:
    """A fresh policy instance by registry name (or the instance/class given)."""
    if isinstance(name, Policy):
        return name
    if isinstance(name, type) and issubclass(name, Policy):
        return name()
    try:
        return POLICIES[name]()
    except KeyError:
        raise UserError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}") from None


__all__ = ["OPTIONS", "POLICIES", "Observed", "Policy", "PolicyContext", "Round", "get",
           "register"]
