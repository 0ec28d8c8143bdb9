"""The fast engine does not draw a context wholly local to its home (simulator/engine/locate.py).

Held here: the finding is the directory asked block by block for every slot (the oracle of
``test_engine_steps``); a local query counts the selector's count in every slot and draws nothing
when its home owns the whole context; its copy hits are the slots times one layer's picks on
copies, whose mean is the drawn steps' mean; a finding lapses when the home loses HBM, when the
context grows and after a sample's steps; the directory's losses count exactly the losses; and
the engine uses it where it may and not where it may not. For an observing policy
(``adaptive``): its picks per holder have the drawn counts' mean, and where every block is
picked the policy is told of each step what the run that draws every selection tells it.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_steps import SEL, directory, oracle_locate, requests_of, step_data
from test_kvcache_directory import make

import workloads.sparse
from simulator import run
from simulator.engine.fast import FastRun
from simulator.engine.locate import LOCAL_STEPS, SELECTION_STEPS, _in_row, reselected
from simulator.kvcache import DROPPED, HBM, HOST, UNPLACED
from simulator.policies.colocated import Colocated
from simulator.policies.observed import Observed
from simulator.testing.invariants import repo_on, small_scenario
from workloads.schema import make_trace


def local_steps(d, contexts, S, seed=0, popular=None, focus=None, now=7.0):
    """StepData over ``contexts`` on directory ``d`` with local contexts not drawn."""
    req = requests_of(contexts, popular or [max(1, len(c) // 2) for c in contexts],
                      focus or [[] for _ in contexts])
    req.env = SimpleNamespace(now=now)
    steps = step_data(d, req, SEL, [np.random.default_rng(seed)] * d.n_gpus, S=S)
    steps.local_counts = True
    # an observing policy's own stream (StepData.obs_rngs), used only where a test observes
    steps.obs_rngs = [np.random.default_rng([seed, 1])] * d.n_gpus
    return steps, req


@st.composite
def directories(draw):
    """A directory with one holder per block, blocks on GPUs, the host tier or dropped, copies
    in some slots (two bitmap words at 70 slots); a home and a context of its blocks."""
    gpus = draw(st.integers(2, 4))
    S = draw(st.sampled_from([1, 3, 70]))
    d = directory(gpus, draw(st.integers(1, 2)), 1, S)
    n = draw(st.integers(1, 20))
    idx = d.intern(np.arange(100, 100 + n))
    g = draw(st.integers(0, gpus - 1))
    for i in range(n):  # mostly the home's, so that wholly local contexts are common
        d.place(idx[i : i + 1], writer=draw(st.sampled_from([g, g, g, (g + 1) % gpus])), now=0.0)
        t = draw(st.sampled_from([HBM, HBM, HBM, HOST, DROPPED]))
        d.tier[idx[i]] = t
        if t == DROPPED:
            d.base[idx[i]] = UNPLACED
    whole = draw(st.lists(st.integers(0, n - 1), max_size=n))  # copied in every slot
    for b in whole:
        for s in range(S):
            d.add_copies(g, idx[b : b + 1], s, now=1.0)
    for b, s in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, S - 1)),
                              max_size=6)):  # copied in one slot
        d.add_copies(g, idx[b : b + 1], s, now=1.0)
    return d, g, idx, S


@settings(max_examples=200, deadline=None)
@given(directories())
def test_a_context_is_found_local_exactly_when_every_block_is_local_in_every_slot(case):
    d, g, idx, S = case
    steps, _ = local_steps(d, [idx], S)
    dense = np.broadcast_to(idx, (1, S, len(idx))).copy()  # every block, in every slot
    want_local = oracle_locate(d, g, dense, np.ones(dense.shape, bool))[0].all()
    found = steps._find_local(g, 0, 0, False)
    assert (found is not None) == want_local
    # under a colocated policy every block is home: always found, nothing counts as a copy hit
    assert steps._find_local(g, 0, 0, True)[3] == 0


@pytest.mark.parametrize("S", [3, 4])
def test_an_observing_policy_leaves_the_runs_selection_stream_and_touches_as_they_are(S):
    # its estimates want S + 15 layers (> the 16 the finding draws): those come from its own
    # stream, so the run's stream advances by the finding's draw alone, and the same blocks
    # are touched, whether or not the policy observes (tests/test_engine_observing.py: then
    # its rounds differ from a static policy's only by its choices)
    states, used = [], []
    for observing in (False, True):
        d = directory(2, 1, 1, S)
        ctx = d.intern(np.arange(40))
        d.place(ctx, writer=0, now=0.0)
        steps, _ = local_steps(d, [ctx], S, seed=4, popular=[30], focus=[[7]], now=7.0)
        if observing:
            steps.observed = SimpleNamespace(selections=lambda *a: None)
            own = copy.deepcopy(steps.obs_rngs[0])
        assert steps.select_split(0, [0])[0] == []
        states.append(steps.sel_rngs[0].random())
        used.append(d.used_at[ctx].copy())
        if observing:  # it drew from its own stream
            assert steps.obs_rngs[0].random() != own.random()
    assert states[0] == states[1]
    assert np.array_equal(used[0], used[1])


def test_a_context_the_home_owns_counts_the_selectors_count_and_no_copy_hit():
    d = directory(2, 1, 1, 3)
    ctx = d.intern(np.arange(40))  # 40 blocks: past the 4 sampled + 2 recent, so sampled
    d.place(ctx, writer=0, now=0.0)
    steps, req = local_steps(d, [ctx], 3, seed=4, popular=[30], focus=[[7]], now=7.0)
    twin = copy.deepcopy(steps.sel_rngs[0])
    drawn, dense, valid, n_local, q_local = steps.select_split(0, [0])
    assert drawn == [] and dense is None and valid is None
    assert (n_local, q_local) == (int(SEL.counts(40)), 1) == (6, 1)
    assert steps.copy_hits == 0 and steps.copy_misses == 0
    # touched: what SELECTION_STEPS layers pick (drawn once, for the finding) and the recent
    # window, which every layer picks; nothing else
    picks = SEL.select_batch(twin, np.array([40]), SELECTION_STEPS, focus=np.array([[7]]),
                             popular_blocks=np.array([30])).query(0)
    assert steps.sel_rngs[0].random() == twin.random()  # those draws and no more
    want = np.zeros(40, bool)
    want[picks.ravel()] = True
    want[38:] = True
    assert np.array_equal(d.used_at[ctx] == 7.0, want) and not want.all()
    steps.req.env.now = 8.0
    req.gen[0] = 2  # the next step: the recent window again, nothing drawn
    assert steps.select_split(0, [0])[0] == []
    assert (d.used_at[ctx[38:]] == 8.0).all() and (d.used_at[ctx[:38]] < 8.0).all()
    assert steps.sel_rngs[0].random() == twin.random()
    # drawn as before where local contexts are drawn (the exact engine, an observing policy)
    steps.local_counts = False
    drawn, dense, valid, n_local, q_local = steps.select_split(0, [0])
    assert drawn == [0] and dense.shape == (1, 3, 6) and valid.all() and n_local == 0


def test_a_context_no_larger_than_a_selection_is_touched_whole_at_every_step():
    d = directory(2, 1, 1, 2)
    ctx = d.intern(np.arange(6))  # 4 sampled + 2 recent: every block in every layer
    d.place(ctx, writer=0, now=0.0)
    steps, req = local_steps(d, [ctx], 2, now=3.0)
    for step, now in ((1, 3.0), (2, 4.5)):
        req.gen[0], steps.req.env.now = step, now
        assert steps.select_split(0, [0])[0] == []
        assert (d.used_at[ctx] == now).all()


@pytest.mark.parametrize("focus", [[2, 5, 33], []])
def test_copy_hits_are_the_slots_times_the_mean_picks_per_layer_on_copies_at_every_step(
        samples, focus):
    S = 3
    d = directory(2, 1, 1, S)
    ctx = d.intern(np.arange(40))
    d.place(ctx[:20], writer=1, now=0.0)  # GPU 1 owns the first 20, copied at home in all slots
    d.place(ctx[20:], writer=0, now=0.0)
    for s in range(S):
        d.add_copies(0, ctx[:20], s, now=1.0)
    steps, req = local_steps(d, [ctx], S, seed=9, popular=[30], focus=[focus])
    twin = copy.deepcopy(steps.sel_rngs[0])
    steps.select_split(0, [0])
    # 6 picks per layer, half the context copies: 3 per layer were picks uniform, so
    # ceil(64 / 3) = 22 layers drawn (at least 16, at most a sample's 16 × 3)
    assert samples == [22]
    pick = SEL.select_batch(twin, np.array([40]), 22, focus=np.array([focus or [-1]]),
                            popular_blocks=np.array([30])).query(0)
    per_step = S * int((pick < 20).sum()) / 22  # positions 0-19 are the copies
    assert steps.copy_hits == pytest.approx(per_step) and per_step > 0
    for step in (2, 3):  # the same finding's later steps add as many, and draw nothing
        req.gen[0] = step
        assert steps.select_split(0, [0])[0] == []
        assert steps.copy_hits == pytest.approx(step * per_step)
    assert steps.sel_rngs[0].random() == twin.random()
    assert samples == [22, 22]  # the finding's draw and this test's twin of it: no more


def test_where_copies_are_rare_a_finding_draws_as_many_layers_as_a_sample(samples):
    S = 3
    d = directory(2, 1, 1, S)
    ctx = d.intern(np.arange(40))
    d.place(ctx[:1], writer=1, now=0.0)  # one copy among 40 blocks: 0.15 picks per layer
    d.place(ctx[1:], writer=0, now=0.0)
    for s in range(S):
        d.add_copies(0, ctx[:1], s, now=1.0)
    steps, _ = local_steps(d, [ctx], S)
    assert steps.select_split(0, [0])[0] == []
    assert samples == [SELECTION_STEPS * S]


def test_a_finding_lapses_when_the_home_loses_hbm_the_context_grows_or_its_steps_are_done():
    S = 2
    d = directory(2, 1, 1, S)
    ctx = d.intern(np.arange(10))
    d.place(ctx, writer=1, now=0.0)
    for s in range(S):
        d.add_copies(0, ctx, s, now=1.0)
    steps, req = local_steps(d, [ctx], S, now=2.0)
    assert steps.select_split(0, [0])[0] == []
    first = steps._local[0]
    assert steps.select_split(0, [0])[0] == [] and steps._local[0] is first  # the same step
    req.gen[0] = LOCAL_STEPS  # the finding's last step: the same finding
    assert steps.select_split(0, [0])[0] == [] and steps._local[0] is first
    req.gen[0] = LOCAL_STEPS + 1  # past it: found again, from this step
    steps.select_split(0, [0])
    assert steps._local[0] is not first and steps._local[0][0] == LOCAL_STEPS
    again = steps._local[0]
    req.gen[0] = LOCAL_STEPS + 2  # the new finding serves the next step
    assert steps.select_split(0, [0])[0] == [] and steps._local[0] is again
    req.gen[0] = LOCAL_STEPS  # a step before it (decoding again after a preemption): anew
    steps.select_split(0, [0])
    assert steps._local[0] is not again and steps._local[0][0] == LOCAL_STEPS - 1
    again = steps._local[0]
    grown = np.append(ctx, d.intern([500]))
    d.place(grown[-1:], writer=0, now=3.0)  # a generated block at home: still local
    req.ctx_idx[0] = grown
    assert steps.select_split(0, [0])[0] == [] and steps._local[0] is not again
    assert steps._local[0][1] == 11
    d.eviction.evict_lru(0, 1)  # the home evicts one copy: the context is drawn
    assert steps.select_split(0, [0])[0] == [0]
    assert 0 not in steps._local
    # the same step on another home (a preempted request re-admitted elsewhere) is found anew
    steps2, req2 = local_steps(d, [grown[-1:]], S)
    assert steps2.select_split(0, [0])[0] == []
    assert steps2._local[0][4] == 0
    assert steps2.select_split(1, [0])[0] == [0]  # GPU 1 holds no copy of GPU 0's block


def test_a_context_not_local_is_checked_again_only_once_its_home_gained_enough():
    S = 2
    d = directory(2, 1, 1, S)
    ctx = d.intern(np.arange(8))
    d.place(ctx[:4], writer=0, now=0.0)
    d.place(ctx[4:], writer=1, now=0.0)
    d.add_copies(0, ctx[4:], 0, now=1.0)  # GPU 1's 4 blocks copied at home in slot 0 only
    steps, req = local_steps(d, [ctx], S)
    assert steps.select_split(0, [0])[0] == [0]
    assert steps._away[0] == (0, int(d.gains[0]) + 4)  # 4 blocks short
    # slot 1's bits set behind the directory's back (no gain counted): not checked again
    store = d.copy_store
    store.bits[store.rows(0, ctx[4:]), 0] |= np.uint64(0b10)
    req.gen[0] = 2
    assert steps.select_split(0, [0])[0] == [0]
    d.add_copies(0, ctx[4:7], 1, now=2.0)  # 3 gains: fewer than the 4 it lacked
    req.gen[0] = 3
    assert steps.select_split(0, [0])[0] == [0]
    d.add_copies(0, ctx[7:], 1, now=2.0)  # the 4th: checked again, now local
    req.gen[0] = 4
    assert steps.select_split(0, [0])[0] == []
    # a gain on another GPU is not one of the home's
    before = int(d.gains[0])
    d.add_copies(1, ctx[:1], 0, now=4.0)
    assert int(d.gains[0]) == before
    # found not local on GPU 0, the same query on GPU 1, which owns all its blocks: checked
    theirs, _ = local_steps(d, [ctx[4:]], S)
    d.eviction.evict_lru(0, 8)  # GPU 0 keeps no copy of them
    assert theirs.select_split(0, [0])[0] == [0] and theirs.select_split(1, [0])[0] == []
    # a hole is never local: never checked again
    holed, _ = local_steps(d, [np.where(np.arange(8) == 3, -1, ctx)], S)
    assert holed.select_split(0, [0])[0] == [0] and holed._away[0] == (0, np.inf)


def test_the_directory_counts_a_homes_gains_in_blocks():
    d = make("first_writer", 1, 10_000, 2, 1, host=100, slots=2)  # with a host tier
    ctx = d.intern(np.arange(6))
    d.place(ctx[:3], writer=0, now=0.0)  # 3 owned blocks placed
    assert d.gains.tolist() == [3, 0]
    d.place(ctx[3:], writer=1, now=0.0)
    assert d.gains.tolist() == [3, 3]
    d.add_copies(0, ctx[3:5], 1, now=1.0)  # a slot copied of 2 blocks
    assert d.gains.tolist() == [5, 3]
    d.add_copies(0, ctx[:3], 1, now=1.0)  # of blocks it holds: no copy, no gain
    assert d.gains.tolist() == [5, 3]
    d.touch(0, ctx, now=2.0)
    d.eviction.evict_lru(1, 1)  # a loss is not a gain
    assert d.gains.tolist() == [5, 3]
    d.pin(ctx[3:])
    d.eviction.demote(1, 3)
    assert (d.tier[ctx[3:]] == HOST).all() and d.gains.tolist() == [5, 3]  # a loss too


def test_a_context_with_a_hole_is_drawn():
    d = directory(2, 1, 1, 2)
    ctx = d.intern(np.arange(8))
    d.place(ctx, writer=0, now=0.0)
    steps, _ = local_steps(d, [np.where(np.arange(8) == 3, -1, ctx)], 2)
    assert steps.select_split(0, [0])[0] == [0] and 0 not in steps._local


def test_a_batch_adds_its_local_queries_counts_to_the_drawn_ones():
    S = 2
    d = directory(2, 1, 1, S)
    a, b, c = (d.intern(np.arange(1000 * i, 1000 * i + n)) for i, n in ((1, 30), (2, 3), (3, 8)))
    d.place(a, writer=0, now=0.0)
    d.place(b, writer=0, now=0.0)
    d.place(c, writer=1, now=0.0)  # c is GPU 1's and not copied: drawn
    steps, _ = local_steps(d, [a, b, c], S)
    drawn, dense, valid, n_local, q_local = steps.select_split(0, [0, 1, 2])
    assert drawn == [2] and dense.shape[0] == 1
    assert (n_local, q_local) == (int(SEL.counts(30) + SEL.counts(3)), 2) == (9, 2)


def test_the_estimate_has_the_mean_of_the_copy_hits_the_drawn_selections_count():
    # the one-layer estimate against the drawn steps' counts (the compiled pass), over many
    # draws: a context with a popular region, a focus set and copies in a few places
    S = 4
    d = directory(2, 1, 1, S)
    ctx = d.intern(np.arange(60))
    copies = ctx[np.arange(60) % 3 == 0]
    d.place(copies, writer=1, now=0.0)
    d.place(ctx[np.arange(60) % 3 != 0], writer=0, now=0.0)
    for s in range(S):
        d.add_copies(0, copies, s, now=1.0)
    estimate, drawn = [], []
    for seed in range(300):
        steps, req = local_steps(d, [ctx], S, seed=seed, popular=[40], focus=[[3, 9, 12, 30]])
        steps.select_split(0, [0])
        estimate.append(steps.copy_hits)
    for seed in range(40):
        steps, req = local_steps(d, [ctx], S, seed=seed, popular=[40], focus=[[3, 9, 12, 30]])
        steps.local_counts = False
        for step in range(1, SELECTION_STEPS + 1):
            req.gen[0] = step
            before = steps.copy_hits
            _, dense, valid, _, _ = steps.select_split(0, [0])
            steps.locate(0, dense, valid)
            drawn.append(steps.copy_hits - before)
    est, got = np.array(estimate, float), np.array(drawn, float)
    # steps of one sample are correlated: the standard error over samples, not steps
    per_sample = got.reshape(40, SELECTION_STEPS).mean(axis=1)
    se = np.hypot(est.std() / np.sqrt(len(est)), per_sample.std() / np.sqrt(len(per_sample)))
    assert abs(est.mean() - got.mean()) < 4 * se
    assert 0 < got.mean() < S * 6  # some, not all, picks are copies


def test_the_picks_per_holder_an_observing_policy_is_told_have_the_drawn_counts_mean():
    # a context of the home's blocks and copies of two other GPUs' blocks: the estimate per
    # holder (``local_away``) against what the compiled pass counts per holder on drawn steps
    S = 3
    d = directory(3, 1, 1, S)
    ctx = d.intern(np.arange(60))
    of = np.arange(60) % 4  # 0: the home's; 1: GPU 1's; 2: GPU 2's; 3: on GPU 1's host
    for gpu in (1, 2, 3):
        d.place(ctx[of == gpu], writer={1: 1, 2: 2, 3: 1}[gpu], now=0.0)
        for s in range(S):
            d.add_copies(0, ctx[of == gpu], s, now=1.0)
    d.tier[ctx[of == 3]] = HOST  # copied, but not in GPU 1's HBM: not away
    d.place(ctx[of == 0], writer=0, now=0.0)
    kw = dict(popular=[40], focus=[[3, 9, 12, 30]])
    estimate, drawn = [], []
    for seed in range(300):
        steps, req = local_steps(d, [ctx], S, seed=seed, **kw)
        steps.observed = SimpleNamespace(selections=lambda *a: None)  # observing
        assert steps.select_split(0, [0])[0] == []
        estimate.append(steps.local_away)
        assert steps.copy_hits > steps.local_away.sum()  # the host's copies are hits too
    for seed in range(40):
        steps, req = local_steps(d, [ctx], S, seed=seed, **kw)
        steps.observed = SimpleNamespace(selections=lambda *a: None)
        steps.local_counts = False
        for step in range(1, SELECTION_STEPS + 1):
            req.gen[0] = step
            _, dense, valid, _, _ = steps.select_split(0, [0])
            steps.locate(0, dense, valid)
            assert steps.away.tolist() == steps.owner_copy_hits.tolist()
            drawn.append(steps.away.astype(float))
    est, got = np.array(estimate), np.array(drawn)
    assert (est[:, 0] == 0).all() and (got[:, 0] == 0).all()  # the home's own: not away
    per_sample = got.reshape(40, SELECTION_STEPS, 3).mean(axis=1)
    for gpu in (1, 2):
        se = np.hypot(est[:, gpu].std() / np.sqrt(len(est)),
                      per_sample[:, gpu].std() / np.sqrt(len(per_sample)))
        assert abs(est[:, gpu].mean() - got[:, gpu].mean()) < 4 * se
        assert 0 < got[:, gpu].mean() < S * 6


def test_the_stability_a_local_query_tells_has_the_drawn_samples_mean():
    # a finding's share of picks picked again S layers on, against what drawn samples tell
    # ``Observed.selections`` (slot 0, step to next step), for a context with a popular region
    # and a focus set; and, per step, a drawn sample's weight
    S = 3
    d = directory(2, 1, 1, S)
    ctx = d.intern(np.arange(60))
    d.place(ctx, writer=0, now=0.0)
    kw = dict(popular=[40], focus=[[3, 9, 12, 30]])
    told = []
    observing = SimpleNamespace(selections=lambda a, b: told.append((a, b)))
    found = []
    for seed in range(200):
        steps, req = local_steps(d, [ctx], S, seed=seed, **kw)
        steps.observed = observing
        assert steps.select_split(0, [0])[0] == []
        picked, again = told.pop()
        count = int(SEL.counts(60))
        assert picked == pytest.approx(count * (SELECTION_STEPS - 1) / SELECTION_STEPS)
        found.append(again / picked)
        assert not told
    for seed in range(200):
        steps, req = local_steps(d, [ctx], S, seed=seed, **kw)
        steps.observed = observing
        steps.local_counts = False
        steps.select_split(0, [0])  # one sample: SELECTION_STEPS steps
    drawn = np.array(told, float)
    assert len(drawn) == 200
    share = drawn[:, 1] / drawn[:, 0]
    est = np.array(found)
    se = np.hypot(est.std() / np.sqrt(len(est)), share.std() / np.sqrt(len(share)))
    assert abs(est.mean() - share.mean()) < 4 * se
    assert 0.2 < share.mean() < 0.95  # some picks renewed, most kept


def test_the_directory_counts_a_homes_losses_and_nothing_else():
    d = directory(2, 1, 1, 2)
    ctx = d.intern(np.arange(6))
    d.place(ctx[:3], writer=0, now=0.0)
    d.place(ctx[3:], writer=1, now=0.0)
    d.add_copies(0, ctx[3:], 0, now=1.0)  # gains: none counted
    assert d.losses.tolist() == [0, 0]
    d.touch(0, ctx[:3], now=5.0)  # GPU 0's own blocks used since: its copies go first
    d.eviction.evict_lru(0, 1)
    assert d.copies[0] == 2 and d.losses.tolist() == [1, 0]  # a copy evicted
    d.eviction.evict_lru(0, 3)  # the other two copies and an owned block, in one call
    assert d.copies[0] == 0 and d.losses.tolist() == [3, 0]  # once per kind of loss
    d.pin(ctx[:3])
    d.eviction.demote(1, 1)  # an owned block of GPU 1 to the host tier
    assert d.losses.tolist() == [3, 1]
    assert d.eviction.evict_lru(1, 0) == 0 and d.losses.tolist() == [3, 1]  # nothing freed


# -- in the engine ----------------------------------------------------------------------------


def two_readers(output: int = 40):
    """A and B read a 6-block repository that GPU 1 owns, B after A, with a block of its own:
    short contexts, every block selected in every slot."""
    blocks = list(range(6))
    return make_trace(arrival_at=[0.0, 0.5], input_tokens=[6 * 64, 7 * 64],
                      output_tokens=[output, output], block_ids=[blocks, blocks + [77]],
                      block_tokens=64, session_id=[0, 1], repo_id=[repo_on(1, 2)] * 2)


def assert_same_tables(counted, every):
    """Two runs' iteration, round and request records agree (to 1e-12)."""
    for table in ("iterations", "rounds", "requests"):
        a, b = getattr(counted, table), getattr(every, table)
        assert a.shape == b.shape
        assert np.allclose(a.select_dtypes("number").to_numpy(float),
                           b.select_dtypes("number").to_numpy(float), rtol=1e-12, equal_nan=True)


