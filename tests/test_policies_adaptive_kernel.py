"""``adaptive``'s compiled price of a round (:mod:`simulator.policies.adaptive_kernel`) held to
the Python it stands for, float for float: the copies' expected reuse, the new blocks per round,
the owner's stall and route's and fetch's step times, on counters of every kind (none, few,
many; rooms full and empty; lockstep owners; queues and slow links) — and the table of phase
shapes it reads, the rounds it leaves to the Python, and the decision it feeds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.costmodel.loaded import LoadedCosts, round_probability
from simulator.errors import UserError
from simulator.policies import Observed, PolicyContext, Round, adaptive_kernel
from simulator.policies import adaptive as adaptive_module
from simulator.policies.adaptive import (
    PRIOR_COPIES,
    PRIOR_ROUNDS,
    Adaptive,
    expected_reuse,
    new_per_round,
    owner_stall,
    repicks,
)
from simulator.policies.adaptive_kernel import (
    BATCH_BITS,
    MISS,
    TOTAL_BITS,
    PhaseTable,
    _repicks,
    _round_probability,
    _row,
    price,
    route_fetch_kernel,
)
from tests.test_policies_adaptive import CM, FAR, HOME, NAMES, NEAR, G

OWNERS = [NEAR, FAR]

counts = st.one_of(st.just(0.0), st.floats(0.0, 4.0), st.floats(1.0, 1e5))
shares = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.5))
rooms = st.one_of(st.just(0.0), st.floats(-10.0, 50.0), st.floats(1e3, 1e6))
waits = st.one_of(st.just(0.0), st.floats(0.0, 2e-3))


@st.composite
def states(draw):
    """An :class:`Observed` with the home's and owner's counters drawn, and a round."""
    owner = draw(st.sampled_from(OWNERS))
    obs = Observed(NAMES, lambda g, at: 0.0)
    h, o = obs.pair(HOME, owner)
    obs.copies[h, o] = draw(counts)
    obs.hits[h, o] = draw(counts)
    obs.rounds[h, o] = draw(counts)
    obs.remaining_tokens[h] = draw(st.floats(0.0, 500.0))
    obs.select_share[h] = draw(shares)
    obs.copy_room[h] = draw(rooms)
    obs.copies_held[h] = draw(st.floats(0.0, 1e4))
    obs.queries[h] = draw(st.integers(0, 64))
    obs.queries[o] = draw(st.integers(0, 64))
    obs.lockstep[o] = draw(st.booleans())
    picked = draw(st.one_of(st.just(0.0), st.floats(1.0, 1e4)))
    obs.picked, obs.picked_again = picked, picked * draw(st.floats(0.0, 1.0))
    batch = draw(st.integers(1, 48))
    blocks = draw(st.integers(1, 96))
    rnd = Round(HOME, owner, 0, batch, blocks, draw(st.integers(1, blocks * batch)), 0.0)
    # per query: the round's, or more (what the home's last step selected there)
    per_query = float(blocks) + draw(st.one_of(st.just(0.0), st.floats(0.0, 40.0)))
    return obs, rnd, h, o, per_query


@st.composite
def busy_states(draw):
    """A state where every term of the price is alive: copies used, rounds made, selections
    stable, a batch left to decode, room for some or all of the round's copies, queries on
    both sides."""
    owner = draw(st.sampled_from(OWNERS))
    obs = Observed(NAMES, lambda g, at: 0.0)
    h, o = obs.pair(HOME, owner)
    copies = draw(st.floats(1.0, 5e3))
    obs.copies[h, o] = copies
    obs.hits[h, o] = copies * draw(st.floats(0.0, 6.0))
    obs.rounds[h, o] = copies / draw(st.floats(1.0, 64.0))
    obs.remaining_tokens[h] = draw(st.floats(1.5, 800.0))
    obs.select_share[h] = draw(st.floats(0.001, 0.6))
    held = draw(st.floats(0.0, 5e3))
    obs.copies_held[h] = held
    batch = draw(st.integers(1, 32))
    blocks = draw(st.integers(1, 64))
    need = draw(st.integers(1, blocks * batch))
    # room for all the round's copies, or for some of them
    obs.copy_room[h] = held + need * draw(st.one_of(st.just(4.0), st.floats(0.05, 0.99)))
    obs.queries[h] = draw(st.integers(0, 32))
    obs.queries[o] = draw(st.integers(1, 32))
    picked = draw(st.floats(10.0, 1e4))
    obs.picked, obs.picked_again = picked, picked * draw(st.floats(0.3, 1.0))
    rnd = Round(HOME, owner, 0, batch, blocks, need, 0.0)
    per_query = float(blocks) + draw(st.one_of(st.just(0.0), st.floats(0.0, 40.0)))
    return obs, rnd, h, o, per_query


def reference(lc, obs, rnd, h, o, blocks, ow, hw, sr, sf):
    """The Python's floats for the same round (:meth:`Adaptive.choose` with ``compiled=False``
    makes these calls)."""
    reuse = expected_reuse(obs, rnd, (h, o))
    per = new_per_round(obs, h, o, blocks * rnd.batch, reuse)
    stall = owner_stall(obs, h, o)
    return (*lc.route_fetch(rnd.src, rnd.owner, blocks, rnd.batch, reuse, ow, hw, sr, sf,
                            stall, per), reuse, per)


@settings(max_examples=300, deadline=None)
@given(states(), waits, waits, waits, waits)
def test_the_kernel_gives_the_pythons_floats(state, ow, hw, sr, sf):
    same_as_python(*state, ow, hw, sr, sf)  # bit for bit


@settings(max_examples=300, deadline=None)
@given(busy_states(), waits, waits, waits, waits)
def test_the_kernel_gives_the_pythons_floats_with_every_term_alive(state, ow, hw, sr, sf):
    same_as_python(*state, ow, hw, sr, sf)


edges = st.one_of(st.sampled_from([-1.0, -0.0, 0.0, 0.5, 1.0, 2.0]), st.floats(-0.5, 1.5))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)), edges,
       st.one_of(st.sampled_from([-1.0, 0.0, 1.0]), st.floats(-5.0, 1e3)))
def test_its_repicks_is_the_pythons(stability, share, steps):
    assert _repicks(stability, share, steps) == repicks(stability, share, steps)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.sampled_from([-1.0, 0.0, 1.0]), st.floats(-10.0, 1e4)),
       st.one_of(st.just(1.0), st.floats(1.0, 1e3)))
def test_its_round_probability_is_the_pythons(selected, reuse):
    assert _round_probability(selected, reuse) == round_probability(selected, reuse)


@settings(max_examples=150, deadline=None)
@given(states(), waits, waits)
def test_the_compiled_choice_is_the_pythons(state, owner_busy, home_busy):
    obs, rnd, h, o, _ = state
    busy = {h: home_busy, o: owner_busy}
    obs.free_at = lambda g, at: at + busy.get(g, 0.0)
    ctx = PolicyContext(CM, None, G, np.random.default_rng(0), obs)
    assert Adaptive().choose(ctx, rnd) == Adaptive(compiled=False).choose(ctx, rnd)


def test_a_table_finds_every_shape_it_was_given_as_it_grows():
    table = PhaseTable(Observed(NAMES[:4], lambda g, at: 0.0))
    rng = np.random.default_rng(1)
    keys = rng.choice(1 << 40, 20_000, replace=False)
    for i, key in enumerate(keys):
        table.add(int(key), (float(i), 0.0, 0.0, 0.0, -float(i)))
    assert len(table) == 20_000
    assert len(table.keys) >= 2 * len(table)  # at most half full: probing ends at a gap
    for i, key in enumerate(keys):
        row = _row(table.keys, table.rows, int(key))
        assert tuple(table.phases[row]) == (float(i), 0.0, 0.0, 0.0, -float(i))
    assert _row(table.keys, table.rows, (1 << 40) + 7) == -1  # never given


def test_a_round_fills_only_the_shapes_it_reads_once():
    obs = Observed(NAMES, lambda g, at: 0.0)
    h, o = obs.pair(HOME, OWNERS[1])
    rnd = Round(HOME, OWNERS[1], 0, 4, 10, 30, 0.0)
    table, lc = PhaseTable(obs), LoadedCosts(CM)
    first = price(table, lc, obs, rnd, h, o, 10.0, 0.0, 0.0, 0.0, 0.0, 32.0, 4.0)
    # fetch and route at 40 blocks in all (whole: no second shape) and fetch's one block
    assert len(table) == 3
    assert price(table, lc, obs, rnd, h, o, 10.0, 0.0, 0.0, 0.0, 0.0, 32.0, 4.0) == first
    assert len(table) == 3
    # 10.5 blocks a query: 42 in all, route between two shapes, fetch at k
    price(table, lc, obs, rnd, h, o, 10.5, 0.0, 0.0, 0.0, 0.0, 32.0, 4.0)
    assert len(table) == 5


def test_the_priors_weights_are_the_kernels_arguments():
    obs = Observed(NAMES, lambda g, at: 0.0)
    h, o = obs.pair(HOME, OWNERS[0])
    obs.copies[h, o], obs.hits[h, o], obs.rounds[h, o] = 10.0, 30.0, 2.0
    obs.copy_room[h] = 1e6
    obs.remaining_tokens[h], obs.select_share[h] = 50.0, 0.1
    rnd = Round(HOME, OWNERS[0], 0, 2, 8, 16, 0.0)
    table, lc = PhaseTable(obs), LoadedCosts(CM)
    base = price(table, lc, obs, rnd, h, o, 8.0, 0.0, 0.0, 0.0, 0.0, 32.0, 4.0)
    assert price(table, lc, obs, rnd, h, o, 8.0, 0.0, 0.0, 0.0, 0.0, 64.0, 4.0)[3] != base[3]
    assert price(table, lc, obs, rnd, h, o, 8.0, 0.0, 0.0, 0.0, 0.0, 32.0, 8.0)[4] != base[4]


@pytest.mark.parametrize("batch, blocks", [(1 << BATCH_BITS, 1), (1, (1 << TOTAL_BITS) - 1)])
def test_shapes_beyond_the_keys_fields_are_left_to_the_python(batch, blocks):
    obs = Observed(NAMES, lambda g, at: 0.0)
    h, o = obs.pair(HOME, OWNERS[0])
    rnd = Round(HOME, OWNERS[0], 0, batch, blocks, blocks, 0.0)
    assert price(PhaseTable(obs), LoadedCosts(CM), obs, rnd, h, o, float(blocks), 0.0,
                 0.0, 0.0, 0.0, 32.0, 4.0) is None
    ctx = PolicyContext(CM, None, G, np.random.default_rng(0), obs)
    assert Adaptive().choose(ctx, rnd) == Adaptive(compiled=False).choose(ctx, rnd)
    # one field short of the limit: priced by the kernel
    inside = Round(HOME, OWNERS[0], 0, min(batch, (1 << BATCH_BITS) - 1),
                   min(blocks, (1 << TOTAL_BITS) - 2), 1, 0.0)
    assert price(PhaseTable(obs), LoadedCosts(CM), obs, inside, h, o,
                 float(inside.blocks), 0.0, 0.0, 0.0, 0.0, 32.0, 4.0) is not None


def test_a_reuse_below_one_is_refused_as_the_python_refuses_it():
    obs = Observed(NAMES, lambda g, at: 0.0)
    h, o = obs.pair(HOME, OWNERS[0])
    obs.copies[h, o], obs.hits[h, o] = 1e6, -5e5  # (counters no engine keeps: a copy used ½)
    rnd = Round(HOME, OWNERS[0], 0, 2, 8, 16, 0.0)
    assert price(PhaseTable(obs), LoadedCosts(CM), obs, rnd, h, o, 8.0, 0.0, 0.0, 0.0,
                 0.0, 32.0, 4.0) is None
    ctx = PolicyContext(CM, None, G, np.random.default_rng(0), obs)
    with pytest.raises(UserError, match="reuse="):
        Adaptive().choose(ctx, rnd)


def test_runs_of_more_gpus_than_the_keys_hold_are_priced_in_python(monkeypatch):
    obs = Observed(NAMES, lambda g, at: 0.0)
    rnd = Round(HOME, OWNERS[1], 0, 3, 12, 20, 0.0)
    ctx = PolicyContext(CM, None, G, np.random.default_rng(0), obs)
    want = Adaptive(compiled=False).choose(ctx, rnd)

    def refused(*args, **kwargs):
        raise AssertionError("the kernel was asked")

    monkeypatch.setattr(adaptive_kernel, "MAX_GPUS", len(NAMES) - 1)
    monkeypatch.setattr(adaptive_module, "price", refused)
    assert Adaptive().choose(ctx, rnd) == want
    monkeypatch.setattr(adaptive_kernel, "MAX_GPUS", len(NAMES))
    with pytest.raises(AssertionError, match="kernel was asked"):
        Adaptive().choose(ctx, rnd)


def fresh(owner: str = OWNERS[1]):
    """Counters as an engine starts them, the home's room ample; ``(obs, h, o)``."""
    obs = Observed(NAMES, lambda g, at: 0.0)
    h, o = obs.pair(HOME, owner)
    obs.copy_room[h] = 1e9
    return obs, h, o


