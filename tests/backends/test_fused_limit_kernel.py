"""The fused Numba CNN limit kernel against the NumPy reference of deepntk.analytic (to 1e-12): several channel
counts, filter sizes, image sides, filter variances, cross and symmetric Grams, negative inputs (s₁₂ < 0)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="the numba extra is not installed")

import deepntk  # noqa: E402
from deepntk.analytic import cnn_expected_kernel, cnn_limit_kernel  # noqa: E402
from deepntk.backends.limit_kernels import fused_cnn_pair_sum  # noqa: E402
from conftest import TOL, assert_close  # noqa: E402


@pytest.mark.parametrize("c,f,d,variance", [(1, 3, 7, "code"), (2, 3, 5, "paper"), (3, 5, 6, "paper"), (1, 1, 4, "code")])
def test_fused_pair_sum_equals_the_reference(c, f, d, variance):
    rng = np.random.default_rng(c * 100 + f * 10 + d)
    X1, X2 = rng.uniform(0.0, 1.0, size=(9, c, d, d)), rng.uniform(0.0, 1.0, size=(5, c, d, d))
    options = dict(outputs=3, rho=0.8, beta=1.3, filter_size=f, filter_variance=variance)
    for A, B in ((X1, None), (X1, X2)):
        assert_close(cnn_limit_kernel(A, B, pair_sum=fused_cnn_pair_sum, **options),
                     cnn_limit_kernel(A, B, **options), TOL["identity"], "limit")
        assert_close(cnn_expected_kernel(A, B, depth=7, C_L=3.0, pair_sum=fused_cnn_pair_sum, **options),
                     cnn_expected_kernel(A, B, depth=7, C_L=3.0, **options), TOL["identity"], "expected")


def test_negative_inputs_take_the_obtuse_branch():
    """Inputs of both signs make s₁₂ ≤ 0 for some pixel pairs: θ > π/2 there."""
    X = np.random.default_rng(3).uniform(-1.0, 1.0, size=(7, 1, 5, 5))
    assert_close(cnn_limit_kernel(X, beta=0.1, pair_sum=fused_cnn_pair_sum), cnn_limit_kernel(X, beta=0.1),
                 TOL["identity"], "mixed signs")


def test_the_cnn_architecture_uses_the_fused_kernel():
    spec = deepntk.CNN(1, 8, 2, 3, 2.0, pool=2)
    X = np.random.default_rng(4).uniform(0.1, 1.0, size=(6, 1, 4, 4))
    reference = cnn_limit_kernel(X, outputs=2)
    assert_close(spec.limit_kernel(X), reference, TOL["identity"])
    from deepntk.backends.limit_kernels import cnn_pair_sum

    assert cnn_pair_sum() is fused_cnn_pair_sum


def test_the_branch_free_arc_tangent_matches_numpy():
    """θ = atan2(y, x) for y >= 0 over both signs of x, tiny and zero arguments, against np.arctan2."""
    from numba import njit

    from deepntk.backends.numba_limit_kernels import _atan2_upper

    @njit
    def evaluate(y, x):
        out = np.empty_like(y)
        for k in range(y.size):
            out[k] = _atan2_upper(y[k], x[k])
        return out

    rng = np.random.default_rng(1)
    y = np.concatenate([rng.uniform(0, 5, 20000), rng.uniform(0, 1e-9, 500), [0.0, 0.0, 1.0, 1.0, 2.0]])
    x = np.concatenate([rng.uniform(-5, 5, 20000), rng.uniform(-1, 1, 500), [1.0, -1.0, 0.0, -1e-20, 2.0]])
    expected = np.arctan2(y, x)
    got = evaluate(y, x)
    nonzero = expected != 0
    assert np.all(got[~nonzero] == 0)
    assert_close(got[nonzero] / expected[nonzero], np.ones(nonzero.sum()), TOL["reordering"], "atan2")
