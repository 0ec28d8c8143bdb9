"""The relative-error fitter held to independent answers: a log-linear regression (least
squares), a brute-force minimum of the soft-L1 cost written out here, and its stopping rule."""

import math

import numpy as np
import pytest

from simulator.gpu.fitting import error_summary, fit_relative, relative_errors

X = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])


def _power(p):
    return p["a"] * X ** p["b"]


def test_least_squares_is_the_regression_of_log_time_on_log_size():
    # t = a·x^b times a noise factor: least squares on log(model / measured) is the ordinary
    # regression of log t on log x (numpy's polyfit is the oracle)
    noise = np.array([1.05, 0.97, 1.02, 0.94, 1.08, 0.99])
    measured = 3e-6 * X ** 0.7 * noise
    fit = fit_relative(_power, {"a": 1e-6, "b": 1.0}, measured)
    slope, intercept = np.polyfit(np.log(X), np.log(measured), 1)
    assert fit["b"] == pytest.approx(slope, rel=1e-7)
    assert math.log(fit["a"]) == pytest.approx(intercept, abs=1e-7)


def test_fixed_parameters_reach_the_model_unchanged_and_are_returned():
    measured = 2e-6 * X ** 0.5
    seen = []

    def model(p):
        seen.append(p["b"])
        return p["a"] * X ** p["b"]

    fit = fit_relative(model, {"a": 1e-6}, measured, fixed={"b": 0.5})
    assert set(seen) == {0.5}
    assert fit["b"] == 0.5 and fit["a"] == pytest.approx(2e-6, rel=1e-9)


def _soft_l1_minimum(logs: np.ndarray, delta: float) -> float:
    """log c minimizing Σ 2δ²(√(1 + ((log c − y)/δ)²) − 1), by golden-section search."""
    def cost(c):
        r = (c - logs) / delta
        return float(np.sum(2 * delta**2 * (np.sqrt(1 + r * r) - 1)))

    lo, hi = float(logs.min()), float(logs.max())
    g = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if cost(a) < cost(b):
            hi = b
        else:
            lo = a
    return (lo + hi) / 2


def test_soft_l1_is_the_minimum_of_its_written_cost_and_resists_an_outlier():
    # a constant model over five rows near 10 µs and one at 40 µs (a library's odd kernel)
    measured = np.array([10.0, 10.5, 9.6, 10.2, 9.9, 40.0]) * 1e-6
    ones = np.ones(measured.size)
    robust = fit_relative(lambda p: p["c"] * ones, {"c": 1e-6}, measured, robust=0.1)
    want = _soft_l1_minimum(np.log(measured), 0.1)
    assert math.log(robust["c"]) == pytest.approx(want, abs=1e-6)
    plain = fit_relative(lambda p: p["c"] * ones, {"c": 1e-6}, measured)
    assert math.log(plain["c"]) == pytest.approx(np.log(measured).mean(), abs=1e-7)
    assert robust["c"] < 10.5e-6 < plain["c"]  # the outlier pulls least squares, not soft-L1


def test_a_row_fitted_exactly_at_the_start_does_not_stall_the_robust_fit():
    # the middle row's residual is exactly 0 at the start: the loss's gradient there is 0,
    # not undefined, and the fit still moves to the minimum
    measured = np.array([1.0, 2.0, 8.0])
    ones = np.ones(3)
    fit = fit_relative(lambda p: p["c"] * ones, {"c": 2.0}, measured, robust=0.1)
    assert math.log(fit["c"]) == pytest.approx(_soft_l1_minimum(np.log(measured), 0.1),
                                               abs=1e-6)
    assert fit["c"] != 2.0


def test_a_fit_started_at_its_minimum_stops_at_once():
    # one Jacobian and the failed damping trials (1e-3 up to 1e12: 15), then no improvement
    # ends the search; it does not spend its 200 iterations
    measured = 2e-6 * X ** 0.5
    calls = []

    def model(p):
        calls.append(1)
        return p["a"] * X ** p["b"]

    fit = fit_relative(model, {"a": 2e-6, "b": 0.5}, measured)
    assert fit == {"a": pytest.approx(2e-6, rel=1e-12), "b": pytest.approx(0.5, rel=1e-12)}
    assert len(calls) <= 1 + 2 + 16



def test_a_fit_stops_once_a_step_gains_less_than_a_trillionth_of_its_cost():
    # the regression case from a start off by 3x and 0.3 in the exponent: five accepted
    # Levenberg-Marquardt steps of three evaluations each (two Jacobian columns and the trial)
    # bring the cost to its minimum, and the step that gains less than 1e-12 of the cost ends
    # the search; without that rule it keeps stepping until a trial gains nothing at all
    # (48 evaluations, measured on a mutant that ignores the rule)
    noise = np.array([1.05, 0.97, 1.02, 0.94, 1.08, 0.99])
    measured = 3e-6 * X ** 0.7 * noise
    calls = []

    def model(p):
        calls.append(1)
        return p["a"] * X ** p["b"]

    fit_relative(model, {"a": 1e-6, "b": 1.0}, measured)
    assert len(calls) <= 24

def test_a_start_far_off_still_converges():
    # 10 decades off in the scale: the log-space steps are clipped, and the search gets there
    measured = 3e-6 * X ** 0.7
    fit = fit_relative(_power, {"a": 3e4, "b": 0.1}, measured)
    assert fit["a"] == pytest.approx(3e-6, rel=1e-6) and fit["b"] == pytest.approx(0.7, rel=1e-6)


def test_a_model_that_predicts_nothing_for_a_row_is_pushed_off_it():
    # at the start the first row's prediction is 0 (log 0 = −inf): the row counts as a large
    # residual, not a NaN that would stop the search
    measured = np.array([1.0, 2.0, 3.0])
    fit = fit_relative(lambda p: np.array([p["a"] - 1.0, 2.0, 3.0]), {"a": 1.0}, measured)
    assert fit["a"] == pytest.approx(2.0, rel=1e-6)


def test_relative_errors_and_their_summary():
    err = relative_errors([1.1, 0.8, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(err, [0.1, 0.2, 1.0, 0.0], rtol=1e-12)
    s = error_summary([1.1, 0.8, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    assert s["rows"] == 4
    assert s["median_error"] == pytest.approx(0.15, rel=1e-12)
    # sorted 0, 0.1, 0.2, 1.0: the 90th percentile at rank 2.7 is 0.2 + 0.7 × 0.8
    assert s["p90_error"] == pytest.approx(0.76, rel=1e-12)
