"""Which blocks hold copies on each GPU, without scanning the whole directory.

The directory's copy bitmaps (:class:`~simulator.kvcache.BlockDirectory`, one row per block) are
the truth; finding the blocks with a copy on a GPU by scanning them costs time in proportion to
every block ever seen — millions late in a whole-trace replay, at every eviction. :class:`HeldCopies`
keeps, per GPU, a list that contains at least every block with a copy there: a block is appended
when it gets its first copied slice; dropped and evicted copies stay in the list until the next
:meth:`HeldCopies.held`, which keeps the entries whose bitmap row is still set (and each once).
The answer is the same sorted array the scan gives.
"""

from __future__ import annotations

import numpy as np


class HeldCopies:
    """Per GPU, a superset of the blocks holding a copy there (see module docstring)."""

    def __init__(self, n_gpus: int) -> None:
        self._buf = [np.zeros(256, np.int64) for _ in range(n_gpus)]
        self._n = [0] * n_gpus

    def add(self, gpu: int, blocks: np.ndarray, rows: np.ndarray) -> None:
        """``blocks`` just got their first copied slice on ``gpu`` (``rows``: its bitmaps)."""
        n, k = self._n[gpu], len(blocks)
        buf = self._buf[gpu]
        if n + k > len(buf):
            n = len(self.held(gpu, rows))  # drop stale entries first
            buf = self._buf[gpu]
            if n + k > len(buf) // 2:
                grown = np.zeros(2 * (n + k), np.int64)
                grown[:n] = buf[:n]
                buf = self._buf[gpu] = grown
        buf[n: n + k] = blocks
        self._n[gpu] = n + k

    def held(self, gpu: int, rows: np.ndarray) -> np.ndarray:
        """The blocks with a copy on ``gpu`` (``rows``: its bitmaps, ``(blocks, words)``),
        ascending; also prunes the list to them."""
        listed = self._buf[gpu][: self._n[gpu]]
        bits = rows[listed]
        live = bits[:, 0] != 0 if bits.shape[1] == 1 else bits.any(axis=1)
        out = np.unique(listed[live])
        self._buf[gpu][: len(out)] = out
        self._n[gpu] = len(out)
        return out
