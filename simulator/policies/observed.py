"""What a run has observed, for policies that adapt to it: counters the engine keeps current.

A policy that sets ``observes = True`` finds an :class:`Observed` at ``ctx.observed``; every other
policy finds None, and the engine then spends nothing on it. The engine *writes* (four calls,
each O(1) or one small array add); a policy *reads* (plain arrays and one method). Nothing here
refers to how an engine advances time, so an engine that computes whole decode steps as arrays
can keep the same counters:

- ``copied(home, owner, blocks)`` — a fetch or recompute round chosen by the policy kept
  ``blocks`` new block copies (one per block and simulated layer slot) on ``home`` of blocks
  that ``owner`` holds;
- ``step(home, hits, selected, queries, remaining_tokens, select_share, copy_room,
  copies_held)`` — once per decode step of ``home``, before its rounds: ``selected[o]``, the
  (query, slot, block) elements its batch of ``queries`` selected on owner ``o`` (in HBM there),
  and ``hits[o]`` those of them served by a copy on ``home`` (uses that needed no round); the
  mean decode tokens the batch has still to generate; the mean share of a query's context blocks
  it selects in one layer slot; how many blocks copies may use on it at most (HBM capacity − the
  blocks it owns) and how many they use now;
- ``selections(selected, reselected)`` — of ``selected`` blocks a query picked at one step (in
  one layer slot), ``reselected`` were picked again at its next step: the stability of
  selections;
- ``free_at(gpu, at)`` — when the GPU's compute stream finishes the kernels issued on it by
  ``at`` [s] (a callable the engine gives: the owner's load);
- ``links`` — the engine's view of traffic on the fabric now (None: assume idle links), with
  ``idle(src, dst, at)`` (no other traffic on the path at ``at``) and ``extra_time(src, dst,
  nbytes, at)`` (how much longer ``nbytes`` take there than on an idle path [s]). The exact
  engine gives :class:`FabricLoad` (the Fabric's live flows: the lesser of the max-min fair
  share's delay and equal sharing with the flows as they finish); the fast engine its
  link calendars (the FIFO wait for work already on the path's busiest link; beside a joined
  micro-batch's flows in flight, their max-min share too: ``Links.expect``).

Counters per (home, owner) are decayed: when a pair's copies + hits exceed :data:`WINDOW`, both
halve (the ratio is kept; old events weigh less), so the estimates follow a run whose traffic
changes. Indices are the engine's GPU order; :meth:`pair` maps names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

#: Copies + hits of one (home, owner) pair before both halve [events].
WINDOW = 4096.0
#: Selected blocks counted for the stability estimate before both counters halve [blocks].
SELECTION_WINDOW = 65536.0


class LinkLoad(Protocol):
    """An engine's view of the traffic on a path now (see the module docstring)."""

    def idle(self, src: str, dst: str, at: float) -> bool:
        """No other traffic on the path from ``src`` to ``dst`` at ``at`` [s]."""
        ...

    def extra_time(self, src: str, dst: str, nbytes: float, at: float) -> float:
        """How much longer ``nbytes`` [B] sent at ``at`` [s] take than on an idle path [s]."""
        ...


class FabricLoad:
    """The exact engine's :class:`LinkLoad`: the Fabric's flows now. Bytes on a busy path are
    priced at the lesser of two delays: at the max-min fair share a new flow would get now (as
    ``adaptive_live`` prices them), and shared equally with the path's flows as they finish,
    from the bytes each has left (:meth:`Fabric.sharing_time
    <simulator.network.Fabric.sharing_time>`). The fair share alone charges a flow about to
    end as if it lasted — a competitor with a few bytes left doubled a fetch's predicted wire
    time — where the fast engine's link calendars see nothing (docs/performance.md, *Stop
    85*); the sharing alone ignores the caps the fair share knows (a competitor held back
    elsewhere takes less of the link). Where every competitor outlasts the new flow, the two
    come to about the same (equal where the path's static rate is its link's line rate).

    Args:
        fabric: the run's :class:`~simulator.network.Fabric`.
        path_rate: ``path_rate(src, dst)``: the path's static rate [B/s] (the closed form's).
    """

    def __init__(self, fabric, path_rate: Callable[[str, str], float]) -> None:
        self.fabric = fabric
        self.path_rate = path_rate

    def idle(self, src: str, dst: str, at: float) -> bool:
        return self.fabric.idle(src, dst)

    def extra_time(self, src: str, dst: str, nbytes: float, at: float) -> float:
        static = self.path_rate(src, dst)
        share = min(self.fabric.fair_share(src, dst), static)
        if share <= 0:
            return float("inf")
        fair = nbytes / share - nbytes / static
        if fair <= 0.0:
            return fair
        shared = self.fabric.sharing_time(src, dst, nbytes)
        return shared if shared < fair else fair


