"""The correlation form of the CNN limit kernel's pixel-pair sum (docs/limit-kernels.md#the-correlation-form), the
host side shared by its compiled versions: `numba_cnn_pair_sum` on the CPU's cores (which `cnn_limit_kernel` runs
by default where Numba is installed, and the Numba backend's `cnn_pair_sum` runs) and the CuPy backend's kernels.cu
on a CUDA device: the unit patches, the choice of κ's polynomial, and the pairs with a zero patch in closed form.
Imports nothing compiled: the NumPy reference they are tested against is `cnn.reference_pair_sum`."""

from __future__ import annotations

import numpy as np

from .arccos import arccos_kernel

# h's constants: c₀ … c₁₆ of G(u) = c₀ + c₁u + … + c₁₆u¹⁶ on u ∈ [0, 1/2], the Chebyshev fit of
# docs/limit-kernels.md#the-correlation-form (mpmath.chebyfit at 60 digits, fit error 1.4e-16), then π/2 and π.
H_CONSTANTS = (
    2.666666666666667, 0.26666666666657834, 0.08571428573118013, 0.03968253840773446, 0.022096010048614764,
    0.013766275777802872, 0.009273755767161307, 0.006365949372134689, 0.006461097077025116, -0.005328228873708384,
    0.04068729695140755, -0.11392743686087785, 0.2631427842651784, -0.41633102747908196, 0.4546305248998232,
    -0.300495500597926, 0.09604936916684612, np.pi / 2, np.pi)
# The same for correlations ρ ≥ 7/8 only (u ∈ [0, 1/16]): c₀ … c₇ of a degree-7 fit there (mpmath.chebyfit at 60
# digits, fit error 4.4e-17), nine unused zeros (one tuple type for both kernels), then π/2 and π. Ten fewer
# multiply-adds per κ than H_CONSTANTS' polynomial.
H_NEAR_ONE_CONSTANTS = (
    2.6666666666666665, 0.26666666666675265, 0.0857142856854417, 0.03968254336086811, 0.022095729819876384,
    0.013775245485491045, 0.009110641488150412, 0.00793920318948539) + (0.0,) * 9 + (np.pi / 2, np.pi)
# The least correlation H_NEAR_ONE_CONSTANTS' polynomial is fitted for.
NEAR_ONE = 7 / 8


def pair_sum_from_nonzero(terms, beta_sq: float, nonzero_sums) -> np.ndarray:
    """d⁻⁴ Σ_pq M_pq κ(φ_p(x), φ_q(x')) for every image pair, the pairs of nonzero patches summed by
    `nonzero_sums` (with the signature of `numba_cnn_pair_sum.nonzero_pair_sums`).

    The kernels evaluate κ in its correlation form (docs/limit-kernels.md#the-correlation-form): each patch as a
    unit vector whose inner products are the correlations ρ, and 2πκ = √s₁·√s₂·h(ρ). A patch of zeros (MNIST's
    background: a fifth of the 7×7 pooled patches, two thirds at 28×28) has φ = 0, so its κ with any patch q
    depends on q alone: κ(β², s_q, β²). The kernel sums only the pairs of nonzero patches; the pairs with a zero
    patch are the bilinear forms u₁ᵀ M z₂ + z₁ᵀ M u₂ + κ(β², β², β²)·z₁ᵀ M z₂ of the zero-patch indicators z and
    the per-patch values u, three small matrix products."""
    symmetric = terms.P2 is terms.P1
    # Numba's kernel shares its rows among its threads and gives its second set per-image weights, and the CUDA
    # kernel's grid has room for 2³¹ − 1 images on its first axis, 65,535 on its second: the larger set takes the
    # rows and the smaller one the weights (K(x, x') = K(x', x)).
    if symmetric or len(terms.P1) >= len(terms.P2):
        sums = nonzero_sums(terms.P1, terms.norm1, terms.P2, terms.norm2, terms.t, terms.M, beta_sq, symmetric)
    else:
        sums = np.ascontiguousarray(
            nonzero_sums(terms.P2, terms.norm2, terms.P1, terms.norm1, terms.t, terms.M, beta_sq, False).T)
    if symmetric:
        sums = sums + np.triu(sums, 1).T

    def with_zero(norms):  # 2π·κ of each nonzero patch with a zero patch, 0 at the zero patches
        s = terms.t * norms + beta_sq
        return np.where(norms > 0, 2.0 * np.pi * arccos_kernel(s, beta_sq, beta_sq), 0.0)

    zero1, zero2 = (terms.norm1 == 0).astype(float), (terms.norm2 == 0).astype(float)
    corner = 2.0 * np.pi * float(arccos_kernel(beta_sq, beta_sq, beta_sq))
    # u₁ᵀMz₂ + z₁ᵀM(u₂ + κ(β², β², β²)·z₂): the docstring's three forms with z₁ᵀM formed once.
    sums += with_zero(terms.norm1) @ terms.M @ zero2.T + zero1 @ terms.M @ (with_zero(terms.norm2) + corner * zero2).T
    return sums / (2.0 * np.pi * terms.d**4)