def same_as_python(obs, rnd, h, o, blocks, ow=0.0, hw=0.0, sr=0.0, sf=0.0, table=None):
    """The kernel's price of ``rnd`` (a fresh table unless given), checked bit for bit against
    the Python's; returned."""
    lc = LoadedCosts(CM)
    table = PhaseTable(obs) if table is None else table
    got = price(table, lc, obs, rnd, h, o, blocks, ow, hw, sr, sf,
                PRIOR_COPIES, PRIOR_ROUNDS)
    assert got == reference(lc, obs, rnd, h, o, blocks, ow, hw, sr, sf)
    return got


def test_a_miss_names_the_shape_by_home_owner_batch_blocks_and_option():
    obs, h, o = fresh()
    table = PhaseTable(obs)
    asked = []

    def kernel(key):  # the kernel's first miss on the table as filled so far
        got = route_fetch_kernel(h, o, len(NAMES), 3, 7.5, 10.0, obs.remaining_tokens,
                                 obs.select_share, obs.copy_room, obs.copies_held, obs.copies,
                                 obs.hits, obs.rounds, obs.queries, obs.lockstep, obs.picked,
                                 obs.picked_again, 0.0, 0.0, 0.0, 0.0, 32.0, 4.0, table.keys,
                                 table.rows, table.phases)
        assert got[0] == MISS
        asked.append(got[1:4])
        table.add(got[1], (1.0, 2.0, 3.0, 4.0, 5.0))

    for _ in range(5):  # 22.5 blocks in all: fetch (R = 1: k = 7.5) and route at 22 and 23,
        kernel(None)  # then fetch's one-block round

    def key(total, code):  # (home, owner, batch, blocks in all, option) in their bit fields
        return ((((h * len(NAMES) + o) << BATCH_BITS) + 3 << TOTAL_BITS) + total) * 4 + code

    fetch, route = 1, 0
    assert asked == [(key(22, fetch), 22, fetch), (key(23, fetch), 23, fetch),
                     (key(22, route), 22, route), (key(23, route), 23, route),
                     (key(1, fetch), 1, fetch)]


