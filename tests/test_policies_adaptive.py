"""``adaptive``: expected reuse and the owner's load through the closed form under load — the
old predicate when nothing is reused and nobody is busy, the closed form's answer when the reuse
and the queue are known, and counters the engine keeps exactly."""

import math

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from simulator import run
from simulator.costmodel import CostModel
from simulator.costmodel.loaded import LoadedCosts
from simulator.network import Fabric
from simulator.policies import Observed, PolicyContext, Round, get
from simulator.policies.adaptive import (
    PRIOR_COPIES,
    PRIOR_ROUNDS,
    Adaptive,
    expected_reuse,
    new_per_round,
    owner_stall,
    repicks,
    slow_times,
)
from simulator.policies.fetch import Fetch
from simulator.policies.observed import WINDOW, FabricLoad
from simulator.testing.invariants import check_run, repo_on, small_cases, small_scenario
from workloads.schema import make_trace

G = topologies.build("dgx_h100", nodes=2)
CM = CostModel("deepseek-v3.2", G, "ibgda")
NAMES = list(topologies.gpus(G))
HOME, NEAR, FAR = "n0/gpu0", "n0/gpu5", "n1/gpu3"


def observed(free_at=None, links=None) -> Observed:
    """Counters as an engine starts them; every stream idle unless ``free_at`` says."""
    return Observed(NAMES, free_at or (lambda g, at: 0.0), links=links)


def copies_used(obs, h, o, copies, reuse) -> None:
    """Home ``h`` holds ``copies`` copies of owner ``o``'s blocks, each used ``reuse`` times in
    all (the counters ``Observed.copied`` and ``step`` keep). 1e12 copies: so much evidence that
    the prior does not count."""
    obs.copies[h, o] = copies
    obs.hits[h, o] = copies * (reuse - 1.0)


def context(obs, fabric=None) -> PolicyContext:
    return PolicyContext(CM, fabric, G, np.random.default_rng(0), obs)


@settings(max_examples=40)
@given(st.sampled_from([NEAR, FAR]), st.integers(1, 300), st.integers(1, 24),
       st.floats(0.0, 1.0))
def test_with_reuse_one_and_idle_streams_it_is_the_old_predicate(owner, k, b, now):
    rnd = Round(HOME, owner, 0, b, k, k, now)
    old = get("adaptive_static").choose(context(None), rnd)
    # reuse forced to 1, streams idle, an idle fabric …
    env = simpy.Environment()
    idle = FabricLoad(Fabric(env, G, "ibgda"), CM.path_rate)
    assert Adaptive(reuse=1.0).choose(context(observed(links=idle)), rnd) == old
    # … and the estimate itself, when nothing says a copy would be used again (no copies
    # made, no steps left): the same answer
    assert expected_reuse(observed(), rnd) == 1.0
    assert Adaptive().choose(context(observed()), rnd) == old
    # without observations at all (a policy context built by hand) it falls back to R = 1
    assert Adaptive().choose(context(None), rnd) == old


@pytest.mark.parametrize("owner", [NEAR, FAR])
def test_a_known_reuse_and_a_known_queue_give_the_closed_forms_choice(owner):
    # the truth is set by hand: copies of this owner's blocks were each used R times here,
    # and the owner's stream is busy for Q seconds; adaptive must pick what the closed form
    # under load (and, by hand, its phases) picks with those values
    seen = set()
    lc = LoadedCosts(CM)
    for k, b in ((2, 1), (32, 1), (32, 8), (200, 4)):
        route = CM.route(HOME, owner, k, b)
        for R in (1.0, 1.5, 3.0, 10.0, 100.0, 1e4):
            for Q in (0.0, 1e-5, 1e-4, 1e-3, 1e-1):
                obs = observed(lambda g, at, Q=Q: Q + 5.0 if NAMES[g] == owner else 0.0)
                h, o = obs.pair(HOME, owner)
                copies_used(obs, h, o, 1e12, R)
                rnd = Round(HOME, owner, 0, b, k, k, 5.0)
                assert expected_reuse(obs, rnd) == pytest.approx(R, rel=1e-9)
                got = Adaptive().choose(context(obs), rnd)
                # the closed form with those values: route every step, waiting for the queue
                # past its message, and the move it defers; fetch and local a round only when
                # a block is new, moving the new ones (simulator.costmodel.loaded, checked by
                # hand in its tests)
                t = lc.totals(HOME, owner, k, b, reuse=R, owner_backlog_time=Q)
                wait = max(0.0, Q - route.probe - route.transfer)
                assert t["route"] == pytest.approx(
                    route.total + wait + lc.deferred(HOME, owner, k, b, R), rel=1e-12)
                if R == 1.0:
                    assert t["fetch"] == pytest.approx(CM.fetch(HOME, owner, k, b).total)
                assert got == lc.decide(HOME, owner, k, b, reuse=R, owner_backlog_time=Q)
                seen.add(got)
    assert {"route", "fetch"} <= seen  # the cases discriminate


