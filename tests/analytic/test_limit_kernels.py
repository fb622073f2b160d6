"""Closed forms against independent oracles: quadrature, brute-force window sums, and Monte Carlo over seeds."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from deepntk.analytic import (arccos_kernel, cnn_expected_kernel, cnn_limit_kernel, fig3_inputs, fig3_limit_curve,
                              mlp_expected_kernel, mlp_limit_kernel)
from deepntk.analytic.cnn import input_patches, window_rows
from conftest import TOL, assert_close


def gaussian_quadrature_relu_moment(s1, s2, s12, nodes=64):
    """E[σ(g₁)σ(g₂)] by 2-D Gaussian quadrature in polar coordinates.

    With g₁ = √s₁ r cos t and g₂ = √s₂ r cos(t − φ), cos φ = s₁₂/√(s₁s₂), the radial integral
    ∫ r³e^{−r²/2} dr = 2 is done by Gauss–Laguerre (exact for its polynomial), and the angular one by
    Gauss–Legendre over the arc where both units are active, so the ReLU kinks sit at the interval ends and
    the rule converges spectrally (plain Gauss–Hermite over the plane converges only algebraically there).
    """
    phi = np.arccos(np.clip(s12 / np.sqrt(s1 * s2), -1.0, 1.0))
    u, wu = np.polynomial.laguerre.laggauss(8)
    radial = np.sum(wu * 2.0 * u)  # ∫ r³ e^{-r²/2} dr with u = r²/2
    lo, hi = phi - np.pi / 2, np.pi / 2
    if hi <= lo:
        return 0.0
    t, wt = np.polynomial.legendre.leggauss(nodes)
    t = 0.5 * (hi - lo) * t + 0.5 * (hi + lo)
    angular = 0.5 * (hi - lo) * np.sum(wt * np.cos(t) * np.cos(t - phi))
    return np.sqrt(s1 * s2) * radial * angular / (2 * np.pi)


@pytest.mark.parametrize("s1,s2,cos", [(1.5, 1.5, 0.3), (2.0, 0.7, -0.6), (1.0, 3.0, 1 - 1e-12),
                                       (0.5, 0.5, -1 + 1e-12), (1.2, 0.8, 0.0), (4.0, 1.0, 0.999)])
def test_arccos_kernel_matches_gaussian_quadrature(s1, s2, cos):
    s12 = cos * np.sqrt(s1 * s2)
    assert arccos_kernel(s1, s2, s12) == pytest.approx(gaussian_quadrature_relu_moment(s1, s2, s12), rel=TOL["asymptotic"])


def test_arccos_kernel_edge_values_are_exact():
    assert arccos_kernel(2.0, 2.0, 2.0) == pytest.approx(1.0, rel=TOL["exact"])  # collinear: E[σ(g)²] = s/2
    assert arccos_kernel(2.0, 3.0, -np.sqrt(6.0)) == pytest.approx(0.0, abs=TOL["exact"])  # anti-collinear
    s = 1.7
    assert arccos_kernel(s, s, s * (1 + 1e-15)) == pytest.approx(s / 2, rel=TOL["identity"])  # round-off past ±1: no NaN


def test_fig3_limit_value_at_quarter_pi():
    assert fig3_limit_curve(np.pi / 4) == pytest.approx(2.750, abs=5e-4)
    x0, X, gamma = fig3_inputs()
    assert X.shape == (200, 2) and gamma[0] == pytest.approx(10 * (np.pi / 2) / 219)
    # The closed form cos(γ − π/4) + 1 + κ(1.5, 1.5, 1 + cos(γ − π/4)/2), κ by its arccos form (not atan2).
    c = np.cos(gamma - np.pi / 4)
    s12 = 1 + c / 2
    theta = np.arccos(s12 / 1.5)
    kappa = 1.5 / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    assert_close(fig3_limit_curve(gamma), c + 1 + kappa, TOL["reordering"])
    for points in (1, 6, 10, 37):
        assert np.all(fig3_inputs(points)[1] > 0) and len(fig3_inputs(points)[2]) == points


def brute_force_cnn_limit(x, xp, outputs, rho, beta, f, tap):
    """docs/limit-kernels.md#cnn-theorem-4 term by term: loops over offsets (a, b) and the pixel pairs of each window."""
    c, d, _ = x.shape
    P1 = input_patches(x[None], f)[0]
    P2 = input_patches(xp[None], f)[0]
    total = 0.0
    rows = window_rows(d, f)
    for (ilo, ihi) in rows:
        for (jlo, jhi) in rows:
            window = [(i, j) for i in range(ilo, ihi + 1) for j in range(jlo, jhi + 1)]
            T = lambda img: sum(img[i, j] for i, j in window) / d**2
            total += sum(T(x[m]) * T(xp[m]) for m in range(c))
            total += outputs * (len(window) / d**2) ** 2
            s = 0.0
            for (pi, pj) in window:
                for (qi, qj) in window:
                    u, v = P1[pi * d + pj], P2[qi * d + qj]
                    t = rho**2 * tap
                    s += arccos_kernel(t * u @ u + beta**2, t * v @ v + beta**2, t * u @ v + beta**2)
            total += s / d**4
    return total


