"""Kernel regression and kernel-gradient-flow predictions (Theorems 3 and 6; docs/training.md).

Samples are stacked first: K[(i, a), (j, b)] = Θ̃(x_i, x_j)_{ab}, an (N·k)×(N·k) matrix, and Θ̃(x, X) is k×N·k.
With the kernel held fixed, gradient flow of ℒ = (1/2N)Σ‖f − y‖² gives
    f_t(X) = Y + e^{−tK/N}(f_0(X) − Y),
    f_t(x) = f_0(x) + Θ̃(x, X)·K⁻¹(I − e^{−tK/N})·(Y − f_0(X)),
where K⁻¹(I − e^{−tK/N}) = V·diag((1 − e^{−tλ/N})/λ)·Vᵀ (→ t/N as λ → 0), defined even for singular K
(duplicate inputs). With f_0 = 0 and t → ∞ this is kernel regression f(x) = Θ̃(x, X)K⁻¹Y (a pseudo-inverse
on K's null space).

A scalar kernel (the limit and expected kernels: Θ̃ = K·I_k) may be given as its (N, N) factor with (N, k)
targets: it acts on each of the k columns alike, as the stacked K ⊗ I_k would, at an eigendecomposition of
size N instead of N·k (docs/training.md#kernel-flow).
"""

from __future__ import annotations

import numpy as np


def stack_kernel(K, rows: int | None = None, name: str = "K") -> np.ndarray:
    """(N1, N2, k, k) → (N1·k, N2·k); a 2-D matrix is returned as it is. Either must be finite and non-empty."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim not in (2, 4):
        raise ValueError(f"{name} must be (N·k, N·k) or (N, N, k, k), got shape {K.shape}")
    if K.size == 0:
        raise ValueError(f"{name} is empty (shape {K.shape})")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if K.ndim == 4:
        N1, N2, k, k2 = K.shape
        if k != k2:
            raise ValueError(f"{name} blocks must be square (k, k), got {K.shape}")
        return K.transpose(0, 2, 1, 3).reshape(N1 * k, N2 * k)
    return K


def _targets(Y, size: int, name: str):
    Y = np.asarray(Y, dtype=np.float64)
    shape = Y.shape
    flat = Y.reshape(-1)
    if flat.size != size:
        raise ValueError(f"{name} has {flat.size} entries, the kernel expects {size}")
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return flat, shape


def _eigh(K_train):
    K = stack_kernel(K_train, name="K_train")
    if K.shape[0] != K.shape[1]:
        raise ValueError(f"K_train must be square, got {K.shape}")
    if not np.allclose(K, K.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(K).max())):
        raise ValueError("K_train must be symmetric")
    lam, V = np.linalg.eigh(0.5 * (K + K.T))
    return K, lam, V


def flow_filter(lam: np.ndarray, t: float, N: int, tol: float) -> np.ndarray:
    """(1 − e^{−tλ/N})/λ, continued by its limit t/N where |λ| <= tol (and at t = inf: 1/λ, 0 on the null space)."""
    out = np.empty_like(lam)
    small = np.abs(lam) <= tol
    if np.isinf(t):
        out[small] = 0.0
        out[~small] = 1.0 / lam[~small]
        return out
    out[small] = t / N
    big = ~small
    out[big] = -np.expm1(-t * lam[big] / N) / lam[big]
    return out


def kernel_flow(K_train, Y, t, *, K_test_train=None, f0_train=None, f0_test=None):
    """Predictions of kernel gradient flow at time t (docs/training.md#kernel-flow).

    Args:
        K_train: Θ̃(X, X) as (N·k)×(N·k) or (N, N, k, k); or, for a scalar kernel Θ̃ = K·I_k, its (N, N)
            factor K with (N, k) targets. Symmetric positive semi-definite.
        Y: targets, N·k numbers (e.g. (N, k) or (N,)); (N, k) with the (N, N) factor of a scalar kernel.
        t: flow time (n GD steps at scaled step η reach t = nη); `np.inf` for the fixed point.
        K_test_train: Θ̃(x, X) as (M·k)×(N·k) or (M, N, k, k), or (M, N) with the factor of a scalar kernel; if
            given, predictions at the test points.
        f0_train, f0_test: network outputs at t = 0 (default 0, the paper's initialization).

    Returns:
        Test predictions (M, k) when `K_test_train` is given, else training predictions shaped like Y.
    """
    K, lam, V = _eigh(K_train)
    Y_shape = np.shape(Y)
    # The (N, N) factor of a scalar kernel with (N, k) targets: each column flows alike (K ⊗ I_k).
    factor = np.ndim(K_train) == 2 and len(Y_shape) == 2 and Y_shape[0] == K.shape[0] and Y_shape[1] > 1
    columns = Y_shape[1] if factor else 1
    size = K.shape[0] * columns
    y, shape = _targets(Y, size, "Y")
    f0 = np.zeros(size) if f0_train is None else _targets(f0_train, size, "f0_train")[0]
    N = K.shape[0] if columns > 1 else size // (int(np.prod(shape[1:])) if len(shape) > 1 else 1)
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"t must be a number >= 0 or inf, got {t!r}") from None
    if not (t >= 0):
        raise ValueError(f"t must be a number >= 0 or inf, got {t!r}")
    # The stacked size, so the factor and K ⊗ I_k (whose eigenvalues are K's, k times each) cut at one level.
    tol = max(size, 1) * np.finfo(float).eps * max(np.abs(lam).max(), 1e-300)
    residual = (y - f0).reshape(K.shape[0], columns)
    coef = V @ (flow_filter(lam, t, N, tol)[:, None] * (V.T @ residual))
    if K_test_train is None:
        return (f0 + (K @ coef).reshape(-1)).reshape(shape)
    Kx = stack_kernel(K_test_train, name="K_test_train")
    if Kx.shape[1] != K.shape[0]:
        raise ValueError(f"K_test_train has {Kx.shape[1]} columns, K_train has {K.shape[0]}")
    k = columns if columns > 1 else size // N
    base = np.zeros(Kx.shape[0] * columns) if f0_test is None else \
        _targets(f0_test, Kx.shape[0] * columns, "f0_test")[0]
    return (base + (Kx @ coef).reshape(-1)).reshape(-1, k)


def kernel_regression(K_train, Y, K_test_train):
    """The NTK regression predictor f(x) = Θ̃(x, X)K⁻¹Y (Theorems 3/6 at t → ∞ from f_0 = 0), shaped (M, k).

    Takes the kernels as `kernel_flow` does, the (N, N) factor of a scalar kernel with (N, k) targets included.
    Uses the eigendecomposition of K (pseudo-inverse on its null space), so duplicate inputs are fine.
    """
    return kernel_flow(K_train, Y, np.inf, K_test_train=K_test_train)
