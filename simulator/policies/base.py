"""The policy interface: one small class per policy, registered by name in ``POLICIES``.

The engine asks a policy one question per *round* — one home GPU's exchange with one owner GPU for
one (iteration, layer), carrying every query of the batch that selected blocks on that owner:

    option = policy.choose(ctx, rnd)      # "route" | "fetch" | "local"

and then replays that option's phases (probe, transfer, compute, return, merge) on the simulated
fabric and GPUs. A policy never moves bytes itself, so the engine can hold every round against the
closed form and check that the bytes on the links are the bytes the options imply.

- ``route`` — send the batch's query rows to the owner, compute partial attention there, return
  (partial output, LSE), merge at home.
- ``fetch`` — pull the selected blocks' KV for this layer and attend at home; the copies are kept
  (LRU) so later iterations hit them locally.
- ``local`` — recompute the missing KV on the home GPU (no fabric); the recomputed KV is kept the
  same way.

Class attributes a policy may set:

- ``name`` — its registry name;
- ``colocated = True`` — the engine treats every block as already home (the no-network bound);
- ``needs_live_rates = True`` — the policy reads ``ctx.fabric.fair_share`` (the exact engine's
  flows; the fast engine runs such a policy on the exact engine);
- ``observes = True`` — the engine keeps ``ctx.observed`` (a
  :class:`~simulator.policies.observed.Observed`: copies made and used per (home, owner), the
  streams' queued work, remaining decode tokens, free KV room, selection stability, the links'
  load) current for it, on either engine; for every other policy ``ctx.observed`` is None and
  costs nothing;
- ``options`` — the options ``choose`` may return (default: all of :data:`OPTIONS`). A policy
  that never routes declares so (``options = ("fetch",)``): no other GPU's kernel can then land
  on a home GPU's stream, and the engine computes runs of layers with nothing to exchange
  without an event each (under one that may route, the fast engine lays such runs on a GPU's
  stream at once and takes them back when something reaches them first:
  :mod:`simulator.engine.fast_laid`). Returning an undeclared option is an error;
- ``pure = True`` — ``choose`` depends only on the round's fields other than ``now`` (no
  clock, no live state, no randomness): an engine may ask once per distinct round and reuse the
  answer (the fast engine does, where the policy's own class declares it — a subclass is not
  memoized unless it declares ``pure`` itself). Default False; a policy that reads the fabric,
  its own observations or the clock must leave it False;
- ``loop = "<name>"`` — the policy replaces the whole decode loop (``disaggregated``,
  ``homogeneous``: see :mod:`simulator.disaggregation`); ``choose`` is then never called.

A user's own policy is a subclass with a ``choose`` method, added with :func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

OPTIONS: tuple[str, ...] = ("route", "fetch", "local")


class Round(NamedTuple):
    """One exchange a policy decides on.

    Attributes:
        src: home GPU name (where the queries decode).
        owner: GPU name holding the blocks.
        layer: simulated layer slot (0-based).
        batch: queries of the batch that selected blocks on ``owner`` in this layer.
        blocks: selected blocks on ``owner`` per query (mean over those queries, rounded up).
        distinct_blocks: distinct blocks selected on ``owner`` by the whole batch.
        now: simulated time of the decision [s].
    """

    src: str
    owner: str
    layer: int
    batch: int
    blocks: int
    distinct_blocks: int
    now: float


@dataclass
class PolicyContext:
    """What a policy may consult: the closed form, the live fabric, the run's topology.

    Attributes:
        cost_model: a :class:`simulator.costmodel.CostModel` for this run (static path costs).
        fabric: the run's :class:`simulator.network.Fabric` (``fair_share(src, dst)`` [B/s]).
        graph: the topology graph.
        rng: a child random generator reserved for the policy (never global randomness).
        observed: what the run has observed (:class:`~simulator.policies.observed.Observed`),
            kept current by the engine for a policy with ``observes = True``; else None.
    """

    cost_model: Any
    fabric: Any
    graph: Any
    rng: Any
    observed: Any = None


class Policy:
    """Base class. Subclasses set ``name`` and implement :meth:`choose`."""

    name: ClassVar[str] = "base"
    colocated: ClassVar[bool] = False
    needs_live_rates: ClassVar[bool] = False
    pure: ClassVar[bool] = False
    observes: ClassVar[bool] = False
    loop: ClassVar[str | None] = None
    options: ClassVar[tuple[str, ...]] = OPTIONS

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        """The option for this round: one of :data:`OPTIONS`."""
        raise NotImplementedError
