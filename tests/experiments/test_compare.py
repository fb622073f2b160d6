"""Convergence studies: the fitted fluctuation rate agrees with L^{-1/2} (a fast variant and a slow, longer one)."""

from __future__ import annotations

import pytest

from deepntk.engine.experiments.compare import depth_study


@pytest.mark.slow
def test_fitted_fluctuation_rate_is_minus_one_half():
    """Over L = 100 … 10000 (C_L = L², 16 seeds, 40 arc points) the slope of the error against E Θ̃ lies within
    its 95% interval (widened by 0.05 for the curvature of finite-L corrections) of −0.5."""
    rows, fits = depth_study([100, 300, 1000, 3000, 10000], ["L^2"], seeds=16, points=40)
    fit = fits["L^2"]
    assert abs(fit["slope"] + 0.5) < fit["slope_ci"] + 0.05, fit


def test_fluctuation_rate_is_minus_one_half_between_two_depths():
    """The default suite's version: the mean error against E Θ̃ at L = 100 and 1600 (C_L = L², 40 seeds each),
    log-ratio over log(16) estimates the rate with a standard error from the seeds' spread (delta method). It
    must agree with −½ (|z| < 4), and the standard error must be small enough that a rate of 0 or −1 would give
    |z| > 4."""
    import numpy as np

    from deepntk.engine.experiments.convergence import ConvergenceConfig, run_depth

    depths, seeds = (100, 1600), 40
    config = ConvergenceConfig(depths=depths, seeds=seeds, points=20)
    X1, X2, _ = config.inputs()
    errors = [np.array(run_depth(config, L, float(L) ** 2, X1, X2).seed_errors_expected) for L in depths]
    means = [e.mean() for e in errors]
    relative_se = [e.std(ddof=1) / np.sqrt(seeds) / e.mean() for e in errors]
    span = np.log(depths[1] / depths[0])
    rate, se = np.log(means[1] / means[0]) / span, np.hypot(*relative_se) / span
    assert 0.5 / se > 4, f"too few seeds: standard error {se:.3f} of the rate"
    assert abs(rate + 0.5) / se < 4, (rate, se)