@pytest.mark.parametrize("owner", [NEAR, FAR])
def test_known_blocks_per_round_give_the_closed_forms_choice(owner):
    # the truth set by hand as well: copies used R times, made b at a time by the rounds the
    # pair made (so much evidence that the priors do not count); adaptive must pick what the
    # closed form under load picks with those values, and blocks that come together (b above
    # the independent model's n/(R·P)) must turn some routed rounds into fetches
    lc = LoadedCosts(CM)
    moved = set()
    for k, b in ((2, 1), (32, 1), (48, 1), (32, 8)):
        for R in (1.0, 3.0, 8.0, 30.0):
            for per in (1.0, 8.0, 24.0, 64.0):
                obs = observed()
                h, o = obs.pair(HOME, owner)
                copies_used(obs, h, o, 1e12, R)
                obs.rounds[h, o] = 1e12 / per
                rnd = Round(HOME, owner, 0, b, k, k, 5.0)
                assert new_per_round(obs, h, o, k * b, R) == pytest.approx(per, rel=1e-6)
                got = Adaptive().choose(context(obs), rnd)
                assert got == lc.decide(HOME, owner, k, b, reuse=R, per_round=per)
                alone = lc.decide(HOME, owner, k, b, reuse=R)
                if got != alone:
                    moved.add((k, b, R, per, alone, got))
    assert any(a == "route" and g == "fetch" for *_, a, g in moved)  # the cases discriminate


def test_blocks_per_round_blend_the_independent_model_with_what_rounds_carried():
    obs = observed()
    h, o = obs.pair(HOME, FAR)
    n, R = 32.0, 8.0
    assert new_per_round(obs, h, o, n, R) is None  # no round made: the independent model
    chance = 1 - (1 - 1 / R) ** n
    prior = n / (R * chance)
    # as many rounds as the prior counts for, each of 12 new blocks: halfway
    for _ in range(int(PRIOR_ROUNDS)):
        obs.copied(h, o, 12)
    assert obs.rounds[h, o] == PRIOR_ROUNDS
    assert new_per_round(obs, h, o, n, R) == pytest.approx((12.0 + prior) / 2)
    # a round that kept no copy (no room) is a round too: fewer blocks per round
    obs.copied(h, o, 0)
    assert obs.rounds[h, o] == PRIOR_ROUNDS + 1 and obs.copies[h, o] == 48.0
    expect = (48.0 + PRIOR_ROUNDS * prior) / (2 * PRIOR_ROUNDS + 1)
    assert new_per_round(obs, h, o, n, R) == pytest.approx(expect)


def test_blocks_per_round_at_their_edges():
    # one round made (no decay): already evidence, blended as one round against the prior's
    # PRIOR_ROUNDS (`made <= 0` is the only case without rounds)
    obs = observed()
    h, o = obs.pair(HOME, FAR)
    obs.copied(h, o, 40)
    assert obs.rounds[h, o] == 1.0
    n, R = 16.0, 4.0
    prior = n / (R * (1 - (1 - 1 / R) ** n))
    assert new_per_round(obs, h, o, n, R) == pytest.approx((40.0 + PRIOR_ROUNDS * prior)
                                                           / (1.0 + PRIOR_ROUNDS))
    # a step that selects nothing there: no chance of a round, so the prior is one block (not a
    # division by the zero chance)
    obs.copied(h, o, 0)  # two rounds made, 40 copies: 20 a round
    assert new_per_round(obs, h, o, 0.0, R) == pytest.approx((40.0 + PRIOR_ROUNDS * 1.0)
                                                             / (2.0 + PRIOR_ROUNDS))


def test_repicks_holds_its_chain_to_a_probability():
    # a stability estimate past 1 (or below the share) counts as the bound: the chain's λ
    # stays in [0, 1] — fully persistent (every later step), or memoryless (m·π)
    assert repicks(1.3, 0.1, 7) == repicks(1.0, 0.1, 7) == pytest.approx(7.0)
    assert repicks(0.0, 0.25, 40) == repicks(0.25, 0.25, 40) == pytest.approx(10.0)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("owner", [NEAR, FAR])
