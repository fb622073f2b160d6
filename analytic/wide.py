"""The infinite-width NNGP Σ^L and NTK Θ^L of the wide ReLU MLP at any depth (docs/limit-kernels.md#the-infinite-width-kernels).

Depth L counts hidden ReLU layers (L + 1 weight layers). The arc-cosine recursion runs on the angle θ of each
pair, never on arccos of a correlation near 1, so it keeps its digits up to L = 10⁵ and beyond. With σ_b² = 0
the pair's recursion depends on its input angle alone: `wide_ntk_correlation_map` composes it once per depth
into a piecewise Chebyshev table in log θ, which the kernels apply per pair; `exact=True` runs the recursion
per pair instead. After the X1·X2ᵀ product, the per-pair work runs in one fused pass of `numba_wide` where Numba is
installed, else (or with `pair_map="numpy"`) as the array operations here.
"""

from __future__ import annotations

import functools
import importlib.util
import math

import numpy as np

from .checks import check_hidden_layers, check_nonnegative, check_points, check_scales

# Input pairs with |cos φ| above this get their angle from the unit vectors' difference and sum, not from the
# Gram's dot product: arccos of a rounded cosine near ±1 loses half the digits (docs/limit-kernels.md).
_REFINE_COSINE = 0.999
_REFINE_CHUNK = 1 << 16

# The depth map's table: Chebyshev panels of degree 15 in s = ln θ₀ on [ln 1e-20, ln π]. Below θ₀ = 1e-20 the
# map differs from its value at 1e-20 by a relative L·θ₀/(2π) ≤ 1e-15 for L ≤ 10⁵, so θ₀ is clamped there.
_THETA_MIN = 1e-20
_S_LO, _S_HI = math.log(_THETA_MIN), math.log(math.pi)
_PANEL_WIDTH = 0.25  # 0.5 left 4e-12 near θ₀ = π at L = 2…10; 0.25 gives 4e-15
_PANELS = math.ceil((_S_HI - _S_LO) / _PANEL_WIDTH)
_NODES = 16


def _sin_minus_theta_cos(theta):
    """sin θ − θ cos θ without the cancellation of its two terms at small θ (a series below θ = 1)."""
    theta = np.asarray(theta, dtype=np.float64)
    t2 = theta * theta
    # Σ_{k≥1} (−1)^{k+1} 2k θ^{2k+1}/(2k+1)!, Horner in θ²; 11 terms reach 1e-17 relative at θ = 1.
    series = np.zeros_like(theta)
    for k in range(11, 0, -1):
        series = (-1) ** (k + 1) * 2 * k / math.factorial(2 * k + 1) + t2 * series
    series *= theta * t2
    direct = np.sin(theta) - theta * np.cos(theta)
    return np.where(theta < 1.0, series, direct)


def _one_minus_arccos_correlation(theta):
    """δ(θ) = 1 − (sin θ + (π − θ) cos θ)/π: one minus the next layer's correlation at σ_b² = 0, to full precision."""
    half = np.sin(0.5 * theta)
    return (2.0 * np.pi * half * half - _sin_minus_theta_cos(theta)) / np.pi


def _angle_from_one_minus_correlation(v):
    """θ = arccos(1 − v) as 2·arcsin(√(v/2)): exact digits for v ≪ 1."""
    return 2.0 * np.arcsin(np.sqrt(np.clip(0.5 * v, 0.0, 1.0)))


def _recursion(theta0, s1, s2, sigma12, depth, sigma_w2, sigma_b2):
    """The exact layer-by-layer recursion from Σ⁰ (pairs' angle θ₀ and covariance, points' variances).

    Returns (Σ^L_12, Θ^L) for the pairs; s1, s2 broadcast against theta0.
    """
    a, b = 0.5 * sigma_w2, sigma_b2
    theta = np.array(theta0, dtype=np.float64)
    ntk = np.array(sigma12, dtype=np.float64)
    sigma = ntk
    s1, s2 = np.asarray(s1, dtype=np.float64), np.asarray(s2, dtype=np.float64)
    for _ in range(depth):
        delta = _one_minus_arccos_correlation(theta)
        sigma_dot = sigma_w2 * (np.pi - theta) / (2.0 * np.pi)
        g = np.sqrt(s1 * s2)
        sigma = a * g * (1.0 - delta) + b
        n1, n2 = a * s1 + b, a * s2 + b
        root = np.sqrt(n1 * n2)
        # √(n₁n₂) − Σ₁₂ as a sum of nonnegative terms: √(n₁n₂) − (a·g + b) = ab(√s₁ − √s₂)²/(√(n₁n₂) + ag + b).
        gap = a * b * (np.sqrt(s1) - np.sqrt(s2)) ** 2 / np.where(root + a * g + b > 0, root + a * g + b, 1.0)
        numerator = gap + a * g * delta
        v = np.divide(numerator, root, out=np.zeros_like(numerator), where=root > 0)
        ntk = ntk * sigma_dot + sigma
        theta, s1, s2 = _angle_from_one_minus_correlation(v), n1, n2
    return sigma, ntk


