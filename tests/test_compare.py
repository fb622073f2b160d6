"""Convergence studies (slow): the fitted fluctuation rate agrees with L^{-1/2}."""

from __future__ import annotations

import pytest

from deepntk.engine.compare import depth_study


@pytest.mark.slow
def test_fitted_fluctuation_rate_is_minus_one_half():
    """Over L = 100 … 10000 (C_L = L², 16 seeds, 40 arc points) the slope of the error against E Θ̃ lies within
    its 95% interval (widened by 0.05 for the curvature of finite-L corrections) of −0.5."""
    rows, fits = depth_study([100, 300, 1000, 3000, 10000], ["L^2"], seeds=16, points=40)
    fit = fits["L^2"]
    assert abs(fit["slope"] + 0.5) < fit["slope_ci"] + 0.05, fit