def test_the_blocks_per_round_adaptive_prices_are_its_whole_steps(owner, compiled):
    # few rounds made, so the prior counts: the blocks per round adaptive prices with are
    # new_per_round over the step's whole selection, K blocks for each of the B queries (K·B,
    # not K/B or K), and its answer is the closed form's with that value
    lc = LoadedCosts(CM)
    moved = set()
    for k, b in ((2, 2), (8, 4), (16, 4), (32, 8)):
        for made, per in ((1.0, 1.0), (2.0, 6.0), (3.0, 40.0)):
            for R in (1.5, 2.0, 6.0, 100.0):  # copies used R times each, as few copies saw
                obs = observed()
                h, o = obs.pair(HOME, owner)
                obs.rounds[h, o] = made
                copies_used(obs, h, o, made * per, R)
                rnd = Round(HOME, owner, 0, b, k, k, 5.0)
                reuse = expected_reuse(obs, rnd)
                right = new_per_round(obs, h, o, k * b, reuse)
                got = Adaptive(compiled=compiled).choose(context(obs), rnd)
                assert got == lc.decide(HOME, owner, k, b, reuse=reuse, per_round=right)
                for wrong in (k / b, float(k)):
                    other = lc.decide(HOME, owner, k, b, reuse=reuse,
                                      per_round=new_per_round(obs, h, o, wrong, reuse))
                    if other != got:
                        moved.add((k, b, made, per, R, wrong))
    assert moved  # the cases discriminate


def stall_cases(owner):
    """Rounds of several shapes to ``owner`` with a known reuse R (so much evidence that the
    prior does not count) and idle streams: ``(k, b, R, obs, h, o, rnd, the choice then)``."""
    for k, b in ((2, 1), (16, 1), (32, 8), (200, 4)):
        for R in (1.0, 3.0, 5.0, 100.0):
            obs = observed()
            h, o = obs.pair(HOME, owner)
            copies_used(obs, h, o, 1e12, R)
            rnd = Round(HOME, owner, 0, b, k, k, 5.0)
            yield k, b, R, obs, h, o, rnd, Adaptive().choose(context(obs), rnd)


@pytest.mark.parametrize("owner", [NEAR, FAR])
def test_a_lockstep_owner_is_charged_the_routed_kernel_again(owner):
    # an owner that steps with others (a [deployment] instance's rank): the closed form under
    # load with the owner's stall, for the same known reuse and queue; only route's total moves
    lc = LoadedCosts(CM)
    moved = set()
    for k, b, R, obs, h, o, rnd, free in stall_cases(owner):
        obs.lockstep[o] = True
        got = Adaptive().choose(context(obs), rnd)
        assert got == lc.decide(HOME, owner, k, b, reuse=R, owner_stall=True,
                                options=("route", "fetch")) or got == "local"
        if got != free:
            assert (free, got) == ("route", "fetch")
            moved.add((k, b, R))
        obs.lockstep[o] = False
        obs.lockstep[h] = True  # the home's own instance does not change the round's price
        assert Adaptive().choose(context(obs), rnd) == free
    assert moved  # the cases discriminate


@pytest.mark.parametrize("owner", [NEAR, FAR])
def test_an_owner_with_its_own_batch_is_charged_the_delay_of_its_queries(owner):
    # the routed kernel delays the owner's next step: route pays it again, weighted by the
    # owner's queries over the home's; an owner without a batch (or gone idle) costs nothing
    lc = LoadedCosts(CM)
    moved = set()
    for k, b, R, obs, h, o, rnd, free in stall_cases(owner):
        for mine, home in ((1, 1), (8, 2), (3, 12), (30, 1)):
            obs.queries[o], obs.queries[h] = mine, home
            assert owner_stall(obs, h, o) == mine / home
            got = Adaptive().choose(context(obs), rnd)
            assert got == lc.decide(HOME, owner, k, b, reuse=R, owner_stall=mine / home,
                                    options=("route", "fetch")) or got == "local"
            if got != free:
                assert (free, got) == ("route", "fetch")  # only route got dearer
                moved.add((k, b, R, mine, home))
            obs.lockstep[o] = True  # a lockstep owner: the instance's delay, once
            assert owner_stall(obs, h, o) == 1.0
            obs.lockstep[o] = False
        obs.idle(o)  # the owner's batch is done: nothing more to delay
        assert owner_stall(obs, h, o) == 0.0
        assert Adaptive().choose(context(obs), rnd) == free
        obs.queries[h], obs.queries[o] = 0, 4  # a home without a batch counts as one query
        assert owner_stall(obs, h, o) == 4.0
    assert moved  # the cases discriminate


