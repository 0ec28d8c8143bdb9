"""The relative-error fitter's search, held to what its rules imply on problems worked out by
hand: the damping it tries before giving up, the threshold of its stopping rule, the clip on a
step, the residual a row the model cannot price counts as, and a term the rows barely see."""

import math

import numpy as np
import pytest

from simulator.gpu.fitting import fit_relative

X = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])


def counted(model, calls):
    """``model``, appending the parameters of every call to ``calls``."""
    def wrapped(p):
        calls.append(dict(p))
        return model(p)
    return wrapped


def test_a_fit_at_its_minimum_tries_every_damping_below_1e12_before_it_stops():
    # started at the exact answer no step lowers the cost: one residual, one Jacobian (two
    # columns), then a trial at each damping 1e-3, 1e-2, ..., 1e11 (15, each refused: a step
    # that leaves the cost where it is is no gain), and 1e12 ends the search: 18 evaluations
    measured = 2e-6 * X ** 0.5
    calls = []
    fit = fit_relative(counted(lambda p: p["a"] * X ** p["b"], calls), {"a": 2e-6, "b": 0.5},
                       measured)
    assert len(calls) == 1 + 2 + 15
    assert fit == {"a": pytest.approx(2e-6, rel=1e-12), "b": pytest.approx(0.5, rel=1e-12)}


@pytest.mark.parametrize(("fraction", "goes_on"), [(1.5e-12, True), (0.5e-12, False)])
def test_a_step_must_gain_more_than_a_trillionth_of_the_cost_for_the_search_to_go_on(
        fraction, goes_on):
    # two rows the scale a can only fit to a factor e each way: with u = log a, the residuals
    # are u + 1 and u − 1 and the cost 2 + 2u². The first step, at damping 1e-3, leaves
    # u1 = u0 · 1e-3 / 1.001; the second (damping 1e-4) brings u to ~0, gaining 2u1², a
    # fraction u1² of the cost. Above 1e-12 of it the search takes a third Jacobian and its
    # trials; below, it stops after the second step's trial (5 evaluations)
    u1 = math.sqrt(fraction)
    u0 = u1 * 1.001 / 1e-3
    calls = []
    fit = fit_relative(counted(lambda p: p["a"] * np.array([math.e, 1 / math.e]), calls),
                       {"a": math.exp(u0)}, np.ones(2))
    assert math.log(calls[2]["a"]) == pytest.approx(u1, rel=1e-3)  # the first step's point
    assert abs(math.log(fit["a"])) < 1e-9
    assert (len(calls) > 5) == goes_on


@pytest.mark.parametrize("start", [1e-12, 1.0])
def test_a_trial_step_moves_a_parameter_by_at_most_e_cubed(start):
    # the answer is 1e-6, 13.8 e-folds from either start; Gauss-Newton would jump there at
    # once, but each trial is clipped to 3 in log space (a factor e³ ≈ 20): the first trial
    # (after the residual and the Jacobian column) lies exactly e³ from the start, on the
    # answer's side, and the search gets there in clipped steps
    measured = np.full(3, 1e-6)
    calls = []
    fit = fit_relative(counted(lambda p: p["a"] * np.ones(3), calls), {"a": start}, measured)
    first_trial = math.log(calls[2]["a"] / start)
    assert first_trial == pytest.approx(math.copysign(3.0, math.log(1e-6 / start)), abs=1e-12)
    steps = np.diff([math.log(c["a"]) for c in calls])
    assert np.all(np.abs(steps) <= 3.0 + 2e-6)  # (a Jacobian point is 1e-6 off)
    assert fit["a"] == pytest.approx(1e-6, rel=1e-9)


def test_a_row_the_model_cannot_price_counts_as_a_residual_of_50():
    # a model that prices the row a·e⁻⁶⁰ below a = 1 (a misfit of 60 e-folds, and more) and
    # not at all (0) from a = 1 on. The row it cannot price costs 50² = 2500, less than the
    # 61² = 3721 at the start (a = 1/e): the first trial, clipped at +3 to a = e², is taken,
    # and there the Jacobian is 0 and the search stops. Were the unpriced row to cost more
    # than the misfit (a residual past 61), the search would stay below a = 1
    def model(p):
        return np.array([p["a"] * math.exp(-60.0) if p["a"] < 1.0 else 0.0])

    fit = fit_relative(model, {"a": 1 / math.e}, np.ones(1))
    assert fit["a"] == pytest.approx(math.e ** 2, rel=1e-12)


@pytest.mark.parametrize(("start", "launch"), [(1e-10, 1e-9), (1e-12, 1e-9), (1e-8, 1e-9)])
def test_a_term_a_millionth_of_every_row_is_still_fitted(start, launch):
    # t = λ + w·x with λ = 1 ns against rows of 1 to 32 ms: λ moves each row's log by at most
    # 1e-6, so its Jacobian column squared sums to ~1.3e-12, the size of the 1e-12 the damped
    # diagonal adds to every parameter's (with it subtracted instead the damped system turns
    # indefinite for λ: from 1e-10 it ends at 2.5e-13). Noise-free, the fit recovers it
    measured = launch + 1e-3 * X
    fit = fit_relative(lambda p: p["lam"] + p["w"] * X, {"lam": start, "w": 2e-3}, measured)
    assert fit["lam"] == pytest.approx(launch, rel=1e-6)
    assert fit["w"] == pytest.approx(1e-3, rel=1e-12)


def test_an_accepted_step_lowers_the_damping_tenfold_not_to_its_floor():
    # a power law from a start ten decades off: 14 accepted steps (the first ones clipped),
    # 74 evaluations in all, 15 of them the refused trials that end the search. After an
    # accepted step the next trial starts at a tenth of the damping that worked; a search
    # that dropped it to its floor (1e-9) would climb back through refused, undamped steps
    # after each (106 evaluations)
    measured = 3e-6 * X ** 0.7
    calls = []
    fit = fit_relative(counted(lambda p: p["a"] * X ** p["b"], calls), {"a": 3e4, "b": 0.1},
                       measured)
    assert fit == {"a": pytest.approx(3e-6, rel=1e-9), "b": pytest.approx(0.7, rel=1e-9)}
    assert len(calls) <= 80
