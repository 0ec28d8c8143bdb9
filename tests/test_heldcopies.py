"""HeldCopies: the per-GPU list finds exactly the blocks a scan of the bitmaps finds."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from simulator.heldcopies import HeldCopies


@given(st.lists(st.tuples(st.sampled_from(["copy", "drop", "ask"]), st.integers(0, 1),
                          st.lists(st.integers(0, 299), min_size=1, max_size=40)),
                max_size=60),
       st.integers(1, 2))
def test_the_list_finds_what_a_scan_of_the_bitmaps_finds(ops, words):
    rows = np.zeros((2, 300, words), np.uint64)  # two GPUs' copy bitmaps
    hc = HeldCopies(2)
    for op, gpu, blocks in ops:
        idx = np.unique(blocks)
        if op == "copy":  # blocks without a copy get their first slice, as add_copies does
            first = idx[~rows[gpu, idx].any(axis=1)]
            rows[gpu, idx, words - 1] |= np.uint64(1)
            hc.add(gpu, first, rows[gpu])
        elif op == "drop":  # evicted or dropped: the bitmap row is cleared, the list not told
            rows[gpu, idx] = 0
        scan = np.flatnonzero(rows[gpu].any(axis=1))
        assert np.array_equal(hc.held(gpu, rows[gpu]), scan)
