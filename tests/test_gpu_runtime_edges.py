"""The GPU runtime's release tolerance, at its edges: 1e-12 of what is held plus 1e-9 B."""

import pytest
import simpy

from simulator.gpu import GPU, KernelModel
from simulator.hardware import GPUSpec
from simulator.units import TFLOPS, TBps

#: A GPU of 1 TB of HBM: at 1e12 B held, the relative part of the tolerance is 1 B.
BIG = GPUSpec("big", hbm_bytes=2e12, hbm_bandwidth=TBps(1), peak_flops=TFLOPS(100),
              nvlink_bandwidth=1e9)


def _gpu(held: float) -> GPU:
    g = GPU(simpy.Environment(), "n0/gpu0", BIG, KernelModel())
    g.reserve(held)
    return g


def test_release_with_nothing_held_allows_exactly_1e_9_bytes():
    g = _gpu(0.0)
    g.release(1e-9)  # the bound itself: 0 * (1 + 1e-12) + 1e-9 is not exceeded
    assert g.used_bytes == 0.0  # floored at zero


def test_release_with_nothing_held_refuses_1_5e_9_bytes():
    g = _gpu(0.0)
    with pytest.raises(ValueError, match="cannot release 1.5e-09 B, 0.0 B reserved"):
        g.release(1.5e-9)


def test_release_above_what_is_held_within_its_relative_tolerance():
    g = _gpu(1e12)
    g.release(1e12 + 0.5)  # 0.5 B over, within 1e-12 x 1e12 = 1 B
    assert g.used_bytes == 0.0


def test_release_above_what_is_held_beyond_its_relative_tolerance():
    g = _gpu(1e12)
    with pytest.raises(ValueError, match="cannot release"):
        g.release(1e12 + 1.5)  # 1.5 B over: past 1 B + 1e-9 B
    assert g.used_bytes == 1e12  # nothing released