@pytest.fixture
def samples(monkeypatch):
    """The layers of each of the selector's draws, call by call."""
    drawn = []
    real = workloads.sparse.SparseSelector.select_batch

    def spy(self, rng, context_blocks, n_layers, **kw):
        drawn.append(n_layers)
        return real(self, rng, context_blocks, n_layers, **kw)

    monkeypatch.setattr(workloads.sparse.SparseSelector, "select_batch", spy)
    return drawn


@pytest.fixture
def observed_steps(monkeypatch):
    """What an observing policy is told of each decode step, call by call."""
    told = []
    real = Observed.step

    def spy(self, home, hits, selected, *rest):
        told.append((home, None if hits is None else np.asarray(hits, float).tolist(),
                     None if selected is None else np.asarray(selected, float).tolist(), *rest))
        return real(self, home, hits, selected, *rest)

    monkeypatch.setattr(Observed, "step", spy)
    return told


@pytest.mark.parametrize("policy", ["fetch", "route", "local", "colocated", "adaptive"])
def test_short_contexts_give_the_same_run_drawn_or_not(policy, monkeypatch, samples,
                                                       observed_steps):
    # every block selected in every slot, so the draws are the contexts: the fast run with
    # local contexts counted is the one that draws them, copy hits and steps alike — and what
    # an observing policy is told of each step (picks per holder, copies used, share)
    sc = small_scenario("single_node:gpus=2", layer_groups=0, scheme="repo_affinity")
    counted = run(sc, policy, trace=two_readers(), engine="fast")
    n_counted = sum(samples)
    told = observed_steps[:]
    samples.clear()
    observed_steps.clear()
    monkeypatch.setattr(FastRun, "count_local_contexts", False)
    every = run(sc, policy, trace=two_readers(), engine="fast")
    assert n_counted < sum(samples)  # fewer layers drawn
    assert told == observed_steps and bool(told) == (policy == "adaptive")
    if told:  # copies used, seen for the steps not drawn too
        assert sum(np.sum(t[1]) for t in told) > 0
    assert_same_tables(counted, every)
    hit = counted.summary["copy_hit_rate"]
    assert hit == every.summary["copy_hit_rate"] or (np.isnan(hit) and policy != "fetch")
    assert (counted.requests["home"].astype(str) != "n0/gpu1").any()  # a reader away
    if policy == "fetch":
        assert 0 < hit < 1  # the first step fetches, the later steps hit the copies


