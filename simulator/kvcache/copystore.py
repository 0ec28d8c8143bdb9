"""Which layer slots of which blocks each GPU keeps a copy of, and when it last used each: paged.

A GPU keeps copies of a few hundred to a few thousand of the directory's blocks, out of hundreds
of thousands on a large cluster: a dense (GPUs × blocks) table would be mostly zeros (at 1,024
GPUs and 524,288 blocks, 8.6 GB of them). The store cuts the block index space into pages of
``PAGE`` consecutive blocks and gives a GPU a page only when it first keeps a copy of a block in
it. Blocks of one prompt are interned together, so the copies a GPU keeps fall in few pages.

- ``pages[gpu, i >> SHIFT]`` is the pool page holding ``gpu``'s entries for block ``i``; pool
  page 0 is the *zero page*, never written, that every absent page maps to. A read is two
  gathers and needs no mask: an absent entry reads as no copy, last used at 0.
- ``bits`` (pool rows × words, uint64) holds one bit per layer slot; ``used_at`` [s] the last
  access of the GPU's copy of the block.
- Writes that may create a copy allocate the pages first (:meth:`alloc`); writes that only
  update existing entries (:meth:`touch`) skip absent pages, which hold no copy whose last use
  anything reads.

Values are those of the dense table, entry for entry, wherever a copy exists.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CopyStore"]

SHIFT = 10
PAGE = 1 << SHIFT
_LOW = PAGE - 1


class CopyStore:
    """Paged per-GPU copy bits and last-use times over a directory's dense block indices."""

    def __init__(self, n_gpus: int, words: int, cap_blocks: int) -> None:
        self.n_gpus = n_gpus
        self.words = words
        self.pages = np.zeros((n_gpus, -(-cap_blocks // PAGE)), np.int64)
        self.n_pool = 1  # pool pages in use; page 0 is the zero page
        self.bits = np.zeros((4 * PAGE, words), np.uint64)
        self.used_at = np.zeros(4 * PAGE, float)

    def grow(self, cap_blocks: int) -> None:
        """Make room in the page map for ``cap_blocks`` block indices."""
        need = -(-cap_blocks // PAGE)
        have = self.pages.shape[1]
        if need > have:
            self.pages = np.concatenate(
                [self.pages, np.zeros((self.n_gpus, need - have), np.int64)], axis=1)

    @property
    def nbytes(self) -> int:
        """Bytes held by the map and the pool."""
        return self.pages.nbytes + self.bits.nbytes + self.used_at.nbytes

    # -- rows ---------------------------------------------------------------------------------

    def rows(self, gpu: int, idx: np.ndarray) -> np.ndarray:
        """Pool rows of ``gpu``'s entries for blocks ``idx`` (rows in the zero page if absent)."""
        return (self.pages[gpu][idx >> SHIFT] << SHIFT) | (idx & _LOW)

    def alloc(self, gpu: int, idx: np.ndarray) -> np.ndarray:
        """Pool rows of ``gpu``'s entries for blocks ``idx``, giving ``gpu`` the pages it lacks
        (zeroed, in ascending page order)."""
        row = self.pages[gpu]
        page = idx >> SHIFT
        if not row[page].all():
            missing = np.unique(page[row[page] == 0])
            start = self.n_pool
            self.n_pool += len(missing)
            if self.n_pool * PAGE > len(self.used_at):
                new = max(self.n_pool * PAGE, 2 * len(self.used_at))
                bits = np.zeros((new, self.words), np.uint64)
                bits[: len(self.bits)] = self.bits
                used = np.zeros(new, float)
                used[: len(self.used_at)] = self.used_at
                self.bits, self.used_at = bits, used
            row[missing] = np.arange(start, self.n_pool)
        return (row[page] << SHIFT) | (idx & _LOW)

    # -- reads --------------------------------------------------------------------------------

    def word(self, gpu: int, idx: np.ndarray, w: int | np.ndarray) -> np.ndarray:
        """Word ``w`` (one per block, or one for all) of ``gpu``'s copy bits of blocks ``idx``."""
        r = self.rows(gpu, idx)
        return self.bits[:, w][r] if np.ndim(w) == 0 else self.bits[r, w]

    def any(self, gpu: int, idx: np.ndarray) -> np.ndarray:
        """True where ``gpu`` keeps a copy of any layer slot of each block."""
        r = self.rows(gpu, idx)
        return self.bits[:, 0][r] != 0 if self.words == 1 else self.bits[r].any(axis=1)

    def last_used(self, gpu: int, idx: np.ndarray) -> np.ndarray:
        """Last access [s] of ``gpu``'s copy of each block (0 where it never had a page)."""
        return self.used_at[self.rows(gpu, idx)]

    def count(self, gpu: int) -> int:
        """Blocks ``gpu`` keeps a copy of (a scan of its pages: for checks)."""
        pool = self.pages[gpu][self.pages[gpu] > 0]
        r = (pool[:, None] << SHIFT) + np.arange(PAGE)
        return int(self.bits[r.ravel()].any(axis=1).sum())

    # -- writes -------------------------------------------------------------------------------

    def clear(self, gpu: int, idx: np.ndarray) -> None:
        """Forget ``gpu``'s copies of blocks ``idx`` (every slot); absent ones stay absent."""
        r = self.rows(gpu, idx)
        self.bits[r[r >= PAGE]] = 0

    def touch(self, gpu: int, idx: np.ndarray, now: float) -> None:
        """Set the last access of ``gpu``'s entries for blocks ``idx`` to ``now`` [s]."""
        r = self.rows(gpu, idx)
        self.used_at[r[r >= PAGE]] = now
