"""A machine's host-tier blocks in least-recently-used order, without a scan per drop.

When a full host tier takes demoted blocks it drops its least recently used ones
(:meth:`~simulator.kvcache.eviction.Eviction.host_room`). Found by a scan, that costs time in
proportion to every block on the host — hundreds of thousands late in a whole-trace replay —
at every demotion into a full host: late in the whole Mooncake trace under ``fetch`` the scan
(the host's live blocks, then a partition of their last uses) took 14 % of the run (py-spy,
stop 60). :class:`HostOrder` keeps, per machine, a heap of ``(last use, block)`` entries:

- a block entering the host pushes an entry with its last use then;
- a block's last use only grows (every write is the clock's ``now``), so each block on the host
  has an entry whose key is at most its own — the heap's least entry is at most every block's
  key;
- :meth:`HostOrder.least_recent` pops: an entry of a block no longer on that host (dropped)
  is discarded; one whose block was used since goes back with its last use; one that is up to
  date is the least recently used block on the host (its key is the least of all the
  entries, which are at most the blocks' keys). Ties go by block index, as the scan's
  ``lexsort`` breaks them — the same blocks, in the same order.

The precondition is the clock's: last uses written out of time order (a directory driven by
hand, as some tests do) void it, and the directory falls back to the scan for good
(``BlockDirectory.ordered``). Entries of blocks that left the host are dropped as they surface;
a heap grown past twice its host's blocks is rebuilt from the host's list.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heapify, heappop, heappush, heapreplace

import numpy as np

#: A heap is rebuilt once it holds more than this many times its host's blocks (+ this slack).
REBUILD_FACTOR = 2
REBUILD_SLACK = 1024


class HostOrder:
    """Per machine, a heap of ``(last use [s], block)`` covering its host-tier blocks (see the
    module docstring)."""

    __slots__ = ("heaps",)

    def __init__(self, n_machines: int) -> None:
        self.heaps: list[list[tuple[float, int]]] = [[] for _ in range(n_machines)]

    def add(self, machine: int, blocks: np.ndarray, used_at: np.ndarray) -> None:
        """``blocks`` entered ``machine``'s host tier (``used_at``: every block's last use)."""
        heap = self.heaps[machine]
        for u, b in zip(used_at[blocks].tolist(), blocks.tolist(), strict=True):
            heappush(heap, (u, b))

    def rebuild(self, machine: int, blocks: np.ndarray, used_at: np.ndarray) -> None:
        """Entries for exactly ``blocks``, ``machine``'s host-tier blocks now."""
        heap = list(zip(used_at[blocks].tolist(), blocks.tolist(), strict=True))
        heapify(heap)
        self.heaps[machine] = heap

    def oversized(self, machine: int, on_host: int) -> bool:
        """Whether ``machine``'s heap holds too many stale entries for ``on_host`` blocks."""
        return len(self.heaps[machine]) > REBUILD_FACTOR * on_host + REBUILD_SLACK

    def least_recent(self, machine: int, count: int, used_at: np.ndarray,
                     on_host: Callable[[int], bool]) -> list[int]:
        """Up to ``count`` of ``machine``'s host-tier blocks, least recently used first (ties:
        lower index), taken off the heap; fewer only if the host holds fewer. ``on_host(b)``:
        whether block ``b`` is on this host now."""
        heap = self.heaps[machine]
        out: list[int] = []
        taken: set[int] = set()
        while len(out) < count and heap:
            u, b = heap[0]
            if b in taken or not on_host(b):  # a second entry, or the block left the host
                heappop(heap)
                continue
            now = float(used_at[b])
            if now != u:  # used since it was entered: its entry moves to its last use
                heapreplace(heap, (now, b))
                continue
            heappop(heap)
            out.append(b)
            taken.add(b)
        return out