@pytest.mark.parametrize("policy", ["route", "fetch", "adaptive"])
def test_a_batch_of_a_drawn_and_a_local_query_is_the_run_that_draws_both(policy, monkeypatch,
                                                                         observed_steps):
    # one home, one batch: A reads a repository GPU 1 owns (drawn while it is away: under
    # route always), B its own 5 blocks (local from its first step); every block picked —
    # and an observing policy told the same of each step
    sc = small_scenario("single_node:gpus=2", layer_groups=0, scheme="repo_affinity")
    repo = repo_on(1, 2)
    trace = make_trace(arrival_at=[0.0, 0.0], input_tokens=[6 * 64, 5 * 64],
                       output_tokens=[30, 30], block_ids=[list(range(6)), [70, 71, 72, 73, 74]],
                       block_tokens=64, session_id=[3, 3], repo_id=[repo, -1])
    counted = run(sc, policy, trace=trace, engine="fast")
    told = observed_steps[:]
    observed_steps.clear()
    monkeypatch.setattr(FastRun, "count_local_contexts", False)
    every = run(sc, policy, trace=trace, engine="fast")
    assert told == observed_steps and bool(told) == (policy == "adaptive")
    assert (counted.requests["home"].astype(str) == "n0/gpu0").all() and len(counted.rounds)
    assert (counted.iterations["batch"] == 2).sum() > 10  # steps of both queries
    assert_same_tables(counted, every)


