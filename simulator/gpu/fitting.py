"""Least squares on relative error: the fitter behind every kernel profile.

Kernel timings span five decades (1 µs launches to 50 ms prefills), so a profile's model is fitted
on *relative* error: the residual of a row is ``log(model / measured)``, which weighs a 10 µs row
and a 10 ms row alike and is symmetric in over- and under-prediction. Profiles use a soft-L1 loss
on it (:data:`ROBUST_SCALE`): library kernels jump between tile configurations from one shape to
the next, and a robust loss keeps such rows from pulling the fit off the rest. Every parameter a profile
fits is positive (times, rates, efficiencies, shape constants), so the search runs over their
logarithms and can never step outside the physical range.

The search is Levenberg–Marquardt with a forward-difference Jacobian — a dozen lines of numpy,
enough for models of at most a handful of parameters over at most tens of thousands of rows (a fit
takes milliseconds to a second). Fits run when a profile is *built* (``kvfabric calibrate DIR``),
never when a simulation starts: the shipped profiles carry their fitted parameters.

:func:`relative_errors` and :func:`error_summary` give the figures ``docs/accuracy.md`` reports:
``|model − measured| / measured`` per row, its median and 90th percentile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

Model = Callable[[Mapping[str, float]], np.ndarray]
#: The soft-L1 scale profiles are fitted with: residuals below 10% count quadratically.
ROBUST_SCALE = 0.1


def fit_relative(model: Model, start: Mapping[str, float], measured: np.ndarray, *,
                 fixed: Mapping[str, float] | None = None, iterations: int = 200,
                 robust: float | None = None) -> dict[str, float]:
    """Parameters minimizing ``Σ ρ(log(model(p) / measured))``, all parameters positive.

    Args:
        model: maps a parameter dict to the modelled time of every row [s].
        start: the parameters searched and their starting values (all > 0).
        measured: the measured time of every row [s] (all > 0).
        fixed: parameters held at a value (passed to ``model`` unchanged).
        iterations: the most Levenberg–Marquardt steps taken.
        robust: ``None`` for least squares (``ρ(r) = r²``), or a scale ``δ`` for the soft-L1
            loss ``ρ(r) = 2δ²(√(1 + (r/δ)²) − 1)``: quadratic below ``δ``, linear beyond, so a
            few rows where a library picked an odd kernel do not bend the fit for the rest.

    Returns:
        the fitted parameters (``fixed`` included).
    """
    names = list(start)
    fixed = dict(fixed or {})
    y = np.log(np.asarray(measured, dtype=float))
    theta = np.log(np.array([float(start[n]) for n in names]))

    def residual(t: np.ndarray) -> np.ndarray:
        p = {**fixed, **{n: float(np.exp(v)) for n, v in zip(names, t, strict=True)}}
        pred = np.asarray(model(p), dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.log(pred) - y
        r = np.where(np.isfinite(r), r, 50.0)
        if robust is None:
            return r
        return robust * np.sign(r) * np.sqrt(2.0 * (np.sqrt(1.0 + (r / robust) ** 2) - 1.0))

    r = residual(theta)
    cost = float(r @ r)
    damping = 1e-3
    for _ in range(iterations):
        jac = np.empty((r.size, theta.size))
        for j in range(theta.size):
            step = np.zeros_like(theta)
            step[j] = 1e-6
            jac[:, j] = (residual(theta + step) - r) / 1e-6
        jtj, jtr = jac.T @ jac, jac.T @ r
        improved = False
        while damping < 1e12:
            a = jtj + damping * np.diag(np.diag(jtj) + 1e-12)
            try:
                delta = np.linalg.solve(a, -jtr)
            except np.linalg.LinAlgError:
                damping *= 10.0
                continue
            delta = np.clip(delta, -3.0, 3.0)
            r_new = residual(theta + delta)
            cost_new = float(r_new @ r_new)
            if cost_new < cost:
                theta, r = theta + delta, r_new
                improved = cost - cost_new > 1e-12 * max(cost, 1e-30)
                cost = cost_new
                damping = max(damping / 10.0, 1e-9)
                break
            damping *= 10.0
        if not improved:
            break
    return {**fixed, **{n: float(np.exp(v)) for n, v in zip(names, theta, strict=True)}}


def relative_errors(modelled: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """``|modelled − measured| / measured`` per row."""
    measured = np.asarray(measured, dtype=float)
    return np.abs(np.asarray(modelled, dtype=float) - measured) / measured


def error_summary(modelled: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Median and 90th percentile of the relative errors, and the row count."""
    err = relative_errors(modelled, measured)
    return {"rows": int(err.size), "median_error": float(np.median(err)),
            "p90_error": float(np.percentile(err, 90))}
