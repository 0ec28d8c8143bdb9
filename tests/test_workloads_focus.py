"""Focus sets: drawn as whole regions, and drifting region by region between turns."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from workloads.focus import draw_focus, drift_focus


def test_focus_drifts_region_by_region():
    rng = np.random.default_rng(4)
    f = draw_focus(rng, 1000, n_regions=4, region_blocks=16)
    assert len(f) == 64 and len(np.unique(f // 16)) == 4
    assert np.array_equal(drift_focus(rng, f, 1000, drift=0.0), f)
    moved = drift_focus(rng, f, 1000, drift=1.0)
    assert len(np.intersect1d(moved // 16, f // 16)) == 0 and len(np.unique(moved // 16)) == 4


@given(st.integers(1, 5000), st.integers(0, 8), st.integers(1, 32), st.floats(0, 1),
       st.integers(0, 2**32 - 1))
def test_focus_sets_stay_within_the_available_blocks_and_keep_their_size(
        available, n_regions, region_blocks, drift, seed):
    rng = np.random.default_rng(seed)
    f = draw_focus(rng, available, n_regions, region_blocks)
    assert f.dtype == np.int64 and np.all(np.diff(f) > 0)
    assert np.all((f >= 0) & (f < available))
    regions = np.unique(f // region_blocks)
    assert len(regions) == min(n_regions, -(-available // region_blocks))
    # every block of each chosen region that exists is in the set
    assert len(f) == sum(min(region_blocks, available - r * region_blocks) for r in regions)
    moved = drift_focus(rng, f, available, drift, region_blocks)
    assert np.all((moved >= 0) & (moved < available)) and np.all(np.diff(moved) > 0)
    assert len(np.unique(moved // region_blocks)) == len(regions)


def test_focus_of_no_blocks_is_empty_and_drift_keeps_whole_regions_inside_the_context():
    rng = np.random.default_rng(0)
    for got in (draw_focus(rng, 0), drift_focus(rng, np.array([3, 40]), 0)):
        assert got.dtype == np.int64 and len(got) == 0
    # an entry in the middle of a region stands for its whole region (17 → blocks 16–31)
    np.testing.assert_array_equal(drift_focus(rng, np.array([17]), 1000, drift=0.0),
                                  np.arange(16, 32))
    # a region past the available blocks (block 40 of 32: region 2 of 2) is dropped, and a
    # last region is cut at the context's end (regions of 16 over 36 blocks: 32–35)
    np.testing.assert_array_equal(drift_focus(rng, np.array([5, 40]), 32, drift=0.0),
                                  np.arange(0, 16))
    np.testing.assert_array_equal(drift_focus(rng, np.array([33]), 36, drift=0.0),
                                  np.arange(32, 36))


def test_drifting_regions_move_to_distinct_free_regions_of_the_context():
    # two focused regions of four, both moving: they take the two free ones, never one twice
    for seed in range(20):
        got = drift_focus(np.random.default_rng(seed), np.arange(32), 64, drift=1.0)
        np.testing.assert_array_equal(got, np.arange(32, 64))
    # a focused region past the context (block 70 of 64: region 4 of 4) is dropped, not moved
    # in: only region 0 moves, to one of the three free regions
    for seed in range(20):
        got = drift_focus(np.random.default_rng(seed), np.array([5, 70]), 64, drift=1.0)
        assert len(got) == 16 and got.min() in (16, 32, 48)