def test_the_first_shape_entered_is_found_at_row_zero():
    # one block for one query: fetch's round at 1 block is row 0, and it is also fetch's
    # one-block round (the deferred move): read, not missed, so entered once
    obs, h, o = fresh()
    table = PhaseTable(obs)
    same_as_python(obs, Round(HOME, OWNERS[1], 0, 1, 1, 1, 0.0), h, o, 1.0, table=table)
    assert len(table) == 2  # fetch and route at 1 block
    # 11 blocks (row 2: fetch, row 3: route), then 10.9 a query: 43.6 in all, between 43 and
    # 44; with fetch at 44 entered first of all, in row 0
    table = PhaseTable(obs)
    same_as_python(obs, Round(HOME, OWNERS[1], 0, 4, 11, 11, 0.0), h, o, 11.0, table=table)
    assert len(table) == 3
    same_as_python(obs, Round(HOME, OWNERS[1], 0, 4, 11, 11, 0.0), h, o, 10.9, table=table)
    assert len(table) == 5  # fetch and route at 43 only


def test_fetch_priced_below_one_block_by_rounding_is_priced_at_one():
    # one block, one query, R copies' uses: a round's chance rounds so that fetch's blocks
    # come to 1 − 2⁻⁵² — the Python prices that at one block in all, as the kernel must
    from simulator.costmodel.loaded import LoadedCosts as LC
    reuse = next(1.0 + j / 13 for j in range(1, 3000)
                 if LC.round_blocks(1.0, 1, 1.0 + j / 13)[1] < 1.0)
    obs, h, o = fresh()
    obs.select_share[h] = 1.0  # every later step selects it again: the prior is 1 + m
    obs.remaining_tokens[h] = reuse  # m = R − 1, so the prior (the reuse) is R itself
    assert expected_reuse(obs, Round(HOME, OWNERS[1], 0, 1, 1, 1, 0.0)) == reuse
    same_as_python(obs, Round(HOME, OWNERS[1], 0, 1, 1, 1, 0.0), h, o, 1.0)


