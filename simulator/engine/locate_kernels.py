"""Compiled pass of a decode step's block lookup (:meth:`simulator.engine.locate.StepData.locate`).

A step's selections, flattened over (query, slot, candidate), are looked up in the
:class:`~simulator.kvcache.directory.BlockDirectory` — holder, tier, the home's copy bits — and
the blocks not at home are grouped by (slot, holder key). The array code this replaced (kept as
the tests' reference and the benchmark's baseline, :mod:`simulator.testing.locate_reference`)
took about twenty numpy calls on arrays of a few hundred to a few thousand elements, each paying
its fixed cost, and sorted the blocks away from home with ``argsort``/``lexsort``.
:func:`locate_pass` does the lookup in one pass, and :func:`group_order` sorts and cuts the
blocks away from home into groups:

- an element is **local** where it is valid and the home holds the block in its HBM or keeps a
  copy of the element's slot (its bit in the copy word);
- a valid element that is not local gets the **group key** of its holder: the holder GPU (HBM),
  ``G`` + the holder's machine (host DRAM) or ``2G`` (dropped: recompute), plus its slot ×
  ``3G``;
- groups come in ascending key order, and within a group its elements in their flat order: a
  stable sort, counting by key (keys are below slots × 3G; a comparison sort only where the
  keys far outnumber the elements). The array code's order was the same: a stable argsort for
  one query, ``lexsort`` by key then query for a batch, which is the flat order within a key
  because the flat order is by query first;
- with a batch, each group counts its distinct queries.

The tests hold the results to an oracle that asks the directory block by block, and to the
array code, on random directories (``tests/test_engine_steps.py``);
``benchmarks/bench_locate.py`` times the two.
"""

from __future__ import annotations

import numba
import numpy as np

from simulator.kvcache.tiers import HBM, HOST  # module globals: numba compiles them in


@numba.njit(cache=True, nogil=True)
def locate_pass(flat, vflat, holder, per_element, tier, bits, rows, word, bit, slot_key, g,
                n_gpus, machine, observe):
    """One pass over a step's flattened selections (see the module docstring).

    Args:
        flat, vflat: block index and validity of each element.
        holder, per_element: the holder GPU of each element (``per_element``: the nearest of
            a block's replicas to the home), or of each block (its one holder).
        tier: the directory's tier per block.
        bits, rows, word, bit: the copy store's words, each element's pool row in it, which
            word and which bit of it is the element's slot.
        slot_key: each element's slot × 3G.
        g, n_gpus: the home GPU and the GPU count G.
        machine: each GPU's machine index.
        observe: also count, per holder GPU, the valid elements in its HBM away from home and
            those of them served by a copy at home.

    Returns:
        ``(local, copied, keys, blocks, positions, away, copy_hits)``: the local mask; how
        many valid elements are local by a copy at home (not held there); the group key, block and flat position of
        each valid element not local, in flat order; the two per-GPU counts (zeros without
        ``observe``).
    """
    n = len(flat)
    local = np.zeros(n, np.bool_)
    keys = np.empty(n, np.int64)
    blocks = np.empty(n, np.int64)
    pos = np.empty(n, np.int64)
    away = np.zeros(n_gpus, np.int64)
    hits = np.zeros(n_gpus, np.int64)
    copied_local = 0
    m = 0
    for i in range(n):
        if not vflat[i]:
            continue
        b = flat[i]
        h = holder[i] if per_element else holder[b]
        t = tier[b]
        copied = (bits[rows[i], word[i]] & bit[i]) != 0
        if h == g and t == HBM:
            local[i] = True
            continue
        if observe and t == HBM:
            away[h] += 1
            if copied:
                hits[h] += 1
        if copied:
            local[i] = True
            copied_local += 1
            continue
        if t == HBM:
            k = h
        elif t == HOST:
            k = n_gpus + machine[h if h > 0 else 0]
        else:
            k = 2 * n_gpus
        keys[m] = slot_key[i] + k
        blocks[m] = b
        pos[m] = i
        m += 1
    return local, copied_local, keys[:m], blocks[:m], pos[:m], away, hits


@numba.njit(cache=True, nogil=True)
def group_order(keys, blocks, pos, per_query, n_keys):
    """The elements away from home sorted into groups (see the module docstring).

    Args:
        keys, blocks, pos: each element's group key, block and flat position, in flat order.
        per_query: elements per query in the flat order (its query is ``pos // per_query``),
            or 0 for a step of one query.
        n_keys: the keys' bound (every key is below it: slots × 3G).

    Returns:
        ``(blocks, heads, starts, queries)``: the blocks in group order; each group's key, its
        first position and (with ``query``) its distinct queries — one per group otherwise.
    """
    n = len(keys)
    if n_keys <= 4 * n + 4096:  # a counting sort (stable: ties keep the flat order)
        first = np.zeros(n_keys + 1, np.int64)  # then: where each key's elements start
        for i in range(n):
            first[keys[i] + 1] += 1
        for key in range(n_keys):
            first[key + 1] += first[key]
        order = np.empty(n, np.int64)
        for i in range(n):
            key = keys[i]
            order[first[key]] = i
            first[key] += 1
    else:  # many keys for few elements (a large cluster with every layer): a stable sort
        order = np.argsort(keys, kind="mergesort")
    out = np.empty(n, np.int64)
    heads = np.empty(n, np.int64)
    starts = np.empty(n, np.int64)
    counts = np.empty(n, np.int64)
    batch = per_query > 0
    n_groups = 0
    prev_key = -1
    prev_q = -1
    for j in range(n):
        i = order[j]
        key = keys[i]
        out[j] = blocks[i]
        q = pos[i] // per_query if batch else 0
        if j == 0 or key != prev_key:
            heads[n_groups] = key
            starts[n_groups] = j
            counts[n_groups] = 1
            n_groups += 1
        elif batch and q != prev_q:
            counts[n_groups - 1] += 1
        prev_key = key
        prev_q = q
    return out, heads[:n_groups], starts[:n_groups], counts[:n_groups]