def test_repicks_known_answers():
    # a query that reads its whole context every step selects the block every later step
    assert repicks(0.3, 1.0, 50) == 50
    # persistence equal to the stationary share: no memory, m·π
    assert repicks(0.25, 0.25, 40) == pytest.approx(10.0)
    # fully persistent selections: every later step
    assert repicks(1.0, 0.1, 7) == pytest.approx(7.0)
    # no steps left: no later use
    assert repicks(0.5, 0.1, 0) == 0.0
    # the two-state chain: m·π + (1 − π)·λ(1 − λ^m)/(1 − λ), λ = (s − π)/(1 − π)
    s, pi, m = 0.45, 0.03, 100
    lam = (s - pi) / (1 - pi)
    assert repicks(s, pi, m) == pytest.approx(m * pi + (1 - pi) * lam * (1 - lam**m) / (1 - lam))


def test_expected_reuse_blends_the_prior_with_what_copies_earned():
    obs = observed()
    h, o = obs.pair(HOME, FAR)
    rnd = Round(HOME, FAR, 0, 1, 32, 32, 0.0)
    obs.selections(1000, 450)
    obs.step(h, None, None, 1, remaining_tokens=101.0, select_share=0.03, copy_room=5000,
             copies_held=100)
    prior = 1.0 + repicks(0.45, 0.03, 100.0)
    assert expected_reuse(obs, rnd) == pytest.approx(prior)
    # copies that earned 19 uses each, as much evidence as the prior: halfway
    obs.copied(h, o, int(PRIOR_COPIES))
    obs.hits[h, o] = 18.0 * PRIOR_COPIES
    assert expected_reuse(obs, rnd) == pytest.approx((prior + 19.0) / 2)
    # no room for copies at home: the prior expects no later use
    obs2 = observed()
    obs2.step(h, None, None, 1, 101.0, 0.03, copy_room=0, copies_held=0)
    assert expected_reuse(obs2, rnd) == 1.0
    # room for fewer than the round's blocks: copies survive in proportion
    obs2.step(h, None, None, 1, 101.0, 0.03, copy_room=64, copies_held=48)
    assert expected_reuse(obs2, rnd) == pytest.approx(1.0 + repicks(0.0, 0.03, 100.0) * 64 / 80)


def test_observed_counters_decay_but_keep_their_ratio():
    obs = observed(lambda g, at: 3.0)
    obs.copied(0, 1, 1000)
    obs.step(0, np.eye(len(NAMES))[1] * 3000.0, np.eye(len(NAMES))[1] * 3500.0, 2, 5.0, 0.1,
             10, 0)
    assert obs.selected_blocks(0, 1, 2) == 1750.0 and obs.queries[0] == 2
    assert obs.copies[0, 1] + obs.hits[0, 1] <= WINDOW
    assert obs.hits[0, 1] / obs.copies[0, 1] == pytest.approx(3.0)
    assert obs.copies[0, 1] / obs.rounds[0, 1] == pytest.approx(1000.0)  # halved with them
    assert obs.backlog_time(NAMES[0], 1.0) == 2.0 and obs.backlog_time(NAMES[0], 4.0) == 0.0
    assert obs.stability() == 0.0
    obs.selections(10, 4)
    assert obs.stability() == pytest.approx(0.4)


class ObservedFetch(Fetch):
    """``fetch`` that asks the engine for observations (to check what the engine counts)."""

    name = "observed_fetch"
    observes = True
    seen: list = []

    def choose(self, ctx, rnd):
        self.seen.append(ctx.observed)
        return "fetch"


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_a_query_reading_its_whole_context_is_told_a_share_of_one_in_any_batch(engine,
                                                                               monkeypatch):
    # dense selection: every query selects every block of its context in every slot, so the
    # share it is told is 1 whether it decodes alone or beside another — its context counted
    # in whole blocks of its prompt and the tokens it generated (the first half of a block
    # included); on the fast engine the contexts local after the first step are not drawn
    told = []
    real = Observed.step

    def spy(self, home, hits, selected, queries, remaining, share, *rest):
        told.append((queries, share))
        return real(self, home, hits, selected, queries, remaining, share, *rest)

    monkeypatch.setattr(Observed, "step", spy)
    sc = small_scenario("single_node:gpus=2", scheme="hash", layer_groups=2)
    sc = sc.with_changes(model=type(sc.model)(name="deepseek-v3.2", selection="dense"))
    trace = make_trace(arrival_at=[0.0, 0.0], input_tokens=[40 * 64 - 30, 21 * 64 + 5],
                       output_tokens=[9, 40], block_ids=[list(range(40)), list(range(50, 72))],
                       block_tokens=64, session_id=[1, 1], repo_id=[repo_on(1, 2), -1])
    pol = ObservedFetch()
    run(sc, pol, trace=trace, engine=engine)
    assert {q for q, _ in told} == {1, 2}
    assert all(share == 1.0 for _, share in told)


