"""A layer slot with rounds, composed at once on the fast engine's calendars.

:class:`SlotComposer` is a part the fast engine's run holds (``run.compose``,
:class:`simulator.engine.fast.FastRun`). Where a decode step's slot has holder groups to
exchange with, the composer turns each group into a round — the policy's option, asked as the
exact engine's ``_start_round`` asks it (:meth:`SlotComposer._round`), with the closed form from
the run's :class:`~simulator.engine.stepcosts.StepCosts` — and lays the round's phases on the
calendars at once, in the exact engine's order and sizes:

- **route**: the query message (:mod:`simulator.engine.fast_links`), the owner's attention on
  its stream calendar (:mod:`simulator.engine.fast_streams`), the answer back, the merge at home;
- **fetch**: the request message and the blocks message, then one home kernel (attention +
  gather, merge); from host DRAM a host→device copy on the home's copy engine instead of the two
  messages (:meth:`SlotComposer._host_copy`, FIFO as
  :class:`~simulator.gpu.copyengines.CopyEngines`);
- **local** (recompute): one home kernel, issued at the slot's start;

with the home's own attention queued behind any recompute, and the layer's projections + FFN
after the last merge. A slot of one group (the common case) is composed directly
(:meth:`SlotComposer.slot`); several groups, or the ranks of a deployment's instance stepping
together, go through :meth:`SlotComposer.slots`, where each stage's messages form one phase
sharing links max-min (:meth:`~simulator.engine.fast_links.Links.phase`), the owners' kernels
queue in arrival order, and the homes' last kernels are reserved in issue order. Every round is
recorded as the exact engine records it, beside its closed form.

A fetch or recompute round's copies are entered in the directory when the slot is composed,
stamped with the round's end (:meth:`SlotComposer._keep`; an observing policy counts
them then). A *pure* policy's answer depends on the round alone, not on when it is asked, so it
is memoized per round shape (``choices``).
"""

from __future__ import annotations

import heapq
import math

from simulator.network.traffic import KV_FETCH, KV_ROUTE
from simulator.policies import Round


class _Round:
    """One round of a step being composed (plain slots; records as the exact engine's)."""

    __slots__ = ("k", "b", "members", "n_blocks", "distinct", "option", "owner", "code", "cf",
                 "probe", "transfer", "compute", "ret", "merge", "nbytes", "end", "home")

    def __init__(self, k, b, members, n_blocks, distinct, option, owner, code, cf) -> None:
        self.k, self.b, self.members = k, b, members
        self.n_blocks, self.distinct = n_blocks, distinct
        self.option, self.owner, self.code, self.cf = option, owner, code, cf
        self.probe = self.transfer = self.compute = self.ret = self.merge = 0.0
        self.nbytes = 0.0
        # ``end`` (when the round's last kernel ends [s]) and ``home`` (which of the homes
        # composed together, SlotComposer.slots) are set by the composer: unset, a read fails


