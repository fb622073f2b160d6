"""Compiled fast paths of the closed-form limit kernels. `deepntk.analytic` stays the NumPy reference they are
tested against; the architectures use these when Numba is installed."""

from __future__ import annotations

import importlib.util

import numpy as np


def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def fused_cnn_pair_sum(terms, beta_sq: float) -> np.ndarray:
    """d⁻⁴ Σ_pq M_pq κ(φ_p(x), φ_q(x')) for every image pair with the fused Numba kernel (one pass per pair, each
    pair of a symmetric Gram once), in place of `CNNTerms.K`'s blocked NumPy loop."""
    from deepntk.backends.numba_limit_kernels import cnn_kappa_sums

    symmetric = terms.P2 is terms.P1
    P2t = np.ascontiguousarray(terms.P2.transpose(0, 2, 1))
    sums = cnn_kappa_sums(np.ascontiguousarray(terms.P1), terms.norm1, P2t, terms.norm2, terms.M, float(terms.t),
                          float(beta_sq), symmetric)
    if symmetric:
        sums = sums + np.triu(sums, 1).T
    return sums / (2.0 * np.pi * terms.d**4)


def cnn_pair_sum():
    """The fastest pixel-pair sum installed here (None: the NumPy reference)."""
    return fused_cnn_pair_sum if numba_available() else None
