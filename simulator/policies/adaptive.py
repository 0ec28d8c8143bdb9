"""``adaptive``, ``adaptive_static`` and ``adaptive_live``: the closed-form predicate, per round.

``adaptive_static`` asks :meth:`CostModel.decide` with static path costs, a moved block priced
as used once and every GPU idle. ``adaptive_live`` evaluates the same three options but charges
each option's bulk bytes at the fabric's *current* max-min fair share on its path
(``Fabric.fair_share``). ``adaptive`` decides with what the run has observed (``ctx.observed``,
:class:`~simulator.policies.observed.Observed`) through the closed form under load
(:class:`~simulator.costmodel.loaded.LoadedCosts`): per decode step of the (home, owner) pair,
route pays its round plus the wait for the owner's queued work; fetch and local pay a round only
on steps that select a block not yet copied, carrying only the new ones — so the copies'
**expected reuse** R decides how often, and how large, their rounds are.

**What a step selects on the owner**: ``K`` blocks per query for the round's ``B`` queries —
the larger of the round's own (its blocks not held at home) and what the home's last step
selected there, copies included (``Observed.selected_blocks``).

**Expected reuse** (:func:`expected_reuse`), per (home, owner) pair, in uses of one copy:

- *observed*: ``1 + hits / copies`` — the copies the run made on this home of this owner's
  blocks (per block and layer slot) and the uses those copies served instead of a round
  (decayed counters: the recent past weighs most). It is what a copy was worth here, eviction
  before reuse and sharing between the home's queries included;
- *prior*, before copies were made (or when few were): ``1 + repicks · survival``.
  :func:`repicks` is the expected number of later steps that select a block a query selects
  now: a two-state chain (selected or not) whose stationary share ``π`` is the share of its
  context a query selects per slot and whose lag-1 correlation is ``λ = (s − π)/(1 − π)``, ``s``
  the run's observed step-to-step *stability* of selections, over the ``m`` decode steps the
  home's batch has left: ``m·π + (1 − π)·λ(1 − λ^m)/(1 − λ)``. ``survival`` is 1 if the home's
  free KV room holds the round's blocks, else ``room / (copies held + blocks)`` (copies evict
  copies, least recently used first), 0 when the home has no room for copies at all;
- the two blend as ``(C·observed + C₀·prior) / (C + C₀)`` with ``C`` the pair's copies and
  ``C₀`` = :data:`PRIOR_COPIES`: the prior counts as that many copies' worth of evidence.

**New blocks per round** (:func:`new_per_round`), per (home, owner) pair: the copies a
copy-making round made there on average (``copies / rounds``, the same decayed counters), blended
with what independent new blocks would give (``n/(R·P)`` for the step's ``n`` selected blocks,
counting as :data:`PRIOR_ROUNDS` rounds); none before the pair made a round. It sets how many
steps pay a fetch or local round (:meth:`LoadedCosts.round_blocks
<simulator.costmodel.loaded.LoadedCosts.round_blocks>`): new blocks that come together need
fewer rounds than independent ones.

**A routed round defers its move** (:meth:`LoadedCosts.deferred
<simulator.costmodel.loaded.LoadedCosts.deferred>`): route's per-step price carries the move of
the step's new blocks that a later round makes anyway when they are selected again (chance
``1 − 1/R``), at fetch's cost per block beyond a round's first — a per-round choice that routes
a pair which copies saves only the moves of blocks never selected again (stop 72,
docs/policies.md).

**Owner's load**: the owner's compute-stream backlog (``free_at − now``: its queued kernels, a
prefill chunk among them) delays a routed query's attention; the home's backlog delays each
option's home kernel; and where a path carries other traffic now, bulk bytes are charged what
the engine's link view says they would take longer (:func:`slow_times`: on the exact engine the
lesser of the live max-min fair share's delay, as ``adaptive_live`` prices it, and equal
sharing with the path's flows as they finish (since stop 85,
:class:`~simulator.policies.observed.FabricLoad`); on the fast engine the FIFO wait on the path's
link calendars, and the max-min share beside flows of the phase in flight; an idle path —
nearly all — costs a read-only check and no probe). Streams and links are read through
``ctx.observed``, never the Fabric itself, so ``adaptive`` runs on both engines (``[engine]
mode``); it is not ``pure`` (its answer depends on when it is asked), so the fast engine asks it
every round.

**The owner's own queries** (``owner_stall``, :mod:`simulator.costmodel.loaded`): route's
kernel on the owner delays the owner's next step by its time, so route's per-step cost counts
that kernel again, weighted by the owner's queries (its last decode step's batch) over the
home's — the queries delayed, in home batches — and 0 where the owner has no batch of its own.
Where the owner steps in lockstep with other GPUs (``Observed.lockstep``: the ranks of a
``[deployment]`` instance, where every MoE layer waits for the slowest rank) the weight is 1:
the whole instance's delay, measured on ``deepseek_v32_ep``, where adaptive without it routed
the rounds whose owners then held 144 ranks (docs/policies.md). On the causal default run the
repositories' owners serve batches of their own: without the weight adaptive routed ~85 % of the
rounds there, with it 40–51 % (docs/policies.md).

**Cost per round**: closed-form phases are memoized per integer round shape (route and fetch,
fetch's one-block round for the deferred move included; local's recompute — a prefill, the
dearest kernel lookup — only when its cheapest possible recompute could beat the fetch
round; route's step and fetch's share one pricing of the fetch round,
:meth:`LoadedCosts.route_fetch <simulator.costmodel.loaded.LoadedCosts.route_fetch>`); a
decision is then a few dozen float operations, a few array reads, two ``free_at`` calls and two
idle-path checks: 37 µs a round on ``cluster_128`` (fast engine, stop 77; 45 µs before the
shared pricing), some 15 % of the run's wall time (21 % on ``cluster_1024`` before). Since
stop 87 the float operations and array reads — the reuse, the new blocks per round, the owner's
stall and route's and fetch's step times — are one compiled call
(:mod:`simulator.policies.adaptive_kernel`, the same floats; ``Adaptive(compiled=False)`` runs
the Python functions of this module, the reference the tests hold it to); the streams and the
links are still read in Python, through the engine's calendars. The engine's side
(:mod:`simulator.policies.observed`): two ``bincount`` over the step's selected elements per
decode step, one ``has_copy`` lookup per copy-making round, and a slot-0 overlap of consecutive
selections per 16-step sample.

All three are deterministic; ties go to ``route``, then ``fetch``, then ``local`` (the order of
:data:`~simulator.policies.base.OPTIONS`).
"""

