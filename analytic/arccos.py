"""The order-1 arc-cosine kernel κ(s₁, s₂, s₁₂) = E[σ(g₁)σ(g₂)] (Cho & Saul 2009; docs/limit-kernels.md)."""

from __future__ import annotations

import numpy as np


def arccos_kernel(s1, s2, s12):
    """E[ReLU(g₁)·ReLU(g₂)] for a centred Gaussian pair with variances s1, s2 and covariance s12.

    κ = √(s₁s₂)/(2π)·(sin θ + (π − θ) cos θ) with θ = arccos(s₁₂/√(s₁s₂)), evaluated without division as
    κ = (√max(s₁s₂ − s₁₂², 0) + (π − θ)·s₁₂)/(2π), θ = atan2(√max(s₁s₂ − s₁₂², 0), s₁₂), so nearly
    collinear and anti-collinear pairs give no NaN from round-off. Broadcasts over its arguments.
    """
    s1 = np.asarray(s1, dtype=np.float64)
    s2 = np.asarray(s2, dtype=np.float64)
    s12 = np.asarray(s12, dtype=np.float64)
    for name, value in (("s1", s1), ("s2", s2), ("s12", s12)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"arccos_kernel: {name} contains NaN or infinite values")
    if np.any(s1 < 0) or np.any(s2 < 0):
        raise ValueError("arccos_kernel: variances s1 and s2 must be >= 0")
    det = np.sqrt(np.maximum(s1 * s2 - s12 * s12, 0.0))
    theta = np.arctan2(det, s12)
    return (det + (np.pi - theta) * s12) / (2.0 * np.pi)
