"""Capacity and eviction for the KV block directory: a part that
:class:`~simulator.kvcache.directory.BlockDirectory` holds; its state and placement live there.

A GPU's HBM holds the blocks it owns and the copies it keeps. When a placement or a new copy
would overflow it, the least recently used of its copies and of the owned blocks no running
request pins go first, in one order — as vLLM's prefix cache frees the least recently used of all
its unreferenced blocks, whoever computed them: a copy is evicted (its owner still holds the
block), an owned block is demoted to its machine's host tier (which drops its least recently used
blocks when full). Only then are pinned blocks demoted (a placement only; a new copy
never displaces a block a running request holds). All of it down to a low watermark. The
candidates come from :class:`~simulator.kvcache.blocklists.BlockLists` (a GPU's copies, its HBM
blocks, a host's blocks), never from a scan of every block; a full host's least recently used
blocks come off a heap of its blocks' last uses (:mod:`simulator.kvcache.host_order`), not from
a scan of the host. Every order breaks ties by block index, a copy before an owned block of the
same last use."""

from __future__ import annotations

import numpy as np

from simulator.kvcache.tiers import DROPPED, HOST, UNPLACED

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
    """Capacity and eviction of a :class:`~simulator.kvcache.directory.BlockDirectory`: the part
    the directory holds to make room in a GPU's HBM or a machine's host tier (its state is the
    directory's; see the module docstring)."""

    __slots__ = ("d",)

    def __init__(self, directory) -> None:
        self.d = directory

    def slack(self, gpu: int) -> int:
        """Extra blocks freed per eviction round (low watermark: 1/32 of the capacity)."""
        return int(self.d.capacity[gpu]) // WATERMARK_DIVISOR

    def make_room(self, gpu: int, extra: int, now: float) -> int:
        """Free HBM on ``gpu`` until ``extra`` more blocks fit (down to the low watermark);
        returns how many fit."""
        d = self.d
        over = int(d.owned[gpu] + d.copies[gpu] + extra - d.capacity[gpu])
        if over <= 0:
            return extra
        target = over + self.slack(gpu)
        target -= self.evict_lru(gpu, target)
        if target > 0:  # only pinned blocks are left
            target -= self.demote(gpu, target)
        over = int(d.owned[gpu] + d.copies[gpu] + extra - d.capacity[gpu])
        return extra - max(over, 0)

    def evict_lru(self, gpu: int, count: int, keep: np.ndarray | None = None) -> int:
        """Free up to ``count`` blocks of ``gpu``'s HBM: the least recently used of its copies
        (never those of the blocks in ``keep``, ascending) and of its owned blocks no request
        pins, in one order (ties: a copy first, then the lower block index); copies are evicted,
        owned blocks demoted. Returns how many were freed."""
        d = self.d
        held = d.copy_lists.live(gpu, d.has_copy_of(gpu))
        if keep is not None and len(keep) and len(held):  # held ∖ keep, by binary search
            at = np.minimum(np.searchsorted(keep, held), len(keep) - 1)
            held = held[keep[at] != held]
        mine = d.hbm_lists.live(gpu, d.in_hbm_of(gpu))
        mine = mine[d.pins[mine] <= 0]
        # one LRU order over both: an owned block's key is offset past every block index, so
        # least_recent's tie by key puts a copy before an owned block of the same last use
        key = np.concatenate((held, mine + d.n))
        used = np.concatenate((d.copy_used_at(gpu, held), d.used_at[mine]))
        chosen = least_recent(key, used, min(count, len(key)))
        copies, owned = chosen[chosen < d.n], chosen[chosen >= d.n] - d.n
        if len(copies):
            d.losses[gpu] += 1
            d.copy_store.clear(gpu, copies)
            d.copies[gpu] -= len(copies)
            d.copies_evicted += len(copies)
        if len(owned):
            self._demote(gpu, owned)
        return len(chosen)

    def demote(self, gpu: int, count: int) -> int:
        """Move up to ``count`` of ``gpu``'s HBM blocks (unpinned, then least recently used
        first) to their machine's host tier, dropping what it cannot take; returns how many."""
        d = self.d
        mine = d.hbm_lists.live(gpu, d.in_hbm_of(gpu))
        if len(mine) == 0:
            return 0
        take = min(count, len(mine))
        # unpinned blocks first, then least recently used, then lowest index
        order = np.lexsort((mine, d.used_at[mine], d.pins[mine] > 0))
        self._demote(gpu, mine[order[:take]])
        return take

    def _demote(self, gpu: int, victims: np.ndarray) -> None:
        """Move ``victims`` (blocks in ``gpu``'s HBM) to their machine's host tier, dropping
        what it cannot take."""
        d = self.d
        holders = d.holders(victims)
        d.losses[np.unique(holders)] += 1
        for j in range(d.k):
            np.subtract.at(d.owned, holders[:, j], 1)
        machine = d.machine_of[d.base[victims]]
        for m in np.unique(machine).tolist():
            vm = victims[machine == m]
            room = self.host_room(int(m), len(vm))
            if room and d.on_demote is not None:
                d.on_demote(gpu, room, int(m))
            d.tier[vm[:room]] = HOST
            d.host_lists.add(int(m), vm[:room], d.on_host_of(int(m)))
            if d.ordered:
                d.host_order.add(int(m), vm[:room], d.used_at)
            d.host_used[m] += room
            d.tier[vm[room:]] = DROPPED
            d.base[vm[room:]] = UNPLACED
            d.demoted += room
            d.dropped += len(vm) - room

    def host_room(self, machine: int, want: int) -> int:
        """Room for ``want`` blocks in ``machine``'s host tier, dropping its least recently
        used blocks if needed; returns how many fit."""
        d = self.d
        cap = d.cfg.host_capacity_blocks
        free = cap - int(d.host_used[machine])
        if free >= want:
            return want
        # drop the host's least recently used blocks to make room
        v = self._host_least_recent(machine, want - max(free, 0))
        need = len(v)
        if need > 0:
            d.tier[v] = DROPPED
            d.base[v] = UNPLACED
            d.host_used[machine] -= need
            d.dropped += need
        return min(want, cap - int(d.host_used[machine]))

    def _host_least_recent(self, machine: int, count: int) -> np.ndarray:
        """Up to ``count`` of ``machine``'s host-tier blocks, least recently used first (ties:
        lower index): from the machine's LRU heap while last uses are written in time order
        (:mod:`simulator.kvcache.host_order`), else by a scan of its blocks."""
        d = self.d
        if not d.ordered:
            on_host = d.host_lists.live(machine, d.on_host_of(machine))
            return least_recent(on_host, d.used_at[on_host], min(count, len(on_host)))
        order = d.host_order
        if order.oversized(machine, int(d.host_used[machine])):
            order.rebuild(machine, d.host_lists.live(machine, d.on_host_of(machine)), d.used_at)
        return np.array(order.least_recent(machine, count, d.used_at, d.on_host_of(machine)),
                        np.int64)

    def make_room_for_copies(self, gpu: int, want: int, keep: np.ndarray) -> int:
        """Free HBM (:meth:`evict_lru`: copies, never those in ``keep``, ascending, and unpinned
        owned blocks) until ``want`` new copies fit, down to the low watermark; returns how many
        fit."""
        d = self.d
        free = int(d.capacity[gpu] - d.owned[gpu] - d.copies[gpu])
        if free >= want:
            return want
        self.evict_lru(gpu, want - max(free, 0) + self.slack(gpu), keep)
        return max(0, min(want, int(d.capacity[gpu] - d.owned[gpu] - d.copies[gpu])))
