"""The fused Numba CNN limit kernel against the NumPy reference of deepntk.analytic (pair_sum="numpy", to 1e-12): several channel
counts, filter sizes, image sides, filter variances, cross and symmetric Grams, negative inputs (s₁₂ < 0)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="the numba extra is not installed")

import deepntk  # noqa: E402
from deepntk.analytic import cnn_expected_kernel, cnn_limit_kernel  # noqa: E402
from conftest import TOL, assert_close  # noqa: E402
from oracles import correlation_h_grid  # noqa: E402

numba_pair_sum = deepntk.get_backend("numba").cnn_pair_sum


@pytest.mark.parametrize("c,f,d,variance", [(1, 3, 7, "code"), (2, 3, 5, "paper"), (3, 5, 6, "paper"), (1, 1, 4, "code")])
def test_fused_pair_sum_equals_the_reference(c, f, d, variance):
    """Symmetric, and cross both ways: the larger set takes the kernel's rows, so (X2, X1) runs transposed."""
    rng = np.random.default_rng(c * 100 + f * 10 + d)
    X1, X2 = rng.uniform(0.0, 1.0, size=(9, c, d, d)), rng.uniform(0.0, 1.0, size=(5, c, d, d))
    options = dict(outputs=3, rho=0.8, beta=1.3, filter_size=f, filter_variance=variance)
    for A, B in ((X1, None), (X1, X2), (X2, X1)):
        assert_close(cnn_limit_kernel(A, B, pair_sum=numba_pair_sum, **options),
                     cnn_limit_kernel(A, B, pair_sum="numpy", **options), TOL["identity"], "limit")
        assert_close(cnn_expected_kernel(A, B, depth=7, C_L=3.0, pair_sum=numba_pair_sum, **options),
                     cnn_expected_kernel(A, B, depth=7, C_L=3.0, pair_sum="numpy", **options), TOL["identity"],
                     "expected")


