"""A full host tier drops its least recently used blocks from a heap (simulator/kvcache/
host_order.py): the same blocks, in the same order, as the scan of every host block."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kvcache_directory import _copy_state, make

from simulator.kvcache import DROPPED, HBM, HOST
from simulator.kvcache import host_order as host_order_module
from simulator.kvcache.host_order import HostOrder


def _state(d) -> list:
    """Everything a copy can change (:func:`_copy_state`), and what eviction changes besides:
    the losses per GPU and the host tiers' live blocks."""
    return [*_copy_state(d), d.losses,
            *(d.host_lists.live(m, d.on_host_of(m)) for m in range(d.n_machines))]


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["place", "place", "copy", "touch", "touch"]),
            st.lists(st.integers(0, 40), min_size=1, max_size=8),
            st.integers(0, 3),
            st.integers(0, 3),
        ),
        max_size=40,
    ),
    scheme=st.sampled_from(["first_writer", "hash", "replicate"]),
    cap=st.integers(1, 8),
    host=st.integers(1, 8),
    tick=st.sampled_from([1, 2, 3]),  # several operations at one time: ties in last use
    small_rebuild=st.booleans(),
)
def test_the_heap_drops_what_the_scan_drops(ops, scheme, cap, host, tick, small_rebuild):
    # a directory whose host tiers drop through the heap, and a twin that scans (``ordered``
    # off): after every operation — placements that demote into small full
    # hosts, copies that evict, touches of blocks on the host — the same state. With a small
    # rebuild slack the heaps are also rebuilt from the hosts' lists as they grow
    slack = 0 if small_rebuild else host_order_module.REBUILD_SLACK
    with mock.patch.object(host_order_module, "REBUILD_SLACK", slack):
        d = make(scheme, replicas=2, cap=cap, gpus=4, host=host)
        twin = make(scheme, replicas=2, cap=cap, gpus=4, host=host)
        twin.ordered = False
        for t, (op, keys, gpu, slot) in enumerate(ops):
            now = float(t // tick)
            for x in (d, twin):
                idx = x.intern(keys)
                if op == "place":
                    x.place(np.unique(idx[~x.known(idx)]), writer=gpu, now=now, repo=gpu)
                elif op == "copy":
                    x.add_copies(gpu, idx, slot, now=now)
                else:
                    x.touch(gpu, idx, now=now)
            assert d.ordered and not twin.ordered
            for a, b in zip(_state(d), _state(twin), strict=True):
                assert np.array_equal(a, b)
            d.check()


def _host_of_three():
    """One GPU of 2 blocks over a host of 3: blocks 0–2 placed at 0, 1, 2 s and 3–4 at 3 s, so
    0–2 are demoted to the host (last uses 0, 1, 2 s)."""
    d = make(cap=2, gpus=1, per_machine=1, host=3)
    a = d.intern(list(range(10)))
    for i in range(3):
        d.place(a[i:i + 1], writer=0, now=float(i))
    d.place(a[3:5], writer=0, now=3.0)
    assert d.tier[a[:5]].tolist() == [HOST, HOST, HOST, HBM, HBM] and d.dropped == 0
    return d, a


def test_a_block_used_on_the_host_goes_behind_the_others():
    # block 0 (the oldest) is read at 3.5 s while on the host: the next drop takes block 1
    d, a = _host_of_three()
    d.touch(0, a[:1], now=3.5)
    d.place(a[5:6], writer=0, now=4.0)  # one more demoted into the full host: one dropped
    assert d.tier[a[:3]].tolist() == [HOST, DROPPED, HOST]
    d.place(a[6:7], writer=0, now=5.0)
    assert d.tier[a[:3]].tolist() == [HOST, DROPPED, DROPPED]
    d.check()


def test_ties_in_last_use_drop_the_lower_block_first():
    # blocks 3 and 4 share their last use (3 s): demoted together, the lower one goes first
    d, a = _host_of_three()
    d.place(a[5:7], writer=0, now=5.0)  # 3 and 4 demoted: 0 and 1 dropped
    assert d.tier[a[:5]].tolist() == [DROPPED, DROPPED, HOST, HOST, HOST]
    d.place(a[7:9], writer=0, now=6.0)  # 5 and 6 demoted: 2 (2 s), then 3 (3 s, lower)
    assert d.tier[a[:5]].tolist() == [DROPPED, DROPPED, DROPPED, DROPPED, HOST]
    d.check()


def test_last_uses_written_out_of_time_order_turn_the_scan_on():
    # a touch back in time: the heap's precondition is gone, so the directory scans from then
    # on — and still drops the least recent block
    d, a = _host_of_three()
    d.touch(0, a[2:3], now=0.5)  # block 2 is now the oldest but one
    assert not d.ordered
    d.place(a[5:6], writer=0, now=4.0)
    assert d.tier[a[:3]].tolist() == [DROPPED, HOST, HOST]
    d.place(a[6:7], writer=0, now=5.0)
    assert d.tier[a[:3]].tolist() == [DROPPED, HOST, DROPPED]  # 2 (0.5 s) before 1 (1 s)


def test_the_heap_takes_only_blocks_on_its_host_least_recent_first():
    order = HostOrder(1)
    used_at = np.array([5.0, 1.0, 3.0, 1.0, 2.0])
    order.add(0, np.array([0, 1, 2, 3, 4]), used_at)
    used_at[1] = 6.0  # block 1 used since it entered
    assert order.least_recent(0, 3, used_at, lambda b: b != 4) == [3, 2, 0]
    assert order.least_recent(0, 5, used_at, lambda b: b != 4) == [1]  # all that is left
    assert order.heaps[0] == []


def test_a_block_entered_twice_is_taken_once():
    # a block dropped off the host, placed again and demoted to it again has two entries:
    # taken once
    order = HostOrder(1)
    used_at = np.array([0.0, 2.0, 3.0])
    order.add(0, np.array([0, 1]), used_at)
    used_at[0] = 4.0  # placed again at 4 s, then demoted again
    order.add(0, np.array([0, 2]), used_at)
    assert order.least_recent(0, 4, used_at, lambda b: True) == [1, 2, 0]
    assert order.heaps[0] == []


def test_a_rebuilt_heap_orders_its_blocks_by_last_use():
    # the host's list is by block index; the heap built from it, by last use
    order = HostOrder(1)
    used_at = np.array([3.0, 2.0, 1.0, 2.0])
    order.rebuild(0, np.array([0, 1, 2, 3]), used_at)
    assert order.least_recent(0, 4, used_at, lambda b: True) == [2, 1, 3, 0]


def test_a_heap_grown_past_its_host_is_rebuilt():
    # with no slack, a heap holding more than twice its host's blocks is rebuilt from the
    # host's list before the next drop: stale entries go, and the drops are the same
    with mock.patch.object(host_order_module, "REBUILD_SLACK", 0):
        d, a = _host_of_three()
        d.place(a[5:6], writer=0, now=4.0)
        for _ in range(6):  # stale entries of block 2 (a duplicate per push)
            d.host_order.heaps[0].append((0.0, -1))
        assert d.host_order.oversized(0, 3)
        d.place(a[6:7], writer=0, now=5.0)
        assert len(d.host_order.heaps[0]) == 3
        assert d.tier[a[:3]].tolist() == [DROPPED, DROPPED, HOST]
        d.check()