def test_an_observing_policy_draws_fewer_selections_as_the_others_do(samples):
    sc = small_scenario("single_node:gpus=2", layer_groups=0, scheme="repo_affinity")
    run(sc, "adaptive", trace=two_readers(), engine="fast")
    drawn_adaptive = sum(samples)
    # a finding's layers (a sample's step pairs, S layers apart): a local context not drawn
    assert 61 + SELECTION_STEPS - 1 in samples
    samples.clear()
    run(sc, "adaptive", trace=two_readers(), engine="exact")
    assert set(samples) == {SELECTION_STEPS * 61}  # whole samples of every layer, only
    assert drawn_adaptive < sum(samples) / 2


def test_an_observing_policy_is_told_of_a_local_readers_copies_beside_a_drawn_query(
        monkeypatch, observed_steps):
    # one home: A reads repository X of GPU 1 and holds copies of it by the time B, reading
    # repository Y of GPU 1, decodes beside it; A's steps are not drawn, B's are (while away):
    # what adaptive is told of those steps — A's picks on GPU 1's blocks among them — is the
    # run's that draws both (every block picked)
    sc = small_scenario("single_node:gpus=2", layer_groups=0, scheme="repo_affinity")
    repo = repo_on(1, 2)
    trace = make_trace(arrival_at=[0.0, 0.5], input_tokens=[6 * 64, 6 * 64],
                       output_tokens=[60, 30],
                       block_ids=[list(range(6)), list(range(10, 16))],
                       block_tokens=64, session_id=[3, 3], repo_id=[repo, repo])
    counted = run(sc, "adaptive", trace=trace, engine="fast")
    told = observed_steps[:]
    observed_steps.clear()
    monkeypatch.setattr(FastRun, "count_local_contexts", False)
    every = run(sc, "adaptive", trace=trace, engine="fast")
    assert told == observed_steps
    assert (counted.requests["home"].astype(str) == "n0/gpu0").all()
    # steps of both queries, with copies of GPU 1's blocks used
    both = [t for t in told if t[3] == 2 and t[1] is not None and t[1][1] > 0]
    assert len(both) > 5
    assert_same_tables(counted, every)


