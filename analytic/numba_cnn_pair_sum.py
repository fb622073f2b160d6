"""Numba kernels of the CNN limit kernel's pixel-pair sum (docs/limit-kernels.md#the-correlation-form) and
`fused_pair_sum`, which drives them: what `cnn_limit_kernel` and `cnn_expected_kernel` run by default where Numba is
installed, and what the Numba backend's `cnn_pair_sum` runs. Imports Numba, so `deepntk.analytic` imports this
module only when the fused pair sum is used (docs/limit-kernels.md#which-pair-sum-runs); the NumPy reference it is
tested against is `cnn.reference_pair_sum`."""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from .cnn_pair_sum import (H_CONSTANTS, H_NEAR_ONE_CONSTANTS,  # noqa: F401  (the kernels' argument c)
                           kappa_polynomial, pair_sum_from_nonzero, unit_patches)

# Images of up to this many pixels get per-image copies of M's columns (d⁴ values: 19 KB at 7×7); larger ones
# take their weights from M, since their copies (4.9 MB each at 28×28) would stream from memory for every pair.
PREMAPPED_MAX_PIXELS = 100
# Bytes of those copies made at a time: the kernel passes every image of the first set over one chunk, which must
# stay in the caches. With 64 MiB chunks a 2048² tile of Table 1's 7×7 Gram streamed them from memory and ran 1.8×
# slower than with 4 MiB (1–4 MiB measured alike).
WEIGHTS_CHUNK_BYTES = 4 << 20
# The second set's patch lists are rounded up to whole vectors of AVX2's four float64 lanes. With AVX-512's eight,
# each loop ends with a short remainder; rounding up to 8 or 16 instead measured no faster.
VECTOR_WIDTH = 4

# Fused: no (N1, N2, d², d²) temporaries. The loops over q are written with selects and no calls so that LLVM
# vectorizes them; 'reassoc' lets it reorder the sums over q (results move by ~1e-16 relative), and the inputs
# are finite (checked where they enter), so 'nnan' and 'ninf' let the clamp of ρ be plain minimum and maximum.
_VECTOR_MATH = {"reassoc", "contract", "arcp", "nnan", "ninf", "nsz"}
# h's constants (deepntk.analytic.cnn_pair_sum.H_CONSTANTS) reach the loops as a tuple argument, not as module
# constants: Numba compiles constants to 64-bit absolute addresses, and in a vector loop whose constants do not fit
# the 16 registers each one was re-read with a move of its address and a broadcast on every iteration. Values of
# an argument are spilled once, as whole vectors, and read as memory operands: the in-cache κ loop ran 1.3× faster.


@njit(inline="always", fastmath=_VECTOR_MATH)
def _h(rho, c):
    """2π·κ/√(s₁s₂) = √(1 − ρ²) + (π − arccos ρ)·ρ as a function of the correlation ρ = s₁₂/√(s₁s₂), within 7e-16
    on [−1, 1]: πρ/2 + π/2 − πu + u^{3/2}·G(u) with u = (1 − |ρ|)/2. One square root and no division; G by
    Estrin's scheme, whose short dependency chains measured 1.3× faster than Horner's rule here. `c` is
    H_CONSTANTS."""
    rho = min(max(rho, -1.0), 1.0)
    u = (1.0 - abs(rho)) * 0.5
    u2 = u * u
    u4 = u2 * u2
    u8 = u4 * u4
    low = (c[0] + c[1] * u) + (c[2] + c[3] * u) * u2 + ((c[4] + c[5] * u) + (c[6] + c[7] * u) * u2) * u4
    high = (c[8] + c[9] * u) + (c[10] + c[11] * u) * u2 + ((c[12] + c[13] * u) + (c[14] + c[15] * u) * u2) * u4
    g = low + (high + c[16] * u8) * u8
    return c[17] * rho + (c[17] - c[18] * u) + u * np.sqrt(u) * g


@njit(inline="always", fastmath=_VECTOR_MATH)
def _h_near_one(rho, c):
    """h(ρ) for ρ ≥ 7/8 (u ∈ [0, 1/16]), within 6e-16, with the degree-7 polynomial of `c` = H_NEAR_ONE_CONSTANTS;
    finite (and multiplied by a zero weight) at the zero padding's ρ = 0."""
    u = max((1.0 - rho) * 0.5, 0.0)
    u2 = u * u
    u4 = u2 * u2
    g = (c[0] + c[1] * u) + (c[2] + c[3] * u) * u2 + ((c[4] + c[5] * u) + (c[6] + c[7] * u) * u2) * u4
    return c[17] * rho + (c[17] - c[18] * u) + u * np.sqrt(u) * g