def _normalised_recursion(theta0, depth):
    """(ρ_L, T_L) of the σ_b² = 0 recursion at σ_w² = 2, where variances stay 1 (the depth map, exactly)."""
    theta = np.array(theta0, dtype=np.float64)
    rho = np.cos(theta)
    ntk = rho
    for _ in range(depth):
        delta = _one_minus_arccos_correlation(theta)
        rho = 1.0 - delta
        ntk = ntk * (1.0 - theta / np.pi) + rho
        theta = _angle_from_one_minus_correlation(delta)
    return rho, ntk


@functools.lru_cache(maxsize=8)
def _depth_map_table(depth: int):
    """Chebyshev coefficients (panels, nodes) of ρ_L and T_L/(L + 1) in s = ln θ₀, from the exact recursion."""
    j = np.arange(_NODES)
    t = np.cos(np.pi * (j + 0.5) / _NODES)  # first-kind Chebyshev points on [−1, 1]
    centres = _S_LO + _PANEL_WIDTH * (np.arange(_PANELS) + 0.5)
    s = centres[:, None] + 0.5 * _PANEL_WIDTH * t[None, :]
    rho, ntk = _normalised_recursion(np.exp(s), depth)
    # c_k = (2/n) Σ_j f(t_j) T_k(t_j), c_0 halved: the discrete Chebyshev transform at these nodes.
    basis = np.cos(np.pi * np.outer(np.arange(_NODES), j + 0.5) / _NODES) * (2.0 / _NODES)
    basis[0] *= 0.5
    return rho @ basis.T, (ntk / (depth + 1)) @ basis.T


def _apply_table(coefficients, panel, t):
    """Σ_k c[panel, k]·T_k(t) by Clenshaw's recurrence, gathering each coefficient per pair."""
    columns = np.ascontiguousarray(coefficients.T)
    b1 = np.zeros_like(t)
    b2 = np.zeros_like(t)
    two_t = 2.0 * t
    for k in range(_NODES - 1, 0, -1):
        b1, b2 = np.take(columns[k], panel) + two_t * b1 - b2, b1
    return np.take(columns[0], panel) + t * b1 - b2


def wide_ntk_correlation_map(theta, depth: int, *, exact: bool = False):
    """The depth-L map of a pair at σ_b² = 0: input angle θ₀ ↦ (ρ_L, T_L).

    With σ_b² = 0 the recursion of a pair depends on its two norms only through one factor, so
    Σ^L(x, x') = (σ_w²/2)^L·√(Σ⁰(x, x)Σ⁰(x', x'))·ρ_L(θ₀) and Θ^L(x, x') = (σ_w²/2)^L·√(Σ⁰(x, x)Σ⁰(x', x'))·T_L(θ₀),
    θ₀ the angle between x and x' (docs/limit-kernels.md#the-infinite-width-kernels). The angle, not the
    correlation, is the argument: a correlation within 1e-12 of 1 holds only four of its angle's digits.

    Args:
        theta: input angles in [0, π] (any shape).
        depth: hidden layers L ≥ 1.
        exact: run the recursion L times per value instead of applying the table (composed once per depth from
            the same recursion and cached; they agree to about 1e-14 relative).

    Returns:
        (rho_L, ntk_L) arrays of theta's shape: the NNGP correlation and the normalised NTK, T_L(0) = L + 1.
    """
    depth = check_hidden_layers(depth)
    theta = np.asarray(theta, dtype=np.float64)
    if not np.all(np.isfinite(theta)) or np.any(theta < 0) or np.any(theta > np.pi):
        raise ValueError("theta must hold finite angles in [0, π]")
    if exact:
        return _normalised_recursion(theta, depth)
    rho_coefficients, ntk_coefficients = _depth_map_table(depth)
    s = np.log(np.maximum(theta, _THETA_MIN))
    position = (s - _S_LO) / _PANEL_WIDTH
    panel = np.clip(position.astype(np.intp), 0, _PANELS - 1)
    t = np.clip(2.0 * (position - panel) - 1.0, -1.0, 1.0)
    return _apply_table(rho_coefficients, panel, t), (depth + 1) * _apply_table(ntk_coefficients, panel, t)