from __future__ import annotations

from simulator.costmodel.loaded import LoadedCosts, round_probability
from simulator.policies.adaptive_kernel import PhaseTable, price
from simulator.policies.base import OPTIONS, Policy, PolicyContext, Round

#: Copies' worth of evidence the prior reuse estimate counts for (see the module docstring).
PRIOR_COPIES = 32.0
#: Rounds' worth of evidence the prior blocks per round count for (see the module docstring).
#: Both priors' weights are assumed — chosen, not fitted (docs/accuracy.md).
PRIOR_ROUNDS = 4.0


class AdaptiveStatic(Policy):
    """Per round, the option the closed form predicts fastest (static path costs, R = 1)."""

    name = "adaptive_static"
    pure = True  # the closed form's decision on the round's own fields (static path costs)

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        return ctx.cost_model.decide(rnd.src, rnd.owner, blocks=rnd.blocks, batch=rnd.batch)


class Adaptive(Policy):
    """Per round, the option cheapest per step given the copies' expected reuse and the
    streams' queued work (module docstring).

    Args:
        reuse: a fixed R for every round instead of the estimate (1 gives back
            ``adaptive_static`` on an idle cluster).
        load: charge the owner's and home's queued work and the links' load.
        compiled: price a round (reuse, new blocks per round, owner's stall, route's and
            fetch's step times) in one compiled call (:mod:`~simulator.policies.
            adaptive_kernel`, the same floats); False: in the Python it stands for (the
            reference the tests hold it to).
    """

    name = "adaptive"
    observes = True  # reads the streams and links through ctx.observed, on either engine

    def __init__(self, reuse: float | None = None, load: bool = True,
                 compiled: bool = True) -> None:
        self.reuse = reuse
        self.load = load
        self.compiled = compiled
        self._loaded: LoadedCosts | None = None
        self._least: dict[str, float] = {}
        self._table: PhaseTable | None = None

    def costs(self, ctx: PolicyContext) -> LoadedCosts:
        """The closed form under load for this run's cost model (memoized shapes)."""
        if self._loaded is None or self._loaded.cm is not ctx.cost_model:
            self._loaded, self._least, self._table = LoadedCosts(ctx.cost_model), {}, None
        return self._loaded

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        lc = self.costs(ctx)
        obs = ctx.observed
        src, dst, batch = rnd.src, rnd.owner, rnd.batch
        blocks = float(rnd.blocks)
        reuse = self.reuse
        per_round = None
        owner_wait = home_wait = slow_route = slow_fetch = stall = 0.0
        if obs is not None:
            h, o = obs.pair(src, dst)
            last = obs.selected_blocks(h, o, batch)
            if last > blocks:  # (max without the call: asked every round)
                blocks = last
            if self.load:
                owner_wait, home_wait, slow_route, slow_fetch = load_times(
                    obs, ctx.cost_model, rnd, blocks)
                table = self._table
                if table is None or table.observed is not obs:  # (keyed by its indices)
                    table = self._table = PhaseTable(obs)
                if self.compiled and reuse is None and table.usable:
                    got = price(table, lc, obs, rnd, h, o, blocks, owner_wait, home_wait,
                                slow_route, slow_fetch, PRIOR_COPIES, PRIOR_ROUNDS)
                    if got is not None:  # (None: the Python prices it, below)
                        t_route, t_fetch, fetch_round, reuse, per_round = got
                        return self._best(lc, rnd, blocks, reuse, per_round, owner_wait,
                                          home_wait, slow_fetch, t_route, t_fetch, fetch_round)
                stall = owner_stall(obs, h, o)
            if reuse is None:
                reuse = expected_reuse(obs, rnd, (h, o))
                per_round = new_per_round(obs, h, o, blocks * batch, reuse)
        reuse = 1.0 if reuse is None else reuse
        # route's step, fetch's step and the whole round fetch pays on a step that needs one
        # (the fetch round they share priced once: LoadedCosts.route_fetch)
        t_route, t_fetch, fetch_round = lc.route_fetch(src, dst, blocks, batch, reuse,
                                                       owner_wait, home_wait, slow_route,
                                                       slow_fetch, stall, per_round)
        return self._best(lc, rnd, blocks, reuse, per_round, owner_wait, home_wait, slow_fetch,
                          t_route, t_fetch, fetch_round)

    def _best(self, lc: LoadedCosts, rnd: Round, blocks: float, reuse: float,
              per_round: float | None, owner_wait: float, home_wait: float, slow_fetch: float,
              t_route: float, t_fetch: float, fetch_round: float) -> str:
        """The option of least step time, given route's and fetch's (ties: route, fetch,
        local)."""
        best, t_best = ("route", t_route) if t_route <= t_fetch else ("fetch", t_fetch)
        # local differs from fetch only in its home kernel (a recompute instead of moving the
        # blocks) and waits as long or longer at home: it can win only if its recompute costs
        # less than the whole fetch round, and the cheapest recompute (one block, one query;
        # a prefill never gets cheaper with more tokens) bounds every one from below
        if self._least_recompute(lc, rnd.src) < fetch_round + slow_fetch:
            local = lc.step_time("local", rnd.src, rnd.owner, blocks, rnd.batch, reuse,
                                 owner_wait, home_wait, per_round=per_round)
            if local < t_best:
                return "local"
        return best

    def _least_recompute(self, lc: LoadedCosts, src: str) -> float:
        """The cheapest recompute at ``src``, one block for one query [s] (memoized)."""
        got = self._least.get(src)
        if got is None:
            got = self._least[src] = lc.cm.recompute_time(src, 1, 1)
        return got


