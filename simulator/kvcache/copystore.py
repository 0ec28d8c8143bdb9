"""Which layer slots of which blocks each GPU keeps a copy of, and when it last used each.

A GPU keeps copies of a few hundred to a few thousand of the directory's blocks, out of hundreds
of thousands on a large cluster: a dense (GPUs × blocks) table would be mostly zeros (at 1,024
GPUs and 524,288 blocks, 8.6 GB of them). The store cuts the block index space into pages of
``PAGE`` consecutive blocks and gives a GPU a page only when it first keeps a copy of a block in
it. Blocks of one prompt are interned together, so the copies a GPU keeps fall in few pages.

- ``offset[gpu, i >> SHIFT]`` takes block ``i`` to the pool row of ``gpu``'s entry for it
  (its pool page's first row minus the block page's first index); pool page 0 is the *zero
  page*, whose bits are never set, that every absent page maps to. A read is a shift, a gather
  and an add, with no mask: an absent entry reads as no copy.
- ``bits`` (pool rows × words, uint64) holds one bit per layer slot; ``used_at`` [s] the last
  access of the GPU's copy of the block.
- Writes that may create a copy allocate the pages first (:meth:`alloc`). Writes that only
  clear bits or update last uses (:meth:`clear`, :meth:`touch`) go wherever the rows point: in
  the zero page they clear what is already clear, or set a last use nothing reads (only a held
  copy's last use is read, and a copy is always in a page of its own GPU).

While the whole table is small (≤ :data:`DENSE_BYTES`: every single-node and most multi-node
runs), every GPU has every page, laid out GPU after GPU, so a row is one add of a per-GPU scalar
— the speed of the dense table it replaces. When block growth would take it past that size, the
store turns paged: each GPU keeps the pages in which it holds a copy, and no others.

Values are those of the dense table, entry for entry, wherever a copy exists.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CopyStore"]

SHIFT = 10
PAGE = 1 << SHIFT
#: Largest dense layout [B] (GPUs × block capacity × entry bytes) before the store turns paged.
DENSE_BYTES = 256e6


class CopyStore:
    """Per-GPU copy bits and last-use times over a directory's dense block indices (dense
    while small, then paged; see the module docstring)."""

    def __init__(self, n_gpus: int, words: int, cap_blocks: int) -> None:
        self.n_gpus = n_gpus
        self.words = words
        self.stride = 0  # dense: block pages per GPU (all of them, GPU after GPU); 0: paged
        # per GPU and block page: pool row of the page's first block − the page's first block
        self.offset = np.zeros((n_gpus, 0), np.int64)
        self.base: list[int] = []  # dense: each GPU's row offset
        self.n_pool = 1  # pool pages in use; page 0 is the zero page
        self.bits = np.zeros((PAGE, words), np.uint64)
        self.used_at = np.zeros(PAGE, float)
        self.grow(cap_blocks)

    def grow(self, cap_blocks: int) -> None:
        """Make room for ``cap_blocks`` block indices (turning paged past :data:`DENSE_BYTES`)."""
        need = -(-cap_blocks // PAGE)
        have = self.offset.shape[1]
        if need <= have:
            return
        if self.stride or not have:
            if self.n_gpus * need * PAGE * (8 * self.words + 8) <= DENSE_BYTES:
                self._dense(need)
                return
            if have:
                self._to_paged()
        fresh = -np.arange(have, need, dtype=np.int64)[None, :] * PAGE  # the zero page
        self.offset = np.concatenate([self.offset, np.repeat(fresh, self.n_gpus, axis=0)],
                                     axis=1)

    def _dense(self, pages: int) -> None:
        """Lay every GPU's entries out over ``pages`` block pages, GPU after GPU."""
        G, old, w = self.n_gpus, self.stride, self.words
        bits = np.zeros((PAGE + G * pages * PAGE, w), np.uint64)
        used = np.zeros(PAGE + G * pages * PAGE)
        if old:
            bits[PAGE:].reshape(G, pages * PAGE, w)[:, : old * PAGE] = \
                self.bits[PAGE:].reshape(G, old * PAGE, w)
            used[PAGE:].reshape(G, pages * PAGE)[:, : old * PAGE] = \
                self.used_at[PAGE:].reshape(G, old * PAGE)
        self.bits, self.used_at, self.stride = bits, used, pages
        self.base = [PAGE + g * pages * PAGE for g in range(G)]
        self.offset = np.repeat(np.array(self.base, np.int64)[:, None], pages, axis=1)
        self.n_pool = 1 + G * pages

    def _to_paged(self) -> None:
        """Keep of the dense layout only the pages where a GPU holds a copy."""
        G, pages, w = self.n_gpus, self.stride, self.words
        bits = self.bits[PAGE:].reshape(G, pages, PAGE, w)
        gs, ps = np.nonzero(bits.any(axis=(2, 3)))  # GPU by GPU, pages ascending
        k = len(gs)
        new_bits = np.zeros((PAGE * (1 + max(k, 1) * 2), w), np.uint64)
        new_used = np.zeros(len(new_bits))
        new_bits[PAGE : PAGE * (1 + k)] = bits[gs, ps].reshape(k * PAGE, w)
        new_used[PAGE : PAGE * (1 + k)] = \
            self.used_at[PAGE:].reshape(G, pages, PAGE)[gs, ps].reshape(k * PAGE)
        self.offset = np.repeat(-np.arange(pages, dtype=np.int64)[None, :] * PAGE, G, axis=0)
        self.offset[gs, ps] = (1 + np.arange(k) - ps) * PAGE
        self.bits, self.used_at, self.n_pool, self.stride, self.base = \
            new_bits, new_used, 1 + k, 0, []

    @property
    def nbytes(self) -> int:
        """Bytes held by the map and the pool."""
        return self.offset.nbytes + self.bits.nbytes + self.used_at.nbytes

    # -- rows ---------------------------------------------------------------------------------

    def rows(self, gpu: int, idx: np.ndarray) -> np.ndarray:
        """Pool rows of ``gpu``'s entries for blocks ``idx`` (rows in the zero page if absent)."""
        if self.stride:
            return idx + self.base[gpu]
        return idx + self.offset[gpu][idx >> SHIFT]

    def alloc(self, gpu: int, idx: np.ndarray) -> np.ndarray:
        """Pool rows of ``gpu``'s entries for blocks ``idx``, giving ``gpu`` the pages it lacks
        (zeroed, in ascending page order)."""
        if self.stride:  # dense: every page is there
            return idx + self.base[gpu]
        off = self.offset[gpu]
        page = idx >> SHIFT
        have = off[page] + (page << SHIFT)  # pool row of each page's first block: 0 if absent
        if not have.all():
            missing = np.unique(page[have == 0])
            start = self.n_pool
            self.n_pool += len(missing)
            if self.n_pool * PAGE > len(self.used_at):
                new = max(self.n_pool * PAGE, 2 * len(self.used_at))
                bits = np.zeros((new, self.words), np.uint64)
                bits[: len(self.bits)] = self.bits
                used = np.zeros(new, float)
                used[: len(self.used_at)] = self.used_at
                self.bits, self.used_at = bits, used
            off[missing] = (np.arange(start, self.n_pool) - missing) * PAGE
        return idx + off[page]

    # -- reads --------------------------------------------------------------------------------

    def word(self, gpu: int, idx: np.ndarray, w: int | np.ndarray) -> np.ndarray:
        """Word ``w`` (one per block, or one for all) of ``gpu``'s copy bits of blocks ``idx``."""
        r = self.rows(gpu, idx)
        return self.bits[:, w][r] if type(w) is int or np.ndim(w) == 0 else self.bits[r, w]

    def any(self, gpu: int, idx: np.ndarray) -> np.ndarray:
        """True where ``gpu`` keeps a copy of any layer slot of each block."""
        return self.held(self.rows(gpu, idx))

    def held(self, rows: np.ndarray) -> np.ndarray:
        """True where the entries at pool ``rows`` hold a copy of any layer slot."""
        return self.bits[:, 0][rows] != 0 if self.words == 1 else self.bits[rows].any(axis=1)

    def last_used(self, gpu: int, idx: np.ndarray) -> np.ndarray:
        """Last access [s] of ``gpu``'s copy of each block (any value where it keeps none)."""
        return self.used_at[self.rows(gpu, idx)]

    def count(self, gpu: int) -> int:
        """Blocks ``gpu`` keeps a copy of (a scan of its pages: for checks)."""
        first = self.offset[gpu] + np.arange(self.offset.shape[1]) * PAGE
        r = first[first > 0][:, None] + np.arange(PAGE)
        return int(self.bits[r.ravel()].any(axis=1).sum())

    # -- writes -------------------------------------------------------------------------------

    def clear(self, gpu: int, idx: np.ndarray) -> None:
        """Forget ``gpu``'s copies of blocks ``idx`` (every slot); absent ones stay absent."""
        self.bits[self.rows(gpu, idx)] = 0  # in the zero page: 0 over 0

    def touch(self, gpu: int, idx: np.ndarray, now: float) -> None:
        """Set the last access of ``gpu``'s entries for blocks ``idx`` to ``now`` [s] (in the
        zero page too, where nothing reads it)."""
        self.used_at[self.rows(gpu, idx)] = now
