"""The fast engine held to the exact one where steps of different GPUs meet on an owner's stream:
routed rounds of several homes and the owner's own prefill, layer by layer.

A step is composed at its start; a kernel another GPU composes later but issues earlier pushes
the step's kernels back in the owner's calendar, and the step is charged the push (its debt).
Two rules make that agree with the exact engine (stop 32): the debt is the *whole* push an item
received, however many kernels pushed it; and a slot with rounds is composed once the events
due before it have run, starting later by the debt its earlier slots ran up — so, pushed behind
one layer of the owner's prefill, its next round meets the prefill's next layer, as it does on
the exact engine. Since stop 40 a slot with nothing to exchange is composed the same way when
other GPUs' routed kernels can share its stream: pushed, it moves the owner's later slots, so
the next reader's query meets them where the exact engine has them. Known answers first (two requests), then many small random cases against the
exact engine (the reference, not the code under test)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import run
from simulator.testing.invariants import nudged, repo_on, small_scenario
from workloads.schema import make_trace


def step_times(res) -> np.ndarray:
    """Every iteration's time [s], in (GPU, iteration) order."""
    it = res.iterations.sort_values(["gpu", "iteration"])
    return (it["finished_at"] - it["started_at"]).to_numpy()


def prefill_during_decode(second_at: float):
    """A reader of the repository on GPU 1 (decoding from GPU 0 under route) and, from
    ``second_at`` [s], a long prompt prefilled on GPU 1 layer slot by layer slot."""
    repo = repo_on(1, 2)
    return make_trace(arrival_at=[0.0, second_at], input_tokens=[40 * 64, 300 * 64],
                      output_tokens=[60, 2], block_ids=[list(range(40)), list(range(1000, 1300))],
                      block_tokens=64, repo_id=[repo, repo + 7])


@pytest.mark.parametrize("second_at", [0.05, 0.26, 0.30, 0.48])
def test_a_routed_decode_meeting_the_owners_prefill_takes_the_exact_engines_time(second_at):
    # 0.05 s: the prefill is composed first; later: mid-step, so the prefill (composed after
    # the decode step) pushes the step's rounds back — its debt
    sc = small_scenario("single_node:gpus=2", scheme="repo_affinity", layer_groups=3)
    trace = prefill_during_decode(second_at)
    exact = run(sc, "route", trace=trace)
    fast = run(sc, "route", trace=trace, engine="fast")
    want, got = step_times(exact), step_times(fast)
    assert (want > 0.1).sum() >= 4  # steps that waited behind the prefill's layers
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_routed_decode_meeting_the_owners_prefill_agrees_to_the_float_under_a_nudge():
    """Kernel times nudged by 3e-8: each of the reader's slots that waits behind one of the
    owner's prefill layers folds that wait, so it turns a difference in its start into one
    ``−(fold − 1)`` ≈ −20 times as large. Seven such steps took a one-ulp difference in when a
    prefill layer slot started (the fast engine's ``end + (end − at)·(fold − 1)`` against the
    exact engine's ``now + delay``, rounded otherwise) to 5.5e-8 s: 6.7e-7 of step 15's time
    here, 8.1e-6 of step 17's unnudged under a 1e-10 change to grouped-GEMM times (past the
    1e-6 contract). Composed with the exact engine's rounding
    (:func:`simulator.engine.fast_streams.folded_next`) every step is its time to the float,
    here and under the other nudges tried (±1e-9 to ±5e-7)."""
    sc = nudged(small_scenario("single_node:gpus=2", scheme="repo_affinity", layer_groups=3),
                3e-8)
    trace = prefill_during_decode(0.05)
    want = step_times(run(sc, "route", trace=trace))
    got = step_times(run(sc, "route", trace=trace, engine="fast"))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def hot_owner_cases(rng: np.random.Generator, gpus: int, cases: int,
                    private_blocks: tuple[int, int] = (100, 300),
                    private_output: tuple[int, int] | None = None, private_on_owner=False):
    """Random small traces on ``gpus`` GPUs: six requests in 0.6 s, each a reader of one
    repository on GPU 1 (20–60 tokens out) or a private prompt of ``private_blocks`` blocks
    (2 tokens out, or a number drawn from ``private_output``) that some GPU, often the owner,
    prefills while the readers route to it — placed on GPU 1 too with ``private_on_owner``."""
    repo = repo_on(1, gpus)
    for _ in range(cases):
        arrivals = np.sort(rng.uniform(0.0, 0.6, 6))
        arrivals[0] = 0.0
        inp, out, blocks, repos = [], [], [], []
        for i in range(6):
            if rng.random() < 0.6:
                inp.append(40 * 64)
                out.append(int(rng.integers(20, 60)))
                blocks.append(list(range(40)))
                repos.append(repo)
            else:
                n = int(rng.integers(*private_blocks))
                inp.append(n * 64)
                out.append(2 if private_output is None else int(rng.integers(*private_output)))
                blocks.append(list(range(1000 * (i + 1), 1000 * (i + 1) + n)))
                repos.append(repo if private_on_owner else repo + 7 + i)
        yield make_trace(arrival_at=arrivals.tolist(), input_tokens=inp, output_tokens=out,
                         block_ids=blocks, block_tokens=64, repo_id=repos)


