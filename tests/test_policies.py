"""Policies: the registry, the built-ins' choices, and a user's own policy property-tested in a
few lines with simulator.testing (as docs/policies.md shows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import run
from simulator.costmodel import CostModel
from simulator.errors import UserError
from simulator.network import Fabric
from simulator.policies import POLICIES, Policy, PolicyContext, Round, get, register
from simulator.policies.adaptive import live_total
from simulator.testing.invariants import check_run, small_cases, small_scenario
from simulator.testing.profiles import examples
from simulator.testing.traces import request_traces
from workloads.schema import make_trace


def test_the_registry_names_every_built_in_policy():
    assert list(POLICIES) == ["route", "fetch", "local", "adaptive", "adaptive_static",
                              "adaptive_live", "colocated", "disaggregated", "homogeneous"]
    for name, cls in POLICIES.items():
        assert cls.name == name and issubclass(cls, Policy)
    # the last two replace the whole decode loop instead of deciding rounds
    assert [n for n, c in POLICIES.items() if c.loop] == ["disaggregated", "homogeneous"]
    assert isinstance(get("route"), POLICIES["route"])
    with pytest.raises(UserError, match="unknown policy 'teleport'"):
        get("teleport")


def test_register_adds_a_user_policy_and_rejects_non_policies():
    @register
    class Stubborn(Policy):
        name = "stubborn_test"

        def choose(self, ctx, rnd):
            return "fetch"

    try:
        assert POLICIES["stubborn_test"] is Stubborn
        with pytest.raises(UserError, match="not a Policy"):
            register(int)

        class Nameless(Policy):
            pass

        with pytest.raises(UserError, match="needs a `name`"):
            register(Nameless)
    finally:
        POLICIES.pop("stubborn_test", None)


def fixture_graph():
    import topologies

    return topologies.build("dgx_h100", nodes=2)


@pytest.mark.parametrize("blocks", [1, 4, 32, 256])
@pytest.mark.parametrize("batch", [1, 8])
def test_adaptive_static_asks_the_closed_form(blocks, batch):
    g = fixture_graph()
    cm = CostModel("deepseek-v3.2", g, "ibgda")
    ctx = PolicyContext(cm, None, g, np.random.default_rng(0))
    rnd = Round("n0/gpu0", "n1/gpu3", 0, batch, blocks, blocks, 0.0)
    assert get("adaptive_static").choose(ctx, rnd) == cm.decide("n0/gpu0", "n1/gpu3", blocks,
                                                                 batch)


def test_adaptive_live_equals_the_closed_form_on_an_idle_fabric_and_reprices_a_busy_one():
    g = fixture_graph()
    env = simpy.Environment()
    fab = Fabric(env, g, "ibgda")
    cm = CostModel("deepseek-v3.2", g, "ibgda")
    rnd = Round("n0/gpu0", "n1/gpu3", 0, 4, 8, 8, 0.0)
    idle = {o: live_total(cm, fab, o, rnd) for o in ("route", "fetch", "local")}
    for option, t in idle.items():
        assert t == pytest.approx(getattr(cm, option)("n0/gpu0", "n1/gpu3", 8, 4).total)
    # three long flows from n1/gpu3 to n0/gpu0 share the path the fetched blocks would take
    for _ in range(3):
        fab.transfer("n1/gpu3", "n0/gpu0", 1e12)
    env.run(until=1e-3)
    busy = {o: live_total(cm, fab, o, rnd) for o in ("route", "fetch", "local")}
    assert busy["fetch"] > idle["fetch"] and busy["route"] > idle["route"]
    assert busy["local"] == idle["local"]
    ctx = PolicyContext(cm, fab, g, np.random.default_rng(0))
    assert get("adaptive_live").choose(ctx, rnd) == min(busy, key=lambda o: (busy[o],
                                                        ("route", "fetch", "local").index(o)))


def test_colocated_never_leaves_home():
    sc = small_scenario("single_node:gpus=2", scheme="hash")
    trace = make_trace(arrival_at=[0.0], input_tokens=[4000], output_tokens=[8],
                       block_ids=[list(range(63))], block_tokens=64)
    res = run(sc, "colocated", trace=trace)
    assert len(res.rounds) == 0 and res.fabric_bytes == 0
    assert res.summary["completed"] == 1


def test_a_policy_that_answers_nonsense_is_stopped_with_its_name():
    class Confused(Policy):
        name = "confused"

        def choose(self, ctx, rnd):
            return "teleport"

    sc = small_scenario("single_node:gpus=2", scheme="hash")
    trace = make_trace(arrival_at=[0.0], input_tokens=[4000], output_tokens=[3],
                       block_ids=[list(range(63))], block_tokens=64)
    with pytest.raises(ValueError, match="'confused' returned 'teleport'"):
        run(sc, Confused(), trace=trace)


def test_a_policy_that_routes_without_declaring_it_is_stopped():
    class Sneaky(Policy):
        name = "sneaky"
        options = ("fetch", "local")

        def choose(self, ctx, rnd):
            return "route"

    sc = small_scenario("single_node:gpus=2", scheme="hash")
    trace = make_trace(arrival_at=[0.0], input_tokens=[4000], output_tokens=[3],
                       block_ids=[list(range(63))], block_tokens=64)
    with pytest.raises(ValueError, match="'sneaky' returned 'route'; it may return fetch, local"):
        run(sc, Sneaky(), trace=trace)


class FetchUndeclared(Policy):
    """``fetch`` without declaring that it never routes: the engine replays every slot with
    an event of its own instead of chaining the slots with nothing to exchange."""

    name = "fetch_undeclared"

    def choose(self, ctx, rnd):
        return "fetch"


@settings(max_examples=6)
@given(case=small_cases())
def test_chaining_quiet_slots_changes_no_result(case):
    # fetch declares options = ("fetch",): its quiet slots take no event; the same choices
    # without the declaration take one event per slot — the records agree to rounding
    scenario, trace = case
    a = run(scenario, "fetch", trace=trace)
    b = run(scenario, FetchUndeclared(), trace=trace)
    assert a.summary["events"] <= b.summary["events"]
    pd.testing.assert_frame_equal(a.requests, b.requests, rtol=1e-9)
    pd.testing.assert_frame_equal(a.iterations, b.iterations, rtol=1e-9)
    cols = [c for c in a.rounds.columns if c != "option"]
    pd.testing.assert_frame_equal(a.rounds[cols], b.rounds[cols], rtol=1e-9)


# -- a user's own policy, property-tested in a few lines (docs/policies.md) -----------------


class RouteSmallBatches(Policy):
    """Route rounds of up to two queries, fetch bigger ones."""

    name = "route_small_batches"

    def choose(self, ctx, rnd):
        return "route" if rnd.batch <= 2 else "fetch"


@settings(max_examples=8, deadline=None)  # as docs/policies.md: it runs outside conftest's profile
@given(case=small_cases())
def test_a_user_policy_keeps_every_invariant(case):
    scenario, trace = case
    res = run(scenario, RouteSmallBatches(), trace=trace, check_invariants=True)
    check_run(res, trace)
    rd = res.rounds[res.rounds["owner"].astype(str).str.contains("gpu")
                    & (res.rounds["src"].astype(str) != res.rounds["owner"].astype(str))]
    assert (rd["option"].astype(str) == np.where(rd["batch"] <= 2, "route", "fetch")).all()


@pytest.mark.parametrize("engine", ["exact", "fast"])
@settings(max_examples=examples(10))
@given(trace=request_traces(max_requests=6, max_blocks=16, vocab=30, block_tokens=st.just(64)),
       weights=st.sampled_from([40e9, 71.1e9]), chunked=st.booleans())
def test_on_one_gpu_every_policy_gives_the_same_run(engine, trace, weights, chunked):
    # one GPU and no host tier: every block a query reads is on its home, so there is nothing
    # to route, fetch or recompute, and the policy cannot change anything (tight KV included:
    # 71.1 GB of weights leaves ~200 blocks). The exact engine's records are equal bit for bit;
    # the fast engine composes a routing policy's step slot by slot and the others' as one
    # product, equal to float rounding
    sc = small_scenario("single_node:gpus=1", weights_per_gpu=weights, host_tier=False,
                        mode=engine, serving={"chunked_prefill": chunked})
    runs = {p: run(sc, p, trace=trace) for p in ("route", "fetch", "local", "adaptive")}
    tol = {"check_exact": True} if engine == "exact" else {"rtol": 1e-12, "atol": 1e-15}
    for p, res in runs.items():
        assert not len(res.rounds)
        pd.testing.assert_frame_equal(runs["route"].requests, res.requests, obj=p, **tol)
        pd.testing.assert_frame_equal(
            runs["route"].iterations.drop(columns=["engine"], errors="ignore"),
            res.iterations.drop(columns=["engine"], errors="ignore"), obj=p, **tol)
