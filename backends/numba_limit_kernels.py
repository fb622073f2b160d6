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


@njit(parallel=True, cache=True, fastmath=_VECTOR_MATH)
def cnn_kappa_sums(P1, norms1, P2t, norms2, M, t, beta_sq, symmetric):
    """Σ_pq M_pq·2π·κ(s₁, s₂, s₁₂) for every image pair (i, j), j >= i when `symmetric` (the rest left 0).

    P1 (N1, d², F) and P2t (N2, F, d²) are the zero-padded input patches (F = c·f²), norms their squared norms,
    s = t·|φ|² + β², s₁₂ = t·⟨φ_p, φ_q⟩ + β². Rows are taken from both ends alternately so that the threads of
    a symmetric Gram get even work.
    """
    N1, D, F = P1.shape
    N2 = P2t.shape[0]
    out = np.zeros((N1, N2))
    for row in prange(N1):
        i = row // 2 if row % 2 == 0 else N1 - 1 - row // 2
        inner = np.empty(D)
        for j in range(i if symmetric else 0, N2):
            total = 0.0
            for p in range(D):
                s1 = t * norms1[i, p] + beta_sq
                inner[:] = 0.0
                for f in range(F):
                    a = P1[i, p, f]
                    for q in range(D):
                        inner[q] += a * P2t[j, f, q]
                part = 0.0
                for q in range(D):
                    s12 = t * inner[q] + beta_sq
                    s2 = t * norms2[j, q] + beta_sq
                    det = np.sqrt(max(s1 * s2 - s12 * s12, 0.0))
                    part += M[p, q] * (det + (np.pi - _atan2_upper(det, s12)) * s12)
                total += part
            out[i, j] = total
    return out
