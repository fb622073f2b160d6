"""The wide MLP's infinite-width kernels against what shares no code with them: Cho & Saul's closed form at L = 1,
a 50-digit naive recursion at depths up to 10⁵, and the large-depth law derived in docs/limit-kernels.md."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepntk.analytic import wide_nngp_kernel, wide_ntk_correlation_map, wide_ntk_kernel
from conftest import TOL, assert_close, relative_error


def cho_saul_one_hidden_layer(X, Y, sigma_w2, sigma_b2):
    """Σ¹ and Θ¹ from Cho & Saul's arc-cosine kernels of the augmented inputs x̃ = (σ_w·x/√d, σ_b).

    k₁(x̃, ỹ) = (|x̃||ỹ|/π)(sin θ + (π − θ) cos θ) and k₀ = (π − θ)/π are 2·E[σ(w·x̃)σ(w·ỹ)] and 2·E[σ'σ'] for
    w ~ N(0, I), so Σ¹ = σ_w²·k₁/2 + σ_b², Σ̇¹ = σ_w²·k₀/2 and Θ¹ = Σ⁰·Σ̇¹ + Σ¹ with Σ⁰ = ⟨x̃, ỹ⟩.
    """
    d = X.shape[1]
    Xa = np.hstack([np.sqrt(sigma_w2 / d) * X, np.full((len(X), 1), np.sqrt(sigma_b2))])
    Ya = np.hstack([np.sqrt(sigma_w2 / d) * Y, np.full((len(Y), 1), np.sqrt(sigma_b2))])
    sigma0 = Xa @ Ya.T
    nx, ny = np.linalg.norm(Xa, axis=1), np.linalg.norm(Ya, axis=1)
    theta = np.arccos(np.clip(sigma0 / np.outer(nx, ny), -1, 1))
    k1 = np.outer(nx, ny) / np.pi * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    k0 = (np.pi - theta) / np.pi
    sigma1 = sigma_w2 * k1 / 2 + sigma_b2
    return sigma1, sigma0 * sigma_w2 * k0 / 2 + sigma1


@pytest.mark.parametrize("sigma_w2,sigma_b2", [(2.0, 0.0), (1.3, 0.4), (2.5, 1.0)])
def test_one_hidden_layer_matches_cho_and_saul(sigma_w2, sigma_b2):
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    nngp, ntk = cho_saul_one_hidden_layer(X, Y, sigma_w2, sigma_b2)
    for exact in (False, True):
        assert_close(wide_nngp_kernel(X, Y, depth=1, sigma_w2=sigma_w2, sigma_b2=sigma_b2, exact=exact), nngp,
                     TOL["oracle"], "Σ¹")
        assert_close(wide_ntk_kernel(X, Y, depth=1, sigma_w2=sigma_w2, sigma_b2=sigma_b2, exact=exact), ntk,
                     TOL["oracle"], "Θ¹")


def naive_recursion_50_digits(x, y, depth, sigma_w2, sigma_b2):
    """(Σ^L(x, y), Θ^L(x, y)) by the textbook recursion with a plain arccos, at 50 digits."""
    mp = pytest.importorskip("mpmath", reason="mpmath (it comes with SymPy) is needed for the 50-digit oracle")
    mp.mp.dps = 50
    w, b = mp.mpf(sigma_w2), mp.mpf(sigma_b2)
    x, y = [mp.mpf(float(v)) for v in x], [mp.mpf(float(v)) for v in y]
    d = len(x)
    sxx = w * mp.fsum(a * a for a in x) / d + b
    syy = w * mp.fsum(a * a for a in y) / d + b
    sxy = w * mp.fsum(a * c for a, c in zip(x, y)) / d + b
    ntk = sxy
    for _ in range(depth):
        theta = mp.acos(sxy / mp.sqrt(sxx * syy))
        kappa = mp.sqrt(sxx * syy) / (2 * mp.pi) * (mp.sin(theta) + (mp.pi - theta) * mp.cos(theta))
        sigma_dot = w * (mp.pi - theta) / (2 * mp.pi)
        sxx, syy, sxy = w * sxx / 2 + b, w * syy / 2 + b, w * kappa + b
        ntk = ntk * sigma_dot + sxy
    return sxy, ntk


def near_and_far_pairs():
    """Pairs at angles 1.4e-6 (correlation 1 − 1e-12), 1e-3, π/3 and 3 (near antipodal)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=4)
    e = rng.normal(size=4)
    e -= (e @ x) / (x @ x) * x
    e /= np.linalg.norm(e)
    x_hat = x / np.linalg.norm(x)
    pairs = []
    for angle, ratio in ((math.sqrt(2e-12), 1.0), (1e-3, 0.7), (np.pi / 3, 1.3), (3.0, 0.9)):
        pairs.append((x, ratio * np.linalg.norm(x) * (math.cos(angle) * x_hat + math.sin(angle) * e)))
    return pairs


