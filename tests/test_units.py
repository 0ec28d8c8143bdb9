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


@pytest.mark.parametrize("fn, factor", [
    (units.KB, 1e3), (units.MB, 1e6), (units.GB, 1e9), (units.TB, 1e12), (units.KiB, 1024.0),
    (units.MiB, 1024.0 ** 2), (units.GiB, 1024.0 ** 3), (units.GBps, 1e9), (units.TBps, 1e12),
    (units.Gbps, 1e9 / 8), (units.TFLOPS, 1e12), (units.PFLOPS, 1e15), (units.ns, 1e-9),
    (units.us, 1e-6), (units.ms, 1e-3)])
def test_every_conversion_into_si_by_its_factor(fn, factor):
    assert fn(2.5) == pytest.approx(2.5 * factor, rel=1e-15)
    assert type(fn(2)) is float


def test_conversions_out_of_si():
    assert units.to_us(2.5e-6) == pytest.approx(2.5, rel=1e-15)
    assert units.to_ms(2.5e-3) == pytest.approx(2.5, rel=1e-15)
    assert units.to_GBps(2.5e9) == pytest.approx(2.5, rel=1e-15)


@pytest.mark.parametrize("seconds, text", [
    (0.0, "0 s"), (5e-10, "0.5 ns"), (-5e-10, "-0.5 ns"), (1e-6, "1 µs"), (2.5e-6, "2.5 µs"),
    (1e-3, "1 ms"), (0.5, "500 ms"), (1.0, "1 s"), (1.5, "1.5 s"), (125.0, "125 s")])
def test_durations_are_shown_in_the_unit_they_reach(seconds, text):
    assert units.fmt_time(seconds) == text


@pytest.mark.parametrize("nbytes, text", [
    (0, "0 B"), (999, "999 B"), (1000, "1 KB"), (1e6, "1 MB"), (2.5e9, "2.5 GB"),
    (1e12, "1 TB"), (-2e6, "-2 MB")])
def test_sizes_are_shown_in_the_decimal_unit_they_reach(nbytes, text):
    assert units.fmt_bytes(nbytes) == text


def test_rates_are_shown_in_gigabytes_per_second():
    assert units.fmt_rate(45.7e9) == "45.7 GB/s"
