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
def test_reuse_makes_fetch_move_only_new_blocks_and_route_defer_their_move(k, b, owner, reuse):
    chance = 1.0 - (1.0 - 1.0 / reuse) ** (k * b)
    assert round_probability(k * b, reuse) == pytest.approx(chance, rel=1e-9, abs=1e-15)
    new = k * b / (reuse * chance)  # blocks the round moves in all, when there is one
    lo = max(1, math.floor(new))
    w = max(new, 1.0) - lo
    one = CM.fetch(HOME, owner, lo / b, b).total
    two = CM.fetch(HOME, owner, (lo + 1) / b, b).total
    expect = chance * (one + w * (two - one))
    assert LC.step_time("fetch", HOME, owner, k, b, reuse) == pytest.approx(expect, rel=1e-9)
    # route: its round every step, plus the move it defers — the step's new blocks, each
    # selected again with chance 1 − 1/R, at fetch's cost per block beyond a round's first
    first = CM.fetch(HOME, owner, 1 / b, b).total
    defer = (1.0 - 1.0 / reuse) * max(0.0, expect - chance * first)
    assert LC.step_time("route", HOME, owner, k, b, reuse) == pytest.approx(
        CM.route(HOME, owner, k, b).total + defer, rel=1e-9, abs=1e-15)
    # more reuse never makes a step dearer; a round never costs less than its fixed part
    assert LC.step_time("fetch", HOME, owner, k, b, reuse * 2) <= \
        LC.step_time("fetch", HOME, owner, k, b, reuse) * (1 + 1e-12)


def test_a_routed_round_defers_nothing_without_reuse_and_flips_close_calls_with_it():
    # R = 1: nothing copied is used again, so routing defers no move
    for owner in (PEER, REMOTE):
        assert LC.deferred(HOME, owner, 32.0, 8, 1.0) == 0.0
        assert LC.deferred(HOME, owner, 0.0, 8, 5.0) == 0.0  # nothing selected: no round
    # where route is dearer than fetch's steady step only once the deferred move is counted,
    # the decision is fetch (the cases discriminate: some exist on this cost model)
    flipped = 0
    for owner in (PEER, REMOTE):
        for k, b, reuse in ((8, 1, 1.5), (32, 4, 2.0), (32, 8, 5.0), (64, 16, 3.0),
                            (16, 2, 1.2), (128, 8, 1.5), (4, 1, 1.1), (256, 16, 2.5)):
            route = CM.route(HOME, owner, k, b).total
            fetch = LC.step_time("fetch", HOME, owner, k, b, reuse)
            defer = LC.deferred(HOME, owner, k, b, reuse)
            assert defer > 0.0
            assert LC.step_time("route", HOME, owner, k, b, reuse) == pytest.approx(
                route + defer, rel=1e-12)
            if route < fetch < route + defer:
                assert LC.decide(HOME, owner, k, b, reuse, options=("route", "fetch")) == \
                    "fetch"
                flipped += 1
    assert flipped > 0


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
    k, reuse = 16, 3.0
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


def _phases(option, owner, per_query, b):
    p = CM.option(option, HOME, owner, per_query, b)
    return (p.probe, p.transfer, p.compute, p.ret, p.merge)


@given(st.floats(0.3, 200.0), batches, owners, st.sampled_from(OPTIONS))
def test_a_fractional_round_is_every_phase_of_the_closed_form_interpolated(k, b, owner, option):
    # between the integer numbers of blocks a round moves in all, each of the five phases is
    # the closed form's, linear in the blocks (at least one block in all)
    x = max(k * b, 1.0)
    lo, w = math.floor(x), x - math.floor(x)
    below, above = _phases(option, owner, lo / b, b), _phases(option, owner, (lo + 1) / b, b)
    p = LC.at(option, HOME, owner, k, b)
    got = (p.probe, p.transfer, p.compute, p.ret, p.merge)
    want = tuple(u + w * (v - u) for u, v in zip(below, above, strict=True))
    assert got == pytest.approx(want, rel=1e-12, abs=1e-18)
    if option == "route":  # its answer and merge do not grow with the blocks: both nonzero
        assert below[3] > 0 and below[4] > 0


