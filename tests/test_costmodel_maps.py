"""Decision maps: the colours (argmin at each point) and the closed-form boundary agree."""

import numpy as np
import pytest

import topologies
from simulator.costmodel import CostModel as _CostModel
from simulator.costmodel.maps import crossover_curve, decision_map
from simulator.errors import UserError
from simulator.gpu import KernelModel


def CostModel(*args, **kwargs):  # noqa: N802 - the class under test, at the roofline's kernels
    """The closed form with the roofline kernels (:class:`KernelModel`): these tests check its
    documented formulas (docs/costmodel.md), which the roofline's constants make hand-checkable;
    the measured profiles go through the same closed form (tests/test_gpu_*.py, the engines)."""
    kwargs.setdefault("kernels", KernelModel())
    return _CostModel(*args, **kwargs)


@pytest.fixture(scope="module")
def cm():
    return CostModel("deepseek-v3.2", topologies.build("dgx_h100", nodes=2), "ibgda")


@pytest.mark.parametrize(("over", "values", "reuse"), [
    ("bandwidth", np.geomspace(5e9, 900e9, 7), 16),
    ("probe", np.geomspace(1e-6, 100e-6, 7), 4),
])
def test_the_map_changes_side_exactly_at_the_closed_form_crossover(cm, over, values, reuse):
    blocks = np.unique(np.round(np.geomspace(1, 4096, 60)))
    grid = decision_map(cm, "n0/gpu0", "n1/gpu0", blocks, values, over=over, reuse=reuse)
    curve = crossover_curve(cm, "n0/gpu0", "n1/gpu0", values, over=over, reuse=reuse)
    assert len(grid) == len(blocks) * len(values)
    checked = 0
    for v, k_star in zip(curve["value"], curve["crossover_blocks"], strict=True):
        if np.isnan(k_star):
            continue
        row = grid[(grid.value == v) & (grid.decision != "local")]
        below = row[row.blocks < k_star * (1 - 1e-9)]
        above = row[row.blocks > k_star * (1 + 1e-9)]
        # Fetch wins below the crossover (few blocks to move), route above it.
        assert (below.decision == "fetch").all() and (above.decision == "route").all()
        checked += 1
    assert checked >= 3


def test_more_reuse_moves_the_crossover_towards_more_blocks(cm):
    rate = [50e9]
    k1 = crossover_curve(cm, "n0/gpu0", "n1/gpu0", rate, reuse=1)["crossover_blocks"][0]
    k16 = crossover_curve(cm, "n0/gpu0", "n1/gpu0", rate, reuse=16)["crossover_blocks"][0]
    assert k16 > 50 * k1


def test_unknown_axis_is_refused(cm):
    with pytest.raises(UserError, match="over='latency'"):
        decision_map(cm, "n0/gpu0", "n1/gpu0", [1], [1.0], over="latency")