def _input_angles(X1, X2, norms1, norms2, dot):
    """The angle between each pair of inputs; 0 where either is the zero vector (its kernel does not depend on it)."""
    outer = np.outer(norms1, norms2)
    cosine = np.divide(dot, outer, out=np.ones_like(dot), where=outer > 0)
    theta = np.arccos(np.clip(cosine, -1.0, 1.0))
    rows, cols = np.nonzero((np.abs(cosine) > _REFINE_COSINE) & (outer > 0))
    if rows.size:
        U1 = X1 / np.where(norms1 > 0, norms1, 1.0)[:, None]
        U2 = X2 / np.where(norms2 > 0, norms2, 1.0)[:, None]
        for start in range(0, rows.size, _REFINE_CHUNK):
            i, j = rows[start:start + _REFINE_CHUNK], cols[start:start + _REFINE_CHUNK]
            difference = np.linalg.norm(U1[i] - U2[j], axis=1)
            total = np.linalg.norm(U1[i] + U2[j], axis=1)
            theta[i, j] = 2.0 * np.arctan2(difference, total)
    return theta


# The pair maps `pair_map` names: the NumPy path above and the fused pass of `numba_wide`.
PAIR_MAPS = ("numpy", "numba")


def check_pair_map(pair_map=None) -> str:
    """"numpy" or "numba": which path maps each pair to its kernel value after the X1·X2ᵀ product
    (docs/limit-kernels.md#which-pair-map-runs). None: "numba" where Numba is installed, else "numpy".

    Raises:
        ValueError: `pair_map` is none of these.
        ImportError: "numba" without Numba.
    """
    if pair_map is None:
        return "numba" if importlib.util.find_spec("numba") is not None else "numpy"
    if pair_map not in PAIR_MAPS:
        raise ValueError(f"pair_map must be None or one of {', '.join(map(repr, PAIR_MAPS))}, got {pair_map!r}")
    if pair_map == "numba" and importlib.util.find_spec("numba") is None:
        raise ImportError("pair_map='numba' needs Numba, which is not installed (pip install 'deepntk[numba]'); "
                          "pair_map='numpy' is the reference")
    return pair_map


def _kernel(X1, X2, depth, sigma_w2, sigma_b2, exact, pair_map, want_ntk):
    """Θ^L (want_ntk) or Σ^L over the pairs of X1 × X2 (docs/limit-kernels.md#the-infinite-width-kernels)."""
    depth = check_hidden_layers(depth)
    check_scales(sigma_w2=sigma_w2)
    check_nonnegative(sigma_b2=sigma_b2)
    pair_map = check_pair_map(pair_map)
    symmetric = X2 is None
    X1 = check_points(X1, "X1")
    X2 = X1 if X2 is None else check_points(X2, "X2")
    if X1.shape[1] != X2.shape[1]:
        raise ValueError(f"X1 and X2 have different input dimensions ({X1.shape[1]} and {X2.shape[1]})")
    scale_log2 = depth * math.log2(0.5 * sigma_w2)
    if abs(scale_log2) > 1000:
        raise ValueError(f"(sigma_w2/2)^depth = 2^{scale_log2:.0f} is out of float64's range; "
                         "sigma_w2 = 2 keeps the variances constant at any depth")
    d_in = X1.shape[1]
    w, b = float(sigma_w2) / d_in, float(sigma_b2)
    sq1, sq2 = np.einsum("ij,ij->i", X1, X1), np.einsum("ij,ij->i", X2, X2)
    norms1, norms2 = np.sqrt(sq1), np.sqrt(sq2)
    dot = X1 @ X2.T
    use_table = b == 0.0 and not exact
    if pair_map == "numba":
        return _fused_kernel(X1, X2, norms1, norms2, dot, depth, float(sigma_w2), w, b, use_table, symmetric,
                             want_ntk)
    phi = _input_angles(X1, X2, norms1, norms2, dot)
    if use_table:
        rho, ntk = wide_ntk_correlation_map(phi, depth)
        factor = (0.5 * sigma_w2) ** depth * w * np.outer(norms1, norms2)
        return factor * (ntk if want_ntk else rho)
    # Σ⁰'s angle from the inputs' angle φ: with g = w·b(|x| − |x'|)²/(√(s₁s₂) + w|x||x'| + b) = √(s₁s₂) − w|x||x'| − b,
    #   1 − ρ₀ = [g + 2w|x||x'|·sin²(φ/2)] / √(s₁s₂) and 1 + ρ₀ = [g + 2b + 2w|x||x'|·cos²(φ/2)] / √(s₁s₂),
    # sums of nonnegative terms, and θ₀ = 2·atan2(√(1 − ρ₀), √(1 + ρ₀)): no cancellation near ρ₀ = 1 or −1 (an
    # arccos, or an arcsin of √((1 − ρ₀)/2), of antipodal inputs lost half the digits: 5e-9 in Θ¹ at φ = π).
    s1, s2 = (w * sq1 + b)[:, None], (w * sq2 + b)[None, :]
    root = np.sqrt(s1 * s2)
    wnn = w * np.outer(norms1, norms2)
    gap = w * b * np.subtract.outer(norms1, norms2) ** 2 / np.where(root + wnn + b > 0, root + wnn + b, 1.0)
    half_sin, half_cos = np.sin(0.5 * phi), np.cos(0.5 * phi)
    theta0 = 2.0 * np.arctan2(np.sqrt(gap + 2.0 * wnn * half_sin * half_sin),
                              np.sqrt(gap + 2.0 * b + 2.0 * wnn * half_cos * half_cos))
    sigma0 = w * dot + b
    sigma, ntk = _recursion(theta0, s1, s2, sigma0, depth, float(sigma_w2), b)
    return ntk if want_ntk else sigma