@given(blocks, batches, owners, st.floats(0.0, 1e-2), st.floats(0.0, 1e-2),
       st.floats(1e-6, 1e-3), st.floats(0.0, 8.0))
def test_route_under_load_pays_each_wait_once_and_the_slow_path_before_the_home_kernel(
        k, b, owner, owner_busy, home_busy, slow, stall):
    # the query waits for the owner's queue after its message; the answer comes back slowed
    # by the busy path; the home's merge waits for the home's queue from then on; the owner's
    # own queries wait the routed kernel ``stall`` times
    r = CM.route(HOME, owner, k, b)
    owner_wait = max(0.0, owner_busy - (r.probe + r.transfer))
    answered = r.probe + r.transfer + owner_wait + r.compute + r.ret + slow
    expect = (r.probe + r.transfer + r.compute + r.ret + r.merge + owner_wait + slow
              + max(0.0, home_busy - answered) + stall * r.compute)
    got = LC.step_time("route", HOME, owner, k, b, 1.0, owner_busy, home_busy, slow, stall)
    assert got == pytest.approx(expect, rel=1e-12)


@given(st.integers(2, 256), batches, owners, st.floats(1.5, 50.0), st.floats(0.0, 1e-2),
       st.floats(1e-6, 1e-3), st.sampled_from(["fetch", "local"]))
def test_a_copying_step_pays_the_slow_path_for_the_new_blocks_only(k, b, owner, reuse,
                                                                   home_busy, slow, option):
    # ``slow`` is the extra time of a whole round's bytes (k blocks per query) on the busy
    # path; a step with copies used ``reuse`` times moves only the new blocks, so it pays that
    # share of it, on the steps that need a round
    n = k * b
    chance = 1.0 - (1.0 - 1.0 / reuse) ** n
    new = k / (reuse * chance)
    assert new < k  # more than one block selected, each copy used more than once
    x = max(new * b, 1.0)
    lo, w = math.floor(x), x - math.floor(x)
    ph = [u + w * (v - u) for u, v in zip(_phases(option, owner, lo / b, b),
                                          _phases(option, owner, (lo + 1) / b, b), strict=True)]
    extra = slow * new / k
    expect = chance * (sum(ph) + extra + max(0.0, home_busy - (ph[0] + ph[1] + extra)))
    step, total = LC.copy_step(option, HOME, owner, k, b, reuse, home_busy, slow)
    assert step == pytest.approx(expect, rel=1e-9)
    assert total == pytest.approx(sum(ph), rel=1e-12)


def test_under_one_new_block_a_step_pays_at_most_the_whole_rounds_slow_down():
    # half a block selected per step on average, copies used twice: a round one step in
    # 1 − 2^-0.5 of steps (under 1/R), carrying 0.5 / (2 · 0.293) = 0.85 of a block's worth per
    # query — more than selected — yet never more of the slow-down than the whole round's
    chance, new = LC.round_blocks(0.5, 1, 2.0)
    assert chance == pytest.approx(1 - 2**-0.5) and new > 0.5
    slow = 1e-3
    f = CM.fetch(HOME, REMOTE, 1, 1)
    step, _ = LC.copy_step("fetch", HOME, REMOTE, 0.5, 1, 2.0, 0.0, slow)
    assert step == pytest.approx(chance * (f.total + slow), rel=1e-12)


@pytest.mark.parametrize("option", ["fetch", "local"])
def test_a_step_that_selects_nothing_needs_no_round(option):
    assert LC.round_blocks(0.0, 4, 3.0) == (0.0, 0.0)
    step, total = LC.copy_step(option, HOME, REMOTE, 0.0, 4, 3.0, 1e-3, 1e-3)
    assert step == 0.0
    assert total == pytest.approx(CM.option(option, HOME, REMOTE, 1 / 4, 4).total, rel=1e-12)
    assert LC.step_time(option, HOME, REMOTE, 0.0, 4, 3.0, 0.0, 1e-3, 1e-3) == 0.0


