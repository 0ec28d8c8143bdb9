"""The closed form under load: copies used R times, and compute streams with work queued.

The closed form (:mod:`~simulator.costmodel.closed_form`) prices one round alone on an idle
cluster, every block moved used once. Two things it leaves out decide many rounds of a busy run;
here both enter as explicit terms of a *per-step* cost — what one (home, owner) pair pays, on
average, each decode step in one layer slot if it keeps to one option — so that a policy can
decide with them and a test can check the decision.

**Reuse.** A home whose batch selects ``K`` blocks per query (``B`` queries) on an owner each
step:

- *route* sends the queries every step: ``route(K, B)``;
- *fetch* keeps what it moved as copies. If a copy is used ``R`` times in all, then in the
  steady state ``n/R`` of the ``n = B·K`` blocks selected each step are new (the rest are
  copies, attended with the home's own blocks, which the closed form leaves out of every
  option). A round is needed only when at least one is new, with probability
  ``P = 1 − (1 − 1/R)^n``, and then carries ``k = K/(R·P)`` new blocks per query on average
  (at least one block in all)::

      fetch_step = P · fetch(k, B)          (local_step = P · local(k, B) likewise)

  The round's fixed costs — two messages, the home kernel's launch, the merge — are therefore
  paid on every step that needs a round, and only its bytes shrink with reuse; with ``R = 1``
  every step fetches all ``K`` (``P = 1``, ``k = K``) and the totals are the closed form's.
  (:meth:`CostModel.fetch` with ``reuse = R`` divides probe, transfer and install — fixed costs
  included — by R instead: a block moved once and then used R times alone, not a step whose
  other blocks still need a round.) ``fetch(k, B)`` at a fractional ``k·B`` is interpolated
  linearly between the integer numbers of blocks around it (the closed form is affine in blocks
  between attention-kernel breakpoints), each evaluated once and memoized.

**Rounds that carry many new blocks.** The new blocks of a step are not independent: a
query's first steps on an owner select blocks none of its copies hold, later ones mostly
blocks copied already, so the new ones come together and fewer steps need a round than
``1 − (1 − 1/R)^n`` says. Given ``b``, the new blocks a round carries in all (observed by the
policy: copies made per copy-making round of the pair), the ``n/R`` new blocks a step selects
on average need ``P = n/(R·b)`` rounds per step (at most 1; ``b`` taken as at least one block
and at most the step's ``n``, so that with ``R = 1`` every step still has its round), each of
``b`` blocks. Measured on ``mixed_fleet`` (fast engine, seed 0, every round fetched): 9,555
(step, owner) pairs selected 30 blocks per query and slot, 9.8 uses per copy, and 49 % of
their slots needed a round, where the independent model said 99 %.

**Queueing.** A kernel waits for the work already queued on its GPU's compute stream (FIFO,
:class:`~simulator.gpu.streams.Stream`). With the owner's stream busy for ``W_o`` [s] and the
home's for ``W_h``, route's attention waits ``w_o = max(0, W_o − (probe + transfer))`` — the
query reaches the owner after its message — and each option's first home kernel waits
``max(0, W_h − t)``, ``t`` being when it is issued: route after the answer is back
(``probe + transfer + w_o + compute + ret``), fetch when the blocks have arrived
(``probe + transfer``), local at once. These are the waits the engine's streams impose when
nothing else is queued meanwhile; fetch and local pay theirs only on steps with a round (× P).

**Live bandwidth.** A bulk message at a live fair share ``s`` below its static rate ``r``
takes ``n/s − n/r`` longer (as ``adaptive_live`` prices it); ``slow_times[option]`` is that
extra time for the option's messages of a full round (``K`` blocks); fetch's scales with the
blocks it moves (``k/K``) and is paid × P.

**The owner's own queries.** Route's attention kernel runs on the owner's compute stream, so it
delays whatever the owner runs next by its time (``compute``): the owner's own decode step, and
everyone waiting for that step. The other terms price a step of the home's batch; route's delay
of the owner's queries enters in the same unit — home batches' worth of queries delayed — as
``owner_stall × compute``, ``owner_stall`` being the owner's queries over the home's (0 for an
owner with no batch of its own), or 1 where the owner steps in lockstep with other GPUs (the
ranks of a ``[deployment]`` instance, where every MoE layer waits for the slowest: the
instance's delay); :func:`simulator.policies.adaptive.owner_stall` reads it from the run. Fetch
and local put no kernel on the owner.

**Routing one round of a pair that copies defers its move.** The per-step costs above are
those of a pair that keeps to one option; a policy decides per round. A round routed while the
pair's copies are used ``R`` times leaves its new blocks uncopied, and most of them are selected
again: a later round moves them then, beside that round's own new blocks — so routing this round
saves the move only of those never selected again. Route's per-step cost therefore carries
the move it defers: ``(1 − 1/R) · P · (fetch(k, B) − fetch(1 block))`` — the step's new blocks
(``P`` and ``k`` as for fetch), each selected again with chance ``1 − 1/R`` (a copy used ``R``
times in all is used ``R − 1`` more), moved at a round's cost per block beyond its first (the
later round's fixed costs are paid anyway). Measured on ``host-32-nccl`` (fast engine, seed 0)
before this term: the far node's homes routed 1,613 rounds (270,080 block reads) to the
repository's owner and still fetched 108,988 blocks from it, where ``fetch`` fetched 124,591 —
routing saved 12 % of the moves and cost 19 % more round time than fetching them all
(docs/policies.md, stop 72). With ``R = 1`` the term is 0. It is assumed, not fitted: the chance
of a later selection is taken from ``R`` alone, and the deferred blocks are priced at fetch's
per-block cost even where local would recompute them (docs/accuracy.md).

With ``R = 1``, no queued work, no slow-down and no owner stall every total is the closed
form's and :meth:`LoadedCosts.decide` equals :meth:`CostModel.decide` (ties: route, fetch, local).
"""