def _fused_kernel(X1, X2, norms1, norms2, dot, depth, sigma_w2, w, b, use_table, symmetric, want_ntk):
    """The kernel by `numba_wide`'s fused pass over the pairs, in place of `dot` (X1·X2ᵀ)."""
    from . import numba_wide

    out = np.ascontiguousarray(dot)
    X1, X2 = np.ascontiguousarray(X1), np.ascontiguousarray(X2)
    if use_table:
        rho_coefficients, ntk_coefficients = _depth_map_table(depth)
        table = ntk_coefficients if want_ntk else rho_coefficients
        scale = (0.5 * sigma_w2) ** depth * w * ((depth + 1) if want_ntk else 1)
        numba_wide.depth_map_pairs(X1, X2, norms1, norms2, out, table, scale, _S_LO, _PANEL_WIDTH, _THETA_MIN,
                                   _REFINE_COSINE, symmetric)
    else:
        numba_wide.recursion_pairs(X1, X2, norms1, norms2, out, depth, w, sigma_w2, b, _REFINE_COSINE, symmetric,
                                   want_ntk)
    return out


def wide_nngp_kernel(X1, X2=None, *, depth: int, sigma_w2: float = 2.0, sigma_b2: float = 0.0,
                     exact: bool = False, pair_map: str | None = None) -> np.ndarray:
    """Σ^L(x, x'): the output covariance of the infinite-width ReLU MLP with L hidden layers (NTK parameterization).

    Σ⁰ = σ_w²·x·x'/d_in + σ_b², Σ^l = σ_w²·E[σ(u)σ(v)] + σ_b² over (u, v) ~ N(0, Σ^{l−1}) (the order-1 arc-cosine
    kernel, Cho & Saul), for l = 1…L (docs/limit-kernels.md#the-infinite-width-kernels).

    Args:
        X1: (N1, d_in) inputs.
        X2: (N2, d_in) inputs; None for X1 (the same arithmetic as passing X1).
        depth: hidden layers L ≥ 1 (L + 1 weight layers).
        sigma_w2: weight variance σ_w² > 0 (2 keeps the variances constant with depth).
        sigma_b2: bias variance σ_b² ≥ 0.
        exact: run the recursion per pair even where σ_b² = 0 allows the composed depth map (they agree to
            about 1e-14 relative; docs/limit-kernels.md#the-infinite-width-kernels).
        pair_map: what maps each pair to its value after the X1·X2ᵀ product
            (docs/limit-kernels.md#which-pair-map-runs): "numba" (one fused parallel pass, `numba_wide`), "numpy" (array operations), or None for
            "numba" where Numba is installed. Both run the same method, the depth map's table or (σ_b² > 0 or
            `exact`) the recursion, and agree to ~1e-15 relative.

    Returns:
        (N1, N2) array.

    Raises:
        ValueError: bad inputs or scales, or an unknown `pair_map`.
        ImportError: pair_map="numba" without Numba.
    """
    return _kernel(X1, X2, depth, sigma_w2, sigma_b2, exact, pair_map, want_ntk=False)


def wide_ntk_kernel(X1, X2=None, *, depth: int, sigma_w2: float = 2.0, sigma_b2: float = 0.0,
                    exact: bool = False, pair_map: str | None = None) -> np.ndarray:
    """Θ^L(x, x'): the infinite-width NTK of the ReLU MLP with L hidden layers (Jacot et al.'s parameterization).

    Θ⁰ = Σ⁰, Θ^l = Θ^{l−1}·Σ̇^l + Σ^l with Σ̇^l = σ_w²·E[σ'(u)σ'(v)] = σ_w²(π − θ_{l−1})/(2π) (the order-0
    arc-cosine kernel), θ_{l−1} the angle of Σ^{l−1} (docs/limit-kernels.md#the-infinite-width-kernels).
    Arguments as for `wide_nngp_kernel`.

    Returns:
        (N1, N2) array, the scalar factor of I_k.
    """
    return _kernel(X1, X2, depth, sigma_w2, sigma_b2, exact, pair_map, want_ntk=True)
