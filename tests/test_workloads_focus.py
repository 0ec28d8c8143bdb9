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