def repicks(stability: float, share: float, steps: float) -> float:
    """Expected later selections of a block a query selects now, over its next ``steps``
    steps: a two-state chain (selected or not) whose stationary share is ``share`` (the
    fraction of its context a query selects) and whose step-to-step persistence is
    ``stability``: ``m·π + (1 − π)·λ(1 − λ^m)/(1 − λ)`` with ``π = share``,
    ``λ = (stability − π)/(1 − π)`` the chain's lag-1 correlation and ``m = steps``."""
    m = max(0.0, steps)
    pi = min(max(share, 0.0), 1.0)
    if pi >= 1.0:
        return m
    lam = max((stability - pi) / (1.0 - pi), 0.0)  # (λ ≥ 1: every later step, next line)
    burst = m if lam >= 1.0 else lam * (1.0 - lam**m) / (1.0 - lam)
    return m * pi + (1.0 - pi) * burst


def expected_reuse(obs, rnd: Round, pair: tuple[int, int] | None = None) -> float:
    """Uses a copy made by this round is expected to serve, ≥ 1 (module docstring); ``pair``:
    the round's (home, owner) indices, if already looked up."""
    h, o = obs.pair(rnd.src, rnd.owner) if pair is None else pair
    # (.item: a Python float at once, where float(array[i]) makes a numpy one first)
    m = max(0.0, obs.remaining_tokens.item(h) - 1.0)  # steps left after this one
    again = repicks(obs.stability(), obs.select_share.item(h), m)
    room, held = obs.copy_room.item(h), obs.copies_held.item(h)
    need = float(rnd.distinct_blocks)
    if room <= 0:
        survival = 0.0
    elif room - held >= need:
        survival = 1.0
    else:
        survival = min(1.0, room / (held + need))
    prior = 1.0 + again * survival
    copies = float(obs.copies[h, o])
    if copies <= 0:
        return prior
    seen = 1.0 + float(obs.hits[h, o]) / copies
    return (copies * seen + PRIOR_COPIES * prior) / (copies + PRIOR_COPIES)