from __future__ import annotations

import math

from simulator.costmodel.closed_form import OPTIONS, CostModel
from simulator.costmodel.phases import Phases
from simulator.errors import UserError

__all__ = ["LoadedCosts", "round_probability"]

#: An option's place in the memo's int keys (:meth:`LoadedCosts._phases`).
_CODE = {o: i for i, o in enumerate(OPTIONS)}


def round_probability(selected: float, reuse: float) -> float:
    """Chance that a step whose ``selected`` block uses hit copies used ``reuse`` times each
    needs a round: ``1 − (1 − 1/R)^n`` (1 at ``R = 1``)."""
    if not reuse >= 1.0:
        raise UserError(f"reuse={reuse}: a copy is used at least once (give R >= 1)")
    if reuse == 1.0 or selected <= 0:
        return 1.0 if selected > 0 else 0.0
    return -math.expm1(selected * math.log1p(-1.0 / reuse))


class LoadedCosts:
    """The per-step costs of the module docstring for one cost model, its closed-form
    evaluations memoized per integer round shape (the policy's per-round cost stays small).

    Internally a round's phases are a plain 5-tuple ``(probe, transfer, compute, ret, merge)``
    and sums are taken in that order, as :attr:`Phases.total` takes them: the same floats as
    building :class:`Phases`, without a frozen dataclass per evaluation (a policy asks this
    every round).

    Args:
        cm: the run's :class:`CostModel`.
    """

    def __init__(self, cm: CostModel) -> None:
        self.cm = cm
        # per (src, dst, batch): phases by ``total_blocks · 4 + option code`` (one tuple-keyed
        # lookup per round shape of a pair, then int keys: the policy's call asks several)
        self._memo: dict[tuple, dict[int, tuple[float, float, float, float, float]]] = {}

    def phases(self, option: str, src: str, dst: str, total_blocks: int,
               batch: int) -> Phases:
        """The closed form's phases of ``option`` for a round moving ``total_blocks`` blocks
        for ``batch`` queries (``total_blocks / batch`` per query; memoized)."""
        return Phases(*self._phases(option, src, dst, total_blocks, batch))

    def _table(self, src: str, dst: str, batch: int) -> dict[int, tuple]:
        """The memo of rounds of ``batch`` queries from ``src`` to ``dst``."""
        key = (src, dst, batch)
        table = self._memo.get(key)
        if table is None:
            table = self._memo[key] = {}
        return table

    def _phases(self, option: str, src: str, dst: str, total_blocks: int,
                batch: int, table: dict | None = None) -> tuple[float, float, float, float, float]:
        """:meth:`phases` as a 5-tuple; ``table``: :meth:`_table` of (src, dst, batch), if at
        hand."""
        if table is None:
            table = self._table(src, dst, batch)
        key = total_blocks * 4 + _CODE[option]
        got = table.get(key)
        if got is None:
            p = self.cm.option(option, src, dst, total_blocks / batch, batch)
            got = table[key] = (p.probe, p.transfer, p.compute, p.ret, p.merge)
        return got

    def at(self, option: str, src: str, dst: str, blocks: float, batch: int) -> Phases:
        """Phases at ``blocks`` per query (fractional: linear between the integer numbers of
        blocks the round moves in all; at least one block)."""
        return Phases(*self._at(option, src, dst, blocks, batch))

    def _at(self, option: str, src: str, dst: str, blocks: float, batch: int,
            table: dict | None = None) -> tuple[float, float, float, float, float]:
        if table is None:
            table = self._table(src, dst, batch)
        x = blocks * batch
        if x < 1.0:  # (max(x, 1.0) without the call: the policy asks this twice a round)
            x = 1.0
        lo = math.floor(x)
        a = self._phases(option, src, dst, lo, batch, table)
        w = x - lo
        if w <= 0:
            return a
        b = self._phases(option, src, dst, lo + 1, batch, table)
        return (a[0] + w * (b[0] - a[0]), a[1] + w * (b[1] - a[1]), a[2] + w * (b[2] - a[2]),
                a[3] + w * (b[3] - a[3]), a[4] + w * (b[4] - a[4]))

    @staticmethod
    def round_blocks(blocks: float, batch: int, reuse: float,
                     per_round: float | None = None) -> tuple[float, float]:
        """(chance a step needs a round, new blocks per query when it does) for ``batch``
        queries selecting ``blocks`` each, copies used ``reuse`` times; ``per_round``: the new
        blocks a round carries in all, as observed (None: the steps' new blocks independent;
        module docstring, *Rounds that carry many new blocks*)."""
        chance = round_probability(batch * blocks, reuse)
        if per_round is not None and chance > 0:
            # the steps' n/R new blocks arrive per_round at a time: n/(R·b) rounds per step,
            # b at most the step's n (then every step has one: P = 1 at R = 1)
            new = batch * blocks / reuse
            chance = min(1.0, new / max(1.0, min(per_round, batch * blocks)))
        return chance, (blocks / (reuse * chance) if chance > 0 else 0.0)

    def step_time(self, option: str, src: str, dst: str, blocks: float, batch: int,
                  reuse: float = 1.0, owner_backlog_time: float = 0.0,
                  home_backlog_time: float = 0.0, slow_time: float = 0.0,
                  owner_stall: float = 0.0, per_round: float | None = None) -> float:
        """Expected cost [s] per step of ``option`` for ``batch`` queries selecting ``blocks``
        blocks each on owner ``dst`` (module docstring); ``owner_stall``: home batches' worth of
        queries route's kernel on the owner delays (its time is charged that many times more;
        ``True`` counts as 1); ``per_round``: fetch's and local's (:meth:`round_blocks`), and
        the move route defers (:meth:`deferred`)."""
        if option not in OPTIONS:
            raise UserError(f"option {option!r}: give one of {', '.join(OPTIONS)}")
        if option == "route":
            return (self._route_time(self._at("route", src, dst, blocks, batch),
                                     owner_backlog_time, home_backlog_time, slow_time,
                                     owner_stall)
                    + self.deferred(src, dst, blocks, batch, reuse, per_round))
        return self.copy_step(option, src, dst, blocks, batch, reuse, home_backlog_time,
                              slow_time, per_round)[0]

    @staticmethod
    def _route_time(p: tuple[float, ...], owner_backlog_time: float,
                    home_backlog_time: float, slow_time: float, owner_stall: float) -> float:
        """Route's per-step cost [s] from its round's phases ``p``, the move it defers left
        out (:meth:`step_time`)."""
        sent = p[0] + p[1]
        owner_wait = owner_backlog_time - sent
        owner_wait = owner_wait if owner_wait > 0.0 else 0.0  # max(0.0, ·), without the call
        issued = sent + owner_wait + p[2] + p[3] + slow_time
        home_wait = home_backlog_time - issued
        return (sent + p[2] + p[3] + p[4] + owner_wait + slow_time
                + (home_wait if home_wait > 0.0 else 0.0) + p[2] * float(owner_stall))

    def deferred(self, src: str, dst: str, blocks: float, batch: int, reuse: float,
                 per_round: float | None = None) -> float:
        """The move [s] a round routed instead of fetched defers, per step (module docstring,
        *Routing one round of a pair that copies*): ``(1 − 1/R) · P · (fetch(k, B) − fetch(1
        block))``, 0 at ``R = 1``."""
        chance, k = self.round_blocks(blocks, batch, reuse, per_round)
        return self._deferred(src, dst, batch, reuse, chance,
                              self._at("fetch", src, dst, k, batch))

    def _deferred(self, src: str, dst: str, batch: int, reuse: float, chance: float,
                  p: tuple[float, ...], table: dict | None = None) -> float:
        """:meth:`deferred` from the chance of a round and fetch's phases ``p`` of the round
        (no round, ``k = 0``: one block, so 0 more)."""
        q = self._phases("fetch", src, dst, 1, batch, table)
        # (sums in order, not sum(): Python 3.12 compensates sum's rounding, and the compiled
        # price, simulator.policies.adaptive_kernel, adds in order)
        more = (p[0] + p[1] + p[2] + p[3] + p[4]) - (q[0] + q[1] + q[2] + q[3] + q[4])
        return (1.0 - 1.0 / reuse) * chance * (more if more > 0.0 else 0.0)

    def copy_step(self, option: str, src: str, dst: str, blocks: float, batch: int,
                  reuse: float, home_backlog_time: float = 0.0,
                  slow_time: float = 0.0, per_round: float | None = None
                  ) -> tuple[float, float]:
        """For ``fetch`` or ``local`` (the options that leave copies): ``(step time [s], the
        total [s] of the round a step pays when it needs one, its slow-down left out)`` — the
        first is :meth:`step_time` (``per_round``: :meth:`round_blocks`)."""
        chance, k = self.round_blocks(blocks, batch, reuse, per_round)
        return self._copy_time(self._at(option, src, dst, k, batch), chance, k, blocks,
                               home_backlog_time, slow_time)

    @staticmethod
    def _copy_time(p: tuple[float, ...], chance: float, k: float, blocks: float,
                   home_backlog_time: float, slow_time: float) -> tuple[float, float]:
        """:meth:`copy_step` from the phases ``p`` of the round a step pays with chance
        ``chance``, carrying ``k`` of the ``blocks`` blocks per query."""
        total = p[0] + p[1] + p[2] + p[3] + p[4]
        if chance <= 0:
            return 0.0, total
        moved = k / blocks
        slow = slow_time * (moved if moved < 1.0 else 1.0)  # min(1.0, ·), without the call
        home_wait = home_backlog_time - (p[0] + p[1] + slow)
        return chance * (total + slow + (home_wait if home_wait > 0.0 else 0.0)), total

    def route_fetch(self, src: str, dst: str, blocks: float, batch: int, reuse: float,
                    owner_backlog_time: float, home_backlog_time: float, slow_route: float,
                    slow_fetch: float, owner_stall: float, per_round: float | None
                    ) -> tuple[float, float, float]:
        """``(route's step time, fetch's step time, fetch's round total)`` [s] — the same
        floats as :meth:`step_time` of route and :meth:`copy_step` of fetch, with the fetch
        round that route's deferred move and fetch's step share priced once (the policy's
        call, every round)."""
        chance, k = self.round_blocks(blocks, batch, reuse, per_round)
        table = self._table(src, dst, batch)
        f = self._at("fetch", src, dst, k, batch, table)
        t_fetch, total = self._copy_time(f, chance, k, blocks, home_backlog_time, slow_fetch)
        t_route = (self._route_time(self._at("route", src, dst, blocks, batch, table),
                                    owner_backlog_time, home_backlog_time, slow_route,
                                    owner_stall)
                   + self._deferred(src, dst, batch, reuse, chance, f, table))
        return t_route, t_fetch, total

    def totals(self, src: str, dst: str, blocks: float, batch: int, reuse: float = 1.0,
               owner_backlog_time: float = 0.0, home_backlog_time: float = 0.0,
               slow_times: dict[str, float] | None = None,
               options: tuple[str, ...] = OPTIONS, owner_stall: float = 0.0,
               per_round: float | None = None) -> dict[str, float]:
        """:meth:`step_time` of each of ``options``."""
        slow = slow_times or {}
        return {o: self.step_time(o, src, dst, blocks, batch, reuse, owner_backlog_time,
                                  home_backlog_time, slow.get(o, 0.0), owner_stall, per_round)
                for o in options}

    def decide(self, src: str, dst: str, blocks: float, batch: int, reuse: float = 1.0,
               owner_backlog_time: float = 0.0, home_backlog_time: float = 0.0,
               slow_times: dict[str, float] | None = None,
               options: tuple[str, ...] = OPTIONS, owner_stall: float = 0.0,
               per_round: float | None = None) -> str:
        """The cheapest of ``options`` per step (ties: route, fetch, local)."""
        if not options:
            raise UserError(f"options {options!r}: give at least one of {', '.join(OPTIONS)}")
        t = self.totals(src, dst, blocks, batch, reuse, owner_backlog_time, home_backlog_time,
                        slow_times, options, owner_stall, per_round)
        return min((o for o in OPTIONS if o in t), key=lambda o: (t[o], OPTIONS.index(o)))