@pytest.mark.parametrize("home", [0, 1])
@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_the_engine_counts_copies_and_their_uses_exactly(engine, home):
    # one query reading its whole context each step (dense selection), half of its blocks on
    # the other GPU: the first step fetches each remote block once per layer slot, every later
    # step uses those copies instead of a round. Homed on GPU 0 (least loaded) or on GPU 1 (its
    # repository's GPU), so that the blocks' owner is GPU 1 or GPU 0
    rule = ("least_loaded", "repo_affinity")[home]
    sc = small_scenario("single_node:gpus=2", scheme="hash", layer_groups=2, home=rule)
    sc = sc.with_changes(model=type(sc.model)(name="deepseek-v3.2", selection="dense"))
    out = 6
    trace = make_trace(arrival_at=[0.0], input_tokens=[40 * 64], output_tokens=[out],
                       block_ids=[list(range(40))], block_tokens=64, repo_id=[repo_on(1, 2)])
    pol = ObservedFetch()
    pol.seen.clear()
    res = run(sc, pol, trace=trace, engine=engine)
    assert res.summary["engine"] == engine
    obs = pol.seen[-1]
    rounds = res.rounds
    assert set(rounds["option"].astype(str)) == {"fetch"}
    assert set(rounds["iteration"]) == {1}  # the first decode step fetches, no later one
    assert str(rounds["src"].iloc[0]) == f"n0/gpu{home}"
    home, owner = obs.pair(str(rounds["src"].iloc[0]), str(rounds["owner"].iloc[0]))
    copies = float(rounds["distinct_blocks"].sum())  # per (block, slot)
    assert obs.copies[home, owner] == copies
    assert obs.rounds[home, owner] == len(rounds) == obs.rounds.sum()  # one per round
    decode_steps = out - 1  # the first token comes with the prefill
    assert obs.hits[home, owner] == copies * (decode_steps - 1)
    # the last step selected every remote block in every slot, all of them copies by then
    assert obs.selected[home, owner] == copies == obs.selected.sum()
    assert obs.selected_blocks(home, owner, 1) == copies / obs.slots
    assert obs.hits.sum() == obs.hits[home, owner]
    assert obs.stability() == 1.0  # the same blocks every step
    assert obs.steps[home] == decode_steps
    assert (obs.queries == 0).all()  # every GPU went idle at the end: no batch to delay
    # the last step's view: every block of the context selected (dense), one token left to
    # make, and the home's free KV room and copies as its final counts
    g = res.gpus.set_index(res.gpus["gpu"].astype(str)).loc[str(rounds["src"].iloc[0])]
    assert obs.select_share[home] == 1.0 and obs.remaining_tokens[home] == 1.0
    assert obs.copy_room[home] == g["capacity_blocks"] - g["owned_blocks"] > 0
    assert obs.copies_held[home] == g["copy_blocks"] > 0


@pytest.fixture
def observed_steps(monkeypatch) -> list:
    """Every ``Observed.step`` the engine makes, as ``(home, queries, remaining_tokens,
    select_share)`` (the step is still counted)."""
    from simulator.policies.observed import Observed as Obs

    seen = []
    step = Obs.step

    def record(self, home, hits, selected, queries, remaining_tokens, select_share, *rest):
        seen.append((home, queries, remaining_tokens, select_share))
        return step(self, home, hits, selected, queries, remaining_tokens, select_share, *rest)

    monkeypatch.setattr(Obs, "step", record)
    return seen