def test_a_slow_fetch_with_no_reuse_moves_every_block():
    # R = 1: fetch's round carries all the blocks (k = K), so its slow-down counts in full
    obs, h, o = fresh()
    got = same_as_python(obs, Round(HOME, OWNERS[1], 0, 2, 6, 12, 0.0), h, o, 6.0, sf=3e-4)
    assert got[3] == 1.0


def test_one_block_picked_gives_the_stability_its_ratio():
    obs, h, o = fresh()
    obs.picked, obs.picked_again = 1.0, 1.0  # the first selection seen, picked again
    obs.remaining_tokens[h], obs.select_share[h] = 40.0, 0.05
    got = same_as_python(obs, Round(HOME, OWNERS[1], 0, 2, 6, 12, 0.0), h, o, 6.0)
    assert got[3] > 2.0  # stable selections: the copies are expected to be used again


def test_a_home_with_no_batch_of_its_own_counts_one_query():
    obs, h, o = fresh()
    obs.queries[h], obs.queries[o] = 0, 5
    obs.copies[h, o], obs.hits[h, o] = 100.0, 50.0
    same_as_python(obs, Round(HOME, OWNERS[1], 0, 2, 6, 12, 0.0), h, o, 6.0, ow=1e-4)


def test_before_a_pair_made_a_round_its_new_blocks_are_independent():
    # no round made (rounds 0) but copies expected to be reused (R > 1): fetch pays a round
    # with the independent chance, not the observed blocks per round
    obs, h, o = fresh()
    obs.select_share[h], obs.remaining_tokens[h] = 1.0, 5.0  # R = 5
    got = same_as_python(obs, Round(HOME, OWNERS[1], 0, 3, 4, 12, 0.0), h, o, 4.0, sf=1e-4)
    assert got[3] == 5.0 and got[4] is None


