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
