"""A decode step's block lookup as numpy array passes, before it was compiled: a reference.

:meth:`simulator.engine.locate.StepData.locate` looks a step's selections up in the directory
in one compiled pass (:mod:`simulator.engine.locate_kernels`, stop 41). This module keeps the
array code it replaced, unchanged but for being a function of the :class:`StepData` instead of
its method, so the tests can hold the two to each other (and to the block-by-block oracle) and
``benchmarks/bench_locate.py`` can time the pass against it in one process. It is not used by
the simulator.
"""

from __future__ import annotations

import numpy as np

from simulator import kvcache

__all__ = ["array_locate"]


def array_locate(steps, g: int, dense: np.ndarray, valid: np.ndarray):
    """:meth:`StepData.locate <simulator.engine.locate.StepData.locate>` of ``steps`` for home
    GPU ``g`` in array passes: the same local mask, groups and counters."""
    d = steps.dir
    B, S, W = dense.shape
    G = steps.G
    flat = dense.ravel()
    vflat = valid.ravel()
    try:
        word, bit, slot_key = steps._flat_slot_cache[(B, S, W)]
    except KeyError:
        word, bit, slot_key = steps._flat_slots(B, S, W)
    holder = d.base[flat] if d.k == 1 else d.nearest(flat, g)
    tier = d.tier[flat]
    bits = d.copy_store.word(g, flat, 0 if d.words == 1 and S <= 64 else word)
    own = (holder == g) & (tier == kvcache.HBM)
    local = own | (bits & bit).astype(bool)
    local &= vflat
    if steps.observed is not None:  # selections away from home and copies' uses, per owner
        away = vflat & (tier == kvcache.HBM) & (holder != g)
        steps.away = np.bincount(holder[away], minlength=G)[:G]
        steps.owner_copy_hits = np.bincount(holder[away & (bits & bit).astype(bool)],
                                           minlength=G)[:G]
    groups: list[list] = [[] for _ in range(S)]
    p = (vflat ^ local).nonzero()[0]  # valid and not local (local implies valid)
    # copy hits: selected blocks the home does not hold itself but keeps a copy of
    steps.copy_hits += int(np.count_nonzero(local)) - int(np.count_nonzero(own & vflat))
    steps.copy_misses += len(p)
    if len(p) == 0:
        return local.reshape(B, S, W), groups
    idx = flat[p]
    key = holder[p]
    t = tier[p]
    if np.count_nonzero(t):  # group key: holder GPU (HBM) | G + machine (host DRAM) | 2G (dropped)
        key = np.where(t == kvcache.HBM, key,
                       np.where(t == kvcache.HOST, G + steps.machine_arr[np.maximum(key, 0)],
                                2 * G))
    sk = slot_key[p] + key
    if B == 1:  # one query: every group has one, and the order is by key alone
        # a stable sort (radix for 16-bit keys; ties keep the element order)
        order = (sk.astype(np.int16) if 3 * G * S < 32768 else sk).argsort(kind="stable")
        sk, idx = sk[order], idx[order]
        cut = (sk[1:] != sk[:-1]).nonzero()[0] + 1
        starts = [0, *cut.tolist()]
        ends = [*starts[1:], len(sk)]
        nq = [1] * len(starts)
    else:
        qi = p // (S * W)
        order = np.lexsort((qi, sk))
        sk, qi, idx = sk[order], qi[order], idx[order]
        cut = np.flatnonzero(np.diff(sk)) + 1
        starts = np.concatenate(([0], cut)).tolist()
        ends = np.concatenate((cut, [len(sk)])).tolist()
        new_q = np.ones(len(qi), bool)
        new_q[1:] = (qi[1:] != qi[:-1]) | (sk[1:] != sk[:-1])
        nq = np.add.reduceat(new_q, starts).tolist()
    heads = sk[starts].tolist()
    for head, a, b, n_q in zip(heads, starts, ends, nq, strict=True):
        slot, k = divmod(head, 3 * G)
        groups[slot].append((k, n_q, idx[a:b]))
    return local.reshape(B, S, W), groups