@njit(inline="always", fastmath=_VECTOR_MATH)
def _kappa(rho, c, near_one):
    """h(ρ) by `_h_near_one` or `_h`; the kernel passes `near_one` as a compile-time constant, so only one of them
    is in its loops."""
    return _h_near_one(rho, c) if near_one else _h(rho, c)


@njit(inline="always", fastmath=_VECTOR_MATH)
def _correlations(U1, i, pp, U2t, j, q, width):
    """ρ of patches pp and pp + 1 of image i with patch q of image j."""
    rho = 0.0
    rho2 = 0.0
    for g in range(width):
        u = U2t[j, g, q]
        rho += U1[i, pp, g] * u
        rho2 += U1[i, pp + 1, g] * u
    return rho, rho2


@functools.cache
def correlation_sums_kernel(width: int, near_one: bool = False):
    """The fused kernel for unit patch vectors of `width` = c·f² + 1 entries, compiled with the width as a
    constant (one cached compilation per width and flag): the inner products then unroll. `near_one`: every
    correlation is at least 7/8 (`deepntk.analytic.cnn_pair_sum.correlations_near_one`), and κ takes the shorter
    polynomial of `_h_near_one` (c = H_NEAR_ONE_CONSTANTS). The width and that flag are the closure's only
    variables, plain values: Numba's cache key hashes the closure's values, and a dispatcher among them would
    differ between processes."""

    @njit(parallel=True, cache=True, fastmath=_VECTOR_MATH)
    def cnn_correlation_sums(U1, root1, live1, count1, U2t, weights2, root2, live2, count2, in_order2, M, symmetric,
                             offset, out, c):
        """out[i, offset + j] = Σ_pq M_pq·2π·κ(φ_p, φ_q) = Σ_pq M_pq·√s_p·√s_q·h(ρ_pq) over the pixel pairs whose
        patches are both nonzero, for every image i of the first set and j of this chunk of the second
        (offset + j >= i when `symmetric`); c is H_CONSTANTS (H_NEAR_ONE_CONSTANTS when `near_one`).

        U1 (N1, R1, width) holds image i's nonzero patches first as unit vectors u_p = (√t·φ_p, β)/√s_p, so that
        ⟨u_p, u_q⟩ is the correlation ρ_pq = s₁₂/√(s₁s₂); root1 their √s_p and live1 their pixels. count1[i] is
        the number of nonzero patches rounded up to even, with zero rows (root 0) after them: the kernel takes
        the patches in pairs, two independent chains of arithmetic. For the chunk's images U2t (n, width, R2),
        root2 and live2 hold the same, transposed, and count2[j] is rounded up to a multiple of 4 (the vector
        width: no scalar remainder loop). weights2[j, p, q] = M[p, live2[j, q]]·root2[j, q] when the caller
        made them (small images: every inner loop then runs along contiguous memory), else (weights2 of length
        0) they come from M (padded with zero columns to R2), which stays in cache where per-image copies (d⁴
        each) would not: read along its rows for an image without a zero patch (in_order2[j]: live2[j, q] = q),
        gathered through live2 for the others (the gather made 28×28 Grams of such images 1.3× slower). Rows are
        taken from both ends alternately so that the threads of a symmetric Gram get even work.

        Per pair of patches the kernel makes two passes over the second image's patches: the correlations into
        two rows that stay in the L1 cache, then κ over them (docs/limit-kernels.md#the-correlation-form)."""
        N1 = U1.shape[0]
        n, _, R2 = U2t.shape
        premapped = weights2.shape[0] > 0
        for row in prange(N1):
            i = row // 2 if row % 2 == 0 else N1 - 1 - row // 2
            rho = np.empty(R2)
            rho2 = np.empty(R2)
            for j in range(max(i - offset, 0) if symmetric else 0, n):
                n2 = count2[j]
                in_order = in_order2[j]
                total = 0.0
                for pp in range(0, count1[i], 2):
                    p, p2 = live1[i, pp], live1[i, pp + 1]
                    for q in range(n2):
                        rho[q], rho2[q] = _correlations(U1, i, pp, U2t, j, q, width)
                    part = 0.0
                    part2 = 0.0
                    # One loop per access pattern of the weights: contiguous rows, M's rows in order, a gather.
                    if premapped:
                        for q in range(n2):
                            part += weights2[j, p, q] * _kappa(rho[q], c, near_one)
                            part2 += weights2[j, p2, q] * _kappa(rho2[q], c, near_one)
                    elif in_order:
                        for q in range(n2):
                            root = root2[j, q]
                            part += M[p, q] * root * _kappa(rho[q], c, near_one)
                            part2 += M[p2, q] * root * _kappa(rho2[q], c, near_one)
                    else:
                        for q in range(n2):
                            root, pixel = root2[j, q], live2[j, q]
                            part += M[p, pixel] * root * _kappa(rho[q], c, near_one)
                            part2 += M[p2, pixel] * root * _kappa(rho2[q], c, near_one)
                    total += root1[i, pp] * part + root1[i, pp + 1] * part2
                out[i, offset + j] = total

    return cnn_correlation_sums


