"""Host↔device copies: the measured PCIe table, and the CUDA copy-engine concurrency rules."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from simulator.gpu.copyengines import CopyEngines, HostCopyTime, host_copy_time
from simulator.gpu.profiles import calibration_dir
from simulator.gpu.streams import Stream
from simulator.units import GBps

TABLE = calibration_dir() / "h200" / "pcie_sweep.csv"


def rows():
    with open(TABLE, newline="") as f:
        return [(r["direction"], float(r["bytes"]), float(r["time_s"])) for r in csv.DictReader(f)]


def test_measured_sizes_take_their_measured_time():
    """Each measured size takes its measured time, or the longest time measured for a smaller
    copy where the small-copy medians wander on the launch floor (4 KiB h2d: 20.74 µs measured,
    21.07 µs for 1 KiB)."""
    model = host_copy_time()
    floor = {"h2d": 0.0, "d2h": 0.0}
    raised = 0
    for direction, nbytes, t in sorted(rows(), key=lambda r: (r[0], r[1])):
        want = max(t, floor[direction])
        raised += want > t
        floor[direction] = want
        assert model.time(direction, nbytes) == pytest.approx(want, rel=1e-12)
    assert 0 < raised <= 6  # only launch-floor rows (≤ 256 KiB) are raised
    assert model.time("h2d", 4096) == pytest.approx(2.1072e-05, rel=1e-12)


def test_between_rows_log_log_interpolation_and_beyond_the_tail_rate():
    model = host_copy_time()
    # halfway in log size between 4 MiB and 16 MiB rows: the geometric mean of their times
    t4, t16 = 8.4368e-05, 0.000310432
    assert model.time("h2d", 8 * 2**20) == pytest.approx(np.sqrt(t4 * t16), rel=1e-9)
    # past 1 GiB: the last two rows' rate (~55.3 GB/s) for the rest
    rate = (2**30 - 2**28) / (0.0193986 - 0.00485595)
    assert model.time("h2d", 2**31) == pytest.approx(0.0193986 + 2**30 / rate, rel=1e-9)
    # below 1 KB: the smallest copy's time (the per-copy latency)
    assert model.time("d2h", 10) == pytest.approx(2.0928e-05)
    assert model.time("h2d", 0) == 0.0


def test_a_slower_link_stretches_only_the_bandwidth_part():
    model = host_copy_time()
    floor = 2.1072e-05
    big = model.time("h2d", 2**30)
    gen4 = model.time("h2d", 2**30, link_bandwidth=GBps(32))
    assert gen4 == pytest.approx(floor + 2 * (big - floor), rel=1e-12)
    with pytest.raises(ValueError, match="direction"):
        model.time("up", 10)


@given(st.floats(1.0, 4e9), st.floats(1.0, 4e9))
def test_a_copy_never_gets_faster_with_more_bytes(a, b):
    model = host_copy_time()
    lo, hi = sorted((a, b))
    for d in ("h2d", "d2h"):
        assert model.time(d, lo) <= model.time(d, hi) * (1 + 1e-12)


def test_same_direction_copies_queue_in_issue_order():
    # CUDA guide, "Concurrent Data Transfers": one copy per direction at a time
    env = simpy.Environment()
    ce = CopyEngines(env)
    assert ce.issue("h2d", 3.0) == 3.0
    assert ce.issue("h2d", 2.0) == 5.0  # waits for the first
    assert ce.issue("h2d", 1.0) == 6.0


def test_opposite_directions_overlap_and_copies_overlap_kernels():
    env = simpy.Environment()
    ce = CopyEngines(env)
    compute = Stream(env)
    assert ce.issue("h2d", 3.0) == 3.0
    assert ce.issue("d2h", 2.0) == 2.0  # the other engine: no wait
    assert compute.issue(4.0) == 4.0  # the SMs: no wait behind any copy
    env.run(until=10.0)
    assert ce.busy_time == pytest.approx(5.0)


def test_a_table_of_other_measurements_is_read_as_given(tmp_path):
    p = tmp_path / "pcie.csv"
    p.write_text("direction,bytes,time_s\nh2d,1000,1e-5\nh2d,1000000,1e-4\n"
                 "d2h,1000,2e-5\nd2h,1000000,2e-4\n")
    m = HostCopyTime(p)
    assert m.time("h2d", 1000) == pytest.approx(1e-5) and m.time("d2h", 1e6) == pytest.approx(2e-4)


def test_a_table_given_out_of_order_is_sorted_raised_and_extended(tmp_path):
    # rows out of size order, and a 4 kB h2d copy measured faster than the 1 kB one: the table
    # is sorted by size, a larger copy is never faster (running maximum), and past the last row
    # the rest goes at the last two rows' rate
    p = tmp_path / "pcie.csv"
    p.write_text("direction,bytes,time_s\n"
                 "h2d,1000000,1e-4\nh2d,1000,2e-5\nh2d,4000,1.5e-5\nh2d,100000,3e-5\n"
                 "d2h,100000,4e-5\nd2h,1000,1e-5\nd2h,1000000,2.2e-4\n")
    m = HostCopyTime(p)
    assert m.path == str(p)
    assert m.time("h2d", 4000) == pytest.approx(2e-5, rel=1e-12)  # raised to the 1 kB time
    # between 4 kB (2e-5, raised) and 100 kB (3e-5), log-log: at 20 kB
    w = np.log(20_000 / 4000) / np.log(100_000 / 4000)
    want = np.exp((1 - w) * np.log(2e-5) + w * np.log(3e-5))
    assert m.time("h2d", 20_000) == pytest.approx(want, rel=1e-12)
    # between the first two rows (d2h: 1 kB, 100 kB) and the last two (h2d: 100 kB, 1 MB),
    # log-log as well
    for d, x, (x0, t0), (x1, t1) in (("d2h", 10_000, (1000, 1e-5), (100_000, 4e-5)),
                                     ("h2d", 300_000, (100_000, 3e-5), (1e6, 1e-4))):
        w = np.log(x / x0) / np.log(x1 / x0)
        assert m.time(d, x) == pytest.approx(np.exp((1 - w) * np.log(t0) + w * np.log(t1)),
                                             rel=1e-12)
    # beyond 1 MB at the rate of the last two rows: 900 kB in 70 µs (h2d), in 180 µs (d2h)
    assert m.time("h2d", 2e6) == pytest.approx(1e-4 + 1e6 * 70e-6 / 900e3, rel=1e-12)
    assert m.time("d2h", 2e6) == pytest.approx(2.2e-4 + 1e6 * 180e-6 / 900e3, rel=1e-12)
    # below the smallest row: that row's time; half a byte is still a copy
    assert m.time("h2d", 500) == pytest.approx(2e-5, rel=1e-12)
    assert m.time("d2h", 0.5) == pytest.approx(1e-5, rel=1e-12)
    assert m.time("d2h", 0.0) == 0.0
    # a link at twice the rate halves the part beyond the smallest copy's time (d2h: 1e-5)
    assert m.time("d2h", 1e6, link_bandwidth=GBps(128)) == pytest.approx(
        1e-5 + (2.2e-4 - 1e-5) / 2, rel=1e-12)


def test_each_direction_has_its_own_engine():
    env = simpy.Environment()
    ce = CopyEngines(env)
    ce.issue("h2d", 3.0)
    ce.issue("d2h", 1.0)
    assert (ce.h2d.free_at, ce.d2h.free_at) == (3.0, 1.0)
