"""The block directory's bookkeeping invariants, checked by a scan of every block.

:meth:`~simulator.kvcache.directory.BlockDirectory.check` (called by the tests, and by the
engines with ``check_invariants`` on) asks :func:`check_directory`, which recounts from the
directory's arrays what its counters and lists keep incrementally, and raises AssertionError
where they differ:

- each GPU's owned blocks (HBM holders, replicas included) and copies equal the counts kept;
- the per-GPU copy and HBM lists and the per-machine host lists find exactly what a scan
  finds (:class:`~simulator.kvcache.blocklists.BlockLists`);
- a GPU keeps no copy of a block it holds itself;
- while last uses are written in time order, each host block has a heap entry at most its
  last use (:mod:`simulator.kvcache.host_order`);
- no GPU holds more than its HBM capacity, no host more than its tier's, and no pin count is
  negative.
"""

from __future__ import annotations

import numpy as np

from simulator.kvcache.tiers import HBM

__all__ = ["check_directory"]


def check_directory(d) -> None:
    """Raise AssertionError if any capacity or bookkeeping invariant of the
    :class:`~simulator.kvcache.directory.BlockDirectory` ``d`` is broken."""
    n = d.n
    holders = d.holders(np.arange(n))
    in_hbm = d.tier[:n] == HBM
    owned = np.bincount(holders[in_hbm].ravel(), minlength=d.n_gpus)[: d.n_gpus]
    assert np.array_equal(owned, d.owned), (owned, d.owned)
    copies = np.array([d.copy_store.count(gpu) for gpu in range(d.n_gpus)], np.int64)
    every = np.arange(n)  # the fast lists find exactly what a scan finds
    for gpu in range(d.n_gpus):
        for lists, live in ((d.copy_lists, d.has_copy_of(gpu)),
                            (d.hbm_lists, d.in_hbm_of(gpu))):
            got = lists.live(gpu, live)
            assert np.array_equal(got, np.flatnonzero(live(every))), gpu
        # a placement drops a holder's copies: none of a block it holds
        mine = np.flatnonzero(d.in_hbm_of(gpu)(every))
        assert not d.copy_store.any(gpu, mine).any(), ("copy of a held block", gpu)
    for m in range(d.n_machines):
        live = d.on_host_of(m)
        on_host = np.flatnonzero(live(every))
        assert np.array_equal(d.host_lists.live(m, live), on_host), m
        if d.ordered:  # each host block has an entry at most its last use (host_order)
            least: dict[int, float] = {}
            for u, b in d.host_order.heaps[m]:
                least[b] = min(u, least.get(b, np.inf))
            for b in on_host.tolist():
                assert least.get(b, np.inf) <= d.used_at[b], ("host order", m, b)
    assert np.array_equal(copies, d.copies), (copies, d.copies)
    assert np.all(d.owned + d.copies <= d.capacity), "HBM capacity exceeded"
    assert np.all(d.host_used <= d.cfg.host_capacity_blocks)
    assert np.all(d.pins[:n] >= 0)