def kappa_polynomial(P1, norm1, P2, norm2, t: float, beta_sq: float) -> tuple[bool, tuple]:
    """(near_one, the kernels' constants c): which polynomial evaluates κ for these patch sets, the shorter one
    where `correlations_near_one`, with its coefficients, chosen together so that the flag a kernel is compiled
    with always meets its constants."""
    near_one = correlations_near_one(P1, norm1, P2, norm2, t, beta_sq)
    return near_one, H_NEAR_ONE_CONSTANTS if near_one else H_CONSTANTS


def correlations_near_one(P1, norm1, P2, norm2, t: float, beta_sq: float) -> bool:
    """Whether every correlation ρ_pq = (t⟨φ_p, φ_q⟩ + β²)/√(s_p s_q) of the two patch sets is at least NEAR_ONE, by
    a bound: where no patch has a negative entry, ⟨φ_p, φ_q⟩ ≥ 0 and so ρ_pq ≥ β²/(max_p √s_p · max_q √s_q).
    Table 1's CNNs (pixels in [0, 1], t = ρ²/(c f²) = 1/81, β = 1) have ρ ≥ 0.9 on every MNIST image."""
    if beta_sq <= 0 or P1.min(initial=0.0) < 0 or P2.min(initial=0.0) < 0:
        return False
    largest = np.sqrt(t * norm1.max(initial=0.0) + beta_sq) * np.sqrt(t * norm2.max(initial=0.0) + beta_sq)
    return bool(beta_sq >= NEAR_ONE * largest)


def unit_patches(P, norms, t: float, beta_sq: float, multiple: int):
    """Each image's nonzero patches, first, as the unit vectors u_p = (√t·φ_p, β)/√s_p (s_p = t|φ_p|² + β²) of
    `cnn_correlation_sums`: (U (N, R, c·f² + 1), their √s_p (N, R), their pixels (N, R), their counts rounded up
    to `multiple` (N,)). Rows past an image's nonzero patches are zero (root 0, pixel 0) up to R, the pixel
    count rounded up to `multiple`."""
    N, D, F = P.shape
    live = norms > 0
    count = live.sum(axis=1)
    rows = -(-D // multiple) * multiple
    pixels = np.zeros((N, rows), dtype=np.int64)
    pixels[:, :D] = np.argsort(~live, axis=1, kind="stable")
    kept = np.arange(rows)[None, :] < count[:, None]
    pixels[~kept] = 0
    # s = 0 (ρ = β = 0) makes κ = 0: such a patch gets root 0 like the padding.
    root = np.where(kept, np.sqrt(t * np.take_along_axis(norms, pixels, axis=1) + beta_sq), 0.0)
    scale = np.divide(1.0, root, out=np.zeros_like(root), where=root > 0)
    U = np.empty((N, rows, F + 1))
    U[:, :, :F] = np.take_along_axis(P, pixels[:, :, None], axis=1) * (np.sqrt(t) * scale)[:, :, None]
    U[:, :, F] = np.sqrt(beta_sq) * scale
    return U, root, pixels, (-(-count // multiple) * multiple).astype(np.int64)
