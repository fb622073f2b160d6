"""Compiled fast paths of the closed-form limit kernels. `deepntk.analytic` stays the NumPy reference they are
tested against; the architectures use these when Numba is installed."""

from __future__ import annotations

import importlib.util

import numpy as np


def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def fused_cnn_pair_sum(terms, beta_sq: float) -> np.ndarray:
    """d⁻⁴ Σ_pq M_pq κ(φ_p(x), φ_q(x')) for every image pair with the fused Numba kernel (one pass per pair, each
    pair of a symmetric Gram once), in place of `CNNTerms.K`'s blocked NumPy loop.

    A patch of zeros (MNIST's background: a fifth of the 7×7 pooled patches, two thirds at 28×28) has φ = 0, so
    its κ with any patch q depends on q alone: κ(β², s_q, β²). The kernel sums only the pairs of nonzero patches;
    the pairs with a zero patch are the bilinear forms u₁ᵀ M z₂ + z₁ᵀ M u₂ + κ(β², β², β²)·z₁ᵀ M z₂ of the
    zero-patch indicators z and the per-patch values u, three small matrix products."""
    from deepntk.analytic import arccos_kernel
    from deepntk.backends.numba_limit_kernels import cnn_kappa_sums

    symmetric = terms.P2 is terms.P1
    P1 = np.ascontiguousarray(terms.P1)
    live1, count1 = _live_patches(terms.norm1)
    live2, count2 = _live_patches(terms.norm2)
    N2, D = terms.norm2.shape
    sums = np.zeros((len(P1), N2))
    premapped = D <= PREMAPPED_MAX_PIXELS
    chunk = max(1, WEIGHTS_CHUNK_BYTES // (8 * D * D)) if premapped else N2
    for j0 in range(0, N2, chunk):
        live = live2[j0:j0 + chunk]
        packed = np.take_along_axis(terms.P2[j0:j0 + chunk], live[:, :, None], axis=1)
        P2t = np.ascontiguousarray(packed.transpose(0, 2, 1))
        norms2 = np.take_along_axis(terms.norm2[j0:j0 + chunk], live, axis=1)
        # M is symmetric: M[live].T = M[:, live].
        weights2 = np.ascontiguousarray(terms.M[live].transpose(0, 2, 1)) if premapped else np.zeros((0, D, D))
        cnn_kappa_sums(P1, terms.norm1, live1, count1, P2t, norms2, live, count2[j0:j0 + chunk], terms.M, weights2,
                       float(terms.t), float(beta_sq), symmetric, j0, sums)
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


# Images of up to this many pixels get per-image copies of M's columns (d⁴ values: 19 KB at 7×7); larger ones
# gather from M, since their copies (4.9 MB each at 28×28) would stream from memory for every image pair.
PREMAPPED_MAX_PIXELS = 100
# Bytes of those copies made at a time.
WEIGHTS_CHUNK_BYTES = 64 << 20


def _live_patches(norms):
    """Each image's nonzero patches: (indices (N, d²) with the live ones first, counts (N,))."""
    live = norms > 0
    order = np.argsort(~live, axis=1, kind="stable").astype(np.int64)
    return order, live.sum(axis=1).astype(np.int64)


def cnn_pair_sum():
    """The fastest pixel-pair sum installed here (None: the NumPy reference)."""
    return fused_cnn_pair_sum if numba_available() else None