class _ObservedColocated(Colocated):
    """``colocated`` that asks for observations (an observing policy that moves nothing)."""

    name = "observed_colocated"
    observes = True


def test_an_observing_colocated_policy_is_told_nothing_away_from_home(observed_steps):
    # every block counts as home: its contexts are all local, and nothing is away
    sc = small_scenario("single_node:gpus=2", layer_groups=0, scheme="repo_affinity")
    trace = make_trace(arrival_at=[0.0, 0.0], input_tokens=[6 * 64, 6 * 64],
                       output_tokens=[30, 30], block_ids=[list(range(6)), list(range(10, 16))],
                       block_tokens=64, session_id=[3, 3], repo_id=[repo_on(1, 2)] * 2)
    res = run(sc, _ObservedColocated(), trace=trace, engine="fast")
    assert res.summary["completed"] == 2 and len(res.rounds) == 0
    assert any(t[3] == 2 for t in observed_steps)
    assert all(not any(t[1]) and not any(t[2]) for t in observed_steps)


def test_a_drawn_query_of_a_colocated_policy_beside_a_local_one_is_told_nothing_away(
        observed_steps):
    # a query drawn under a colocated policy (a context with a hole is never found local)
    # leaves nothing away from home (None): a local query beside it adds its estimate to none
    sc = small_scenario("single_node:gpus=2", layer_groups=0, scheme="repo_affinity")
    trace = make_trace(arrival_at=[0.0, 0.0], input_tokens=[6 * 64, 3 * 64],
                       output_tokens=[5, 5], block_ids=[list(range(6)), list(range(10, 13))],
                       block_tokens=64)
    fast = FastRun(sc, _ObservedColocated(), 0, trace, None)
    fast.steps.away = fast.steps.owner_copy_hits = None  # as locate_for leaves them, colocated
    fast.steps.local_away = np.zeros(fast.G)
    fast.steps._local[1] = SimpleNamespace(count=3)  # query 1's finding: 3 blocks per slot
    valid = np.ones((1, fast.S, 6), bool)  # query 0 drawn: its 6 blocks in every slot
    fast._observe_split(0, [0, 1], [0], valid)
    home, hits, selected, queries, _, share = observed_steps[-1][:6]
    assert (home, hits, selected, queries, share) == (0, None, None, 2, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4), st.integers(0, 6), st.integers(0, 6), st.integers(1, 40),
       st.randoms(use_true_random=False))
