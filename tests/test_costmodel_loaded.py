"""The closed form under load (simulator.costmodel.loaded): per-step costs where copies are
used R times — a round only when a block is new, carrying only the new ones — and queued work
that delays the kernel it precedes."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.costmodel import OPTIONS, CostModel
from simulator.costmodel.loaded import LoadedCosts, round_probability
from simulator.errors import UserError
from simulator.gpu import KernelModel
from tests.strategies import two_node_graph

HOME, PEER, REMOTE = "n0/gpu0", "n0/gpu1", "n1/gpu0"
G = two_node_graph()
CM = CostModel("deepseek-v3.2", G, "ibgda", kernels=KernelModel())
LC = LoadedCosts(CM)

blocks = st.integers(1, 256)
batches = st.integers(1, 16)
owners = st.sampled_from([PEER, REMOTE])


@given(blocks, batches, owners)
def test_used_once_and_idle_every_option_is_the_closed_form(k, b, owner):
    t = LC.totals(HOME, owner, k, b)
    for o in OPTIONS:
        assert t[o] == pytest.approx(CM.option(o, HOME, owner, k, b).total, rel=1e-12)
    assert LC.decide(HOME, owner, k, b) == CM.decide(HOME, owner, k, b)


@given(blocks, batches, owners, st.floats(1.0, 1e4))
def test_reuse_leaves_route_alone_and_makes_fetch_move_only_new_blocks(k, b, owner, reuse):
    assert LC.step_time("route", HOME, owner, k, b, reuse) == pytest.approx(
        CM.route(HOME, owner, k, b).total, rel=1e-12)
    chance = 1.0 - (1.0 - 1.0 / reuse) ** (k * b)
    assert round_probability(k * b, reuse) == pytest.approx(chance, rel=1e-9, abs=1e-15)
    new = k * b / (reuse * chance)  # blocks the round moves in all, when there is one
    lo = max(1, math.floor(new))
    w = max(new, 1.0) - lo
    one = CM.fetch(HOME, owner, lo / b, b).total
    two = CM.fetch(HOME, owner, (lo + 1) / b, b).total
    expect = chance * (one + w * (two - one))
    assert LC.step_time("fetch", HOME, owner, k, b, reuse) == pytest.approx(expect, rel=1e-9)
    # more reuse never makes a step dearer; a round never costs less than its fixed part
    assert LC.step_time("fetch", HOME, owner, k, b, reuse * 2) <= \
        LC.step_time("fetch", HOME, owner, k, b, reuse) * (1 + 1e-12)


def test_known_answers_of_the_round_probability():
    assert round_probability(32, 1.0) == 1.0
    assert round_probability(0, 5.0) == 0.0
    # 32 uses of copies used twice each: a round unless all 32 hit (2⁻³²)
    assert round_probability(32, 2.0) == pytest.approx(1 - 2.0**-32)
    # one use of a copy used 4 times: a round one step in four
    assert round_probability(1, 4.0) == pytest.approx(0.25)
    with pytest.raises(UserError, match="reuse=0.5"):
        round_probability(3, 0.5)


@given(blocks, batches, owners, st.floats(0.0, 1e-2), st.floats(0.0, 1e-2))
def test_queued_work_delays_the_kernel_it_precedes(k, b, owner, owner_busy, home_busy):
    r = CM.route(HOME, owner, k, b)
    owner_wait = max(0.0, owner_busy - (r.probe + r.transfer))
    answered = r.probe + r.transfer + owner_wait + r.compute + r.ret
    expect = r.total + owner_wait + max(0.0, home_busy - answered)
    assert LC.step_time("route", HOME, owner, k, b, 1.0, owner_busy, home_busy) == \
        pytest.approx(expect, rel=1e-12)
    f = CM.fetch(HOME, owner, k, b)
    assert LC.step_time("fetch", HOME, owner, k, b, 1.0, owner_busy, home_busy) == \
        pytest.approx(f.total + max(0.0, home_busy - (f.probe + f.transfer)), rel=1e-12)
    loc = CM.local(HOME, owner, k, b)
    assert LC.step_time("local", HOME, owner, k, b, 1.0, owner_busy, home_busy) == \
        pytest.approx(loc.total + home_busy, rel=1e-12)


@given(blocks, batches, owners, st.floats(1.0, 1e3), st.floats(0.0, 1e-2), st.floats(0.0, 64.0))
def test_an_owner_stall_charges_route_its_kernel_that_many_times_and_nothing_else(
        k, b, owner, reuse, owner_busy, weight):
    # the routed kernel delays the owner's own queries (``weight`` home batches of them; 1 for
    # a lockstep owner, given as True): route pays its kernel time that many times more
    for o in OPTIONS:
        alone = LC.step_time(o, HOME, owner, k, b, reuse, owner_busy)
        stalled = LC.step_time(o, HOME, owner, k, b, reuse, owner_busy, owner_stall=weight)
        lockstep = LC.step_time(o, HOME, owner, k, b, reuse, owner_busy, owner_stall=True)
        kernel = CM.route(HOME, owner, k, b).compute if o == "route" else 0.0
        assert stalled == pytest.approx(alone + weight * kernel, rel=1e-12)
        assert lockstep == pytest.approx(alone + kernel, rel=1e-12)


def test_a_lockstep_owner_tips_a_narrow_route_win_to_fetch():
    # a round route wins by less than its owner kernel: fetch once the owner's delay counts
    k, reuse = 16, 5.0
    t = LC.totals(HOME, REMOTE, k, 1, reuse)
    gap = t["fetch"] - t["route"]
    assert 0 < gap < CM.route(HOME, REMOTE, k, 1).compute
    assert LC.decide(HOME, REMOTE, k, 1, reuse=reuse) == "route"
    stalled = LC.totals(HOME, REMOTE, k, 1, reuse, owner_stall=True)
    assert stalled["fetch"] < stalled["route"]
    assert LC.decide(HOME, REMOTE, k, 1, reuse=reuse, owner_stall=True) == "fetch"


def test_reuse_tips_a_routed_round_to_fetch_and_load_or_slow_links_tip_it_back():
    # across nodes, 32 blocks per query: route is cheaper for blocks used once …
    assert LC.decide(HOME, REMOTE, 32, 1) == "route"
    # … fetch once copies are used often enough that a step rarely moves a block
    assert LC.decide(HOME, REMOTE, 32, 1, reuse=1000.0) == "fetch"
    # reuse of a few does not pay: a step still needs a round, with its fixed costs
    assert LC.decide(HOME, REMOTE, 32, 1, reuse=3.0) == "route"
    # a busy owner makes the routed round wait
    assert LC.decide(HOME, REMOTE, 32, 1, reuse=3.0, owner_backlog_time=1e-3) == "fetch"
    # a busy path makes fetch's bytes slower
    assert LC.decide(HOME, REMOTE, 32, 1, reuse=1000.0, slow_times={"fetch": 1.0},
                     options=("route", "fetch")) == "route"
    # options restrict the answer; a tie goes to the earlier option
    assert LC.decide(HOME, REMOTE, 32, 1, options=("fetch", "local")) == "fetch"
    with pytest.raises(UserError, match="at least one"):
        LC.decide(HOME, REMOTE, 32, 1, options=())
    with pytest.raises(UserError, match="teleport"):
        LC.step_time("teleport", HOME, REMOTE, 32, 1)


@given(st.floats(0.5, 200.0), batches, owners, st.floats(1.0, 50.0), st.floats(0.0, 1e-3),
       st.floats(0.0, 1e-3), st.sampled_from(["fetch", "local"]))
def test_copy_step_is_step_time_and_the_round_its_steps_pay(k, b, owner, reuse, home_busy,
                                                            slow, option):
    # the policy's one call for fetch: the step time step_time gives, bit for bit, and the
    # whole round at the new blocks per query (the closed form's phases, interpolated)
    step, total = LC.copy_step(option, HOME, owner, k, b, reuse, home_busy, slow)
    assert step == LC.step_time(option, HOME, owner, k, b, reuse, 0.0, home_busy, slow)
    _, new = LC.round_blocks(k, b, reuse)
    assert total == LC.at(option, HOME, owner, new, b).total
    p = LC.at(option, HOME, owner, new, b)
    x = max(new * b, 1.0)
    lo, w = math.floor(x), x - math.floor(x)
    a, c = LC.phases(option, HOME, owner, lo, b), LC.phases(option, HOME, owner, lo + 1, b)
    assert p.compute == pytest.approx(a.compute + w * (c.compute - a.compute), rel=1e-12)
