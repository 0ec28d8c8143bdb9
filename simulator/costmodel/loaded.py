"""The closed form under load: a fetched copy used R times, and compute streams with work queued.

The closed form (:mod:`~simulator.costmodel.closed_form`) prices one round alone on an idle
cluster. Three things it leaves out decide many rounds of a busy run; here each enters as an
explicit term, so that a policy can decide with it and a test can check the decision:

- **reuse** — a fetched (or recomputed) copy stays at home and serves later decode steps, so
  each option's total splits into a part paid on *every use* and a part paid *once* per copy::

      total(R) = per_use + once / R

  route: ``per_use`` = its total, ``once`` = 0 (a routed answer is not reusable). fetch:
  ``once`` = probe + transfer + install (gather or splice), ``per_use`` = attention + merge.
  local: ``once`` = the recompute, ``per_use`` = attention + merge. This is exactly
  :meth:`CostModel.fetch` / :meth:`~CostModel.local` with ``reuse = R`` (a test holds them equal).
- **queueing** — a kernel waits for the work already queued on its GPU's compute stream (FIFO,
  :class:`~simulator.gpu.streams.Stream`). With the owner's stream busy for ``W_o`` [s] from the
  round's start and the home's for ``W_h``, route's attention waits
  ``w_o = max(0, W_o − (probe + transfer))`` — the query reaches the owner after its message —
  and each option's first home kernel waits ``max(0, W_h − t)``, ``t`` being when it is issued:
  route after the answer is back (``probe + transfer + w_o + compute + ret``), fetch when the
  blocks have arrived (``probe + transfer``, not amortized: this round waits for them), local at
  once (``t = 0``). These are the waits the engine's streams impose when nothing else is queued
  meanwhile. Waits are paid by this round and are not divided by R.
- **live bandwidth** — a bulk message at a live fair share ``s`` below its static rate ``r``
  takes ``n/s − n/r`` longer (as ``adaptive_live`` prices it); ``slow_times[option]`` is that
  extra time for an option's messages, paid per use by route and once (÷ R) by fetch.

With ``R = 1``, no queued work and no slow-down every total equals the closed form's, and
:func:`loaded_decide` equals :meth:`CostModel.decide` (ties: route, fetch, local).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.costmodel.closed_form import OPTIONS, CostModel
from simulator.errors import UserError

__all__ = ["OptionCost", "loaded_decide", "loaded_totals", "option_costs"]


@dataclass(frozen=True)
class OptionCost:
    """One option of one round shape, split for reuse and queueing [s].

    Attributes:
        option: ``"route"``, ``"fetch"`` or ``"local"``.
        per_use: paid on every use of the blocks.
        once: paid once per copy (divided by the reuse R).
        to_owner: route: from the round's start until the query reaches the owner (probe +
            transfer); 0 for the others.
        to_home: from the round's start until the option's first home kernel is issued, on an
            idle cluster (route: the whole round but the merge; fetch: probe + transfer; local: 0).
    """

    option: str
    per_use: float
    once: float
    to_owner: float
    to_home: float

    def total(self, reuse: float = 1.0, owner_backlog_time: float = 0.0,
              home_backlog_time: float = 0.0, slow_time: float = 0.0) -> float:
        """Expected cost per use [s] with a copy used ``reuse`` times, the owner's and the
        home's streams busy for the given times from now, and ``slow_time`` of live slow-down
        on the option's messages (module docstring)."""
        if not reuse >= 1.0:
            raise UserError(f"reuse={reuse}: a copy is used at least once (give R >= 1)")
        if self.option == "route":
            owner_wait = max(0.0, owner_backlog_time - self.to_owner)
            issued = self.to_home + owner_wait + slow_time
            own = self.per_use + slow_time + owner_wait
        else:
            issued = self.to_home + slow_time
            own = self.per_use + (self.once + slow_time) / reuse
        return own + max(0.0, home_backlog_time - issued)


def option_costs(cm: CostModel, src: str, dst: str, blocks: float, batch: float = 1,
                 heads: int | None = None,
                 options: tuple[str, ...] = OPTIONS) -> dict[str, OptionCost]:
    """Each of ``options`` for a round of ``batch`` queries at home ``src`` needing ``blocks``
    blocks each from owner ``dst``, split into per-use and once-per-copy parts (module
    docstring)."""
    out = {}
    attention = cm.attention_time(src, blocks, batch, heads)
    for name in options:
        p = cm.option(name, src, dst, blocks, batch, heads)
        if name == "route":
            out[name] = OptionCost(name, p.total, 0.0, p.probe + p.transfer,
                                   p.probe + p.transfer + p.compute + p.ret)
        elif blocks <= 0:  # nothing to move or recompute: only the merge
            out[name] = OptionCost(name, p.total, 0.0, 0.0, 0.0)
        else:
            once = p.probe + p.transfer + (p.compute - attention)
            out[name] = OptionCost(name, attention + p.merge, once, 0.0,
                                   p.probe + p.transfer)
    return out


def loaded_totals(costs: dict[str, OptionCost], reuse: float = 1.0,
                  owner_backlog_time: float = 0.0, home_backlog_time: float = 0.0,
                  slow_times: dict[str, float] | None = None) -> dict[str, float]:
    """Each option's expected cost per use [s] (:meth:`OptionCost.total`)."""
    slow = slow_times or {}
    return {name: c.total(reuse, owner_backlog_time, home_backlog_time, slow.get(name, 0.0))
            for name, c in costs.items()}


def loaded_decide(costs: dict[str, OptionCost], reuse: float = 1.0,
                  owner_backlog_time: float = 0.0, home_backlog_time: float = 0.0,
                  slow_times: dict[str, float] | None = None,
                  options: tuple[str, ...] = OPTIONS) -> str:
    """The cheapest of ``options`` under :func:`loaded_totals` (ties: route, fetch, local);
    ``costs`` must hold each of ``options``."""
    totals = loaded_totals(costs, reuse, owner_backlog_time, home_backlog_time, slow_times)
    best, best_t = None, float("inf")
    for name in OPTIONS:
        if name in options and name in totals and (best is None or totals[name] < best_t):
            best, best_t = name, totals[name]
    if best is None:
        raise UserError(f"options {options!r}: give at least one of {', '.join(OPTIONS)}")
    return best
