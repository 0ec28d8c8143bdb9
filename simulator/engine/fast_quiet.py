"""A decode step's quiet layer slots on a stream only its own GPU uses, counted without items.

:class:`QuietSlots` is a part the fast engine's run holds (``run.quiet``,
:class:`simulator.engine.fast.FastRun`). A *quiet* slot has nothing to exchange: the home runs
its own attention over the slot's local blocks, then the layer's projections + FFN, and the
slot stands for its folded layers (a slot of ``L`` layers takes its time ``L`` times over).
Under a policy that never routes (``fetch``, ``local``) no other GPU's kernel can reach a
home's stream, so once the stream has run out of earlier work (``Calendar.last_end``) a quiet
slot's kernels can be neither pushed nor queued behind: their times follow from the step's
start alone. They are then only counted on the calendar
(:meth:`~simulator.engine.fast_streams.Calendar.account`, ``account_each``: busy time, kernels,
last end), with no calendar item, and the step's end is the sum of the slots' spans:

- :meth:`QuietSlots.run_slots` slot by slot, as floats (a step of few slots, or one whose
  slots with rounds come between);
- :meth:`QuietSlots.stretches` the runs between slots with rounds as arrays (a step of
  :data:`~simulator.engine.fast.VECTOR_SLOTS` slots or more), the slots with rounds composed
  by the run's :class:`~simulator.engine.fast_slots.SlotComposer` in between;
- :meth:`QuietSlots.uniform` a step whose every query's context is local to its home, so every
  slot is alike: one product.

The home's attention per slot comes from the cost model through a lookup table per GPU
(:meth:`QuietSlots.attention_table`), filled as new (blocks, queries) pairs appear. The
times are those one :meth:`~simulator.engine.fast_streams.Calendar.reserve` per slot would
give on a stream with nothing else on it: a lone request's steps take the exact engine's
times through them (``tests/test_engine_fast.py``)."""

from __future__ import annotations

import numpy as np


class QuietSlots:
    """Counts a fast-engine run's quiet layer slots (see the module docstring).

    Args:
        run: the :class:`~simulator.engine.fast.FastRun` whose calendars, costs and slot
            composer the steps use.
    """

    def __init__(self, run) -> None:
        self.run = run
        #: per GPU: the home's attention [s] by (local blocks, queries), NaN where not yet
        #: asked (row 0: no block, 0.0); empty until the GPU's first vector step
        self.tables: list[np.ndarray] = [np.empty((0, 0)) for _ in range(run.G)]

    def run_slots(self, g: int, first: int, stop: int, n_local: list[int], q_local: list[int],
                  na_layer: float, at: float) -> float:
        """Slots ``first`` to ``stop - 1`` (none with rounds) of a step from ``at`` [s] on a
        stream only GPU ``g`` uses: each slot's attention and projections + FFN counted
        (:meth:`~simulator.engine.fast_streams.Calendar.account_each`), no item kept; returns
        when the last slot's folded layers end [s]."""
        run = self.run
        name = run.names[g]
        costs = run.costs
        attn = costs.attn_cache
        slot_layers = run.slot_layers_list
        busy, kernels = [], 0
        end = at
        for q in range(first, stop):
            n = n_local[q]
            if n:
                a = attn.get((name, n, q_local[q]))
                if a is None:
                    a = costs.attention(name, n, q_local[q])
            else:
                a = 0.0
            end = at + a + na_layer
            busy.append(a + na_layer)
            kernels += 2 if a else 1
            at = end + (end - at) * (slot_layers[q] - 1)
        # the slots' ends never decrease: the last is the latest
        run.cal[g].account_each(busy, kernels, end)
        return at

    def uniform(self, g: int, n_local: int, q_local: int, na_layer: float, at: float) -> float:
        """A step from ``at`` [s] whose every slot is the same — ``n_local`` local blocks of
        ``q_local`` queries, nothing to exchange — on a stream only GPU ``g`` uses: what
        :meth:`stretches` sums over the slots, as one product; returns its end [s]."""
        run = self.run
        # a local query reads at least one block: every slot runs its attention kernel and
        # then its projections + FFN
        busy = run.costs.attention(run.names[g], n_local, q_local) + na_layer
        end = at + busy * run.arch.layers  # the slots stand for every layer
        run.cal[g].account(busy * run.S, 2 * run.S, end)
        return end

    def stretches(self, g: int, iteration: int, groups: list, n_arr: np.ndarray,
                  q_arr: np.ndarray, na_layer: float, at: float) -> float:
        """A step on a stream only its own GPU uses: runs of slots with nothing to exchange as
        arrays (each slot's attention + projections + FFN, times its folding), the slots with
        rounds one by one; returns the step's end [s]."""
        run = self.run
        cal = run.cal[g]
        attn = self.attention_table(g, n_arr, q_arr)
        busy = attn + na_layer
        span = busy * run.slot_layers
        kernels = np.where(attn > 0, 2, 1)
        S = len(groups)
        prev = 0
        for s in [*(i for i, grp in enumerate(groups) if grp), S]:
            if s > prev:
                at += float(span[prev:s].sum())
                cal.account(float(busy[prev:s].sum()), int(kernels[prev:s].sum()), at)
            if s < S:
                at = run.compose.slot(g, s, iteration, groups[s], int(n_arr[s]), int(q_arr[s]),
                                      na_layer, at)
            prev = s + 1
        return at

    def attention_table(self, g: int, n_arr: np.ndarray, q_arr: np.ndarray) -> np.ndarray:
        """The home's own attention per slot [s] for ``n_arr`` local blocks of ``q_arr``
        queries (0 where none), from a lookup table per GPU filled from the cost model as new
        (blocks, queries) pairs appear."""
        table = self.tables[g]
        n_max, q_max = int(n_arr.max()), int(q_arr.max())
        rows, cols = table.shape
        if n_max >= rows or q_max >= cols:  # grown (64 × 4 at first), what it held kept
            bigger = np.full((max(n_max + 1, 64, rows), max(q_max + 1, 4, cols)), np.nan)
            bigger[0, :] = 0.0
            bigger[:rows, :cols] = table
            table = self.tables[g] = bigger
        attn = table[n_arr, q_arr]
        missing = np.isnan(attn)
        if missing.any():
            name = self.run.names[g]
            for n, q in set(zip(n_arr[missing].tolist(), q_arr[missing].tolist(), strict=True)):
                table[n, q] = self.run.costs.attention(name, n, q)
            attn = table[n_arr, q_arr]
        return attn