@pytest.mark.parametrize("engine", ["exact", "fast"])
def test_what_adaptive_observes_of_a_batch_of_two_short_requests(engine, observed_steps):
    # two requests of 10 prompt tokens (a context under one block), 4 and 8 tokens to make,
    # homed together (one repository) and read densely. Each decode step tells the policy the
    # batch's mean tokens left and the share of its context a query selects: all of it
    sc = small_scenario("single_node:gpus=2", scheme="hash", home="repo_affinity")
    sc = sc.with_changes(model=type(sc.model)(name="deepseek-v3.2", selection="dense"))
    trace = make_trace(arrival_at=[0.0, 0.0], input_tokens=[10, 10], output_tokens=[4, 8],
                       block_ids=[[0], [0]], block_tokens=64, repo_id=[repo_on(1, 2)] * 2)
    run(sc, "adaptive", trace=trace, engine=engine)
    # the prefill makes each request's first token; then three steps of both (3 + 7, 2 + 6,
    # 1 + 5 tokens left), then four of the second alone
    assert [(q, left) for _, q, left, _ in observed_steps] == [
        (2, 5.0), (2, 4.0), (2, 3.0), (1, 4.0), (1, 3.0), (1, 2.0), (1, 1.0)]
    assert {h for h, *_ in observed_steps} == {1}
    assert {share for *_, share in observed_steps} == {1.0}


@pytest.mark.parametrize("name", ["deepseek-v3", "deepseek-v3.2"])
def test_a_model_without_a_top_k_read_under_dsa_selects_deepseek_v32s(name, observed_steps):
    # DeepSeek-V3 has no indexer (topk_tokens None); read under DSA it selects V3.2's 2,048
    # tokens: 32 blocks of 64 tokens, plus the recent window's 2 (128 tokens), of a context of
    # 100 blocks (99 prompt blocks and the block its decoding opened)
    sc = small_scenario("single_node:gpus=2", scheme="hash", model=name, weights_per_gpu=20e9)
    sc = sc.with_changes(model=type(sc.model)(name=name, selection="dsa"))
    trace = make_trace(arrival_at=[0.0], input_tokens=[99 * 64], output_tokens=[4],
                       block_ids=[list(range(99))], block_tokens=64)
    run(sc, "adaptive", trace=trace)
    assert [share for *_, share in observed_steps] == [pytest.approx(0.34)] * 3


@settings(max_examples=6)
@given(case=small_cases())
def test_adaptive_keeps_every_invariant(case):
    scenario, trace = case
    res = run(scenario, "adaptive", trace=trace, check_invariants=True)
    check_run(res, trace)


# -- known answers at the predicate's thresholds and its estimators' edges (the mutants that the
#    policies group's mutation score, docs/mutation.md, found surviving) -------------------------


class BusyToHome:
    """A link view (``Observed.links``) where only the paths into ``home`` carry other traffic:
    a message there takes ``extra`` s plus ``per_byte`` s/B longer than on an idle path."""

    def __init__(self, home: str, extra: float = 0.0, per_byte: float = 0.0) -> None:
        self.home, self.extra, self.per_byte = home, extra, per_byte

    def idle(self, src, dst, at):
        return dst != self.home

    def extra_time(self, src, dst, nbytes, at):
        return self.extra + self.per_byte * nbytes if dst == self.home else 0.0


def crossing(holds, lo: float, hi: float) -> float:
    """The least float in (lo, hi] where ``holds`` (monotone: false at lo, true at hi)."""
    while math.nextafter(lo, hi) < hi:
        mid = lo + (hi - lo) / 2
        if not lo < mid < hi:
            mid = math.nextafter(lo, hi)
        lo, hi = (lo, mid) if holds(mid) else (mid, hi)
    return hi


def test_a_tie_between_route_and_fetch_goes_to_route():
    # one block for one query on the near owner, R = 1, idle home: route's step grows with
    # the owner's queue Q once Q outlasts the query's message, fetch's does not. At the first
    # Q where the two are equal to the last bit route is chosen; at the first where route's is
    # dearer, fetch (adaptive.py:138 `t_route <= t_fetch`)
    lc = LoadedCosts(CM)
    fetch = lc.step_time("fetch", HOME, NEAR, 1.0, 1)

    def route(q):
        return lc.step_time("route", HOME, NEAR, 1.0, 1, owner_backlog_time=q)

    tie, dearer = (crossing(lambda q: route(q) >= fetch, 0.0, 1.0),
                   crossing(lambda q: route(q) > fetch, 0.0, 1.0))
    assert route(tie) == fetch
    assert 1e-5 < tie < dearer < 1.1e-5  # route's 51.5 µs + Q − 3.4 µs (its message) = 58.5 µs

    def choice(q):
        obs = observed(lambda g, at: q if NAMES[g] == NEAR else 0.0)
        return Adaptive(reuse=1.0).choose(context(obs), Round(HOME, NEAR, 0, 1, 1, 1, 0.0))

    assert choice(tie) == "route"
    assert choice(dearer) == "fetch"


