"""Which blocks a GPU (or a machine's host tier) holds, without scanning the whole directory.

The directory's arrays (:class:`~simulator.kvcache.BlockDirectory`, one entry per block ever
seen) are the truth; finding, say, the blocks with a copy on a GPU by scanning them costs time in
proportion to every block ever seen — millions late in a whole-trace replay, at every eviction.
:class:`BlockLists` keeps, per key (a GPU, a machine), a list that contains at least every block
in the set: a block is appended when it enters the set; blocks that leave it stay listed until
the next :meth:`BlockLists.live`, which keeps the listed blocks a predicate still accepts (each
once). The answer is the same ascending array the scan gives, as long as every way into the set
appends.

After :meth:`BlockLists.live` a list is ascending and distinct, and blocks that enter later are
appended behind; the next call sorts only those (few) and merges the two ascending runs (a stable
sort, timsort, merges runs in linear time), instead of sorting the whole list again — a machine's
host tier lists hundreds of thousands of blocks late in a whole-trace replay, and every demotion
into a full host asks for them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: ``is_live(blocks) -> bool mask``: which of ``blocks`` are in the set now.
Predicate = Callable[[np.ndarray], np.ndarray]


class BlockLists:
    """Per key, a superset of the blocks in a set (see module docstring)."""

    def __init__(self, n_keys: int) -> None:
        self._buf = [np.zeros(256, np.int64) for _ in range(n_keys)]
        self._n = [0] * n_keys
        self._sorted = [0] * n_keys  # leading entries that are ascending and distinct

    def add(self, key: int, blocks: np.ndarray, is_live: Predicate) -> None:
        """``blocks`` just entered ``key``'s set (``is_live`` prunes the list when it is full)."""
        n, k = self._n[key], len(blocks)
        if k == 0:
            return
        buf = self._buf[key]
        if n + k > len(buf):
            n = len(self.live(key, is_live))  # drop blocks that left first
            buf = self._buf[key]
            if n + k > len(buf) // 2:
                grown = np.zeros(2 * (n + k), np.int64)
                grown[:n] = buf[:n]
                buf = self._buf[key] = grown
        buf[n: n + k] = blocks
        self._n[key] = n + k

    def tail(self, key: int) -> tuple[np.ndarray, int]:
        """``key``'s buffer and how many entries it lists: blocks that enter the set may be
        written behind them, up to the buffer's end, and counted with :meth:`appended`."""
        return self._buf[key], self._n[key]

    def appended(self, key: int, k: int) -> None:
        """``k`` blocks were written behind ``key``'s entries (:meth:`tail`): list them."""
        self._n[key] += k

    def live(self, key: int, is_live: Predicate) -> np.ndarray:
        """The blocks in ``key``'s set, ascending; also prunes the list to them."""
        listed = self._buf[key][: self._n[key]]
        mask = is_live(listed)
        s = self._sorted[key]
        out = listed[:s][mask[:s]]  # ascending and distinct already (a copy: boolean index)
        tail = listed[s:][mask[s:]]
        if len(tail):
            out = np.concatenate((out, np.sort(tail)))
            out.sort(kind="stable")  # two ascending runs: merged in linear time
            out = out[np.concatenate(([True], out[1:] != out[:-1]))]
        self._buf[key][: len(out)] = out
        self._n[key] = self._sorted[key] = len(out)
        return out
