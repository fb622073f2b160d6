"""The MLP's limit kernel (Theorem 1, corrected) and its expectation at finite depth (docs/finite-depth.md#mlp)."""

from __future__ import annotations

import numpy as np

from .arccos import arccos_kernel
from .checks import check_depth, check_points, check_scales


def _gram_terms(X1, X2, rho, beta_sq):
    """x·x' and κ(x, x') with the random unit's variances s = ρ²|x|²/d_in + β² (β² passed squared)."""
    X1 = check_points(X1, "X1")
    X2 = X1 if X2 is None else check_points(X2, "X2")
    if X1.shape[1] != X2.shape[1]:
        raise ValueError(f"X1 and X2 have different input dimensions ({X1.shape[1]} and {X2.shape[1]})")
    d_in = X1.shape[1]
    dot = X1 @ X2.T
    scale = rho**2 / d_in
    s1 = scale * np.sum(X1**2, axis=1)[:, None] + beta_sq
    s2 = scale * np.sum(X2**2, axis=1)[None, :] + beta_sq
    return dot, arccos_kernel(s1, s2, scale * dot + beta_sq)


def mlp_limit_kernel(X1, X2=None, *, d_out: int = 1, rho: float = 1.0, beta: float = 1.0) -> np.ndarray:
    """Θ̃^∞(x, x') = (x·x' + d_out + κ(x, x'))·I_{d_out}: Theorem 1 with the paper's "+1" corrected to "+d_out".

    κ is the arc-cosine kernel with s₁ = ρ²|x|²/d_in + β², s₂ = ρ²|x'|²/d_in + β², s₁₂ = ρ²x·x'/d_in + β².

    Returns:
        (N1, N2) array, the scalar factor of I_{d_out}.
    """
    check_scales(rho=rho, beta=beta, d_out=d_out)
    dot, kappa = _gram_terms(X1, X2, rho, beta**2)
    return dot + d_out + kappa


def mlp_expected_kernel(X1, X2=None, *, depth: int, C_L: float, d_out: int = 1, rho: float = 1.0,
                        beta: float = 1.0) -> np.ndarray:
    """E Θ̃ over the paper's random initialization at finite depth L and scale C_L (docs/finite-depth.md#mlp).

    E Θ̃ = [(x·x'+1) + (L−1)(C_L²(x·x'+d_out) + 1) + κ₁ + (L−2)·C_L²·κ] / (L·C_L²), κ₁ being κ with β²
    replaced by C_L²β² (layer 1's random unit is not multiplied by C_L). Tends to Θ̃^∞ + 1/C_L² as L → ∞.

    Returns:
        (N1, N2) array, the scalar factor of I_{d_out}.
    """
    check_scales(C_L=C_L, rho=rho, beta=beta, d_out=d_out)
    L, C2 = check_depth(depth), float(C_L) ** 2
    dot, kappa = _gram_terms(X1, X2, rho, beta**2)
    _, kappa_first = _gram_terms(X1, X2, rho, C2 * beta**2)
    total = (dot + 1.0) + (L - 1) * (C2 * (dot + d_out) + 1.0) + kappa_first + (L - 2) * C2 * kappa
    return total / (L * C2)
