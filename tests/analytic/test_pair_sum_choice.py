"""Which pixel-pair sum the CNN closed forms run on their own (docs/limit-kernels.md#which-pair-sum-runs): the fused
kernel where Numba is installed, the NumPy reference where it is not or where `pair_sum="numpy"` asks for it, with
the same results either way (on many random image sets with zero patches, to TOL["identity"])."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from deepntk.analytic import cnn_expected_kernel, cnn_limit_kernel
from deepntk.analytic import cnn as cnn_module
from conftest import TOL, assert_close


def random_image_sets(count: int):
    """`count` random (X1, X2, options) cases: 1–2 channels, 3×3 to 7×7 images, symmetric and cross Grams both
    ways, zero backgrounds of random density (zero patches), blank images, images of both signs, both tap
    variances, and Table 1's scales (every correlation near one: the fused kernel's shorter polynomial)."""
    cases = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        c, d = int(rng.integers(1, 3)), int(rng.integers(3, 8))
        X = rng.uniform(-1.0 if seed % 4 == 3 else 0.0, 1.0, size=(int(rng.integers(3, 8)), c, d, d))
        X *= rng.uniform(size=(len(X), 1, d, d)) < rng.uniform(0.15, 1.0)
        if seed % 3 == 0:
            X[int(rng.integers(len(X)))] = 0.0
        if seed % 5 == 4:
            options = dict(rho=1 / 3, beta=1.0, filter_variance="code")
        else:
            options = dict(rho=float(rng.uniform(0.3, 1.2)), beta=float(rng.uniform(0.2, 1.5)),
                           filter_variance=("paper", "code")[seed % 2])
        split = int(rng.integers(1, len(X)))
        X1, X2 = [(X, None), (X[:split], X[split - 1:]), (X[split - 1:], X[:split])][seed % 3]
        cases.append((X1, X2, dict(outputs=int(rng.integers(1, 4)), filter_size=3, **options)))
    return cases


def test_the_default_runs_the_fused_kernel_where_numba_is_installed(monkeypatch):
    pytest.importorskip("numba", reason="the numba extra is not installed")
    from deepntk.analytic import numba_cnn_pair_sum

    calls = []
    compiled = numba_cnn_pair_sum.nonzero_pair_sums
    monkeypatch.setattr(numba_cnn_pair_sum, "nonzero_pair_sums", lambda *a: calls.append(1) or compiled(*a))
    X = np.random.default_rng(0).uniform(size=(3, 1, 4, 4))
    cnn_limit_kernel(X)
    cnn_expected_kernel(X, depth=5, C_L=2.0)
    assert len(calls) == 1 + 2  # the limit's K(β²); the expectation's K(C_L²β²) and K(β²)
    cnn_limit_kernel(X, pair_sum="numpy")
    assert len(calls) == 3


def test_the_default_equals_the_reference_on_many_random_image_sets():
    """50 image sets; every one of the fused kernel's paths (zero patches, blank images, cross Grams transposed,
    both polynomials) against the reference's direct sum over all d⁴ pixel pairs."""
    pytest.importorskip("numba", reason="the numba extra is not installed")
    cases = random_image_sets(50)
    zero_patches = 0
    for X1, X2, options in cases:
        terms = cnn_module.CNNTerms(X1, X2, options["rho"], 3, options["filter_variance"])
        zero_patches += int((terms.norm1 == 0).any())
        assert_close(cnn_limit_kernel(X1, X2, **options), cnn_limit_kernel(X1, X2, pair_sum="numpy", **options),
                     TOL["identity"], "limit")
        assert_close(cnn_expected_kernel(X1, X2, depth=6, C_L=2.5, **options),
                     cnn_expected_kernel(X1, X2, depth=6, C_L=2.5, pair_sum="numpy", **options), TOL["identity"],
                     "expected")
    assert zero_patches > 25


def test_without_numba_the_default_is_the_reference_and_numba_is_a_clear_error(monkeypatch):
    """Numba made unimportable (None in sys.modules, the fused module unloaded): the default is the reference, and
    asking for the fused kernel says what to install."""
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "deepntk.analytic.numba_cnn_pair_sum", raising=False)
    assert cnn_module.pair_sum_function(None) is cnn_module.reference_pair_sum
    X = np.random.default_rng(1).uniform(size=(3, 1, 4, 4))
    assert_close(cnn_limit_kernel(X), cnn_limit_kernel(X, pair_sum=cnn_module.reference_pair_sum),
                 TOL["exact"], "reference")
    with pytest.raises(ImportError, match=r"^pair_sum='numba' needs Numba.*pip install 'deepntk\[numba\]'"):
        cnn_limit_kernel(X, pair_sum="numba")


@pytest.mark.parametrize("pair_sum", ["cupy", "fused", 3])
def test_an_unknown_pair_sum_is_a_one_line_error(pair_sum):
    with pytest.raises(ValueError, match=r"^pair_sum must be a function, None or one of 'numpy', 'numba', got"):
        cnn_limit_kernel(np.ones((1, 1, 3, 3)), pair_sum=pair_sum)