class SlotComposer:
    """Composes a fast-engine run's layer slots that have rounds (see the module docstring).

    Args:
        run: the :class:`~simulator.engine.fast.FastRun` whose calendars, links, directory and
            records the slots use.
    """

    def __init__(self, run) -> None:
        self.run = run
        # a pure policy's answer depends on the round alone (not on when it is asked): memoized;
        # ``pure`` counts only where the policy's own class declares it (a subclass that
        # overrides ``choose`` is not memoized unless it says so itself)
        pure = type(run.policy).__dict__.get("pure", False)
        self.choices: dict | None = {} if pure else None

    def slot(self, g: int, s: int, iteration: int, slot_groups: list, n_loc: int, q_loc: int,
             na_layer: float, t0: float) -> float:
        """Compose layer slot ``s`` (with rounds) of a step on GPU ``g`` started at ``t0`` [s];
        returns when the next slot starts [s] (after the folded layers' time; a deployment,
        which folds after its MoE layer, composes its slots with :meth:`slots`)."""
        run = self.run
        cal = run.cal[g]
        layers = run.slot_layers_list[s]
        name = run.names[g]
        links = run.links
        if len(slot_groups) == 1:  # the common case, without the general bookkeeping: the
            # round in locals, not a _Round
            k, b, members = slot_groups[0]
            n_blocks, distinct, option, owner, code, cf = self._choose(g, s, k, b, members, t0)
            probe = transfer = ret = 0.0
            if option == "route":
                q, r = run.costs.route_payload(b)
                nbytes = q + r
                started, arrived = links.one(name, owner, q, t0, g, layers, KV_ROUTE)
                run.laid.routed_onto(k)  # (before another GPU's kernel lands on its stream)
                end_c = run.cal[k].reserve(arrived, cf.compute, g, layers)
                if n_loc:
                    cal.reserve(t0, run.costs.attention(name, n_loc, q_loc), g, layers)
                back = links.one(owner, name, r, end_c, g, layers, KV_ROUTE)[1]
                rd_end = cal.reserve(back, cf.merge, g, layers)
                probe, transfer = started - t0, arrived - started
                compute, ret, merge = end_c - arrived, back - end_c, rd_end - back
                release = back
            else:
                if option == "local":
                    nbytes = 0.0
                    rd_end = release = cal.reserve(t0, cf.compute + cf.merge, g, layers)
                    if n_loc:
                        cal.reserve(t0, run.costs.attention(name, n_loc, q_loc), g, layers)
                    compute = rd_end - t0 - cf.merge
                else:
                    if run.G <= code < 2 * run.G:
                        # from host DRAM: a host→device copy on the home's copy engine, as the
                        # exact one
                        nbytes = run.cm.fetch_bytes(n_blocks / b, b)
                        if n_loc:
                            cal.reserve(t0, run.costs.attention(name, n_loc, q_loc), g, layers)
                        arrived = self._host_copy(g, t0, cf.transfer)
                        asked = t0
                    else:
                        req = run.cm.request_bytes(n_blocks / b, b)
                        kv = run.cm.fetch_bytes(n_blocks / b, b)
                        nbytes = req + kv
                        asked = links.one(name, owner, req, t0, g, layers, KV_FETCH)[1]
                        if n_loc:
                            cal.reserve(t0, run.costs.attention(name, n_loc, q_loc), g, layers)
                        arrived = links.one(owner, name, kv, asked, g, layers, KV_FETCH)[1]
                    rd_end = release = cal.reserve(arrived, cf.compute + cf.merge, g, layers)
                    probe, transfer = asked - t0, arrived - asked
                    compute = rd_end - arrived - cf.merge
                merge = cf.merge
                self._keep(g, s, k, members, rd_end)
            end = cal.reserve(release, na_layer, g, layers)
            run.rounds.append((
                iteration, s, layers, g, code, option, b, n_blocks, distinct, nbytes, t0, probe,
                transfer, compute, ret, merge, rd_end - t0, cf.probe, cf.transfer, cf.compute,
                cf.ret, cf.merge, cf.total))
            return end + (end - t0) * (layers - 1)
        end = self.slots([(g, slot_groups, n_loc, q_loc, na_layer, t0)], s, iteration)[0]
        return end + (end - t0) * (layers - 1)

    def slots(self, homes: list[tuple], s: int, iteration: int) -> list[float]:
        """Compose layer slot ``s`` of the steps of ``homes`` — ``(gpu, groups, local blocks,
        local queries, projections + FFN [s], slot start [s])`` each: one GPU's step, or the
        ranks of a deployment's instance (one micro-batch at a time), whose
        messages at each stage form one phase (sharing links max-min, :meth:`Links.phase`);
        returns when each home's slot (its first layer) ends [s]. Homes are taken in order —
        each asks its rounds, then queues its own kernels — as the exact engine's ranks issue
        theirs at their start."""
        run = self.run
        layers = run.slot_layers_list[s]
        cal_of = run.cal
        lead = homes[0][0]
        rounds = []
        remote = []  # route / fetch rounds over the fabric, homes in order, each in key order
        home_kernels: list[list] = []  # per home: (issued at, order, duration, round)
        copies: list[list] = []  # per home: its fetch and recompute rounds (they leave copies)
        done: dict[int, float] = {}  # homes with nothing to exchange: their slot's end
        for h, (g, slot_groups, n_loc, q_loc, na_layer, t0) in enumerate(homes):
            cal = cal_of[g]
            if not slot_groups:  # attention, then projections + FFN: back to back, in order
                a = run.costs.attention(run.names[g], n_loc, q_loc) if n_loc else 0.0
                done[h] = cal.reserve(t0, a + na_layer, g, layers, 2 if a else 1)
                home_kernels.append([])
                copies.append([])
                continue
            host = []  # fetches from host DRAM: copies on the home's copy engine
            mine = len(remote)
            copies.append([])
            for grp in slot_groups:  # in order, a recompute queued before the next round
                rd = self._round(g, s, grp, t0)
                rd.home = h
                rounds.append(rd)
                if rd.option != "route":
                    copies[h].append(rd)
                if rd.option == "local":  # one home kernel: recompute + attention, merge
                    cf = rd.cf
                    rd.end = cal.reserve(t0, cf.compute + cf.merge, g, layers)
                    rd.merge = cf.merge
                    rd.compute = rd.end - t0 - cf.merge
                elif run.G <= rd.code < 2 * run.G:
                    host.append(rd)
                else:
                    remote.append(rd)
            if n_loc:  # home's own partial attention, queued behind any recompute
                cal.reserve(t0, run.costs.attention(run.names[g], n_loc, q_loc), g, layers)
            kernels = []
            for i, rd in enumerate(host):
                rd.nbytes = run.cm.fetch_bytes(rd.n_blocks / rd.b, rd.b)
                arrived = self._host_copy(g, t0, rd.cf.transfer)
                rd.probe, rd.transfer = 0.0, arrived - t0
                kernels.append((arrived, len(remote) - mine + i, rd.cf.compute + rd.cf.merge,
                                rd))
            home_kernels.append(kernels)
        if remote:
            starts = [homes[rd.home][5] for rd in remote]
            links = run.links
            names = run.names
            first = []
            for rd, t0 in zip(remote, starts, strict=True):
                name = names[homes[rd.home][0]]
                if rd.option == "route":
                    q, r = run.costs.route_payload(rd.b)
                    rd.nbytes = q + r
                    first.append((name, rd.owner, q, t0))
                else:
                    req = run.cm.request_bytes(rd.n_blocks / rd.b, rd.b)
                    rd.nbytes = req
                    first.append((name, rd.owner, req, t0))
            tags = [KV_ROUTE if rd.option == "route" else KV_FETCH for rd in remote]
            arrivals = links.phase(first, lead, layers, tags)
            # the owners' kernels in arrival order (homes' rounds to one owner queue FIFO)
            order = sorted(range(len(remote)), key=lambda i: (arrivals[i][1], i))
            second: list = [None] * len(remote)
            for i in order:
                rd = remote[i]
                started, finished = arrivals[i]
                name = names[homes[rd.home][0]]
                if rd.option == "route":
                    rd.probe = started - starts[i]
                    rd.transfer = finished - started
                    run.laid.routed_onto(rd.k)
                    end_c = cal_of[rd.k].reserve(finished, rd.cf.compute, homes[rd.home][0],
                                                 layers)
                    rd.compute = end_c - finished
                    second[i] = (rd.owner, name, run.costs.route_payload(rd.b)[1], end_c)
                else:
                    rd.probe = finished - starts[i]
                    kv = run.cm.fetch_bytes(rd.n_blocks / rd.b, rd.b)
                    rd.nbytes += kv
                    second[i] = (rd.owner, name, kv, finished)
            seen = [0] * len(homes)
            for rd, msg, (_, finished) in zip(remote, second, links.phase(second, lead, layers,
                                                                          tags), strict=True):
                i = seen[rd.home]
                seen[rd.home] += 1
                if rd.option == "route":
                    rd.ret = finished - msg[3]
                    home_kernels[rd.home].append((finished, i, rd.cf.merge, rd))
                else:
                    rd.transfer = finished - msg[3]
                    home_kernels[rd.home].append((finished, i, rd.cf.compute + rd.cf.merge, rd))
        # each home's kernels, then its projections + FFN once its rounds are in, all homes'
        # in issue order (two micro-batches of one GPU share its stream)
        ends: list[float] = [done.get(h, 0.0) for h in range(len(homes))]
        release = [h[5] for h in homes]
        left = [len(k) for k in home_kernels]
        queue = [(issued, h, order, dur, rd) for h, kernels in enumerate(home_kernels)
                 for issued, order, dur, rd in kernels]
        queue += [(release[h], h, -1, 0.0, None) for h in range(len(homes))
                  if h not in done and not left[h]]
        heapq.heapify(queue)
        while queue:
            issued, h, _, dur, rd = heapq.heappop(queue)
            g = homes[h][0]
            if rd is None:  # the home's rounds are in: its copies, then the rest of the layer
                for c in sorted(copies[h], key=lambda x: x.end):
                    self._keep_copies(g, s, c)
                    if c.end > release[h]:
                        release[h] = c.end
                ends[h] = cal_of[g].reserve(release[h], homes[h][4], g, layers)
                continue
            rd.end = cal_of[g].reserve(issued, dur, g, layers)
            if rd.option == "route":
                rd.merge = rd.end - issued
                if issued > release[h]:
                    release[h] = issued
            else:
                rd.merge = rd.cf.merge
                rd.compute = rd.end - issued - rd.cf.merge
            left[h] -= 1
            if not left[h]:
                last = max(release[h], max((x.end for x in copies[h]), default=release[h]))
                heapq.heappush(queue, (last, h, -1, 0.0, None))
        append = run.rounds.append
        for rd in rounds:
            cf = rd.cf
            g, t0 = homes[rd.home][0], homes[rd.home][5]
            append((iteration, s, layers, g, rd.code, rd.option, rd.b, rd.n_blocks, rd.distinct,
                    rd.nbytes, t0, rd.probe, rd.transfer, rd.compute, rd.ret, rd.merge,
                    rd.end - t0, cf.probe, cf.transfer, cf.compute, cf.ret, cf.merge,
                    cf.total))
        return ends

    def _round(self, g: int, s: int, grp, t0: float) -> _Round:
        """The round of one group of a slot composed with others (:meth:`_choose`)."""
        k, b, members = grp
        return _Round(k, b, members, *self._choose(g, s, k, b, members, t0))

    def _choose(self, g: int, s: int, k: int, b: int, members, t0: float) -> tuple:
        """``(blocks, distinct blocks, option, owner name, holder code, closed form)`` of the
        group of holder ``k``, ``b`` queries and blocks ``members`` of GPU ``g``'s slot ``s``
        started at ``t0`` [s]: the policy's option (forced for host / dropped blocks), as the
        exact engine's ``_start_round`` asks it."""
        run = self.run
        n_blocks, distinct, owner, option, code = run._group(g, k, b, members)
        if option is None:
            per = math.ceil(n_blocks / b)
            memo = self.choices
            if memo is not None:
                option = memo.get((g, k, s, b, per, distinct))
            if option is None:
                option = run._ask(Round(run.names[g], owner, s, b, per, distinct, t0))
                if memo is not None:
                    memo[(g, k, s, b, per, distinct)] = option
        cf = run.costs.cf_cache.get((option, g, code, n_blocks, b))
        if cf is None:
            cf = run.costs.closed_form(option, g, code, owner, n_blocks, b)
        return n_blocks, distinct, option, owner, code, cf

    def _keep_copies(self, g: int, s: int, rd: _Round) -> None:
        """:meth:`_keep` of round ``rd``'s copies."""
        self._keep(g, s, rd.k, rd.members, rd.end)

    def _keep(self, g: int, s: int, k: int, members, end: float) -> None:
        """Enter the copies a fetch or recompute round of holder ``k`` over blocks ``members``
        made on GPU ``g`` (slot ``s``), stamped ``end`` [s]; an observing policy counts those of
        a GPU's blocks it chose to copy (as the exact engine's round does at its end)."""
        run = self.run
        kept = run.dir.add_copies_kept(g, members, s, end)[1]  # per (block, slot)
        if run.observed is not None and k < run.G:
            run.observed.copied(g, k, kept)

    def _host_copy(self, g: int, at: float, duration: float) -> float:
        """A host→device copy of ``duration`` [s] issued at ``at`` on GPU ``g``'s copy engine
        (FIFO per direction, as :class:`~simulator.gpu.copyengines.CopyEngines`; the engine's
        idle time before ``at`` is not busy time); its end [s]."""
        return self.run.copies[g].h2d.issue_at(at, duration)