@pytest.mark.parametrize("c,f,d", [(1, 3, 7), (2, 3, 6), (1, 5, 9)])
@pytest.mark.parametrize("chunked", [False, True])
def test_zero_patches_are_summed_in_closed_form(c, f, d, chunked, monkeypatch):
    """Images with zero backgrounds (like MNIST's), one blank image and one without a zero pixel: the pairs with a
    zero patch, summed by matrix products outside the kernel, against the reference's direct sum; `chunked`: the
    second set's images three at a time."""
    from deepntk.analytic import numba_cnn_pair_sum

    chunks = []
    write_weights = numba_cnn_pair_sum.premapped_weights
    monkeypatch.setattr(numba_cnn_pair_sum, "premapped_weights", lambda *a: chunks.append(1) or write_weights(*a))
    if chunked:
        monkeypatch.setattr(numba_cnn_pair_sum, "WEIGHTS_CHUNK_BYTES", 3 * 8 * d**4)
    rng = np.random.default_rng(10 * c + d)
    X = rng.uniform(0.0, 1.0, size=(8, c, d, d))
    X[:5] *= rng.uniform(size=(5, 1, d, d)) < 0.35  # sparse strokes: zero patches wherever a window misses them
    X[1, :, : d // 2] = 0.0
    X[2] = 0.0
    options = dict(outputs=2, rho=0.7, beta=0.9, filter_size=f, filter_variance="code")
    from deepntk.analytic.cnn import CNNTerms

    zero = CNNTerms(X, None, 0.7, f, "code").norm1 == 0
    assert 0 < zero[:5].mean() < 1 and zero[2].all() and not zero[7].any()
    for A, B in ((X, None), (X[:5], X[3:]), (X[2:3], X)):
        assert_close(cnn_limit_kernel(A, B, pair_sum=numba_pair_sum, **options),
                     cnn_limit_kernel(A, B, pair_sum="numpy", **options), TOL["identity"], "zero patches")
    # The kernel's second sets (the smaller set: 8, 5 and 1 images) in one chunk each, or three images at a time.
    assert len(chunks) == (3 + 2 + 1 if chunked else 3)


def test_negative_inputs_take_the_obtuse_branch():
    """Inputs of both signs make s₁₂ ≤ 0 for some pixel pairs: θ > π/2 there."""
    X = np.random.default_rng(3).uniform(-1.0, 1.0, size=(7, 1, 5, 5))
    assert_close(cnn_limit_kernel(X, beta=0.1, pair_sum=numba_pair_sum), cnn_limit_kernel(X, beta=0.1, pair_sum="numpy"),
                 TOL["identity"], "mixed signs")


def test_the_cnn_architecture_takes_the_chosen_backend_s_pair_sum():
    spec = deepntk.CNN(1, 8, 2, 3, 2.0, pool=2)
    X = np.random.default_rng(4).uniform(0.1, 1.0, size=(6, 1, 4, 4))
    reference = cnn_limit_kernel(X, outputs=2, pair_sum="numpy")
    for backend in ("numba", "numpy", None):
        assert_close(spec.limit_kernel(X, backend=backend), reference, TOL["identity"], f"backend {backend}")


def _evaluate_h(rho, near_one=False):
    from numba import njit

    from deepntk.analytic.numba_cnn_pair_sum import H_CONSTANTS, H_NEAR_ONE_CONSTANTS, _kappa

    @njit
    def evaluate(rho, c, near_one):
        out = np.empty_like(rho)
        for k in range(rho.size):
            out[k] = _kappa(rho[k], c, near_one)
        return out

    return evaluate(rho, H_NEAR_ONE_CONSTANTS if near_one else H_CONSTANTS, near_one)


@pytest.mark.parametrize("near_one", [False, True])
def test_the_correlation_form_matches_a_30_digit_arc_cosine(near_one):
    """h(ρ) = √(1 − ρ²) + (π − arccos ρ)·ρ, the kernel's polynomial form, against mpmath at 30 digits on
    `correlation_h_grid`: all of [−1, 1], or [7/8, 1] for the shorter polynomial of correlations near one."""
    grid = correlation_h_grid(near_one)
    if grid is None:
        pytest.skip("mpmath comes with the symbolic extra")
    rho, expected = grid
    got = _evaluate_h(rho, near_one)
    assert_close(got, expected, TOL["exact"], "h")
    # Relative to each value where h is not small (it falls to 0 at ρ = −1 like (1 + ρ)^{3/2}).
    sizable = expected > 0.3
    assert_close(got[sizable] / expected[sizable], np.ones(sizable.sum()), TOL["exact"], "h relative")


def test_correlations_near_one_is_a_true_bound():
    """The shorter polynomial is taken only where every correlation is ≥ 7/8: at Table 1's settings (pixels in
    [0, 1], rho = 1/3 with the authors' tap variance, β = 1) the bound holds, and the correlations computed
    directly from the patches are all above 7/8; it does not hold at the paper's tap variance (rho = 1), with a
    negative pixel, or with β = 0."""
    from deepntk.analytic.cnn import CNNTerms
    from deepntk.analytic.cnn_pair_sum import correlations_near_one

    X = np.random.default_rng(8).uniform(0.0, 1.0, size=(6, 1, 7, 7))
    X[:3] *= X[:3] > 0.6

    def near_one(X, rho, beta_sq, variance="code"):
        terms = CNNTerms(X[:4], X[2:], rho, 3, variance)
        return terms, correlations_near_one(terms.P1, terms.norm1, terms.P2, terms.norm2, terms.t, beta_sq)

    terms, holds = near_one(X, 1 / 3, 1.0)
    s1, s2 = terms.t * terms.norm1 + 1.0, terms.t * terms.norm2 + 1.0
    correlations = (terms.t * np.einsum("ipc,jqc->ijpq", terms.P1, terms.P2) + 1.0) / np.sqrt(
        s1[:, None, :, None] * s2[None, :, None, :])
    assert holds and correlations.min() >= 7 / 8
    assert not near_one(X, 1.0, 1.0, "paper")[1]
    negative = X.copy()
    negative[4, 0, 3, 3] = -0.01
    assert not near_one(negative, 1 / 3, 1.0)[1]
    assert not near_one(X, 1 / 3, 0.0)[1]


def test_table1_settings_take_the_near_one_polynomial():
    """Table 1's CNN settings on 4×4-pooled images with zero backgrounds: the kernel with the shorter polynomial
    (the path these settings take) against the reference, limit and finite-depth expectation (β² → C_L²β²)."""
    from deepntk.analytic.cnn import CNNTerms
    from deepntk.analytic.cnn_pair_sum import correlations_near_one

    rng = np.random.default_rng(12)
    X = rng.uniform(0.0, 1.0, size=(9, 1, 7, 7)) * (rng.uniform(size=(9, 1, 7, 7)) < 0.5)
    options = dict(outputs=10, rho=1 / 3, beta=1.0, filter_size=3, filter_variance="code")
    terms = CNNTerms(X, None, 1 / 3, 3, "code")
    assert correlations_near_one(terms.P1, terms.norm1, terms.P1, terms.norm1, terms.t, 1.0)
    for A, B in ((X, None), (X[:3], X[2:])):
        assert_close(cnn_limit_kernel(A, B, pair_sum=numba_pair_sum, **options),
                     cnn_limit_kernel(A, B, pair_sum="numpy", **options), TOL["identity"], "limit near one")
        assert_close(cnn_expected_kernel(A, B, depth=50, C_L=4.0, pair_sum=numba_pair_sum, **options),
                     cnn_expected_kernel(A, B, depth=50, C_L=4.0, pair_sum="numpy", **options), TOL["identity"],
                     "expected near one")


def test_the_in_cache_kappa_loop_sums_the_arc_cosine_kernel():
    """The benchmark's κ ceiling times what it claims to: Σ_q w_q·h(ρ_q − r·10⁻⁶) = Σ_q w_q·2π·κ(1, 1, ρ_q − r·10⁻⁶),
    against deepntk.analytic."""
    from deepntk.analytic import arccos_kernel
    from deepntk.analytic.numba_cnn_pair_sum import H_CONSTANTS, correlation_sums_in_cache

    rng = np.random.default_rng(5)
    rho, weights = rng.uniform(-0.99, 0.99, size=300), rng.uniform(0.0, 9.0, size=300)
    out = np.empty(7)
    correlation_sums_in_cache(rho, weights, out, H_CONSTANTS)
    shifted = rho[None] - 1e-6 * np.arange(7)[:, None]
    expected = 2.0 * np.pi * arccos_kernel(1.0, 1.0, shifted) @ weights
    assert_close(out, expected, TOL["identity"], "κ loop")


@pytest.mark.parametrize("d,threshold", [(11, None), (5, 0)])
def test_large_images_take_their_weights_from_M(d, threshold, monkeypatch):
    """Images of more than PREMAPPED_MAX_PIXELS pixels (28×28 MNIST) take their pixel-pair weights from M instead
    of per-image copies: gathered through the patch list for an image with zero patches, read in order for one
    without (pixel counts that are not a multiple of the vector width read M's zero padding). 11×11 images (121
    pixels), and 5×5 ones with the threshold lowered to force that path, against the reference's direct sum."""
    from deepntk.analytic.cnn import CNNTerms
    from deepntk.analytic import numba_cnn_pair_sum

    if threshold is not None:
        monkeypatch.setattr(numba_cnn_pair_sum, "PREMAPPED_MAX_PIXELS", threshold)
    monkeypatch.setattr(numba_cnn_pair_sum, "premapped_weights", None)  # no per-image copies: calling them fails
    assert d * d > numba_cnn_pair_sum.PREMAPPED_MAX_PIXELS and d * d % numba_cnn_pair_sum.VECTOR_WIDTH != 0
    rng = np.random.default_rng(d)
    X = rng.uniform(0.0, 1.0, size=(6, 1, d, d))
    X[:3] *= rng.uniform(size=(3, 1, d, d)) < 0.15
    zero = CNNTerms(X, None, 0.9, 3, "code").norm1 == 0
    assert zero[:3].any(axis=1).all() and not zero[3:].any()
    options = dict(outputs=2, rho=0.9, beta=1.1, filter_size=3, filter_variance="code")
    for A, B in ((X, None), (X[:2], X[1:]), (X[3:5], X)):
        assert_close(cnn_limit_kernel(A, B, pair_sum=numba_pair_sum, **options),
                     cnn_limit_kernel(A, B, pair_sum="numpy", **options), TOL["identity"], "gathered weights")


def test_the_width_specialized_kernel_is_loaded_from_numba_s_cache(tmp_path):
    """`correlation_sums_kernel(width, near_one)` compiles a closure per width and flag with cache=True: a second
    process finds both flags' kernels in the on-disk cache (a closure over anything that pickles differently per
    process would miss it and pay the ~6 s compile again)."""
    import os
    import subprocess
    import sys

    script = ("import numpy as np; from deepntk.analytic import cnn_limit_kernel; "
              "import deepntk; numba_pair_sum = deepntk.get_backend('numba').cnn_pair_sum; "
              "from deepntk.analytic.numba_cnn_pair_sum import correlation_sums_kernel; "
              "X = np.ones((2, 1, 4, 4)); cnn_limit_kernel(X, pair_sum=numba_pair_sum); "
              "cnn_limit_kernel(X, rho=1 / 3, filter_variance='code', pair_sum=numba_pair_sum); "
              "stats = [correlation_sums_kernel(10, flag).stats for flag in (False, True)]; "
              "print(*[sum(s.cache_hits.values()) for s in stats], *[sum(s.cache_misses.values()) for s in stats])")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert [run.stdout.split() for run in runs] == [["0", "0", "1", "1"], ["1", "1", "0", "0"]]
