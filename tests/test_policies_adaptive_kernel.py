"""``adaptive``'s compiled price of a round (:mod:`simulator.policies.adaptive_kernel`) held to
the Python it stands for, float for float: the copies' expected reuse, the new blocks per round,
the owner's stall and route's and fetch's step times, on counters of every kind (none, few,
many; rooms full and empty; lockstep owners; queues and slow links) — and the table of phase
shapes it reads, the rounds it leaves to the Python, and the decision it feeds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from simulator.costmodel import CostModel
from simulator.costmodel.loaded import LoadedCosts
from simulator.errors import UserError
from simulator.policies import Observed, PolicyContext, Round
from simulator.policies import adaptive as adaptive_module
from simulator.policies.adaptive import (
    PRIOR_COPIES,
    PRIOR_ROUNDS,
    Adaptive,
    expected_reuse,
    new_per_round,
    owner_stall,
)
from simulator.policies.adaptive_kernel import (
    BATCH_BITS,
    TOTAL_BITS,
    PhaseTable,
    _row,
    price,
)

G = topologies.build("dgx_h100", nodes=2)
CM = CostModel("deepseek-v3.2", G, "ibgda")
NAMES = list(topologies.gpus(G))
HOME = "n0/gpu0"
OWNERS = ["n0/gpu5", "n1/gpu3"]

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
    obs, rnd, h, o, blocks = state
    lc = LoadedCosts(CM)
    got = price(PhaseTable(len(NAMES)), lc, obs, rnd, h, o, blocks, ow, hw, sr, sf,
                PRIOR_COPIES, PRIOR_ROUNDS)
    assert got == reference(lc, obs, rnd, h, o, blocks, ow, hw, sr, sf)  # bit for bit


@settings(max_examples=150, deadline=None)
@given(states(), waits, waits)
def test_the_compiled_choice_is_the_pythons(state, owner_busy, home_busy):
    obs, rnd, h, o, _ = state
    busy = {h: home_busy, o: owner_busy}
    obs.free_at = lambda g, at: at + busy.get(g, 0.0)
    ctx = PolicyContext(CM, None, G, np.random.default_rng(0), obs)
    assert Adaptive().choose(ctx, rnd) == Adaptive(compiled=False).choose(ctx, rnd)


def test_a_table_finds_every_shape_it_was_given_as_it_grows():
    table = PhaseTable(4)
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
    table, lc = PhaseTable(len(NAMES)), LoadedCosts(CM)
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
    table, lc = PhaseTable(len(NAMES)), LoadedCosts(CM)
    base = price(table, lc, obs, rnd, h, o, 8.0, 0.0, 0.0, 0.0, 0.0, 32.0, 4.0)
    assert price(table, lc, obs, rnd, h, o, 8.0, 0.0, 0.0, 0.0, 0.0, 64.0, 4.0)[3] != base[3]
    assert price(table, lc, obs, rnd, h, o, 8.0, 0.0, 0.0, 0.0, 0.0, 32.0, 8.0)[4] != base[4]


@pytest.mark.parametrize("batch, blocks", [(1 << BATCH_BITS, 1), (1, 1 << TOTAL_BITS)])
def test_shapes_beyond_the_keys_fields_are_left_to_the_python(batch, blocks):
    obs = Observed(NAMES, lambda g, at: 0.0)
    h, o = obs.pair(HOME, OWNERS[0])
    rnd = Round(HOME, OWNERS[0], 0, batch, blocks, blocks, 0.0)
    assert price(PhaseTable(len(NAMES)), LoadedCosts(CM), obs, rnd, h, o, float(blocks), 0.0,
                 0.0, 0.0, 0.0, 32.0, 4.0) is None
    ctx = PolicyContext(CM, None, G, np.random.default_rng(0), obs)
    assert Adaptive().choose(ctx, rnd) == Adaptive(compiled=False).choose(ctx, rnd)
    # one field short of the limit: priced by the kernel
    inside = Round(HOME, OWNERS[0], 0, min(batch, (1 << BATCH_BITS) - 1),
                   min(blocks, (1 << TOTAL_BITS) - 2), 1, 0.0)
    assert price(PhaseTable(len(NAMES)), LoadedCosts(CM), obs, inside, h, o,
                 float(inside.blocks), 0.0, 0.0, 0.0, 0.0, 32.0, 4.0) is not None


def test_a_reuse_below_one_is_refused_as_the_python_refuses_it():
    obs = Observed(NAMES, lambda g, at: 0.0)
    h, o = obs.pair(HOME, OWNERS[0])
    obs.copies[h, o], obs.hits[h, o] = 1e6, -5e5  # (counters no engine keeps: a copy used ½)
    rnd = Round(HOME, OWNERS[0], 0, 2, 8, 16, 0.0)
    assert price(PhaseTable(len(NAMES)), LoadedCosts(CM), obs, rnd, h, o, 8.0, 0.0, 0.0, 0.0,
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

    monkeypatch.setattr(adaptive_module, "MAX_GPUS", len(NAMES) - 1)
    monkeypatch.setattr(adaptive_module, "price", refused)
    assert Adaptive().choose(ctx, rnd) == want
    monkeypatch.setattr(adaptive_module, "MAX_GPUS", len(NAMES))
    with pytest.raises(AssertionError, match="kernel was asked"):
        Adaptive().choose(ctx, rnd)
