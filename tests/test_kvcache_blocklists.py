"""BlockLists: the per-key list finds exactly the blocks a scan of the directory finds."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from simulator.kvcache.blocklists import BlockLists


@given(st.lists(st.tuples(st.sampled_from(["enter", "leave", "ask"]), st.integers(0, 1),
                          st.lists(st.integers(0, 299), min_size=1, max_size=40)),
                max_size=60))
def test_the_list_finds_what_a_scan_finds(ops):
    member = np.zeros((2, 300), bool)  # the truth: which blocks are in each key's set
    lists = BlockLists(2)
    for op, key, blocks in ops:
        idx = np.unique(blocks)

        def is_live(b, key=key):
            return member[key, b]

        if op == "enter":  # only blocks not yet in the set are announced
            new = idx[~member[key, idx]]
            member[key, idx] = True
            lists.add(key, new, is_live)
        elif op == "leave":  # leaving is not announced
            member[key, idx] = False
        assert np.array_equal(lists.live(key, is_live), np.flatnonzero(member[key]))


def test_lists_that_outgrow_their_buffers_still_find_what_a_scan_finds():
    # thousands of blocks through one list (its buffer starts at 256): it is pruned and grown
    # many times, blocks leave and re-enter, and every answer is the scan's
    rng = np.random.default_rng(5)
    member = np.zeros(5_000, bool)
    lists = BlockLists(1)

    def is_live(b):
        return member[b]

    for step in range(300):
        idx = np.unique(rng.integers(0, 5_000, 40))
        new = idx[~member[idx]]
        member[idx] = True
        lists.add(0, new, is_live)
        member[rng.integers(0, 5_000, 25)] = False
        if step % 3 == 0:  # asked now and then: appends pile up between
            assert np.array_equal(lists.live(0, is_live), np.flatnonzero(member))
    assert member.sum() > 1_000
    assert np.array_equal(lists.live(0, is_live), np.flatnonzero(member))
    # asked again with nothing new, after some leave: still the scan's answer, each time
    for _ in range(3):
        member[rng.integers(0, 5_000, 300)] = False
        assert np.array_equal(lists.live(0, is_live), np.flatnonzero(member))
        assert np.array_equal(lists.live(0, is_live), np.flatnonzero(member))
