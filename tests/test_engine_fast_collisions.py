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
from simulator.testing.invariants import repo_on, small_scenario
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


def test_steps_that_collide_at_a_hot_owner_stay_within_a_fraction_of_a_percent():
    """40 random cases on 8 GPUs: each run's total step time within 0.5 % of the exact
    engine's and 0.03 % on average. Measured (seeds 1–4 and 11, 60 cases each): at most
    0.34 %, means 0.010–0.021 %. With the push added only at the step's end (the rule until
    stop 32) this seed gives 2.05 % at worst and 0.21 % on average; with whole pushes but no
    re-timed slots, 1.92 % and 0.081 %."""
    sc = small_scenario("single_node:gpus=8", scheme="repo_affinity", layer_groups=3)
    errors, same = [], 0
    for trace in hot_owner_cases(np.random.default_rng(2), 8, 40):
        want = step_times(run(sc, "route", trace=trace))
        got = step_times(run(sc, "route", trace=trace, engine="fast"))
        assert len(got) == len(want)  # the same steps: only their times may differ
        errors.append(abs(got.sum() / want.sum() - 1.0))
        same += bool(np.allclose(got, want, rtol=1e-6))
    errors = np.array(errors)
    assert errors.max() <= 0.005 and errors.mean() <= 0.0003
    assert same >= 20  # most cases: every step the exact engine's


def test_an_owners_quiet_slots_move_with_the_routed_kernels_that_push_them():
    """60 random cases on 4 GPUs (seeds 1 and 2): each run's total step time within 0.6 % of
    the exact engine's, and within 0.10 % on average per seed. Measured on seeds 1–6 (30 cases
    each): at most 0.29–0.53 %, means 0.050–0.098 %. With the owner's quiet slots chained at its
    step's start (until stop 40: a push charged to the step's end, the later slots left where
    they were) 0.37–0.80 % and 0.069–0.151 %; seeds 1 and 2 then fail (0.80 %, 0.135 %; 0.151 %)."""
    sc = small_scenario("single_node:gpus=4", scheme="repo_affinity", layer_groups=3)
    for seed in (1, 2):
        errors = []
        # owners decoding prompts of their own (slots with nothing to exchange) while the
        # readers' queries queue on their streams
        for trace in hot_owner_cases(np.random.default_rng(seed), 4, 30, (20, 100), (20, 60),
                                     private_on_owner=True):
            want = step_times(run(sc, "route", trace=trace))
            got = step_times(run(sc, "route", trace=trace, engine="fast"))
            assert len(got) == len(want)
            errors.append(abs(got.sum() / want.sum() - 1.0))
        errors = np.array(errors)
        assert errors.max() <= 0.006 and errors.mean() <= 0.0010
