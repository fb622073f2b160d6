"""Numba kernel of the CNN limit kernel's pixel-pair sum (docs/limit-kernels.md#cnn-theorem-4); the NumPy
reference is `deepntk.analytic`, and `deepntk.backends.limit_kernels` chooses between them."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Fused: no (N1, N2, d², d²) temporaries. The loop over q is written with selects and no calls so that LLVM
# vectorizes it; 'reassoc' lets it reorder the sum over q (results move by ~1e-16 relative).

_ATAN_MOREBITS = 6.123233995736765886130e-17
_TAN_3PI_8 = 2.41421356237309504880
_VECTOR_MATH = {"reassoc", "contract", "arcp"}


@njit(inline="always", fastmath=_VECTOR_MATH)
def _atan2_upper(y, x):
    """atan2(y, x) for y >= 0 (θ ∈ [0, π]) to ~2e-16 relative: Cephes' rational approximation of atan(a/b) on
    a, b >= 0, reduced without branches and with one division before the rational function's."""
    obtuse = x <= 0.0
    a = -x if obtuse else y
    b = y if obtuse else x
    big = a > _TAN_3PI_8 * b
    mid = (a > 0.66 * b) & ~big
    numerator = -b if big else (a - b if mid else a)
    denominator = a if big else (a + b if mid else b)
    offset = (np.pi / 2 if obtuse else 0.0) + (np.pi / 2 if big else (np.pi / 4 if mid else 0.0))
    more = _ATAN_MOREBITS if big else (0.5 * _ATAN_MOREBITS if mid else 0.0)
    r = numerator / denominator
    z = r * r
    p = ((((-8.750608600031904122785e-1 * z - 1.615753718733365076637e1) * z - 7.500855792314704667340e1) * z
          - 1.228866684490136173410e2) * z - 6.485021904942025371773e1)
    q = (((((z + 2.485846490142306297962e1) * z + 1.650270098316988542046e2) * z + 4.328810604912902668951e2) * z
          + 4.853903996359136964868e2) * z + 1.945506571482613964425e2)
    return offset + (r * (z * p / q) + r) + more


@njit(inline="always", fastmath=_VECTOR_MATH)
def _two_pi_kappa(s1, s2, s12):
    """2π·κ(s₁, s₂, s₁₂) = √(s₁s₂ − s₁₂²) + (π − θ)·s₁₂ with θ = atan2(√(s₁s₂ − s₁₂²), s₁₂)."""
    det = np.sqrt(max(s1 * s2 - s12 * s12, 0.0))
    return det + (np.pi - _atan2_upper(det, s12)) * s12


@njit(parallel=True, cache=True, fastmath=_VECTOR_MATH)
def cnn_kappa_sums(P1, norms1, live1, count1, P2t, norms2, live2, count2, M, weights2, t, beta_sq, symmetric, offset,
                   out):
    """out[i, offset + j] = Σ_pq M_pq·2π·κ(s₁, s₂, s₁₂) over the pixel pairs whose patches are both nonzero, for
    every image i of the first set and j of this chunk of the second (offset + j >= i when `symmetric`).

    P1 (N1, d², F) holds the zero-padded input patches (F = c·f²) and norms1 their squared norms;
    live1[i, :count1[i]] lists image i's nonzero patches. For the chunk's images, P2t (n, F, d²) and norms2 (n, d²)
    hold the nonzero patches packed first (count2[j] of them, at pixels live2[j]). The weights of a pixel p are
    weights2[j, p] = M[p, live2[j]] when the caller made them (small images: every inner loop then runs along
    contiguous memory), else (weights2 of length 0) they are gathered from M, which stays in cache where the
    per-image copies (d⁴ each) would not. s = t·|φ|² + β², s₁₂ = t·⟨φ_p, φ_q⟩ + β². Rows are taken from both ends
    alternately so that the threads of a symmetric Gram get even work.
    """
    N1, D, F = P1.shape
    n = P2t.shape[0]
    premapped = weights2.shape[0] > 0
    for row in prange(N1):
        i = row // 2 if row % 2 == 0 else N1 - 1 - row // 2
        inner = np.empty(D)
        gathered = np.empty(D)
        for j in range(max(i - offset, 0) if symmetric else 0, n):
            n2 = count2[j]
            total = 0.0
            for pp in range(count1[i]):
                p = live1[i, pp]
                s1 = t * norms1[i, p] + beta_sq
                a = P1[i, p, 0]
                for q in range(n2):
                    inner[q] = a * P2t[j, 0, q]
                for f in range(1, F):
                    a = P1[i, p, f]
                    for q in range(n2):
                        inner[q] += a * P2t[j, f, q]
                part = 0.0
                # weights2 indexed in place: a view per (p, j) is an array object built and released in the loop,
                # which measured 1–12% slower at 7×7.
                if premapped:
                    for q in range(n2):
                        s12 = t * inner[q] + beta_sq
                        part += weights2[j, p, q] * _two_pi_kappa(s1, t * norms2[j, q] + beta_sq, s12)
                else:
                    for q in range(n2):
                        gathered[q] = M[p, live2[j, q]]
                    for q in range(n2):
                        s12 = t * inner[q] + beta_sq
                        part += gathered[q] * _two_pi_kappa(s1, t * norms2[j, q] + beta_sq, s12)
                total += part
            out[i, offset + j] = total


@njit(parallel=True, cache=True, fastmath=_VECTOR_MATH)
def divisions_and_root(x, rounds):
    """Σ √v/(v + 1)/(v + 2) over x, `rounds` times on all threads: the division and square-root throughput that
    bounds `cnn_kappa_sums` (two divisions and a root per κ), for the benchmark."""
    total = 0.0
    for r in prange(rounds):
        acc = 0.0
        for k in range(x.size):
            v = x[k] + r
            acc += np.sqrt(v) / (v + 1.0) / (v + 2.0)
        total += acc
    return total


@njit(parallel=True, cache=True, fastmath=_VECTOR_MATH)
def kappa_sums_in_cache(s1, s2, s12, weights, out):
    """out[r] = Σ_q weights[q]·2π·κ(s1[r], s2[q], s12[q]) on every thread: the fused kernel's κ arithmetic alone
    on arrays that stay in cache (no inner products, no patch lists), the ceiling of `cnn_kappa_sums` for the
    benchmark."""
    for r in prange(s1.size):
        total = 0.0
        for q in range(s12.size):
            total += weights[q] * _two_pi_kappa(s1[r], s2[q], s12[q])
        out[r] = total