def test_local_wins_exactly_where_its_recompute_beats_the_fetch_on_a_busy_path():
    # one block for one query on the far owner, R = 1, the owner's stream busy for a second
    # (route is out), the blocks' way home slowed by X: fetch's step is its closed-form total
    # + X, local's its closed-form total. The choice flips at X* = local − fetch, a tie going to
    # fetch (adaptive.py:146 `local < t_best`, :147 the "local" returned, :143 the gate's
    # `fetch_round + slow_fetch`)
    fetch, local = CM.fetch(HOME, FAR, 1, 1).total, CM.local(HOME, FAR, 1, 1).total
    lc = LoadedCosts(CM)
    x = crossing(lambda x: lc.step_time("fetch", HOME, FAR, 1.0, 1, slow_time=x) >= local,
                 0.0, 1.0)
    # (7.108e-4 while a recomputed prompt token also paid MLA's absorbed products)
    assert fetch + x == local and x == pytest.approx(6.884e-4, rel=1e-3)

    def choice(x):
        obs = observed(lambda g, at: 1.0 if NAMES[g] == FAR else 0.0, BusyToHome(HOME, x))
        return Adaptive(reuse=1.0).choose(context(obs), Round(HOME, FAR, 0, 1, 1, 1, 0.0))

    assert choice(math.nextafter(x, 0.0)) == "fetch"
    assert choice(x) == "fetch"
    above = math.nextafter(x, math.inf)
    assert choice(above) == "local"
    # local is priced only when the cheapest recompute — one block for one query — is below
    # the fetch round; a gate priced at two blocks, or two queries, would stay shut here
    # (adaptive.py:154 `recompute_time(src, 1, 1)`)
    assert (CM.recompute_time(HOME, 1, 1) < fetch + above
            < min(CM.recompute_time(HOME, 2, 1), CM.recompute_time(HOME, 1, 2)))


def test_the_extra_time_of_each_options_bytes_on_a_path_busy_one_way():
    # slow_times: route's answer and fetch's blocks come home on the busy way (1 ns/B), the
    # queries and the fetch request go out the idle way (adaptive.py:213 both directions must
    # be idle to skip the check; :217-223 the sum per option)
    rnd = Round(HOME, FAR, 0, 2, 8, 8, 0.0)
    answer = 2 * 131_584  # two queries' (output, LSE) rows [B]
    kv = 2 * 8 * 64 * 1152  # two queries × 8 blocks × 64 tokens × 1,152 B of KV a token
    assert CM.route_payload(2)[1] == answer and CM.fetch_bytes(8, 2) == kv
    got = slow_times(observed(links=BusyToHome(HOME, per_byte=1e-9)), CM, rnd)
    assert got == {"route": pytest.approx(answer * 1e-9, rel=1e-12),
                   "fetch": pytest.approx(kv * 1e-9, rel=1e-12)}
    # the same with a fixed 2 µs a message: one message each comes home
    got = slow_times(observed(links=BusyToHome(HOME, extra=2e-6)), CM, rnd)
    assert got == {"route": 2e-6, "fetch": 2e-6}
    # both ways idle (the busy GPU is another): nothing to price
    assert slow_times(observed(links=BusyToHome(NEAR, extra=2e-6)), CM, rnd) is None


def test_expected_reuse_at_the_edges_of_its_estimators():
    obs = observed()
    h, o = obs.pair(HOME, FAR)
    obs.selections(10, 8)  # stability s = 0.8
    rnd = Round(HOME, FAR, 0, 1, 1, 1, 0.0)

    def step(tokens, room, held=0):
        obs.step(h, None, None, 1, remaining_tokens=tokens, select_share=0.5, copy_room=room,
                 copies_held=held)

    # two tokens left: one later step; π = 0.5, λ = (0.8 − 0.5)/(1 − 0.5) = 0.6, so
    # repicks = 1·0.5 + 0.5·0.6 = 0.8 and R = 1.8
    step(2.0, 100)
    assert expected_reuse(obs, rnd) == pytest.approx(1.8)
    # the batch's last token: no later step (m = tokens − 1 = 0), R = 1 (adaptive.py:177)
    step(1.0, 100)
    assert expected_reuse(obs, rnd) == 1.0
    # room for exactly the round's one block: it survives (adaptive.py:181 `room <= 0`)
    step(2.0, 1)
    assert expected_reuse(obs, rnd) == pytest.approx(1.8)
    # no room at all: no copy survives, even of a round naming no new block (:181's `<=`)
    step(2.0, 0)
    assert expected_reuse(obs, rnd._replace(distinct_blocks=0)) == 1.0
    # one copy made, used 10 times more: it weighs 1 against the prior's 32 (adaptive.py:189)
    step(2.0, 100)
    obs.copied(h, o, 1)
    obs.hits[h, o] = 10.0
    assert expected_reuse(obs, rnd) == pytest.approx((11.0 + PRIOR_COPIES * 1.8)
                                                     / (1.0 + PRIOR_COPIES))


