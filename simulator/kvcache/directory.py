"""The KV block directory: which GPU (and tier) holds each block, placement, capacity, eviction.

A *block* is ``block_tokens`` tokens of KV for every layer (``block_bytes`` in all). Blocks are
known by an integer *key* (a trace's hash id split into engine blocks, or a run-owned counter for
generated tokens); the directory interns keys into dense indices so the decode loop can look up
owners of a whole batch's selections with numpy fancy indexing.

Placement (which GPUs hold a newly prefilled prompt block: ``first_writer``, ``hash``,
``range``, ``repo_affinity``, ``replicate:K``) is :mod:`simulator.kvcache.placement`'s; the
directory records its answer and makes room for it.

Capacity: each GPU holds at most ``capacity_blocks`` blocks in HBM (HBM − weights − reserve,
computed by :func:`capacity_blocks`), counting the blocks it owns and the copies it keeps. Copies
(fetched or recomputed KV slices of another owner's block) are kept per (block, simulated layer)
in a :class:`~simulator.kvcache.copystore.CopyStore` (dense while small, paged on large
clusters, where a GPU copies few of all blocks). When HBM overflows, the GPU's copies and the
owned blocks no running request pins go in one least-recently-used order, as a prefix cache
frees its unreferenced blocks (:mod:`simulator.kvcache.eviction`): a copy is evicted, an owned
block is demoted to its machine's host-DRAM tier (reached over PCIe; a reader pays that path);
when the host tier is full or disabled the block is dropped and must be recomputed by whoever
needs it next. Owned blocks of requests still decoding (``pin``) are demoted only after every
unpinned one and every copy, and never to make room for a copy.
Evictions go down to a low watermark (1/32 of the capacity below full), as real caches do, so
the LRU sort is amortized over many insertions; the candidates (a GPU's copies, its HBM blocks, a
host's blocks) come from lists kept as blocks enter those sets
(:class:`~simulator.kvcache.blocklists.BlockLists`), not from a scan of every block.

Every choice is deterministic: ties break by index, never by set or dict order.
:meth:`BlockDirectory.check` verifies the bookkeeping by a scan
(:mod:`simulator.kvcache.invariants`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator.kvcache.blocklists import BlockLists
from simulator.kvcache.copy_kernels import keep_copies
from simulator.kvcache.copystore import CopyStore
from simulator.kvcache.eviction import Eviction
from simulator.kvcache.host_order import HostOrder
from simulator.kvcache.invariants import check_directory
from simulator.kvcache.placement import first_holders, stable_hash
from simulator.kvcache.tiers import DROPPED, HBM, HOST, UNPLACED

__all__ = ["BlockDirectory", "DirectoryConfig", "capacity_blocks", "stable_hash"]


def capacity_blocks(
    hbm_bytes: float, weights_bytes: float, reserve_fraction: float, block_bytes: float
) -> int:
    """Blocks one GPU can hold: ⌊(HBM − weights − reserve_fraction·HBM) / block_bytes⌋ (≥ 0)."""
    free = hbm_bytes * (1.0 - reserve_fraction) - weights_bytes
    return max(0, int(free // block_bytes))


@dataclass(frozen=True)
class DirectoryConfig:
    """What the directory needs to know (a component gets only its part of the scenario).

    Attributes:
        scheme: placement scheme name (see the module docstring).
        replicas: K for ``replicate`` (1 otherwise).
        capacity_blocks: HBM blocks per GPU (one value per GPU).
        host_capacity_blocks: host-DRAM blocks per machine (0 disables the tier).
        machine_of: machine index of each GPU.
        distance: GPU × GPU path latency [s] (replica choice); zeros if unused.
        layer_slots: simulated layers a copy is tracked for.
    """

    scheme: str
    replicas: int
    capacity_blocks: tuple[int, ...]
    host_capacity_blocks: int
    machine_of: tuple[int, ...]
    distance: tuple[tuple[float, ...], ...]
    layer_slots: int


class BlockDirectory:
    """Block → holder GPUs and tier; per-GPU usage; LRU copies; host tier. See module docstring."""

    def __init__(self, config: DirectoryConfig) -> None:
        self.cfg = config
        self.n_gpus = len(config.capacity_blocks)
        self.capacity = np.asarray(config.capacity_blocks, dtype=np.int64)
        self.machine_of = np.asarray(config.machine_of, dtype=np.int64)
        self.n_machines = int(self.machine_of.max()) + 1 if self.n_gpus else 0
        self.dist = np.asarray(config.distance, dtype=float).reshape(self.n_gpus, self.n_gpus)
        self.k = max(1, min(config.replicas, self.n_gpus)) if config.scheme == "replicate" else 1
        self.words = max(1, (config.layer_slots + 63) // 64)
        self._index: dict[int, int] = {}
        self.n = 0
        cap = 1024
        self.keys = np.zeros(cap, np.int64)
        self.base = np.full(cap, UNPLACED, np.int64)  # first holder (GPU index)
        self.tier = np.full(cap, DROPPED, np.int8)
        self.used_at = np.zeros(cap, float)  # last access of the owned block
        self.pins = np.zeros(cap, np.int32)  # active requests using the block
        # per GPU, its copies' layer-slot bits and last accesses (paged on large clusters)
        self.copy_store = CopyStore(self.n_gpus, self.words, cap)
        # found fast, not by scanning every block: per GPU its copies and the HBM blocks it
        # holds; per machine its host-tier blocks
        self.copy_lists = BlockLists(self.n_gpus)
        self.hbm_lists = BlockLists(self.n_gpus)
        self.host_lists = BlockLists(self.n_machines)
        self.owned = np.zeros(self.n_gpus, np.int64)  # HBM blocks held as owner/replica
        self.copies = np.zeros(self.n_gpus, np.int64)  # blocks with ≥ 1 copied layer slice
        self.host_used = np.zeros(self.n_machines, np.int64)
        # per machine, its host-tier blocks in LRU order (host_order.py): valid while every last
        # use is written in time order (``ordered``; ``latest_use`` the latest written [s])
        self.host_order = HostOrder(self.n_machines)
        self.ordered = True
        self.latest_use = -np.inf
        self.demoted = 0
        self.dropped = 0
        self.copies_evicted = 0
        #: per GPU, bumped whenever it loses a block from its HBM (a copy evicted, an owned block
        #: demoted or dropped): a context found wholly local stays so while this is unchanged
        #: and the context does not grow (:meth:`StepData.select_split`)
        self.losses = np.zeros(self.n_gpus, np.int64)
        #: per GPU, how many blocks it has gained in its HBM or had a copied layer slot added to
        #: (an upper bound on the blocks that became local to it in every slot): a context found
        #: with m blocks not local stays not local until this grows by m
        self.gains = np.zeros(self.n_gpus, np.int64)
        self.eviction = Eviction(self)  # makes room: LRU copies, then demotions, host drops
        # called as on_demote(gpu, blocks, machine) when ``gpu`` moves blocks to ``machine``'s
        # host tier (the engine charges the device→host copy); None: nothing to charge. The
        # machine is the blocks' first holder's (``base``): another machine's than ``gpu``'s
        # only for a replica there
        self.on_demote = None

    # -- keys --------------------------------------------------------------------------------

    def _grow(self, need: int) -> None:
        cap = len(self.keys)
        if need <= cap:
            return
        new = max(need, 2 * cap)

        def grow(a: np.ndarray, fill, axis: int = 0) -> np.ndarray:
            shape = list(a.shape)
            shape[axis] = new - cap
            return np.concatenate([a, np.full(shape, fill, a.dtype)], axis=axis)

        self.keys = grow(self.keys, 0)
        self.base = grow(self.base, UNPLACED)
        self.tier = grow(self.tier, DROPPED)
        self.used_at = grow(self.used_at, 0.0)
        self.pins = grow(self.pins, 0)
        self.copy_store.grow(new)

    def intern(self, keys: Sequence[int] | np.ndarray) -> np.ndarray:
        """Dense indices for block keys; unseen keys get new (unplaced) indices, in order."""
        keys = np.asarray(keys, dtype=np.int64).tolist()
        index = self._index
        got = list(map(index.get, keys))  # one C-level pass; None where unseen
        if None in got:
            fresh = []
            for i, j in enumerate(got):
                if j is None:
                    key = keys[i]
                    j = index.get(key)  # seen earlier in this call
                    if j is None:
                        j = index[key] = self.n + len(fresh)
                        fresh.append(key)
                    got[i] = j
            self._grow(self.n + len(fresh))
            self.keys[self.n : self.n + len(fresh)] = fresh
            self.n += len(fresh)
        return np.array(got, dtype=np.int64)

    # -- queries -----------------------------------------------------------------------------

    def find(self, keys: Sequence[int] | np.ndarray) -> np.ndarray:
        """Dense indices of block keys already interned, ``-1`` where unseen (interns none)."""
        get = self._index.get
        keys = np.asarray(keys, dtype=np.int64).tolist()
        return np.fromiter((get(k, -1) for k in keys), np.int64, len(keys))

    def known(self, idx: np.ndarray) -> np.ndarray:
        """True where a block is held somewhere (HBM or host) and so needs no recompute."""
        return self.tier[idx] != DROPPED

    def holders(self, idx: np.ndarray) -> np.ndarray:
        """All holder GPUs of each block, shape (len(idx), K); −1 for unplaced blocks."""
        base = self.base[idx]
        h = (base[:, None] + np.arange(self.k)) % max(self.n_gpus, 1)
        h[base < 0] = UNPLACED
        return h

    def nearest(self, idx: np.ndarray, src: int) -> np.ndarray:
        """The holder GPU a reader on ``src`` uses for each block (−1 if unplaced); for a block
        in a host tier its first holder (``base``), whose machine's host holds it — no replica
        holds it in HBM to be near."""
        base = self.base[idx]
        if self.k == 1:
            return base.copy()
        h = self.holders(idx)
        d = self.dist[src][np.maximum(h, 0)] + np.arange(self.k) * 1e-30
        d[h == src] = -1.0
        pick = h[np.arange(len(idx)), np.argmin(d, axis=1)]
        away = self.tier[idx] != HBM  # on a host (or dropped: unplaced)
        pick[away] = base[away]
        return pick

    def has_copy(self, gpu: int, idx: np.ndarray, slot: int) -> np.ndarray:
        """True where ``gpu`` keeps a copy of layer slot ``slot`` of each block."""
        w, b = divmod(slot, 64)
        return ((self.copy_store.word(gpu, idx, w) >> np.uint64(b)) & np.uint64(1)).astype(bool)

    def copy_used_at(self, gpu: int, idx: np.ndarray) -> np.ndarray:
        """Last access [s] of ``gpu``'s copy of each block (any value where it keeps none)."""
        return self.copy_store.last_used(gpu, idx)

    def hbm_used(self) -> np.ndarray:
        """HBM blocks in use per GPU (owned + copies)."""
        return self.owned + self.copies

    def has_copy_of(self, gpu: int):
        """A predicate: which of some blocks ``gpu`` keeps a copy of (any layer slot)."""
        store = self.copy_store
        return lambda b: store.any(gpu, b)

    def in_hbm_of(self, gpu: int):
        """A predicate: which of some blocks ``gpu`` holds in HBM (as owner or replica)."""
        return lambda b: (self.holders(b) == gpu).any(axis=1) & (self.tier[b] == HBM)

    def on_host_of(self, machine: int):
        """A predicate: which of some blocks sit in ``machine``'s host tier."""
        return lambda b: (self.tier[b] == HOST) & (
            self.machine_of[np.maximum(self.base[b], 0)] == machine)

    def _drop_copies(self, gpu: int, idx: np.ndarray) -> None:
        had = self.copy_store.any(gpu, idx)
        self.copies[gpu] -= int(had.sum())
        self.copy_store.clear(gpu, idx)

    # -- access bookkeeping --------------------------------------------------------------------

    def touch(self, gpu: int, idx: np.ndarray, now: float) -> None:
        """Record an access at ``now`` [s] (LRU) to owned blocks and to ``gpu``'s copies."""
        self._written_at(now)
        self.used_at[idx] = now
        self.copy_store.touch(gpu, idx, now)

    def _written_at(self, now: float) -> None:
        """Last uses are written at ``now`` [s]: out of time order, the host tiers' LRU heaps
        no longer hold (:mod:`simulator.kvcache.host_order`) and the scan takes over."""
        if now < self.latest_use:
            self.ordered = False
        else:
            self.latest_use = now

    def pin(self, idx: np.ndarray) -> None:
        """A request starts using these blocks: they may not be demoted until unpinned."""
        np.add.at(self.pins, idx, 1)

    def unpin(self, idx: np.ndarray) -> None:
        """A request stops using these blocks."""
        np.add.at(self.pins, idx, -1)

    # -- placement ---------------------------------------------------------------------------

    def place(
        self, idx: np.ndarray, writer: int, now: float, repo: int = -1,
        positions: np.ndarray | None = None, n_context: int | None = None,
        scheme: str | None = None,
    ) -> None:
        """Place newly prefilled blocks written by GPU ``writer`` at ``now``.

        Blocks already held (HBM or host) and repeats are skipped. ``positions``/``n_context``
        locate the blocks in their prompt (``range``); ``scheme`` overrides the configured one
        (the engine keeps generated tokens' blocks with their writer). Makes room as the module
        docstring says (one LRU order over copies and unpinned owned blocks, then pinned ones)."""
        idx = np.asarray(idx, np.int64)
        fresh = self.tier[idx] == DROPPED
        idx = idx[fresh]
        if positions is not None:
            positions = np.asarray(positions, np.int64)[fresh]
        idx, first = np.unique(idx, return_index=True)
        order = np.argsort(first, kind="stable")
        idx = idx[order]
        if positions is not None:
            positions = positions[first[order]]
        if len(idx) == 0:
            return
        scheme = self.cfg.scheme if scheme is None else scheme
        self.base[idx] = first_holders(scheme, self.keys, idx, writer, self.n_gpus, repo,
                                       positions, n_context)
        self.tier[idx] = HBM
        self._written_at(now)
        self.used_at[idx] = now
        # a GPU that now owns a block no longer needs a copy of it
        holders = self.holders(idx)
        for j in range(self.k):
            for gpu in np.unique(holders[:, j]).tolist():
                mine = idx[holders[:, j] == gpu]
                self._drop_copies(gpu, mine)
                self.owned[gpu] += len(mine)
                self.gains[gpu] += len(mine)
                self.hbm_lists.add(gpu, mine, self.in_hbm_of(gpu))
        for gpu in np.unique(holders).tolist():
            self.eviction.make_room(int(gpu), 0, now)

    def add_copies(self, gpu: int, idx: np.ndarray, slot: int, now: float) -> int:
        """Keep layer slot ``slot`` of blocks ``idx`` on ``gpu`` (fetched or recomputed), making
        room by evicting its least recently used copies and demoting unpinned owned blocks (one
        order); returns the number of new block copies made."""
        return self.add_copies_kept(gpu, idx, slot, now)[0]

    def add_copies_kept(self, gpu: int, idx: np.ndarray, slot: int,
                        now: float) -> tuple[int, int]:
        """:meth:`add_copies`, and how many of the distinct blocks of ``idx`` ``gpu`` then keeps
        a copy of in ``slot`` (what :meth:`has_copy` counts after the call, without reading
        them again): ``(new block copies, distinct blocks with the slot's copy)``."""
        idx = np.asarray(idx, np.int64).ravel()
        store = self.copy_store
        if self.k == 1:  # the common case, no room to make: compiled (copy_kernels.py)
            listed, n_listed = self.copy_lists.tail(gpu)
            kept, made = keep_copies(idx, gpu, slot, now, self.base, self.tier, store.offset,
                                     store.bits, store.used_at, self.capacity, self.owned,
                                     self.copies, self.gains, listed, n_listed)
            if kept >= 0:
                if made:
                    self.copy_lists.appended(gpu, made)
                return made, kept
        w, b = divmod(slot, 64)
        idx = np.sort(idx)  # np.unique, with less overhead
        if len(idx) > 1 and np.count_nonzero(dup := idx[1:] == idx[:-1]):
            idx = idx[np.concatenate(([True], ~dup))]
        if self.k == 1:  # one holder per block: its base
            held = (self.base[idx] == gpu) & (self.tier[idx] == HBM)
        else:
            held = (self.holders(idx) == gpu).any(axis=1) & (self.tier[idx] == HBM)
        if np.count_nonzero(held):
            idx = idx[~held]  # a GPU needs no copy of a block it holds itself, and has none
        if len(idx) == 0:
            return 0, 0
        r = store.alloc(gpu, idx)  # pool rows of gpu's entries, in idx's order
        new_block = ~store.held(r)
        store.used_at[r] = now
        n_new = int(np.count_nonzero(new_block))
        fit = n_new
        if n_new:
            fit = self.eviction.make_room_for_copies(gpu, n_new, idx)
        # every block of idx, or those already copied and the first `fit` new ones
        keep = r if fit == n_new else np.concatenate([r[~new_block], r[new_block][:fit]])
        col = store.bits[:, w]
        col[keep] |= np.uint64(1 << b)
        self.gains[gpu] += len(keep)
        if fit:
            self.copy_lists.add(gpu, idx[new_block][:fit], self.has_copy_of(gpu))
        self.copies[gpu] += fit
        # the slot's bit is now set on exactly the kept rows (eviction spares idx's copies;
        # a new block not kept had no bit at all; a held block carries none: check())
        return fit, len(keep)

    # -- invariants ----------------------------------------------------------------------------

    def check(self) -> None:
        """Raise AssertionError if any capacity or bookkeeping invariant is broken
        (:func:`~simulator.kvcache.invariants.check_directory`)."""
        check_directory(self)
