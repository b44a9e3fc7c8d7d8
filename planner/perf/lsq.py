"""Least squares and error statistics for the calibration (numpy only, deterministic).

:func:`levenberg_marquardt` minimises the squared norm of a residual vector; :func:`sigmoid` and
:func:`logit` map bounded factors (efficiencies) to an unbounded search space and back; :func:`ape`
and :func:`stats` are the fit-quality figures a calibration file records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def levenberg_marquardt(
    residual: Callable[[np.ndarray], np.ndarray], x0: Sequence[float], max_iter: int = 200, tol: float = 1e-12
) -> np.ndarray:
    """Minimise ‖residual(x)‖² from ``x0`` (forward-difference Jacobian, Marquardt scaling)."""
    x = np.asarray(x0, float).copy()
    r = residual(x)
    cost = float(r @ r)
    lam = 1e-3
    for _ in range(max_iter):
        jac = np.empty((r.size, x.size))
        for j in range(x.size):
            step = 1e-6 * max(1.0, abs(x[j]))
            xs = x.copy()
            xs[j] += step
            jac[:, j] = (residual(xs) - r) / step
        a = jac.T @ jac
        g = jac.T @ r
        improved = False
        while lam < 1e12:
            dx = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), -g)
            try:
                r_new = residual(x + dx)
            except (OverflowError, ValueError, FloatingPointError):
                # A step so long that a factor leaves floating point (exp of a huge log-factor):
                # a failed step like any other, retried shorter. Where the BLAS rounds
                # differently such a step comes up on one machine and not another.
                lam *= 4.0
                continue
            cost_new = float(r_new @ r_new)
            if np.isfinite(cost_new) and cost_new < cost:
                improved = True
                break
            lam *= 4.0
        if not improved:
            break
        x, r = x + dx, r_new
        done = cost - cost_new <= tol * max(cost, 1e-30)
        cost = cost_new
        lam = max(lam / 3.0, 1e-9)
        if done:
            break
    return x


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """Absolute percentage error, in %."""
    return 100.0 * np.abs(np.asarray(pred) / np.asarray(meas) - 1.0)


def stats(errors: np.ndarray) -> tuple[float, float]:
    """(median, p90) of absolute percentage errors."""
    if errors.size == 0:
        return float("nan"), float("nan")
    return float(np.median(errors)), float(np.quantile(errors, 0.9))