@pytest.mark.parametrize("depth", [10, 1000])
@pytest.mark.parametrize("sigma_w2,sigma_b2", [(2.0, 0.0), (1.7, 0.1)])
def test_kernels_match_a_50_digit_naive_recursion(depth, sigma_w2, sigma_b2):
    for x, y in near_and_far_pairs():
        sigma, ntk = naive_recursion_50_digits(x, y, depth, sigma_w2, sigma_b2)
        for exact in (False, True):
            kw = dict(depth=depth, sigma_w2=sigma_w2, sigma_b2=sigma_b2, exact=exact)
            assert wide_nngp_kernel(x, y, **kw)[0, 0] == pytest.approx(float(sigma), rel=TOL["oracle"])
            assert wide_ntk_kernel(x, y, **kw)[0, 0] == pytest.approx(float(ntk), rel=TOL["oracle"])


def naive_depth_map_50_digits(theta0, depth):
    mp = pytest.importorskip("mpmath", reason="mpmath (it comes with SymPy) is needed for the 50-digit oracle")
    mp.mp.dps = 50
    rho = mp.cos(mp.mpf(float(theta0)))
    ntk = rho
    for _ in range(depth):
        theta = mp.acos(rho)
        rho = (mp.sqrt(1 - rho * rho) + (mp.pi - theta) * rho) / mp.pi
        ntk = ntk * (mp.pi - theta) / mp.pi + rho
    return float(rho), float(ntk)


@pytest.mark.slow
def test_depth_map_at_depth_100000_matches_a_50_digit_naive_recursion():
    thetas = np.array([math.sqrt(2e-12), 1e-4, np.pi / 2, np.pi])
    rho, ntk = wide_ntk_correlation_map(thetas, 100_000)
    rho_exact, ntk_exact = wide_ntk_correlation_map(thetas, 100_000, exact=True)
    for k, theta in enumerate(thetas):
        rho_mp, ntk_mp = naive_depth_map_50_digits(theta, 100_000)
        for value in (rho[k], rho_exact[k]):
            assert value == pytest.approx(rho_mp, rel=TOL["oracle"])
        for value in (ntk[k], ntk_exact[k]):
            assert value == pytest.approx(ntk_mp, rel=TOL["oracle"])


@pytest.mark.parametrize("depth", [1, 2, 7, 300])
def test_composed_depth_map_matches_the_exact_recursion(depth):
    rng = np.random.default_rng(depth)
    thetas = np.concatenate([np.exp(rng.uniform(math.log(1e-25), math.log(np.pi), 2000)), [0.0, np.pi]])
    rho, ntk = wide_ntk_correlation_map(thetas, depth)
    rho_exact, ntk_exact = wide_ntk_correlation_map(thetas, depth, exact=True)
    assert_close(rho, rho_exact, TOL["oracle"], "ρ_L")
    assert_close(ntk, ntk_exact, TOL["oracle"], "T_L")
    # At θ₀ = 0 every layer keeps ρ = 1 and the NTK adds one per layer: T_L = L + 1 exactly.
    assert ntk[-2] == pytest.approx(depth + 1, rel=TOL["roundoff"]) and rho[-2] == pytest.approx(1.0, rel=TOL["exact"])


def test_kernel_fast_path_matches_the_exact_recursion_on_near_collinear_data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 6))
    X = np.vstack([X, X[:4] * 1.5 + 1e-9 * rng.normal(size=(4, 6))])  # pairs at angles ~1e-9
    for depth in (3, 1000):
        fast = wide_ntk_kernel(X, depth=depth, sigma_w2=2.0)
        exact = wide_ntk_kernel(X, depth=depth, sigma_w2=2.0, exact=True)
        assert_close(fast, exact, TOL["oracle"], f"Θ^{depth}")
        assert_close(wide_nngp_kernel(X, depth=depth), wide_nngp_kernel(X, depth=depth, exact=True), TOL["oracle"])


def normalised(K):
    diag = np.sqrt(np.diag(K))
    return K / np.outer(diag, diag)


def test_normalised_ntk_tends_to_one_quarter_at_the_derived_rate():
    """Off the diagonal Θ^L/√(Θ^L_xx Θ^L_x'x') = T_L/(L + 1) = 1/4 + (3/8)·ln L/L + O(1/L) (derived in
    docs/limit-kernels.md#large-depth from θ_{l+1} = θ_l − θ_l²/(3π) − θ_l³/(18π²) + …).

    Checked: D(L) = L·(K_L − 1/4) − (3/8)·ln L settles (moves by < 0.05 from L = 10³ to 10⁴, where a ln L
    coefficient off by 10% would move it by 0.086 and a missing one by 0.86), and the spread of the entries
    over pairs falls as 1/L (spread·L constant to 5%), while K is 1 on the diagonal.
    """
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6, 5))
    X[1] = -X[0]  # an antipodal pair
    D, spread = {}, {}
    for L in (1000, 10_000):
        K = normalised(wide_ntk_kernel(X, depth=L))
        off = K[~np.eye(len(X), dtype=bool)]
        np.testing.assert_allclose(np.diag(K), 1.0, rtol=TOL["roundoff"])
        assert np.all(np.abs(off - 0.25) < 0.5 * math.log(L) / L + 60 / L)
        D[L] = L * (off - 0.25) - 0.375 * math.log(L)
        spread[L] = (off.max() - off.min()) * L
    assert np.max(np.abs(D[10_000] - D[1000])) < 0.05, (D[1000], D[10_000])
    assert spread[10_000] == pytest.approx(spread[1000], rel=0.05)


