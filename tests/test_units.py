"""Units: conversions into SI and back, and the hardware catalog's numbers."""

import pytest

from simulator import hardware, units
from simulator.errors import UserError


def test_conversions_are_si():
    assert units.GBps(450) == 450e9
    assert units.Gbps(400) == 50e9  # 400 Gb/s is 50 GB/s
    assert units.us(3) == pytest.approx(3e-6)
    assert units.GiB(1) == 1024**3
    assert units.TFLOPS(989) == 989e12
    assert units.to_us(units.us(7.5)) == pytest.approx(7.5)


def test_formatting_picks_a_readable_unit():
    assert units.fmt_time(3e-6) == "3 µs"
    assert units.fmt_time(0.0125) == "12.5 ms"
    assert units.fmt_bytes(1152) == "1.152 KB"


def test_catalog_matches_reference():
    h100 = hardware.gpu("h100")
    assert h100.hbm_bandwidth == 3.35e12 and h100.price_per_hour == 11.06
    assert hardware.gpu("H20").peak_flops == 148e12
    assert hardware.link("ib_ndr").bandwidth == 50e9


def test_stack_overheads_reproduce_the_measured_round_trips():
    # Lamina §6.3: 33.0 µs (GPU-initiated) and 66.6 µs (NCCL) round trips on a path whose
    # modelled latency is 4 PCIe hops + 2 RoCE hops.
    path_latency = 4 * hardware.link("pcie5").latency + 2 * hardware.link("roce400").latency
    for name, rtt in (("ibgda", 33.0e-6), ("nccl", 66.6e-6)):
        s = hardware.stack(name)
        assert 2 * (s.overhead_time(inter_node=True) + path_latency) == pytest.approx(rtt)
    assert hardware.stack("ideal").overhead_time(True) == 0


def test_unknown_names_get_a_clear_error():
    with pytest.raises(UserError, match="unknown GPU 'H9000'; known: A100, B200"):
        hardware.gpu("H9000")
    with pytest.raises(UserError, match="network stack"):
        hardware.stack("tcp")