def new_per_round(obs, home: int, owner: int, selected: float,
                  reuse: float) -> float | None:
    """New blocks a copy-making round of (``home``, ``owner``) carries in all, ≥ 1 (module
    docstring): observed, ``copies / rounds`` of the pair, blended with what ``selected``
    selections whose new blocks were independent would give (``n/(R·P)``), which counts as
    :data:`PRIOR_ROUNDS` rounds' worth of evidence; None before the pair made a round (the
    independent model itself)."""
    made = float(obs.rounds[home, owner])
    if made <= 0:
        return None
    chance = round_probability(selected, reuse)
    prior = selected / (reuse * chance) if chance > 0 else 1.0
    seen = float(obs.copies[home, owner]) / made
    return max(1.0, (made * seen + PRIOR_ROUNDS * prior) / (made + PRIOR_ROUNDS))


def owner_stall(obs, home: int, owner: int) -> float:
    """Home batches' worth of queries route's kernel on ``owner`` delays (module docstring):
    1 where the owner steps in lockstep, else the owner's last decode batch over the home's
    (at least one query), 0 for an owner with no batch."""
    if obs.lockstep.item(owner):
        return 1.0
    mine = obs.queries.item(owner)
    return mine / max(obs.queries.item(home), 1) if mine > 0 else 0.0


def load_times(obs, cm, rnd: Round, blocks: float) -> tuple[float, float, float, float]:
    """``(owner's backlog, home's backlog, route's slow-down, fetch's slow-down)`` [s] of a round
    of ``blocks`` blocks per query, read in that order (a read of a stream can change what the
    fast engine holds laid there: :mod:`simulator.engine.fast_laid`)."""
    owner_wait = obs.backlog_time(rnd.owner, rnd.now)
    home_wait = obs.backlog_time(rnd.src, rnd.now)
    slow = slow_times(obs, cm, rnd, blocks)
    if slow:
        return owner_wait, home_wait, slow.get("route", 0.0), slow.get("fetch", 0.0)
    return owner_wait, home_wait, 0.0, 0.0


def slow_times(obs, cm, rnd: Round, blocks: float | None = None) -> dict[str, float] | None:
    """Extra time [s] of route's and fetch's bulk bytes on a busy path for a round of
    ``blocks`` blocks (default the round's own), as the engine's link load (``obs.links``)
    prices them (None while both directions of the path are idle, or without a link view).
    :meth:`LoadedCosts.copy_step <simulator.costmodel.loaded.LoadedCosts.copy_step>` takes
    fetch's for the full round ``K`` it prices and scales it by the blocks moved (``k/K``), so
    :meth:`Adaptive.choose` asks for ``K`` blocks."""
    links = obs.links
    if links is None:
        return None
    now = rnd.now
    if links.idle(rnd.src, rnd.owner, now) and links.idle(rnd.owner, rnd.src, now):
        return None
    blocks = rnd.blocks if blocks is None else blocks
    out = {}
    for option in ("route", "fetch"):
        extra = 0.0
        for src, dst, nbytes in cm.bulk_messages(option, rnd.src, rnd.owner, blocks=blocks,
                                                 batch=rnd.batch):
            if nbytes > 0:
                extra += links.extra_time(src, dst, nbytes, now)
        out[option] = extra
    return out


class AdaptiveLive(Policy):
    """Per round, the fastest option with bulk bytes charged at the live fair share."""

    name = "adaptive_live"
    needs_live_rates = True

    def choose(self, ctx: PolicyContext, rnd: Round) -> str:
        cm, fabric = ctx.cost_model, ctx.fabric
        best, best_t = OPTIONS[0], float("inf")
        for option in OPTIONS:
            t = live_total(cm, fabric, option, rnd)
            if t < best_t:
                best, best_t = option, t
        return best


def live_total(cm, fabric, option: str, rnd: Round) -> float:
    """Closed-form total [s] of ``option`` with its bulk phases re-priced at the live fair share.

    A bulk phase of ``n`` bytes over a path of static rate ``r`` costs ``t`` in the closed form;
    at a live share ``s`` it costs ``t + n / s − n / r`` (overhead and latency unchanged).
    """
    phases = getattr(cm, option)(rnd.src, rnd.owner, blocks=rnd.blocks, batch=rnd.batch)
    total = phases.total
    if option == "local":
        return total
    for src, dst, nbytes in cm.bulk_messages(option, rnd.src, rnd.owner, blocks=rnd.blocks,
                                             batch=rnd.batch):
        if nbytes <= 0:
            continue
        static = cm.path_rate(src, dst)
        share = min(fabric.fair_share(src, dst), static)
        if share <= 0:
            return float("inf")
        total += nbytes / share - nbytes / static
    return total