class Observed:
    """The run's observations (module docstring). Written by the engine, read by policies.

    Args:
        names: GPU names in the engine's order (row and column of every per-GPU array).
        free_at: ``free_at(g, at)``: when the work issued on GPU ``g``'s compute stream by
            ``at`` [s] is done [s].
        slots: simulated layer slots of a decode step (``selected`` counts all of them).
        links: the engine's link load (module docstring), or None (links idle).

    Attributes:
        copies: ``(G, G)`` block copies made on home (row) of owner (column) blocks, decayed.
        hits: ``(G, G)`` uses of those copies (elements served by a copy), decayed.
        rounds: ``(G, G)`` the copy-making rounds that made them (one per ``copied``), decayed.
        selected: ``(G, G)`` elements each home's last decode step selected on each owner.
        queries: ``(G,)`` queries in each home's last decode step (0 once it has none left).
        remaining_tokens: ``(G,)`` mean decode tokens left in each home's last decode batch.
        select_share: ``(G,)`` mean share of its context a query of that batch selects per slot.
        copy_room: ``(G,)`` blocks copies may occupy on each GPU (capacity − owned blocks).
        copies_held: ``(G,)`` blocks holding copies on each GPU now.
        picked, picked_again: the stability counters (decayed).
        steps: decode steps observed per home.
        lockstep: ``(G,)`` True for GPUs that step together with others (the ranks of a
            ``[deployment]`` instance of several GPUs; set by the deployment).
    """

    def __init__(self, names: Sequence[str], free_at: Callable[[int, float], float],
                 slots: int = 1, links: LinkLoad | None = None) -> None:
        g = len(names)
        self.names = list(names)
        self.slots = slots
        self.selected = np.zeros((g, g))
        self.queries = np.zeros(g, np.int64)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.copies = np.zeros((g, g))
        self.hits = np.zeros((g, g))
        self.rounds = np.zeros((g, g))
        self.remaining_tokens = np.zeros(g)
        self.select_share = np.zeros(g)
        self.copy_room = np.zeros(g)
        self.copies_held = np.zeros(g)
        self.picked = 0.0
        self.picked_again = 0.0
        self.steps = np.zeros(g, np.int64)
        self.lockstep = np.zeros(g, bool)
        # per home: a pair's copies + hits still past WINDOW after its last decay (the
        # counters grow only through copied and step, which keep it current)
        self._over = [False] * g
        self.free_at = free_at
        self.links = links

    # -- written by the engine -----------------------------------------------------------------

    def copied(self, home: int, owner: int, blocks: int) -> None:
        """A round kept ``blocks`` new copies on ``home`` of blocks ``owner`` holds."""
        self.rounds[home, owner] += 1
        if blocks:  # (rounds are not in the sum that triggers the decay)
            self.copies[home, owner] += blocks
            # only this pair grew: the row is past the window if it was, or if this pair is
            if self._over[home] or self.copies[home, owner] + self.hits[home, owner] > WINDOW:
                self._decay(home)

    def step(self, home: int, hits: np.ndarray | None, selected: np.ndarray | None,
             queries: int, remaining_tokens: float, select_share: float, copy_room: int,
             copies_held: int) -> None:
        """One decode step of ``home`` (module docstring); ``hits`` and ``selected`` per
        owner, or None (nothing selected away from home)."""
        if hits is not None:
            self.hits[home] += hits
            self._decay(home)
        if selected is None:
            self.selected[home] = 0.0
        else:
            self.selected[home] = selected
        self.queries[home] = queries
        self.remaining_tokens[home] = remaining_tokens
        self.select_share[home] = select_share
        self.copy_room[home] = copy_room
        self.copies_held[home] = copies_held
        self.steps[home] += 1

    def idle(self, home: int) -> None:
        """``home`` has no request left to serve: no batch of its own (``queries`` 0)."""
        self.queries[home] = 0

    def selections(self, selected: float, reselected: float) -> None:
        """Of ``selected`` blocks picked at a step, ``reselected`` were picked at the next (an
        estimate may count fractions)."""
        self.picked += selected
        self.picked_again += reselected
        if self.picked > SELECTION_WINDOW:
            self.picked *= 0.5
            self.picked_again *= 0.5

    def _decay(self, home: int) -> None:
        """Halve ``home``'s pairs whose copies + hits exceed :data:`WINDOW`; note whether any
        still does (``_over``: a pair past twice the window halves again at the next call)."""
        row = self.copies[home] + self.hits[home]
        over = row.max() > WINDOW
        if over:
            big = row > WINDOW
            self.copies[home, big] *= 0.5
            self.hits[home, big] *= 0.5
            self.rounds[home, big] *= 0.5
            over = (self.copies[home] + self.hits[home]).max() > WINDOW
        self._over[home] = bool(over)

    # -- read by policies ----------------------------------------------------------------------

    def pair(self, home: str, owner: str) -> tuple[int, int]:
        """The (home, owner) indices of two GPU names."""
        return self.index[home], self.index[owner]

    def selected_blocks(self, home: int, owner: int, queries: int) -> float:
        """Blocks per query and layer slot that ``home``'s last step selected on ``owner``,
        spread over ``queries`` queries (its copies' uses included)."""
        return float(self.selected[home, owner]) / (self.slots * max(queries, 1))

    def backlog_time(self, gpu: str, now: float) -> float:
        """Queued kernel time left on ``gpu``'s compute stream at ``now`` [s] (≥ 0)."""
        wait = self.free_at(self.index[gpu], now) - now
        return wait if wait > 0.0 else 0.0  # (max(0.0, ·) without the call: twice a round)

    def stability(self) -> float:
        """Share of a query's selected blocks it selects again at its next step (0 before any
        selection was seen)."""
        return self.picked_again / self.picked if self.picked > 0 else 0.0
