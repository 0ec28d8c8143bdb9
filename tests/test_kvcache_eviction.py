"""Eviction order: the partitioned LRU pick equals a full sort by (last use, block index)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from simulator.kvcache.eviction import least_recent


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([0.0, 1.0, 2.5, 3.0, 7.25])),
                max_size=80, unique_by=lambda t: t[0]),
       st.integers(0, 90))
def test_least_recent_is_the_head_of_the_full_lru_order(rows, count):
    # few distinct times: ties at the partition's edge are the rule, not the exception
    blocks = np.array([b for b, _ in rows], np.int64)
    used_at = np.array([t for _, t in rows], float)
    full = blocks[np.lexsort((blocks, used_at))]
    assert np.array_equal(least_recent(blocks, used_at, count), full[:max(count, 0)])


def test_least_recent_known_answers():
    blocks = np.array([7, 3, 9, 1, 5])
    used = np.array([4.0, 1.0, 3.0, 2.0, 0.5])
    assert least_recent(blocks, used, 2).tolist() == [5, 3]
    assert least_recent(blocks, used, 4).tolist() == [5, 3, 1, 9]
    assert least_recent(blocks, used, 5).tolist() == [5, 3, 1, 9, 7]
    ties = np.array([1.0, 1.0, 0.0, 1.0, 2.0])
    assert least_recent(blocks, ties, 3).tolist() == [9, 1, 3]  # ties by block index
    assert least_recent(blocks, used, 0).tolist() == []