def test_new_blocks_that_come_together_need_fewer_rounds():
    # 32 blocks per query selected, copies used 8 times: 4 new blocks a step on average. If
    # they come 8 at a time a round is needed every other step, carrying 8 (32 / (8 · 0.5) per
    # query); the independent model says a round at nearly every step, carrying 4
    assert LC.round_blocks(32.0, 1, 8.0, per_round=8.0) == (0.5, 8.0)
    chance, new = LC.round_blocks(32.0, 1, 8.0)
    assert chance == pytest.approx(1 - (7 / 8) ** 32) and new == pytest.approx(4 / chance)
    # two queries of 16: the same 32 selected, 4 new, 8 a round: half the steps, 4 per query
    assert LC.round_blocks(16.0, 2, 8.0, per_round=8.0) == (0.5, 4.0)
    # fewer new blocks per round than a step's mean: still one round a step at most
    assert LC.round_blocks(32.0, 1, 8.0, per_round=2.0) == (1.0, 4.0)
    # used once, every step has a round of all it selects, whatever rounds carried before
    assert LC.round_blocks(32.0, 1, 1.0, per_round=100.0) == (1.0, 32.0)
    # a round carries at least one block
    assert LC.round_blocks(4.0, 1, 8.0, per_round=0.25) == (0.5, 1.0)
    assert LC.round_blocks(0.0, 1, 8.0, per_round=8.0) == (0.0, 0.0)


@given(blocks, batches, owners, st.floats(1.0, 1e3), st.floats(1.0, 1e3))
def test_a_step_pays_its_rounds_share_of_a_round_of_the_observed_size(k, b, owner, reuse, per):
    # fetch's step with new blocks per round observed: P = min(1, n/(R·b')) rounds a step, b'
    # = per clamped to [1, n], each round the closed form's fetch of n/(R·P) blocks in all
    n = k * b
    chance = min(1.0, n / reuse / min(max(per, 1.0), n))
    total = n / (reuse * chance)
    lo = max(1, math.floor(total))
    w = max(total, 1.0) - lo
    one = CM.fetch(HOME, owner, lo / b, b).total
    two = CM.fetch(HOME, owner, (lo + 1) / b, b).total
    got = LC.step_time("fetch", HOME, owner, k, b, reuse, per_round=per)
    assert got == pytest.approx(chance * (one + w * (two - one)), rel=1e-9)
    # route defers the move of the new blocks of a step, as the observed rounds carry them
    first = CM.fetch(HOME, owner, 1 / b, b).total
    defer = (1.0 - 1.0 / reuse) * max(0.0, got - chance * first)
    assert LC.step_time("route", HOME, owner, k, b, reuse, per_round=per) == pytest.approx(
        CM.route(HOME, owner, k, b).total + defer, rel=1e-9, abs=1e-15)
    t = LC.totals(HOME, owner, k, b, reuse, per_round=per)
    assert t["fetch"] == got
    assert LC.decide(HOME, owner, k, b, reuse, per_round=per) == min(
        OPTIONS, key=lambda o: (t[o], OPTIONS.index(o)))


@given(st.floats(0.5, 200.0), batches, owners, st.floats(1.0, 50.0), st.floats(0.0, 1e-3),
       st.floats(0.0, 1e-3), st.floats(0.0, 1e-4), st.floats(0.0, 1e-4), st.floats(0.0, 3.0),
       st.one_of(st.none(), st.floats(1.0, 500.0)))
def test_route_fetch_is_route_and_fetchs_step_times_bit_for_bit(k, b, owner, reuse, owner_busy,
                                                                home_busy, slow_r, slow_f,
                                                                stall, per_round):
    # the policy's one call every round: route's step (with the move it defers) and fetch's
    # step and round priced once on their shared fetch round — the floats of the two calls
    # it replaced, whatever the reuse, queues, slow-downs, stall and observed round size
    got = LC.route_fetch(HOME, owner, k, b, reuse, owner_busy, home_busy, slow_r, slow_f,
                         stall, per_round)
    route = LC.step_time("route", HOME, owner, k, b, reuse, owner_busy, home_busy, slow_r,
                         stall, per_round)
    fetch, total = LC.copy_step("fetch", HOME, owner, k, b, reuse, home_busy, slow_f,
                                per_round)
    assert got == (route, fetch, total)
