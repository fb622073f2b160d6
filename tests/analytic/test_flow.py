"""Kernel regression and kernel-flow predictions against an ODE solver, their limits, and singular kernels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from deepntk.analytic import kernel_flow, kernel_regression, mlp_limit_kernel, stack_kernel
from conftest import TOL, assert_close


def problem(N=8, M=5, k=2, seed=0):
    rng = np.random.default_rng(seed)
    X, Xt = rng.uniform(0.1, 1, size=(N, 3)), rng.uniform(0.1, 1, size=(M, 3))
    # A block kernel with off-diagonal output structure: Θ = K ⊗ S for a random SPD S (not just a multiple of I).
    S = np.array([[1.0, 0.3], [0.3, 0.8]])[:k, :k]
    K = np.einsum("ij,ab->ijab", mlp_limit_kernel(X), S)
    Kx = np.einsum("ij,ab->ijab", mlp_limit_kernel(Xt, X), S)
    Y = rng.normal(size=(N, k))
    return K, Kx, Y


def ode_solution(K, Kx, Y, t, f0, f0_test):
    """d/dt f(X) = −(1/N)·K(f(X) − Y), d/dt f(x) = −(1/N)·Θ̃(x, X)(f(X) − Y), solved numerically."""
    Ks, Kxs = stack_kernel(K), stack_kernel(Kx)
    N = K.shape[0]
    y = Y.reshape(-1)

    def rhs(_, state):
        f = state[: len(y)]
        r = f - y
        return np.concatenate([-(Ks @ r) / N, -(Kxs @ r) / N])

    sol = solve_ivp(rhs, (0, t), np.concatenate([f0.reshape(-1), f0_test.reshape(-1)]), method="DOP853",
                    rtol=TOL["reordering"], atol=1e-14)
    return sol.y[: len(y), -1].reshape(Y.shape), sol.y[len(y):, -1].reshape(-1, Y.shape[1])


@pytest.mark.parametrize("t", [0.5, 3.0, 40.0])
def test_flow_matches_an_ode_solver(t):
    K, Kx, Y = problem()
    rng = np.random.default_rng(3)
    f0, f0t = rng.normal(size=Y.shape) * 0.1, rng.normal(size=(Kx.shape[0], Y.shape[1])) * 0.1
    train_ode, test_ode = ode_solution(K, Kx, Y, t, f0, f0t)
    assert_close(kernel_flow(K, Y, t, f0_train=f0), train_ode, TOL["oracle"], "train")
    assert_close(kernel_flow(K, Y, t, K_test_train=Kx, f0_train=f0, f0_test=f0t), test_ode, TOL["oracle"], "test")


def test_stacked_and_blocked_kernels_agree():
    K, Kx, Y = problem()
    a = kernel_flow(K, Y, 2.0, K_test_train=Kx)
    b = kernel_flow(stack_kernel(K), Y, 2.0, K_test_train=stack_kernel(Kx))
    assert np.array_equal(a, b) and a.shape == (5, 2)


def test_long_time_limit_is_kernel_regression():
    K, Kx, Y = problem()
    regression = kernel_regression(K, Y, Kx)
    direct = (stack_kernel(Kx) @ np.linalg.solve(stack_kernel(K), Y.reshape(-1))).reshape(-1, 2)
    assert_close(regression, direct, TOL["solve"])
    assert_close(kernel_flow(K, Y, 1e7, K_test_train=Kx), regression, TOL["long_time_flow"])
    assert_close(kernel_flow(K, Y, np.inf), Y, TOL["solve"], "interpolates the training targets")


def test_singular_kernel_with_duplicate_inputs():
    rng = np.random.default_rng(1)
    X = rng.uniform(0.1, 1, size=(4, 2))
    X = np.vstack([X, X[:2]])  # duplicates make K singular
    K = mlp_limit_kernel(X)
    assert np.linalg.matrix_rank(K) == 4
    Y = rng.normal(size=(6, 1))
    Y[4:] = Y[:2]  # consistent targets for the duplicates
    f = kernel_flow(K, Y, 5.0)
    assert np.all(np.isfinite(f))
    train_ode, _ = ode_solution(K[:, :, None, None], K[:1, :, None, None], Y, 5.0, np.zeros_like(Y), np.zeros((1, 1)))
    assert_close(f, train_ode, TOL["oracle"], "singular flow vs ODE")
    fit = kernel_regression(K, Y, K)
    assert_close(fit, Y, TOL["asymptotic"], "regression on the training set with duplicates")


def test_bad_arguments():
    K, Kx, Y = problem()
    with pytest.raises(ValueError, match="entries"):
        kernel_flow(K, Y[:3], 1.0)
    with pytest.raises(ValueError, match="t must be a number >= 0"):
        kernel_flow(K, Y, -1.0)
    with pytest.raises(ValueError, match="symmetric"):
        kernel_flow(stack_kernel(K) + np.triu(np.ones((16, 16)), 1), Y, 1.0)


@pytest.mark.parametrize("t", [0.7, 25.0, np.inf])
def test_scalar_kernel_factor_with_k_column_targets(t):
    """The (N, N) factor of a scalar kernel (the limit Gram, Θ̃ = K·I_k) with (N, k) targets, as the README's
    10-class runs give it, predicts what the explicit block kernel K ⊗ I_k with Y stacked predicts, and what
    an ODE solve of the flow with K ⊗ I_k gives (docs/training.md#kernel-flow)."""
    rng = np.random.default_rng(7)
    N, M, k = 12, 5, 10
    X, Xt = rng.uniform(0.1, 1, size=(N, 3)), rng.uniform(0.1, 1, size=(M, 3))
    K, Kx = mlp_limit_kernel(X, d_out=k), mlp_limit_kernel(Xt, X, d_out=k)
    Y = np.eye(k)[rng.integers(0, k, N)]
    f0, f0t = rng.normal(size=(N, k)) * 0.1, rng.normal(size=(M, k)) * 0.1
    eye = np.eye(k)
    # The stacked (N·k)×(N·k) matrix with Y's N·k entries stacked likewise (its (N, k) shape says k).
    block_train = kernel_flow(np.kron(K, eye), Y, t, f0_train=f0)
    block_test = kernel_flow(np.kron(K, eye), Y, t, K_test_train=np.kron(Kx, eye), f0_train=f0, f0_test=f0t)
    train = kernel_flow(K, Y, t, f0_train=f0)
    test = kernel_flow(K, Y, t, K_test_train=Kx, f0_train=f0, f0_test=f0t)
    assert train.shape == (N, k) and test.shape == (M, k)
    # At t = ∞ both are pseudo-inverse solves with K's condition: TOL["solve"], as for every regression here.
    tol = TOL["oracle"] if np.isfinite(t) else TOL["solve"]
    assert_close(train, block_train, tol, "train, factor vs K ⊗ I_k")
    assert_close(test, block_test, tol, "test, factor vs K ⊗ I_k")
    if np.isfinite(t):
        blocks = np.einsum("ij,ab->ijab", K, eye)
        train_ode, test_ode = ode_solution(blocks, np.einsum("ij,ab->ijab", Kx, eye), Y, t, f0, f0t)
        assert_close(train, train_ode, TOL["oracle"], "train vs ODE")
        assert_close(test, test_ode, TOL["oracle"], "test vs ODE")
    else:
        direct = Kx @ np.linalg.solve(K, Y)
        assert_close(kernel_regression(K, Y, Kx), direct, TOL["solve"], "regression vs a direct solve")


def test_scalar_kernel_factor_refuses_targets_of_another_size():
    K = mlp_limit_kernel(np.random.default_rng(0).uniform(0.1, 1, size=(6, 2)))
    with pytest.raises(ValueError, match="Y has 15 entries, the kernel expects 6"):
        kernel_flow(K, np.ones((5, 3)), 1.0)
    with pytest.raises(ValueError, match="K_test_train has 5 columns, K_train has 6"):
        kernel_flow(K, np.ones((6, 3)), 1.0, K_test_train=np.ones((2, 5)))
