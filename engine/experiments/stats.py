"""Statistics the studies share: relative block errors, power-law fits, confidence intervals."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def relative_block_errors(theta: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """‖Θ̃(x, x') − r(x, x')·I_k‖_F / ‖r(x, x')·I_k‖_F for every pair: (N1, N2)."""
    k = theta.shape[-1]
    target = reference[..., None, None] * np.eye(k)
    return np.linalg.norm(theta - target, axis=(-2, -1)) / np.linalg.norm(target, axis=(-2, -1))


def fit_power_law(depths, errors):
    """Least-squares slope of log(error) against log(L), with its standard error (nan for < 3 depths)."""
    x = np.log(np.asarray(depths, dtype=float))
    y = np.log(np.asarray(errors, dtype=float))
    if len(x) < 2:
        return float("nan"), float("nan")
    A = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    if len(x) < 3:
        return float(coef[0]), float("nan")
    resid = y - A @ coef
    sigma2 = resid @ resid / (len(x) - 2)
    se = math.sqrt(sigma2 / np.sum((x - x.mean()) ** 2))
    return float(coef[0]), se


def mean_and_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% confidence interval (0 for a single value)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), 0.0
    return float(values.mean()), float(Z95 * values.std(ddof=1) / math.sqrt(len(values)))
