"""`deepntk.engine.predict.predict` with the limit kernel of a k-output network against the flow formula written
out on the explicit block kernel Θ̃^∞ ⊗ I_k (docs/training.md#kernel-flow)."""

from __future__ import annotations

import numpy as np

import deepntk
from deepntk.analytic import mlp_limit_kernel
from deepntk.engine.predict import predict
from conftest import TOL, assert_close


def block_flow(K, Kx, Y, t):
    """f_t(x) = (Kx ⊗ I_k)·V diag((1 − e^{−tλ/N})/λ) Vᵀ·vec(Y) on the stacked (N·k)² matrix, from f₀ = 0."""
    N, k = Y.shape
    eye = np.eye(k)
    lam, V = np.linalg.eigh(np.kron(K, eye))
    weights = -np.expm1(-t * lam / N) / lam if np.isfinite(t) else 1.0 / lam
    coefficients = V @ (weights * (V.T @ Y.reshape(-1)))
    return (np.kron(K, eye) @ coefficients).reshape(N, k), (np.kron(Kx, eye) @ coefficients).reshape(-1, k)


def test_ten_class_limit_kernel_predictions_match_the_block_kernel():
    rng = np.random.default_rng(4)
    N, M, k = 30, 7, 10
    X, Xt = rng.uniform(0.1, 1, size=(N, 4)), rng.uniform(0.1, 1, size=(M, 4))
    Y = np.eye(k)[rng.integers(0, k, N)]
    spec = deepntk.MLP(d_in=4, d_out=k, depth=10, C_L=100.0)
    result = predict(X, Y, Xt, [3.0, np.inf], spec=spec)
    assert result.train.shape == (2, N, k) and result.test.shape == (2, M, k)
    K, Kx = mlp_limit_kernel(X, d_out=k), mlp_limit_kernel(Xt, X, d_out=k)
    for index, (t, tol) in enumerate(((3.0, TOL["oracle"]), (np.inf, TOL["solve"]))):
        train, test = block_flow(K, Kx, Y, t)
        assert_close(result.train[index], train, tol, f"train at t = {t}")
        assert_close(result.test[index], test, tol, f"test at t = {t}")
