"""The closed form holds alone and breaks, in the expected direction, under contention."""

import pytest

import topologies
from simulator.costmodel import CostModel as _CostModel
from simulator.costmodel.contention import concurrent_rounds, contention_frame
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


def test_one_round_alone_equals_the_closed_form(cm):
    for option in ("route", "fetch", "local"):
        (sim,) = concurrent_rounds(cm, option, [("n0/gpu0", "n1/gpu0")], 32, batch=4)
        cf = cm.option(option, "n0/gpu0", "n1/gpu0", 32, 4)
        assert sim.total == pytest.approx(cf.total, rel=1e-9)
        for a, b in zip(sim.as_dict().values(), cf.as_dict().values(), strict=True):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-15)


def test_eight_homes_fetching_from_one_owner_share_its_nic(cm):
    # Every GPU of node 0 pulls 256 blocks from n1/gpu0: the owner's NIC carries 8 transfers.
    pairs = [(f"n0/gpu{i}", "n1/gpu0") for i in range(8)]
    sims = concurrent_rounds(cm, "fetch", pairs, 256)
    fixed = cm.message_fixed_time("n1/gpu0", "n0/gpu0")
    nbytes = cm.fetch_bytes(256)
    line = cm.path("n1/gpu0", "n0/gpu0").bottleneck_bandwidth
    # Max-min fair: the eight transfers split the owner's 50 GB/s NIC link and end together
    # (the same-rail home's path is 0.4 µs shorter, so it starts and ends a little earlier).
    # The stack's efficiency caps each flow alone at 91.4% of the line; eight fill the line.
    for p in sims:
        assert p.transfer == pytest.approx(fixed + 8 * nbytes / line, rel=3e-3)
    assert sims[0].transfer > 7 * cm.fetch("n0/gpu0", "n1/gpu0", 256).transfer


def test_contention_can_flip_the_verdict(cm):
    pairs = [(f"n0/gpu{i}", "n1/gpu0") for i in range(8)]
    df = contention_frame(cm, pairs, blocks=[1], concurrency=[1, 8], batch=1)
    alone = df[df.concurrency == 1].set_index("option")["simulated_time"]
    loaded = df[df.concurrency == 8].set_index("option")["simulated_time"]
    assert alone["fetch"] < alone["route"]  # one block: the formula says fetch
    assert (df[df.concurrency == 1]["error"].abs() < 1e-9).all()
    # Under load the owner's compute stream serializes the routed rounds: route slows more.
    assert loaded["route"] / alone["route"] > loaded["fetch"] / alone["fetch"]


def test_rounds_without_a_message_or_a_block_are_the_closed_forms(cm):
    # a home routing to itself sends nothing (no probe, no transfer); a fetch of no block moves
    # nothing: the replay runs only their kernels, as the closed form charges them
    (route,) = concurrent_rounds(cm, "route", [("n0/gpu0", "n0/gpu0")], 8, batch=2)
    cf = cm.route("n0/gpu0", "n0/gpu0", 8, 2)
    assert route.probe == 0.0 == cf.probe and route.transfer == cf.transfer == 0.0
    assert route.total == pytest.approx(cf.total, rel=1e-9)
    (fetch,) = concurrent_rounds(cm, "fetch", [("n0/gpu0", "n1/gpu0")], 0)
    assert fetch.probe == fetch.transfer == fetch.compute == 0.0
    assert fetch.total == pytest.approx(cm.merge_time("n0/gpu0", 1), rel=1e-12)


def test_the_frame_holds_the_first_pairs_closed_form_and_the_mean_of_the_replays(cm):
    # an intra-node pair first, a cross-node one second: "alone" is the first pair's round,
    # "simulated" the mean over the C rounds replayed together
    pairs = [("n0/gpu0", "n0/gpu1"), ("n0/gpu2", "n1/gpu3")]
    df = contention_frame(cm, pairs, blocks=[16], concurrency=[2], options=("route",))
    row = df.iloc[0]
    assert row["closed_form_time"] == cm.route("n0/gpu0", "n0/gpu1", 16, 1).total
    assert cm.route("n0/gpu2", "n1/gpu3", 16, 1).total > row["closed_form_time"]
    sims = concurrent_rounds(cm, "route", pairs, 16)
    assert row["simulated_time"] == pytest.approx((sims[0].total + sims[1].total) / 2, rel=1e-12)
    assert row["error"] == pytest.approx(row["simulated_time"] / row["closed_form_time"] - 1)
