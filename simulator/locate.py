"""One decode step's data: which blocks every query selects, per simulated layer, and where they are.

:class:`StepData` is a mixin of the engine's run (:mod:`simulator.engine`). Selections are sampled
:data:`SELECTION_STEPS` decode steps of a query at a time (vectorized over the batch by
:class:`workloads.sparse.SparseSelector`), or replayed from a recorded selection trace; the
locations of all selected blocks of a step, for every simulated layer at once, come from one
vectorized lookup in the :class:`~simulator.kvcache.BlockDirectory`, grouped by holder (GPU, host
DRAM of a machine, or dropped → recompute).
"""

from __future__ import annotations

import numpy as np

from simulator import kvcache

#: Decode steps whose selections are sampled together for one query.
SELECTION_STEPS = 16


class StepData:
    """Selection and location for a decode step (a mixin: the run provides ``S``, ``G``, ``dir``,
    ``selector``, ``sel_rngs``, ``sel_cache``, ``ctx_idx``, ``gen``, ``focus``, ``popular``,
    ``replay``, ``rid``, ``slot_first`` and ``machine_arr``)."""

    def _select(self, g: int, reqs: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Dense block indices ``(B, S, W)`` selected per query and slot, and the valid mask.

        Selections are sampled for :data:`SELECTION_STEPS` decode steps of a query at once (as
        that many × S consecutive layers, so the selector's layer correlation also links one
        step to the next) and resampled early when the context gains a block.
        """
        stale = [r for r in reqs if not self._cached(r)]
        if stale:
            self._sample(g, stale)
        rows = [self.sel_cache[r][0][int(self.gen[r]) - 1 - self.sel_cache[r][1]] for r in reqs]
        if len(rows) == 1 and self.replay is None:  # the common case: a batch of one
            valid = rows[0][None] >= 0
            return np.where(valid, rows[0][None], 0), valid
        width = max(x.shape[1] for x in rows)
        dense = np.full((len(reqs), self.S, width), -1, np.int64)
        for i, x in enumerate(rows):
            dense[i, :, : x.shape[1]] = x
        valid = dense >= 0
        dense[~valid] = 0
        if self.replay is not None:
            dense, valid = self._apply_replay(reqs, dense, valid)
        return dense, valid

    def _cached(self, r: int) -> bool:
        c = self.sel_cache[r]
        if c is None:
            return False
        sel, start, n_ctx = c
        return int(self.gen[r]) - 1 - start < len(sel) and n_ctx == len(self.ctx_idx[r])

    def _sample(self, g: int, reqs: list[int]) -> None:
        T, S = SELECTION_STEPS, self.S
        ctx_len = np.array([len(self.ctx_idx[r]) for r in reqs], np.int64)
        fw = max([len(self.focus[r]) for r in reqs] + [1])
        focus = np.full((len(reqs), fw), -1, np.int64)
        for i, r in enumerate(reqs):
            focus[i, : len(self.focus[r])] = self.focus[r]
        sel = self.selector.select_batch(self.sel_rngs[g], ctx_len, T * S, focus=focus,
                                         popular_blocks=self.popular[reqs])
        for i, r in enumerate(reqs):
            pos = sel.indices[i, :, : sel.counts[i]].reshape(T, S, -1)
            self.sel_cache[r] = (self.ctx_idx[r][pos], int(self.gen[r]) - 1, int(ctx_len[i]))

    def _apply_replay(self, reqs, dense, valid):
        rows = []
        for r in reqs:
            step = int(self.gen[r]) - 1
            for s in range(self.S):
                got = self.replay.blocks(self.rid[r], step, int(self.slot_first[s]))
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

    def _slot_bits(self, S: int) -> tuple[np.ndarray, np.ndarray]:
        """Each slot's word and bit in the directory's copy bitmaps, shaped ``(1, S, 1)``."""
        got = getattr(self, "_slot_bits_cache", None)
        if got is None or got[0].shape[1] != S:
            slots = np.arange(S)
            got = self._slot_bits_cache = ((slots // 64)[None, :, None],
                                           (slots % 64).astype(np.uint64)[None, :, None])
        return got

    def _locate(self, g: int, dense: np.ndarray, valid: np.ndarray):
        """Local mask ``(B, S, W)`` and, per slot, the groups of non-local blocks: one
        ``(key, batch, members)`` per holder GPU / host / recompute, keys ascending."""
        d = self.dir
        B, S, W = dense.shape
        G = self.G
        holder = d.nearest(dense.ravel(), g).reshape(dense.shape)
        tier = d.tier[dense]
        word, shift = self._slot_bits(S)
        copy = ((d.copy_bits[g][dense, word] >> shift) & np.uint64(1)) > 0
        local = valid & (((holder == g) & (tier == kvcache.HBM)) | copy)
        remote = valid & ~local
        groups: list[list] = [[] for _ in range(S)]
        if not remote.any():
            return local, groups
        qi, si, wi = np.nonzero(remote)
        idx = dense[qi, si, wi]
        h, t = holder[qi, si, wi], tier[qi, si, wi]
        # group key: holder GPU (HBM) | G + machine (host DRAM) | 2G (dropped: recompute)
        key = np.where(t == kvcache.HBM, h,
                       np.where(t == kvcache.HOST, G + self.machine_arr[np.maximum(h, 0)], 2 * G))
        sk = si * (3 * G) + key
        if B == 1:  # one query: every group has one, and the order is by key alone
            order = np.argsort(sk, kind="stable")
            sk, idx = sk[order], idx[order]
            cut = np.flatnonzero(np.diff(sk)) + 1
            starts = [0, *cut.tolist()]
            ends = [*starts[1:], len(sk)]
            nq = [1] * len(starts)
        else:
            order = np.lexsort((qi, sk))
            sk, qi, idx = sk[order], qi[order], idx[order]
            cut = np.flatnonzero(np.diff(sk)) + 1
            starts = np.concatenate(([0], cut)).tolist()
            ends = np.concatenate((cut, [len(sk)])).tolist()
            new_q = np.ones(len(qi), bool)
            new_q[1:] = (qi[1:] != qi[:-1]) | (sk[1:] != sk[:-1])
            nq = np.add.reduceat(new_q, starts).tolist()
        for a, b, n_q in zip(starts, ends, nq, strict=True):
            slot, k = divmod(int(sk[a]), 3 * G)
            groups[slot].append((k, n_q, idx[a:b]))
        return local, groups