def test_the_stabilitys_row_membership_is_the_broadcast_comparison(rows, n, m, high, rnd):
    # which picks of a layer are picked again S layers on: what the pairwise comparison gave,
    # without its rows × n × m booleans (a dense pick of a 60k-block context: 3.6e9 per row)
    a = np.array([[rnd.randrange(high) for _ in range(n)] for _ in range(rows)],
                 np.int64).reshape(rows, n)
    b = np.array([[rnd.randrange(high) for _ in range(m)] for _ in range(rows)],
                 np.int64).reshape(rows, m)
    want = (a[:, :, None] == b[:, None, :]).any(axis=2)
    got = _in_row(a, b)
    assert got.shape == want.shape and (got == want).all()



@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4), st.integers(0, 6), st.integers(1, 40), st.randoms(use_true_random=False))
def test_reselected_picks_are_the_padded_broadcast_count(rows, n, high, rnd):
    # the stability's count of a drawn sample: rows of picks padded with -1 on both sides (the
    # padding never counts, and never matches a pick of the row before)
    a, b = (np.array([[rnd.randrange(-1, high) for _ in range(n)] for _ in range(rows)],
                     np.int64).reshape(rows, n) for _ in range(2))
    want = int(((a[:, :, None] == b[:, None, :]).any(axis=2) & (a >= 0)).sum())
    assert reselected(a, b) == want
    assert reselected(np.array([[3, -1]]), np.array([[-1, 3]])) == 1
    assert reselected(np.array([[5], [-1]]), np.array([[0], [-1]])) == 0

def test_a_dense_long_context_at_small_blocks_is_found_local_in_linear_memory():
    # one 16,384-block context selected whole (dense): its stability compares rows of 16,384
    # picks; pairwise that is 16,384² booleans per layer pair (2.7 GB for ten), here a sort
    n = 16_384
    a = np.tile(np.arange(n, dtype=np.int64), (10, 1))
    b = a[:, ::-1].copy()
    b[3, 0] = n  # one pick the row before does not hold
    got = _in_row(a, b)
    assert got.sum() == 10 * n - 1 and not got[3, n - 1]