def exact_sensitivity(sc, trace, want: float) -> float:
    """How far the exact engine's own total step time moves (relative to ``want`` [s]) when
    its per-step host overhead is nudged by ±1e-6 of itself: the chaos of a case whose
    interleavings at the owner hang on a hair."""
    return max(abs(step_times(run(nudged(sc, k), "route", trace=trace)).sum() / want - 1.0)
               for k in (1e-6, -1e-6))


def within(sc, trace, want: np.ndarray, got: np.ndarray, bound: float) -> float:
    """The fast run's relative error in total step time; past ``bound`` it must lie within
    the exact engine's own sensitivity (:func:`exact_sensitivity`)."""
    assert len(got) == len(want)  # the same steps: only their times may differ
    err = abs(got.sum() / want.sum() - 1.0)
    if err > bound:
        assert err <= exact_sensitivity(sc, trace, want.sum()), err
    return err


def test_steps_that_collide_at_a_hot_owner_stay_within_a_fraction_of_a_percent():
    """40 random cases on 8 GPUs: each run's total step time within 0.5 % of the exact
    engine's, or past that within the exact engine's own move under a ±1e-6 nudge, and
    0.04 % on average. Measured (seeds 1–4 and 11, 60 cases each; stop 44, a prompt held in
    full computing its last block): at most 0.13–0.41 %, means 0.002–0.021 %, but for one
    case of seed 2 at 1.10 %, whose exact run moves 0.49 % and 1.60 % under the two nudges
    (that seed's mean: 0.032 %). Before stop 44 (no such step): at most 0.34 %, means
    0.010–0.021 %. With the push added only at the step's end (the rule until stop 32) this
    seed gave 2.05 % at worst and 0.21 % on average; with whole pushes but no re-timed slots,
    1.92 % and 0.081 %."""
    sc = small_scenario("single_node:gpus=8", scheme="repo_affinity", layer_groups=3)
    errors, same = [], 0
    for trace in hot_owner_cases(np.random.default_rng(2), 8, 40):
        want = step_times(run(sc, "route", trace=trace))
        got = step_times(run(sc, "route", trace=trace, engine="fast"))
        errors.append(within(sc, trace, want, got, 0.005))
        same += bool(np.allclose(got, want, rtol=1e-6))
    errors = np.array(errors)
    assert (errors > 0.005).sum() <= 1 and errors.mean() <= 0.0004
    assert same >= 20  # most cases: every step the exact engine's


def test_an_owners_quiet_slots_move_with_the_routed_kernels_that_push_them():
    """60 random cases on 4 GPUs (seeds 1 and 2): each run's total step time within 0.6 % of
    the exact engine's, or past that within the exact engine's own move under a ±1e-6 nudge,
    and within 0.13 % on average per seed. Measured on seeds 1–6 (30 cases each; stop 44, a
    prompt held in full computing its last block, which puts a 64-token chunk into a reader's
    first step): at most 0.48–0.81 %, means 0.081–0.118 %; the two cases past 0.6 % (seed 1:
    0.65 and 0.81 %) move more in the exact engine under the nudges (0.76 and 1.00 %). Before
    stop 44: at most 0.29–0.53 %, means 0.050–0.098 %.
    With the owner's quiet slots chained at its step's start (until stop 40: a push charged to
    the step's end, the later slots left where they were) 0.37–0.80 % and 0.069–0.151 %."""
    sc = small_scenario("single_node:gpus=4", scheme="repo_affinity", layer_groups=3)
    for seed in (1, 2):
        errors = []
        # owners decoding prompts of their own (slots with nothing to exchange) while the
        # readers' queries queue on their streams
        for trace in hot_owner_cases(np.random.default_rng(seed), 4, 30, (20, 100), (20, 60),
                                     private_on_owner=True):
            want = step_times(run(sc, "route", trace=trace))
            got = step_times(run(sc, "route", trace=trace, engine="fast"))
            errors.append(within(sc, trace, want, got, 0.006))
        errors = np.array(errors)
        assert (errors > 0.006).sum() <= 2 and errors.mean() <= 0.0013
