"""Numba kernels of the wide ReLU MLP's Grams (docs/limit-kernels.md#which-pair-map-runs): after the X1·X2ᵀ BLAS
product, one parallel pass over the pairs computes each pair's input angle (refined near cos = ±1 as
`wide._input_angles` does), applies the depth map's Chebyshev table (`wide._depth_map_table`, built once per depth
in NumPy) by Clenshaw's recurrence, and multiplies by the norms' factor, in place: no (N1, N2) temporaries. With
σ_b² > 0 (no depth map) or `exact=True`, the pass runs the layer-by-layer recursion per pair instead, O(L) each.
Imports Numba, so `deepntk.analytic` imports this module only when the fused pass is used; the NumPy path it is
tested against is `wide.py`'s."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# No 'reassoc': the sums keep NumPy's order, so the two paths differ by rounding of single operations only.
_MATH = {"contract", "nnan", "ninf", "nsz", "arcp"}

# Σ_{k≥1} (−1)^{k+1} 2k/(2k+1)!·θ^{2k}, k = 11 … 1 (Horner's order): `wide._sin_minus_theta_cos`'s series.
_SERIES = tuple((-1) ** (k + 1) * 2 * k / math.factorial(2 * k + 1) for k in range(11, 0, -1))


@njit(inline="always", fastmath=_MATH)
def _input_angle(X1, X2, i, j, dot, n1, n2, refine):
    """The angle between inputs i and j from their dot product and norms; from the unit vectors' difference and
    sum where |cos| > `refine`; 0 where either input is zero."""
    if n1 <= 0.0 or n2 <= 0.0:
        return 0.0
    cosine = min(max(dot / (n1 * n2), -1.0), 1.0)
    if abs(cosine) <= refine:
        return math.acos(cosine)
    difference = 0.0
    total = 0.0
    inv1, inv2 = 1.0 / n1, 1.0 / n2
    for k in range(X1.shape[1]):
        u, v = X1[i, k] * inv1, X2[j, k] * inv2
        difference += (u - v) * (u - v)
        total += (u + v) * (u + v)
    return 2.0 * math.atan2(math.sqrt(difference), math.sqrt(total))


@njit(inline="always", fastmath=_MATH)
def _table_value(theta, table, s_lo, panel_width, theta_min):
    """Σ_k c[panel, k]·T_k(t) at s = ln θ (θ clamped to θ_min), as `wide._apply_table`."""
    panels, nodes = table.shape
    position = (math.log(max(theta, theta_min)) - s_lo) / panel_width
    panel = min(max(int(position), 0), panels - 1)
    t = min(max(2.0 * (position - panel) - 1.0, -1.0), 1.0)
    two_t = 2.0 * t
    b1 = 0.0
    b2 = 0.0
    for k in range(nodes - 1, 0, -1):
        b1, b2 = table[panel, k] + two_t * b1 - b2, b1
    return table[panel, 0] + t * b1 - b2


@njit(parallel=True, cache=True, fastmath=_MATH)
def depth_map_pairs(X1, X2, norms1, norms2, out, table, scale, s_lo, panel_width, theta_min, refine, symmetric):
    """out[i, j] = scale·|x_i|·|x_j|·f(θ_ij) for every pair, f the depth map's table (ρ_L, or T_L/(L + 1)), out
    holding X1·X2ᵀ on entry. `symmetric` (X2 is X1): the upper triangle is computed and mirrored, with the same
    values as computing both (each pair's arithmetic is symmetric in its two inputs). Rows are taken from both
    ends alternately so that the threads of a symmetric Gram get even work."""
    N1, N2 = out.shape
    for row in prange(N1):
        i = row // 2 if row % 2 == 0 else N1 - 1 - row // 2
        n1 = norms1[i]
        for j in range(i if symmetric else 0, N2):
            theta = _input_angle(X1, X2, i, j, out[i, j], n1, norms2[j], refine)
            value = scale * (n1 * norms2[j]) * _table_value(theta, table, s_lo, panel_width, theta_min)
            out[i, j] = value
            if symmetric:
                out[j, i] = value


@njit(inline="always", fastmath=_MATH)
def _sin_minus_theta_cos(theta):
    """sin θ − θ cos θ without cancellation at small θ, as `wide._sin_minus_theta_cos`."""
    if theta >= 1.0:
        return math.sin(theta) - theta * math.cos(theta)
    t2 = theta * theta
    series = 0.0
    for c in _SERIES:
        series = c + t2 * series
    return series * theta * t2


@njit(inline="always", fastmath=_MATH)
def _pair_recursion(theta, s1, s2, sigma12, depth, sigma_w2, sigma_b2, want_ntk):
    """Σ^L_12 or Θ^L of one pair by the recursion of `wide._recursion`, from Σ⁰'s angle, variances and covariance."""
    a, b = 0.5 * sigma_w2, sigma_b2
    ntk = sigma12
    sigma = sigma12
    for _ in range(depth):
        half = math.sin(0.5 * theta)
        delta = (2.0 * math.pi * half * half - _sin_minus_theta_cos(theta)) / math.pi
        sigma_dot = sigma_w2 * (math.pi - theta) / (2.0 * math.pi)
        g = math.sqrt(s1 * s2)
        sigma = a * g * (1.0 - delta) + b
        n1, n2 = a * s1 + b, a * s2 + b
        root = math.sqrt(n1 * n2)
        denominator = root + a * g + b
        gap = a * b * (math.sqrt(s1) - math.sqrt(s2)) ** 2 / (denominator if denominator > 0 else 1.0)
        v = (gap + a * g * delta) / root if root > 0 else 0.0
        ntk = ntk * sigma_dot + sigma
        theta = 2.0 * math.asin(math.sqrt(min(max(0.5 * v, 0.0), 1.0)))
        s1, s2 = n1, n2
    return ntk if want_ntk else sigma


@njit(parallel=True, cache=True, fastmath=_MATH)
def recursion_pairs(X1, X2, norms1, norms2, out, depth, w, sigma_w2, sigma_b2, refine, symmetric, want_ntk):
    """out[i, j] = Θ^L (want_ntk) or Σ^L of every pair by the exact recursion, O(L) per pair, out holding X1·X2ᵀ
    on entry; Σ⁰ = w·x·x' + σ_b² with w = σ_w²/d_in, and Σ⁰'s angle from the inputs' angle φ as in `wide._kernel`
    (from 1 ∓ ρ₀ as sums of nonnegative terms: no cancellation near ρ₀ = ±1)."""
    N1, N2 = out.shape
    b = sigma_b2
    for row in prange(N1):
        i = row // 2 if row % 2 == 0 else N1 - 1 - row // 2
        n1 = norms1[i]
        s1 = w * n1 * n1 + b
        for j in range(i if symmetric else 0, N2):
            n2 = norms2[j]
            dot = out[i, j]
            phi = _input_angle(X1, X2, i, j, dot, n1, n2, refine)
            s2 = w * n2 * n2 + b
            root = math.sqrt(s1 * s2)
            wnn = w * n1 * n2
            denominator = root + wnn + b
            gap = w * b * (n1 - n2) ** 2 / (denominator if denominator > 0 else 1.0)
            half_sin, half_cos = math.sin(0.5 * phi), math.cos(0.5 * phi)
            theta0 = 2.0 * math.atan2(math.sqrt(gap + 2.0 * wnn * half_sin * half_sin),
                                      math.sqrt(gap + 2.0 * b + 2.0 * wnn * half_cos * half_cos))
            value = _pair_recursion(theta0, s1, s2, w * dot + b, depth, sigma_w2, sigma_b2, want_ntk)
            out[i, j] = value
            if symmetric:
                out[j, i] = value


@njit(parallel=True, cache=True, fastmath=_MATH)
def depth_map_in_cache(cosines, table, s_lo, panel_width, theta_min, out):
    """out[r] = Σ_k f(arccos c_k) over an in-cache array of cosines, on every thread: `depth_map_pairs`'s per-pair
    arithmetic alone (an arccos, a log, Clenshaw's recurrence), without its memory traffic, refinements or
    norms, the ceiling of its per-pair work for the benchmark."""
    for r in prange(out.size):
        total = 0.0
        for k in range(cosines.size):
            total += _table_value(math.acos(cosines[k]), table, s_lo, panel_width, theta_min)
        out[r] = total