def test_the_closed_form_under_load_is_kept_per_cost_model():
    # memoized for the run's cost model, built again for another (adaptive.py:107)
    pol = Adaptive()
    lc = pol.costs(context(None))
    assert lc.cm is CM and pol.costs(context(None)) is lc
    other = CostModel("deepseek-v3.2", G, "ibgda")
    assert pol.costs(PolicyContext(other, None, G, None)).cm is other


@pytest.mark.parametrize("per_byte", [1e-10, 1e-9])
def test_fetchs_slow_down_on_a_busy_path_is_priced_for_the_full_round_it_scales(per_byte):
    # the last step selected K = 32 blocks of the owner's per query; this round holds one.
    # LoadedCosts takes fetch's slow_time for the full round of K blocks and scales it by the
    # blocks a step moves (k/K; loaded.py, "Live bandwidth"), so adaptive must price the busy
    # path's extra time for K blocks: priced for the round's one block, fetch's slow-down was
    # under-charged 32-fold and adaptive fetched where the closed form routes (found by the
    # policies group's mutation pass; per_byte = 1e-10 is that case)
    obs = observed(links=BusyToHome(HOME, per_byte=per_byte))
    h, o = obs.pair(HOME, NEAR)
    obs.selected[h, o] = 32 * obs.slots
    rnd = Round(HOME, NEAR, 0, 1, 1, 1, 0.0)
    assert obs.selected_blocks(h, o, 1) == 32.0
    full = slow_times(obs, CM, rnd, 32.0)
    assert full["fetch"] == pytest.approx(32 * slow_times(obs, CM, rnd)["fetch"], rel=1e-12)
    assert full["route"] == slow_times(obs, CM, rnd)["route"]  # route's bytes: the batch's
    want = LoadedCosts(CM).decide(HOME, NEAR, 32.0, 1, reuse=5.0, slow_times=full)
    assert Adaptive(reuse=5.0).choose(context(obs), rnd) == want
    if per_byte == 1e-10:
        assert want == "route"


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([NEAR, FAR]), st.sampled_from([1, 2, 8, 64]), st.integers(1, 8),
       st.sampled_from([0, 1, 8, 32, 96]), st.sampled_from([1.0, 1.5, 5.0, 50.0]),
       st.sampled_from([0.0, 2e-6, 3e-5, 1.0]), st.sampled_from([0.0, 5e-6, 1e-4]),
       st.sampled_from([0.0, 1e-11, 1e-10, 1e-9, 1e-7]), st.integers(0, 16),
       st.integers(0, 16))
def test_adaptive_decides_as_the_closed_form_under_load_on_what_it_observed(
        owner, k, b, last, reuse, owner_q, home_q, per_byte, mine, theirs):
    # whatever the owner's and the home's queues, the busy path home, the last step's selection
    # and the owner's own batch: adaptive's answer is LoadedCosts.decide's on the same inputs —
    # the round of K = max(k, the last selection per query) blocks, the observed waits, the
    # busy path priced for K blocks, the owner's stall — so its shortcuts (route before fetch,
    # local priced only past its gate) never change the answer
    obs = observed(lambda g, at: {owner: owner_q, HOME: home_q}.get(NAMES[g], 0.0),
                   BusyToHome(HOME, per_byte=per_byte) if per_byte else None)
    h, o = obs.pair(HOME, owner)
    obs.selected[h, o] = last * b * obs.slots
    obs.queries[h], obs.queries[o] = theirs, mine
    rnd = Round(HOME, owner, 0, b, k, k, 1.0)
    blocks = max(float(k), obs.selected_blocks(h, o, b))
    want = LoadedCosts(CM).decide(
        HOME, owner, blocks, b, reuse=reuse, owner_backlog_time=obs.backlog_time(owner, 1.0),
        home_backlog_time=obs.backlog_time(HOME, 1.0),
        slow_times=slow_times(obs, CM, rnd, blocks), owner_stall=owner_stall(obs, h, o))
    assert Adaptive(reuse=reuse).choose(context(obs), rnd) == want
