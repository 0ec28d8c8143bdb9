"""Capacity and eviction for the KV block directory: a mixin of
:class:`~simulator.kvcache.BlockDirectory`, whose state and placement live there.

A GPU's HBM holds the blocks it owns and the copies it keeps. When a placement, a promotion or a
new copy would overflow it, the least recently used copies go first, then owned blocks (unpinned
first) are demoted to their machine's host tier — which drops its least recently used blocks when
full — down to a low watermark. The candidates come from :class:`~simulator.blocklists.BlockLists`
(a GPU's copies, its HBM blocks, a host's blocks), never from a scan of every block; every order
breaks ties by block index.
"""

from __future__ import annotations

import numpy as np

from simulator.tiers import DROPPED, HBM, HOST, UNPLACED

#: When HBM is full, evictions free ``capacity // WATERMARK_DIVISOR`` blocks beyond what is
#: needed (a low watermark), so the LRU sort runs once per many insertions.
WATERMARK_DIVISOR = 32


def least_recent(blocks: np.ndarray, used_at: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` blocks of ``blocks`` used least recently (``used_at`` [s] per block; ties
    by block index), in that order — a partition, then a sort of the few that can be among them,
    not a sort of all."""
    if count <= 0:
        return blocks[:0]
    if count < len(blocks):
        cut = used_at <= np.partition(used_at, count - 1)[count - 1]  # every tie at the edge
        blocks, used_at = blocks[cut], used_at[cut]
    return blocks[np.lexsort((blocks, used_at))[:count]]


class Eviction:
    """Capacity and eviction of :class:`~simulator.kvcache.BlockDirectory` (a mixin)."""

    def _has_copy(self, gpu: int):
        rows = self.copy_bits[gpu]
        return lambda b: rows[b].any(axis=1)

    def _in_hbm_of(self, gpu: int):
        return lambda b: (self.holders(b) == gpu).any(axis=1) & (self.tier[b] == HBM)

    def _on_host_of(self, machine: int):
        return lambda b: (self.tier[b] == HOST) & (
            self.machine_of[np.maximum(self.base[b], 0)] == machine)

    def _drop_copies(self, gpu: int, idx: np.ndarray) -> None:
        had = self.copy_bits[gpu, idx].any(axis=1)
        self.copies[gpu] -= int(had.sum())
        self.copy_bits[gpu, idx] = 0

    def _slack(self, gpu: int) -> int:
        """Extra blocks freed per eviction round (low watermark: 1/32 of the capacity)."""
        return int(self.capacity[gpu]) // WATERMARK_DIVISOR

    def _make_room(self, gpu: int, extra: int, now: float) -> int:
        """Free HBM on ``gpu`` until ``extra`` more blocks fit (down to the low watermark);
        returns how many fit."""
        over = int(self.owned[gpu] + self.copies[gpu] + extra - self.capacity[gpu])
        if over <= 0:
            return extra
        target = over + self._slack(gpu)
        target -= self._evict_copies(gpu, target)
        if target > 0:
            target -= self._demote(gpu, target)
        over = int(self.owned[gpu] + self.copies[gpu] + extra - self.capacity[gpu])
        return extra - max(over, 0)

    def _evict_copies(self, gpu: int, count: int, keep: np.ndarray | None = None) -> int:
        """Evict up to ``count`` of ``gpu``'s least recently used copies, never those of the
        blocks in ``keep`` (ascending); returns how many were evicted."""
        held = self.copy_lists.live(gpu, self._has_copy(gpu))
        if keep is not None and len(keep):  # held ∖ keep, by binary search in keep
            at = np.minimum(np.searchsorted(keep, held), len(keep) - 1)
            held = held[keep[at] != held]
        take = min(count, len(held))
        if take <= 0:
            return 0
        victims = least_recent(held, self.copy_used_at[gpu, held], take)
        self.copy_bits[gpu, victims] = 0
        self.copies[gpu] -= take
        self.copies_evicted += take
        return take

    def _demote(self, gpu: int, count: int) -> int:
        mine = self.hbm_lists.live(gpu, self._in_hbm_of(gpu))
        if len(mine) == 0:
            return 0
        take = min(count, len(mine))
        # unpinned blocks first, then least recently used, then lowest index
        order = np.lexsort((mine, self.used_at[mine], self.pins[mine] > 0))
        victims = mine[order[:take]]
        holders = self.holders(victims)
        for j in range(self.k):
            np.subtract.at(self.owned, holders[:, j], 1)
        machine = self.machine_of[self.base[victims]]
        for m in np.unique(machine).tolist():
            vm = victims[machine == m]
            room = self._host_room(int(m), len(vm))
            self.tier[vm[:room]] = HOST
            self.host_lists.add(int(m), vm[:room], self._on_host_of(int(m)))
            self.host_used[m] += room
            self.tier[vm[room:]] = DROPPED
            self.base[vm[room:]] = UNPLACED
            self.demoted += room
            self.dropped += len(vm) - room
        return take

    def _host_room(self, machine: int, want: int) -> int:
        cap = self.cfg.host_capacity_blocks
        free = cap - int(self.host_used[machine])
        if free >= want:
            return want
        # drop the host's least recently used blocks to make room
        on_host = self.host_lists.live(machine, self._on_host_of(machine))
        need = min(want - max(free, 0), len(on_host))
        if need > 0:
            v = least_recent(on_host, self.used_at[on_host], need)
            self.tier[v] = DROPPED
            self.base[v] = UNPLACED
            self.host_used[machine] -= need
            self.dropped += need
        return min(want, cap - int(self.host_used[machine]))

    def add_copies(self, gpu: int, idx: np.ndarray, slot: int, now: float) -> int:
        """Keep layer slot ``slot`` of blocks ``idx`` on ``gpu`` (fetched or recomputed), evicting
        LRU copies to make room; returns the number of new block copies made."""
        idx = np.sort(np.asarray(idx, np.int64).ravel())  # np.unique, with less overhead
        if len(idx) > 1 and np.count_nonzero(dup := idx[1:] == idx[:-1]):
            idx = idx[np.concatenate(([True], ~dup))]
        if self.k == 1:  # one holder per block: its base
            held = (self.base[idx] == gpu) & (self.tier[idx] == HBM)
        else:
            held = (self.holders(idx) == gpu).any(axis=1) & (self.tier[idx] == HBM)
        if np.count_nonzero(held):
            idx = idx[~held]  # a GPU needs no copy of a block it holds itself
        if len(idx) == 0:
            return 0
        w, b = divmod(slot, 64)
        rows = self.copy_bits[gpu]  # (blocks, words), a view
        new_block = rows[:, 0][idx] == 0 if self.words == 1 else ~rows[idx].any(axis=1)
        self.copy_used_at[gpu][idx] = now
        n_new = int(np.count_nonzero(new_block))
        fit = n_new
        if n_new:
            fit = self._make_room_for_copies(gpu, n_new, idx)
        # every block of idx, or those already copied and the first `fit` new ones
        keep = idx if fit == n_new else np.concatenate([idx[~new_block], idx[new_block][:fit]])
        col = rows[:, w]
        col[keep] |= np.uint64(1 << b)
        if fit:
            self.copy_lists.add(gpu, idx[new_block][:fit], self._has_copy(gpu))
        self.copies[gpu] += fit
        return fit

    def _make_room_for_copies(self, gpu: int, want: int, keep: np.ndarray) -> int:
        """Evict LRU copies (never those in ``keep``, ascending) until ``want`` new ones fit,
        down to the low watermark; returns how many fit."""
        free = int(self.capacity[gpu] - self.owned[gpu] - self.copies[gpu])
        if free >= want:
            return want
        self._evict_copies(gpu, want - max(free, 0) + self._slack(gpu), keep)
        return max(0, min(want, int(self.capacity[gpu] - self.owned[gpu] - self.copies[gpu])))

    def promote(self, idx: np.ndarray, now: float) -> None:
        """Bring host-tier blocks back to HBM on their holders (after a reader paid PCIe)."""
        idx = np.unique(np.asarray(idx, np.int64))  # a repeated block is promoted once
        idx = idx[self.tier[idx] == HOST]
        if len(idx) == 0:
            return
        machine = self.machine_of[self.base[idx]]
        np.subtract.at(self.host_used, machine, 1)
        self.tier[idx] = HBM
        self.used_at[idx] = now
        holders = self.holders(idx)
        for j in range(self.k):
            np.add.at(self.owned, holders[:, j], 1)
        gpus = np.unique(holders).tolist()
        for gpu in gpus:
            self.hbm_lists.add(gpu, idx[(holders == gpu).any(axis=1)], self._in_hbm_of(gpu))
        for gpu in gpus:
            self._make_room(gpu, 0, now)