@pytest.mark.parametrize("pair_sum", ["numpy", "numba"])
@pytest.mark.parametrize("c,d,f,variance", [(1, 3, 3, "paper"), (2, 4, 3, "code"), (1, 5, 5, "paper")])
def test_cnn_limit_window_sums_match_brute_force(c, d, f, variance, pair_sum):
    """Both pair sums `cnn_limit_kernel` runs on its own: the NumPy reference and the fused kernel."""
    if pair_sum == "numba":
        pytest.importorskip("numba", reason="the numba extra is not installed")
    rng = np.random.default_rng(0)
    X = rng.uniform(0.1, 1.0, size=(2, c, d, d))
    K = cnn_limit_kernel(X, outputs=2, rho=0.8, beta=1.2, filter_size=f, filter_variance=variance, pair_sum=pair_sum)
    tap = 1 / c if variance == "paper" else 1 / (c * f * f)
    for i in range(2):
        for j in range(2):
            expected = brute_force_cnn_limit(X[i], X[j], 2, 0.8, 1.2, f, tap)
            assert K[i, j] == pytest.approx(expected, rel=TOL["identity"])


def test_cnn_limit_reduces_to_mlp_limit_for_one_pixel():
    X = np.random.default_rng(2).uniform(0.1, 1, size=(4, 3))
    K_cnn = cnn_limit_kernel(X[:, :, None, None], outputs=3, rho=0.7, beta=1.4, filter_size=1)
    K_mlp = mlp_limit_kernel(X, d_out=3, rho=0.7, beta=1.4)
    assert_close(K_cnn, K_mlp, TOL["roundoff"])
    E_cnn = cnn_expected_kernel(X[:, :, None, None], depth=50, C_L=6.0, outputs=3, rho=0.7, beta=1.4, filter_size=1)
    E_mlp = mlp_expected_kernel(X, depth=50, C_L=6.0, d_out=3, rho=0.7, beta=1.4)
    assert_close(E_cnn, E_mlp, TOL["roundoff"])


def test_expected_kernel_tends_to_limit_plus_bias_offset():
    X = fig3_inputs(20)[1]
    C = 5.0
    E = mlp_expected_kernel(X, depth=10**9, C_L=C)
    assert_close(E, mlp_limit_kernel(X) + 1 / C**2, TOL["asymptotic"])


def seed_z_scores(params_for_seed, X1, X2, references, seeds):
    """z-scores of the seed mean of every diagonal entry of Θ̃ against each reference kernel (N1, N2)."""
    samples = np.array([deepntk.scaled_ntk(params_for_seed(s), X1, X2) for s in range(seeds)])
    k = samples.shape[-1]
    diag = samples[..., np.arange(k), np.arange(k)]  # (S, N1, N2, k): each diagonal entry estimates E
    mean = diag.mean(axis=0)
    se = diag.std(axis=0, ddof=1) / np.sqrt(seeds)
    off = samples[..., ~np.eye(k, dtype=bool)]
    assert np.all(off == 0.0), "at init Θ̃ is a multiple of I_k"
    return [(mean - reference[..., None]) / se for reference in references]


