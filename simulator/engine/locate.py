"""One decode step's data: which blocks every query selects, per simulated layer, and where.

:class:`StepData` is a part the engine's run holds (:mod:`simulator.engine.exact`). Selections are
sampled :data:`SELECTION_STEPS` decode steps of a query at a time (vectorized over the batch by
:class:`workloads.sparse.SparseSelector`), or replayed from a recorded selection trace; the
locations of all selected blocks of a step, for every simulated layer at once, come from one
compiled pass over the :class:`~simulator.kvcache.directory.BlockDirectory`'s arrays, grouped by
holder (GPU, host DRAM of a machine, or dropped → recompute;
:mod:`simulator.engine.locate_kernels`)."""

from __future__ import annotations

import numpy as np

from simulator.engine.locate_kernels import group_order, locate_pass

#: Decode steps whose selections are sampled together for one query.
SELECTION_STEPS = 16


class StepData:
    """Selection and location for a run's decode steps (see the module docstring).

    Args:
        requests: the run's :class:`~simulator.engine.admission.Admission` (per-request
            contexts, generated tokens, focus sets, and the selection cache it clears).
        directory: the run's KV block directory.
        selector: a :class:`workloads.sparse.SparseSelector`.
        sel_rngs: one random stream per GPU for selections.
        replay: a recorded selection trace to replay, or None.
        slot_first: first real layer of each simulated slot.
        machine_of: machine index of each GPU.
    """

    def __init__(self, requests, directory, selector, sel_rngs, replay, slot_first,
                 machine_of: np.ndarray) -> None:
        self.req = requests
        self.dir = directory
        self.selector = selector
        self.sel_rngs = sel_rngs
        self.replay = replay
        self.slot_first = slot_first
        self.machine_arr = machine_of
        self.S = len(slot_first)
        self.G = len(machine_of)
        self._flat_slot_cache: dict[tuple[int, int, int], tuple] = {}
        #: an adaptive policy's :class:`~simulator.policies.observed.Observed` (set by the
        #: engine), or None: then nothing below is counted
        self.observed = None
        #: with ``observed``: per owner GPU, the last step's selected blocks held in its HBM
        #: (``away``) and those of them served by a copy at home (``owner_copy_hits``)
        self.away: np.ndarray | None = None
        self.owner_copy_hits: np.ndarray | None = None
        # selected (block, slot) references the home does not hold: found among its copies, or
        # not (a round, a host fetch or a recompute) — the summary's ``copy_hit_rate``
        self.copy_hits = 0
        self.copy_misses = 0

    def select(self, g: int, reqs: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Dense block indices ``(B, S, W)`` selected per query and slot, and the valid mask.

        Selections are sampled for :data:`SELECTION_STEPS` decode steps of a query at once (as
        that many × S consecutive layers, so the selector's layer correlation also links one
        step to the next) and resampled early when the context gains a block.
        """
        stale = [r for r in reqs if not self._cached(r)]
        if stale:
            self._sample(g, stale)
        sel_cache, gen = self.req.sel_cache, self.req.gen
        if len(reqs) == 1 and self.replay is None:  # the common case: a batch of one
            r = reqs[0]
            c = sel_cache[r]
            i = int(gen[r]) - 1 - c[1]
            return c[3][i : i + 1], c[4][i : i + 1]  # padding → 0, precomputed per sample
        cached = [sel_cache[r] for r in reqs]
        width = max(c[3].shape[2] for c in cached)
        dense = np.zeros((len(reqs), self.S, width), np.int64)  # padding → 0, not valid
        valid = np.zeros((len(reqs), self.S, width), bool)
        for k, (r, c) in enumerate(zip(reqs, cached, strict=True)):
            i = int(gen[r]) - 1 - c[1]
            w = c[3].shape[2]
            dense[k, :, :w] = c[3][i]
            valid[k, :, :w] = c[4][i]
        if self.replay is not None:
            dense, valid = self._apply_replay(reqs, dense, valid)
        return dense, valid

    def _cached(self, r: int) -> bool:
        req = self.req
        c = req.sel_cache[r]
        if c is None:
            return False
        return int(req.gen[r]) - 1 - c[1] < len(c[0]) and c[2] == len(req.ctx_idx[r])

    def _sample(self, g: int, reqs: list[int]) -> None:
        T, S = SELECTION_STEPS, self.S
        req = self.req
        ctx_len = np.array([len(req.ctx_idx[r]) for r in reqs], np.int64)
        fw = max([len(req.focus[r]) for r in reqs] + [1])
        focus = np.full((len(reqs), fw), -1, np.int64)
        for i, r in enumerate(reqs):
            focus[i, : len(req.focus[r])] = req.focus[r]
        sel = self.selector.select_batch(self.sel_rngs[g], ctx_len, T * S, focus=focus,
                                         popular_blocks=req.popular[reqs])
        for i, r in enumerate(reqs):
            pos = sel.indices[i, :, : sel.counts[i]].reshape(T, S, -1)
            blocks = req.ctx_idx[r][pos]
            ok = blocks >= 0
            if self.observed is not None and T > 1:  # stability: slot 0, step to next step
                a, b = blocks[:-1, 0], blocks[1:, 0]
                again = ((a[:, :, None] == b[:, None, :]).any(axis=2) & (a >= 0)).sum()
                self.observed.selections(int((a >= 0).sum()), int(again))
            dense = np.where(ok, blocks, 0)
            ok.flags.writeable = dense.flags.writeable = False  # _select hands out views
            # (blocks, first step, context length, blocks with padding → 0, valid mask)
            req.sel_cache[r] = (blocks, int(req.gen[r]) - 1, int(ctx_len[i]), dense, ok)

    def _apply_replay(self, reqs, dense, valid):
        rows = []
        for r in reqs:
            step = int(self.req.gen[r]) - 1
            for s in range(self.S):
                got = self.replay.blocks(self.req.rid[r], step, int(self.slot_first[s]))
                rows.append(None if got is None else self.dir.intern(got))
        width = max([dense.shape[2]] + [len(x) for x in rows if x is not None])
        d2 = np.zeros((len(reqs), self.S, width), np.int64)
        v2 = np.zeros_like(d2, dtype=bool)
        d2[:, :, : dense.shape[2]] = dense
        v2[:, :, : dense.shape[2]] = valid
        for k, x in enumerate(rows):
            if x is not None:
                i, s = divmod(k, self.S)
                d2[i, s] = 0
                v2[i, s] = False
                d2[i, s, : len(x)] = x
                v2[i, s, : len(x)] = True
        return d2, v2

    def _flat_slots(self, B: int, S: int, W: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per element of a flattened ``(B, S, W)`` step: its word and bit mask in the
        directory's copy bitmaps, and its slot × 3G (the slot part of a group key); cached."""
        cache = self._flat_slot_cache
        got = cache.get((B, S, W))
        if got is None:
            slot = np.broadcast_to(np.arange(S)[None, :, None], (B, S, W)).ravel()
            got = cache[(B, S, W)] = (slot // 64, np.uint64(1) << (slot % 64).astype(np.uint64),
                                      slot * (3 * self.G))
        return got

    def locate_for(self, g: int, dense: np.ndarray, valid: np.ndarray, colocated: bool):
        """:meth:`locate`, or, under a colocated policy (every block is at home), every valid
        selection local and no groups."""
        if colocated:
            return valid, [[] for _ in range(self.S)]
        return self.locate(g, dense, valid)

    def locate(self, g: int, dense: np.ndarray, valid: np.ndarray):
        """Local mask ``(B, S, W)`` and, per slot, the groups of non-local blocks: one
        ``(key, batch, members)`` per holder GPU / host / recompute, keys ascending (the members
        in flat order); one compiled pass (:mod:`simulator.engine.locate_kernels`)."""
        d = self.dir
        B, S, W = dense.shape
        G = self.G
        flat = dense.ravel()
        try:
            word, bit, slot_key = self._flat_slot_cache[(B, S, W)]
        except KeyError:
            word, bit, slot_key = self._flat_slots(B, S, W)
        store = d.copy_store
        observe = self.observed is not None
        replicas = d.k > 1  # then each element's nearest holder, else each block's one
        local, copied, keys, blocks, pos, away, hits = locate_pass(
            flat, valid.ravel(), d.nearest(flat, g) if replicas else d.base, replicas, d.tier,
            store.bits, store.rows(g, flat), word, bit, slot_key, g, G, self.machine_arr,
            observe)
        if observe:  # selections away from home and copies' uses, per owner
            self.away, self.owner_copy_hits = away, hits
        groups: list[list] = [[] for _ in range(S)]
        # copy hits: selected blocks the home does not hold itself but keeps a copy of
        self.copy_hits += copied
        self.copy_misses += len(keys)
        if len(keys) == 0:
            return local.reshape(B, S, W), groups
        idx, heads, starts, nq = group_order(keys, blocks, pos, S * W if B > 1 else 0,
                                             S * 3 * G)
        starts = starts.tolist()
        ends = [*starts[1:], len(idx)]
        for head, a, b, n_q in zip(heads.tolist(), starts, ends, nq.tolist(), strict=True):
            slot, k = divmod(head, 3 * G)
            groups[slot].append((k, n_q, idx[a:b]))
        return local.reshape(B, S, W), groups
