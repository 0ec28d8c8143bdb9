"""Compiled common case of :meth:`BlockDirectory.add_copies_kept
<simulator.kvcache.directory.BlockDirectory.add_copies_kept>`: copies that need no eviction.

A fetch or recompute round enters the layer-slot copies it made on its home
(``add_copies_kept``). Mostly that needs no room made: on the Mooncake trace under ``fetch`` with
every layer simulated, 95 % of the calls bring no new block copy at all (every block the home
does not hold already has a copy of some other slot there: a block is fetched slot by slot), and
in the default scenario most of the rest fit in the home's free HBM. The array code does such a
call in about thirty numpy calls on arrays of one to twenty blocks, each paying its fixed cost;
:func:`keep_copies` does it in one pass:

- the blocks are taken distinct, in ascending order (as ``np.unique``);
- a block the GPU holds itself in HBM is left out (a GPU keeps no copy of its own block);
- a block without a copy of any slot on the GPU is a *new* block copy;
- if a block's entry lies in a page the GPU has not got (a paged store), more new copies than the
  GPU has free blocks (eviction), or more than its copy list has room behind its entries (the
  list would be pruned and grown), nothing is written and ``(-1, 0)`` is returned: the caller
  runs the array code;
- otherwise each block's entry gets the slot's bit and ``now`` as its last use, the new blocks
  are written behind the GPU's copy list, ascending, and the numbers of blocks and of new ones are
  returned — what the array code does when the room is there, in the same order.

A row of a GPU's entry is ``block + offset[gpu, block >> SHIFT]`` in either of the
:class:`~simulator.kvcache.copystore.CopyStore`'s layouts; a page is there where that row of the
page's first block is not 0 (an absent page maps to the zero page). Only for directories of one
holder per block (``k == 1``).

``tests/test_kvcache_directory.py`` holds the directory with this pass to the same directory
with the array code alone, state for state, over random operations (dense and paged stores,
eviction under tight capacity, host-tier and held blocks, repeats, full copy lists).
"""

from __future__ import annotations

import numba
import numpy as np

from simulator.kvcache.copystore import SHIFT  # module globals: numba compiles them in
from simulator.kvcache.tiers import HBM


@numba.njit(cache=True, nogil=True)
def keep_copies(idx, gpu, slot, now, base, tier, offsets, bits, used_at, capacity, owned,
                copies, gains, listed, n_listed):
    """Set layer slot ``slot``'s bit and the last use ``now`` [s] on GPU ``gpu``'s copy entries
    of the distinct blocks ``idx`` it does not hold (``base``/``tier``: each block's holder and
    tier; ``offsets``: the store's rows), append the new block copies to its copy list
    ``listed`` (``n_listed`` entries) and count them (``copies``, and every block in ``gains``),
    where their pages are there, the GPU has room for them (``capacity − owned − copies``) and
    the list has room; returns ``(blocks, new blocks)``, or ``(-1, 0)`` with nothing written
    (see the module docstring)."""
    offset = offsets[gpu]
    word = slot // 64
    bit = np.uint64(1) << np.uint64(slot % 64)
    free = capacity[gpu] - owned[gpu] - copies[gpu]
    order = np.sort(idx)
    rows = np.empty(len(order), np.int64)
    fresh = np.empty(len(order), np.int64)
    k = m = 0
    for j in range(len(order)):
        i = order[j]
        if j and i == order[j - 1]:  # a repeat: counted once
            continue
        if base[i] == gpu and tier[i] == HBM:  # its own block: no copy
            continue
        page = i >> SHIFT
        if offset[page] + (page << SHIFT) == 0:  # a page the GPU has not got: allocated there
            return -1, 0
        r = i + offset[page]
        copied = False
        for w in range(bits.shape[1]):
            if bits[r, w] != 0:
                copied = True
                break
        if not copied:
            fresh[m] = i
            m += 1
        rows[k] = r
        k += 1
    if m and (m > free or n_listed + m > len(listed)):  # eviction, or the list to grow
        return -1, 0
    for j in range(k):
        r = rows[j]
        used_at[r] = now
        bits[r, word] |= bit
    for j in range(m):
        listed[n_listed + j] = fresh[j]
    copies[gpu] += m
    gains[gpu] += k
    return k, m
