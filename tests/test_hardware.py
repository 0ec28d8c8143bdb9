"""The hardware catalogue: its specs refuse what no hardware has and take everything up to
their bounds; its stacks' figures are the measurements they were fitted to."""

import pytest

from simulator import hardware
from simulator.hardware import GPUSpec, LinkSpec, StackSpec
from simulator.units import us

GPU_FIELDS = ("hbm_bytes", "hbm_bandwidth", "peak_flops", "nvlink_bandwidth")


def gpu(**change) -> GPUSpec:
    fields = dict.fromkeys(GPU_FIELDS, 1e12) | change
    return GPUSpec("g", **fields)


@pytest.mark.parametrize("field", GPU_FIELDS)
def test_a_gpu_field_must_be_positive_and_any_positive_value_is_taken(field):
    with pytest.raises(ValueError, match=field):
        gpu(**{field: 0.0})
    assert getattr(gpu(**{field: 0.5}), field) == 0.5  # below one is a value, not an error


def test_a_link_needs_a_known_kind_a_positive_rate_and_a_latency_of_zero_or_more():
    with pytest.raises(ValueError, match="kind 'wifi'"):
        LinkSpec("l", "wifi", 1e9, 0.0)
    with pytest.raises(ValueError, match="bandwidth"):
        LinkSpec("l", "ib", 0.0, 0.0)
    with pytest.raises(ValueError, match="latency"):
        LinkSpec("l", "ib", 1e9, -1e-9)
    assert LinkSpec("l", "ib", 0.5, 0.0).latency == 0.0  # the bounds themselves
    assert LinkSpec("l", "nvlink", 1e9, 0.5).bandwidth == 1e9


@pytest.mark.parametrize("field", ["inter_node_overhead_time", "intra_node_overhead_time"])
def test_a_stack_overhead_may_be_zero_or_more(field):
    with pytest.raises(ValueError, match=field):
        StackSpec("s", **{field: -1e-9})
    assert getattr(StackSpec("s", **{field: 0.0}), field) == 0.0
    assert getattr(StackSpec("s", **{field: 0.5}), field) == 0.5


@pytest.mark.parametrize("field", ["inter_node_efficiency", "intra_node_efficiency"])
def test_a_stack_efficiency_is_in_zero_to_one_with_one_included(field):
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=field):
            StackSpec("s", **{field: bad})
    for good in (1e-9, 1.0):
        assert getattr(StackSpec("s", **{field: good}), field) == good


def test_a_stack_answers_per_side_of_the_nic():
    s = StackSpec("s", inter_node_overhead_time=2.0, intra_node_overhead_time=1.0,
                  inter_node_efficiency=0.5, intra_node_efficiency=0.75)
    assert (s.overhead_time(True), s.overhead_time(False)) == (2.0, 1.0)
    assert (s.efficiency(True), s.efficiency(False)) == (0.5, 0.75)


def test_the_stacks_give_back_the_round_trips_and_rates_they_were_fitted_to():
    # Lamina §6.3 across nodes over 400G RoCE: 33.0 µs (IBGDA) and 66.6 µs (NCCL) round trips on
    # a path of 4 PCIe hops (0.3 µs) and 2 RoCE hops (0.5 µs); 45.7 and 35.5 of 50 GB/s
    path = 4 * us(0.3) + 2 * us(0.5)
    for name, rtt, rate in (("ibgda", 33.0, 45.7), ("nccl", 66.6, 35.5)):
        s = hardware.stack(name)
        assert 2 * (s.overhead_time(True) + path) == pytest.approx(us(rtt))
        assert s.efficiency(True) * 50 == pytest.approx(rate)
        # within a node: ~3 µs one way over GPU → NVSwitch → GPU (2 × 0.25 µs)
        assert s.overhead_time(False) + 2 * us(0.25) == pytest.approx(us(3.0))
        assert s.efficiency(False) == pytest.approx(374 / 450)


def test_a_stack_spec_is_taken_as_it_is_and_unknown_names_list_the_known_ones():
    mine = StackSpec("mine", inter_node_overhead_time=1e-6)
    assert hardware.stack(mine) is mine
    with pytest.raises(hardware.UnknownSpecError, match="known: ibgda, ideal, nccl"):
        hardware.stack("rdma")
    with pytest.raises(hardware.UnknownSpecError, match="unknown link 'nvlink9'"):
        hardware.link("nvlink9")


def test_gpu_names_are_case_insensitive_and_unknown_ones_are_user_errors():
    assert hardware.gpu("h200") is hardware.GPUS["H200"]
    with pytest.raises(hardware.UnknownSpecError, match="unknown GPU 'H300'; known: A100"):
        hardware.gpu("H300")
