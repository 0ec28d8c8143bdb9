"""Compiled common case of :meth:`BlockDirectory.add_copies_kept
<simulator.kvcache.directory.BlockDirectory.add_copies_kept>`: a round's blocks already copied.

A fetch or recompute round enters the layer-slot copies it made on its home
(``add_copies_kept``). On the Mooncake trace under ``fetch`` with every layer simulated, 95 % of
those calls bring no *new* block copy: every block the home does not hold already has a copy of
some other slot there (a block is fetched slot by slot), and the call only sets the slot's bit and
the copies' last use. The array code does that in about thirty numpy calls on arrays of one to
twenty blocks, each paying its fixed cost; :func:`keep_copied` does it in one pass:

- the blocks are taken distinct, in ascending order (as ``np.unique``);
- a block the GPU holds itself in HBM is left out (a GPU keeps no copy of its own block);
- if any other block has no copy of any slot on the GPU — a new block copy, which may need room
  made by eviction — nothing is written and ``-1`` is returned: the caller runs the array code;
- otherwise each block's entry gets the slot's bit and ``now`` as its last use, and the number of
  blocks is returned (those the GPU then keeps a copy of in the slot).

A row of a GPU's entry is ``block + offset[gpu, block >> SHIFT]`` in either of the
:class:`~simulator.kvcache.copystore.CopyStore`'s layouts (dense: every page there; paged: an
absent page maps to the zero page, whose bits are never set, so it reads as no copy and takes the
array code). Only for directories of one holder per block (``k == 1``).

``tests/test_kvcache_directory.py`` holds the directory with this pass to the same directory
with the array code alone, state for state, over random operations (dense and paged stores,
eviction under tight capacity, host-tier and held blocks, repeats).
"""

from __future__ import annotations

import numba
import numpy as np

from simulator.kvcache.copystore import SHIFT  # module globals: numba compiles them in
from simulator.kvcache.tiers import HBM


@numba.njit(cache=True, nogil=True)
def keep_copied(idx, gpu, base, tier, offset, bits, used_at, word, bit, now):
    """Set slot bit ``bit`` of word ``word`` and the last use ``now`` [s] on GPU ``gpu``'s copy
    entries of the distinct blocks ``idx`` it does not hold (``base``/``tier``: each block's
    holder and tier; ``offset``: the GPU's row of the store's offsets) if it keeps a copy of
    every one of them; returns their number, or ``-1`` (nothing written) if one has no copy."""
    order = np.sort(idx)
    rows = np.empty(len(order), np.int64)
    k = 0
    for j in range(len(order)):
        i = order[j]
        if j and i == order[j - 1]:  # a repeat: counted once
            continue
        if base[i] == gpu and tier[i] == HBM:  # its own block: no copy
            continue
        r = i + offset[i >> SHIFT]
        copied = False
        for w in range(bits.shape[1]):
            if bits[r, w] != 0:
                copied = True
                break
        if not copied:  # a new block copy: the array code makes room for it
            return -1
        rows[k] = r
        k += 1
    for j in range(k):
        r = rows[j]
        used_at[r] = now
        bits[r, word] |= bit
    return k
