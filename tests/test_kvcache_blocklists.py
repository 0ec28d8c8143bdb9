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
