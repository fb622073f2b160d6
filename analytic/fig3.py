"""The inputs, target and closed-form curve of the paper's Fig. 3 (docs/experiments.md#fig-3), defined once."""

from __future__ import annotations

import numpy as np

from .mlp import mlp_limit_kernel


def fig3_inputs(points: int = 200):
    """(x₀, X, γ): x₀ = (1/√2, 1/√2) and the arc points X = (cos γ, sin γ).

    With the default 200 points, γ = linspace(0, π/2, 220)[10:210] exactly as in the authors' code; other
    counts keep about the same margins (at least one grid step at each end, so every x is strictly positive).
    """
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    margin = max(1, int(round(points / 20)))  # never γ = 0 or π/2, where x has a zero coordinate
    gamma = np.linspace(0.0, np.pi / 2, points + 2 * margin)[margin:margin + points]
    x0 = np.array([[1.0, 1.0]]) / np.sqrt(2.0)
    X = np.stack([np.cos(gamma), np.sin(gamma)], axis=1)
    return x0, X, gamma


def fig3_target(X) -> np.ndarray:
    """Fig. 3's regression target y = x₁x₂ for points X (N, 2), as (N, 1)."""
    X = np.asarray(X, dtype=np.float64)
    return (X[:, 0] * X[:, 1])[:, None]


def fig3_limit_curve(gamma, *, rho: float = 1.0, beta: float = 1.0) -> np.ndarray:
    """Θ̃^∞(x₀, x(γ)) = cos(γ − π/4) + 1 + κ(1.5, 1.5, 1 + cos(γ − π/4)/2) for ρ = β = 1 (2.750 at π/4)."""
    gamma = np.asarray(gamma, dtype=np.float64)
    x0 = np.array([[1.0, 1.0]]) / np.sqrt(2.0)
    X = np.stack([np.cos(gamma), np.sin(gamma)], axis=-1).reshape(-1, 2)
    return mlp_limit_kernel(x0, X, d_out=1, rho=rho, beta=beta)[0].reshape(gamma.shape)