@njit(parallel=True, cache=True)
def premapped_weights(M, live, root, out):
    """out[j, p, q] = M[p, live[j, q]]·root[j, q]: the per-image weights of `cnn_correlation_sums`, written in one
    pass (NumPy's gather, transpose and product took 10 ms for 300 7×7 images, a twentieth of their pair sum
    with 100 others)."""
    N, D, R = out.shape
    for j in prange(N):
        for p in range(D):
            for q in range(R):
                out[j, p, q] = M[p, live[j, q]] * root[j, q]


@njit(parallel=True, cache=True, fastmath=_VECTOR_MATH)
def square_roots(x, rounds):
    """Σ √(v + r) over x, `rounds` times on all threads: the square-root throughput, the one operation of each κ
    in `cnn_correlation_sums` that does not pipeline, for the benchmark."""
    total = 0.0
    for r in prange(rounds):
        acc = 0.0
        for k in range(x.size):
            acc += np.sqrt(x[k] + r)
        total += acc
    return total


@njit(parallel=True, cache=True, fastmath=_VECTOR_MATH)
def correlation_sums_in_cache(rho, weights, out, c):
    """out[r] = Σ_q weights[q]·h(ρ[q] − r·1e-6) on every thread: the fused kernel's κ arithmetic alone on arrays
    that stay in cache (no inner products, no patch lists), the ceiling of `cnn_correlation_sums` for the
    benchmark."""
    for r in prange(out.size):
        total = 0.0
        shift = r * 1e-6
        for q in range(rho.size):
            total += weights[q] * _h(rho[q] - shift, c)
        out[r] = total


def nonzero_pair_sums(P1, norm1, P2, norm2, t: float, M, beta_sq: float, symmetric: bool) -> np.ndarray:
    """Σ_pq M_pq·2π·κ(φ_p, φ_q) over the pairs of nonzero patches, for every image pair of the patch sets P1, P2
    (their squared norms norm1, norm2); `symmetric` (P2 is P1): the upper triangle only."""
    U1, root1, live1, count1 = unit_patches(P1, norm1, t, beta_sq, multiple=2)
    N2, D = norm2.shape
    near_one, constants = kappa_polynomial(P1, norm1, P2, norm2, t, beta_sq)
    cnn_correlation_sums = correlation_sums_kernel(U1.shape[2], near_one)
    sums = np.zeros((len(U1), N2))
    premapped = D <= PREMAPPED_MAX_PIXELS
    chunk = max(1, WEIGHTS_CHUNK_BYTES // (8 * D * D)) if premapped else N2
    # M with zero columns up to the second set's rows (D rounded up to VECTOR_WIDTH), which an image without a
    # zero patch reads in order.
    M_wide = np.zeros((D, -(-D // VECTOR_WIDTH) * VECTOR_WIDTH))
    M_wide[:, :D] = M
    for j0 in range(0, N2, chunk):
        U2, root2, live2, count2 = unit_patches(P2[j0:j0 + chunk], norm2[j0:j0 + chunk], t, beta_sq,
                                                multiple=VECTOR_WIDTH)
        U2t = np.ascontiguousarray(U2.transpose(0, 2, 1))
        in_order2 = (norm2[j0:j0 + chunk] > 0).all(axis=1)
        weights2 = np.empty((len(U2), D, U2.shape[1]) if premapped else (0, D, 0))
        if premapped:
            premapped_weights(M, live2, root2, weights2)
        cnn_correlation_sums(U1, root1, live1, count1, U2t, weights2, root2, live2, count2, in_order2, M_wide,
                             symmetric, j0, sums, constants)
    return sums


def fused_pair_sum(terms, beta_sq: float) -> np.ndarray:
    """d⁻⁴ Σ_pq M_pq κ(φ_p(x), φ_q(x')) for every image pair of `terms` (a `cnn.CNNTerms`), (N1, N2): the pairs of
    nonzero patches by the fused kernel on every core (NUMBA_NUM_THREADS), the pairs with a zero patch in closed
    form (`cnn_pair_sum.pair_sum_from_nonzero`). Equal to `cnn.reference_pair_sum` to ~1e-15 relative."""
    return pair_sum_from_nonzero(terms, beta_sq, nonzero_pair_sums)