def test_after_one_round_made_the_observed_blocks_per_round_count():
    obs, h, o = fresh()
    obs.select_share[h], obs.remaining_tokens[h] = 1.0, 5.0  # R = 5 before copies count
    obs.rounds[h, o], obs.copies[h, o] = 1.0, 2.0  # one round, two copies: few per round
    got = same_as_python(obs, Round(HOME, OWNERS[1], 0, 3, 4, 12, 0.0), h, o, 4.0, sf=1e-4)
    assert got[4] is not None


def test_fetch_priced_above_its_blocks_by_rounding_is_slowed_by_the_whole_round():
    # the mirror case: a chance that rounds so that fetch's blocks come to 1 + 2⁻⁵² of the
    # step's one: the slow-down counts once, not 1 + 2⁻⁵² times
    from simulator.costmodel.loaded import LoadedCosts as LC
    reuse = next(1.0 + j / 13 for j in range(1, 3000)
                 if LC.round_blocks(1.0, 1, 1.0 + j / 13)[1] > 1.0)
    obs, h, o = fresh()
    obs.select_share[h], obs.remaining_tokens[h] = 1.0, reuse
    # (a slow-down of 1 s: 2⁻⁵² of it is not lost in the sum with the round)
    same_as_python(obs, Round(HOME, OWNERS[1], 0, 1, 1, 1, 0.0), h, o, 1.0, sf=1.0)


def test_a_policy_asked_by_another_run_prices_with_a_table_of_its_own():
    # the keys hold GPU indices: a second run's Observed whose index of the far owner is the
    # near one's must not read the far owner's shapes for the near one
    policy = Adaptive()
    obs, h, o = fresh(FAR)
    ctx = PolicyContext(CM, None, G, np.random.default_rng(0), obs)
    policy.choose(ctx, Round(HOME, FAR, 0, 3, 12, 20, 0.0))
    first = policy._table
    names = list(NAMES)
    i, j = names.index(NEAR), names.index(FAR)
    names[i], names[j] = FAR, NEAR
    other = Observed(names, lambda g, at: 0.0)
    other.copy_room[:] = 1e9
    assert other.pair(HOME, NEAR) == (h, o)  # the same indices, another owner
    ctx2 = PolicyContext(CM, None, G, np.random.default_rng(0), other)
    rnd = Round(HOME, NEAR, 0, 3, 12, 20, 0.0)
    assert policy.choose(ctx2, rnd) == Adaptive(compiled=False).choose(ctx2, rnd)
    assert policy._table is not first and policy._table.observed is other
    assert price(policy._table, LoadedCosts(CM), other, rnd, h, o, 12.0, 0.0, 0.0, 0.0, 0.0,
                 PRIOR_COPIES, PRIOR_ROUNDS) == reference(LoadedCosts(CM), other, rnd, h, o,
                                                          12.0, 0.0, 0.0, 0.0, 0.0)