def test_nngp_correlation_tends_to_one_and_the_angle_as_3pi_over_L():
    """θ_L = 3π/(L + (3/2)ln L + O(1)) (docs/limit-kernels.md#large-depth): 1 − ρ_L = θ_L²/2 + O(θ⁴)."""
    thetas = np.array([0.5, np.pi / 2, 3.0])
    for L in (1000, 10_000):
        rho, _ = wide_ntk_correlation_map(thetas, L)
        theta_L = 2 * np.arcsin(np.sqrt((1 - rho) / 2))
        offset = 3 * np.pi / theta_L - L - 1.5 * math.log(L)
        assert np.all(np.abs(offset) < 15), offset


def test_gram_is_symmetric_positive_semidefinite_and_x2_none_is_x1():
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(size=(40, 8)), np.zeros((1, 8))])
    for kernel in (wide_nngp_kernel, wide_ntk_kernel):
        for depth, sigma_b2 in ((1, 0.0), (20, 0.0), (20, 0.3)):
            K = kernel(X, depth=depth, sigma_b2=sigma_b2)
            np.testing.assert_array_equal(K, kernel(X, X, depth=depth, sigma_b2=sigma_b2))
            assert relative_error(K, K.T) < TOL["roundoff"]
            eigenvalues = np.linalg.eigvalsh(0.5 * (K + K.T))
            assert eigenvalues.min() >= -len(X) * np.finfo(float).eps * eigenvalues.max()


@pytest.mark.parametrize("kwargs,message", [
    (dict(depth=0), "depth must be an integer >= 1"),
    (dict(depth=2.0), "depth must be an integer >= 1"),
    (dict(depth=True), "depth must be an integer >= 1"),
    (dict(depth=2, sigma_w2=0.0), "sigma_w2 must be a finite number > 0"),
    (dict(depth=2, sigma_b2=-0.1), "sigma_b2 must be a finite number >= 0"),
    (dict(depth=2, sigma_b2=float("nan")), "sigma_b2 must be a finite number >= 0"),
    (dict(depth=100_000, sigma_w2=3.0), "out of float64's range"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        wide_ntk_kernel(np.ones((2, 3)), **kwargs)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="X1 contains NaN"):
        wide_nngp_kernel(np.array([[1.0, np.nan]]), depth=1)
    with pytest.raises(ValueError, match="different input dimensions"):
        wide_nngp_kernel(np.ones((2, 3)), np.ones((2, 4)), depth=1)
    with pytest.raises(ValueError, match="shape"):
        wide_nngp_kernel(np.ones((2, 3, 1)), depth=1)
    with pytest.raises(ValueError, match=r"theta must hold finite angles in \[0, π\]"):
        wide_ntk_correlation_map([4.0], 3)


@pytest.mark.parametrize("t", [1e-5, 1e-8, 1e-11])
def test_nearly_antipodal_inputs_keep_their_digits(t):
    """x = (1, 0) and x' = (−1, t), at the angle π − atan(t) (exactly, from the floats): Θ¹ and Σ¹ against the
    L = 1 closed form in 50 digits. The exact recursion once took Σ⁰'s angle as 2·arcsin √((1 − ρ₀)/2), which
    near ρ₀ = −1 keeps half the digits (an error of 5e-9 of the kernel's scale at t = 1e-8)."""
    mpmath = pytest.importorskip("mpmath", reason="mpmath (a dependency of sympy) is not installed")
    mpmath.mp.dps = 50
    x, y = np.array([[1.0, 0.0]]), np.array([[-1.0, t]])
    theta = mpmath.atan2(mpmath.mpf(t), -1)
    scale = mpmath.sqrt(1 + mpmath.mpf(t) ** 2)  # w|x||x'| with w = σ_w²/d = 1
    sigma1 = scale * (mpmath.sin(theta) + (mpmath.pi - theta) * mpmath.cos(theta)) / mpmath.pi
    ntk1 = scale * mpmath.cos(theta) * (mpmath.pi - theta) / mpmath.pi + sigma1
    for exact in (True, False):
        assert abs(wide_nngp_kernel(x, y, depth=1, exact=exact)[0, 0] - float(sigma1)) <= TOL["oracle"] * float(scale)
        assert abs(wide_ntk_kernel(x, y, depth=1, exact=exact)[0, 0] - float(ntk1)) <= TOL["oracle"] * float(scale)
