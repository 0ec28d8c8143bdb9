"""``benchmarks/route_bounds.py``: each variant changes the routed kernel on the owner as it says,
nothing else, and leaves the engine as it found it."""

from __future__ import annotations

import numpy as np
import pytest
from benchtools import benchmark

from simulator import run
from simulator.engine.rounds import RoundReplay
from simulator.testing.invariants import repo_on, scenario_costs, small_scenario
from workloads.schema import make_trace


def two_readers():
    """Two requests over one repository on GPU 1: the first is homed on GPU 0 and routes to GPU
    1, the second decodes on GPU 1 itself, so the routed queries meet the owner's own work."""
    repo = repo_on(1, 2)
    return make_trace(arrival_at=[0.0, 0.0], input_tokens=[40 * 64, 40 * 64],
                      output_tokens=[12, 12], block_ids=[list(range(40)), list(range(40))],
                      block_tokens=64, repo_id=[repo, repo])


@pytest.fixture(scope="module")
def runs():
    rb = benchmark("route_bounds")
    sc = small_scenario("single_node:gpus=2", scheme="repo_affinity", layer_groups=0)
    trace = two_readers()
    original = RoundReplay._route_sent
    out = {}
    for name in rb.VARIANTS:
        counts = {"rounds": 0}
        with rb.variant(name, counts):
            res = run(sc, "route", trace=trace, engine="exact")
        assert RoundReplay._route_sent is original  # put back after each
        out[name] = (res.rounds[res.rounds["option"] == "route"], counts["rounds"])
    counts = {"rounds": 0}
    with rb.variant("both", counts):
        fetch = run(sc, "fetch", trace=trace, engine="exact")
    out["fetch"] = (fetch.rounds, counts["rounds"])
    return out


def test_every_routed_round_is_changed_and_nothing_else(runs):
    fifo, none = runs["fifo"]
    assert none == 0 and len(fifo) > 0
    for name in ("batched", "no-wait", "both"):
        rd, changed = runs[name]
        assert changed == len(rd) > 0
    assert runs["fetch"][1] == 0  # fetch issues no routed kernel


def test_fifo_waits_behind_the_owner_and_no_wait_does_not(runs):
    fifo = runs["fifo"][0]
    assert (fifo["compute_time"] > fifo["cf_compute_time"] * (1 + 1e-9)).any()
    rd = runs["no-wait"][0]  # the kernel alone, at the closed form's size
    np.testing.assert_allclose(rd["compute_time"], rd["cf_compute_time"], rtol=1e-9)


def test_batched_charges_the_marginal_kernel(runs):
    rb = benchmark("route_bounds")
    sc = small_scenario("single_node:gpus=2", scheme="repo_affinity", layer_groups=0)
    cm = scenario_costs(sc)[1]
    rd = runs["both"][0]  # no wait: compute_time is the batched kernel alone
    per = (rd["blocks"] / rd["batch"]).to_numpy()
    want = [cm.attention_time(str(o), n, b + rb.BATCH_REF)
            - cm.attention_time(str(o), n, rb.BATCH_REF)
            for o, n, b in zip(rd["owner"], per, rd["batch"], strict=True)]
    np.testing.assert_allclose(rd["compute_time"], want, rtol=1e-9)
    assert (rd["compute_time"] < rd["cf_compute_time"] * 0.5).all()  # far below its own kernel