# z beyond which a seed mean is taken to differ from a reference (two-sided, a few entries: p < 1e-4).
Z_LIMIT = 4.0


def assert_matches_expectation_with_power(z_expected, z_one_percent_off, z_limit):
    """The seed means agree with E Θ̃ (|z| < 4), and the test has the power to see a 1% error in E Θ̃ (every
    |z| > 4 against 1.01·E Θ̃) and to tell E Θ̃ from the limit Θ̃^∞ (|z| > 4)."""
    assert np.max(np.abs(z_expected)) < Z_LIMIT, z_expected
    assert np.min(np.abs(z_one_percent_off)) > Z_LIMIT, f"too few seeds to see a 1% error: {z_one_percent_off}"
    assert np.min(np.abs(z_limit)) > Z_LIMIT, f"E Θ̃ and the limit are not told apart: {z_limit}"


@pytest.mark.parametrize("d_out", [1, 3])
def test_mlp_seed_means_match_the_finite_depth_expectation(d_out):
    """Monte Carlo at L = 500, C_L = 2, where E Θ̃ (docs/finite-depth.md#mlp) sits ≈9% above the limit (the
    1/C_L² bias): 400 seeds (one network's relative spread ≈ 3%, so the standard error is ≈ 0.14%)."""
    L, C = 500, 2.0
    spec = deepntk.MLP(2, d_out, L, C, rho=0.9, beta=1.1)
    x0, X, _ = fig3_inputs(200)
    X2 = X[::50]
    expected = mlp_expected_kernel(x0, X2, depth=L, C_L=C, d_out=d_out, rho=0.9, beta=1.1)
    limit = mlp_limit_kernel(x0, X2, d_out=d_out, rho=0.9, beta=1.1)
    z = seed_z_scores(lambda s: deepntk.init_params(spec, seed=s), x0, X2, [expected, 1.01 * expected, limit],
                      seeds=400)
    assert_matches_expectation_with_power(*z)


@pytest.mark.parametrize("c,k,f,d,seeds", [pytest.param(1, 1, 3, 5, 2500, marks=pytest.mark.slow), (2, 2, 3, 4, 1500)])
def test_cnn_seed_means_match_the_finite_depth_expectation(c, k, f, d, seeds):
    """Monte Carlo at L = 200, C_L = 2 against E Θ̃ (docs/finite-depth.md#cnn): 1500–2500 seeds (one network's
    relative spread ≈ 5–7%, so the standard error is ≈ 0.14%)."""
    L, C = 200, 2.0
    spec = deepntk.CNN(c, d, k, L, C, rho=0.8, beta=1.2, filter_size=f)
    X = np.random.default_rng(1).uniform(0.1, 1.0, size=(2, c, d, d))
    expected = cnn_expected_kernel(X, depth=L, C_L=C, outputs=k, rho=0.8, beta=1.2, filter_size=f)
    limit = cnn_limit_kernel(X, outputs=k, rho=0.8, beta=1.2, filter_size=f)
    z = seed_z_scores(lambda s: deepntk.init_params(spec, seed=s), X, None, [expected, 1.01 * expected, limit],
                      seeds=seeds)
    assert_matches_expectation_with_power(*z)


def test_cnn_limit_symmetric_gram_equals_the_cross_gram(monkeypatch):
    """The reference's small blocks (3 images by 1) so that its symmetric path skips and mirrors blocks below the
    diagonal."""
    from deepntk.analytic import cnn as cnn_module

    monkeypatch.setattr(cnn_module, "BLOCK_ELEMENTS", 3 * 16 * 16)
    X = np.random.default_rng(5).uniform(0.1, 1.0, size=(9, 2, 4, 4))
    np.testing.assert_allclose(cnn_limit_kernel(X, pair_sum="numpy"), cnn_limit_kernel(X, X.copy(), pair_sum="numpy"),
                               rtol=TOL["roundoff"])
