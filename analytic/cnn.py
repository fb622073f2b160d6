"""The CNN's limit kernel (Theorem 4, corrected) and its expectation at finite depth (docs/limit-kernels.md#cnn-theorem-4 and docs/finite-depth.md#cnn).

The paper's printed Theorem 4 mixes normalizations. The corrected form, for x, x' ∈ R^{c×d×d}, offsets
(a, b) ∈ {−r … r}², windows W_ab = {(i, j) : 1 ≤ i−a ≤ d, 1 ≤ j−b ≤ d} and T_ab(y) = d⁻² Σ_{W_ab} y:

    Θ̃^∞(x, x') = Σ_{a,b} [ Σ_m T_ab(x_m)T_ab(x'_m) + k(|W_ab|/d²)² + d⁻⁴ Σ_{p,q∈W_ab} κ(φ_p(x), φ_q(x')) ]·I_k

with φ_p the zero-padded c×f×f input patch at pixel p and κ the arc-cosine kernel of
s₁ = t|φ_p(x)|² + β², s₂ = t|φ_q(x')|² + β², s₁₂ = t⟨φ_p(x), φ_q(x')⟩ + β², t = ρ²/c (the paper's tap
variance) or ρ²/(c f²) (the authors' code). The paper prints the constant term over d² instead of d⁴ and
omits the d⁻⁴ of the double sum (≈14× too large at d = 4).

Window sums. Every term is a sum over pixel pairs (p, q) lying in a common window, so all f² windows collapse
into one fixed weight M[p, q] = #{(a, b) : p, q ∈ W_ab} = A[p_i, q_i]·A[p_j, q_j], with
A[i, i'] = #{a : i, i' ∈ I_a} and I_a the rows of W_ab. Then
    Σ_ab Σ_{p,q ∈ W_ab} y_pq = Σ_pq M_pq y_pq,
the same O(d⁴) per image pair as a 4-D summed-area table, computed as one contraction (no prefix-sum
cancellation), batched over image pairs in blocks that bound memory: `reference_pair_sum`. The fused kernel of
`numba_cnn_pair_sum` computes the same sum faster; `pair_sum_function` says which one runs
(docs/limit-kernels.md#which-pair-sum-runs).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .arccos import arccos_kernel
from .checks import check_depth, check_images, check_scales

# Bound on pixel-pair κ evaluations held in memory at once (each takes ~6 float64 temporaries).
BLOCK_ELEMENTS = 1 << 21


def window_rows(d: int, filter_size: int) -> list[tuple[int, int]]:
    """0-based inclusive row ranges I_a of the windows W_ab for a = −r … r."""
    r = filter_size // 2
    return [(max(0, a), min(d - 1, d - 1 + a)) for a in range(-r, r + 1)]


def window_weights(d: int, filter_size: int) -> np.ndarray:
    """M[p, q] = number of offsets (a, b) whose window W_ab holds both pixels p and q; shape (d², d²)."""
    A = np.zeros((d, d))
    for lo, hi in window_rows(d, filter_size):
        A[lo:hi + 1, lo:hi + 1] += 1.0
    return np.einsum("ik,jl->ijkl", A, A).reshape(d * d, d * d)


def input_patches(X: np.ndarray, filter_size: int) -> np.ndarray:
    """Zero-padded f×f patches at every pixel: (N, c, d, d) → (N, d², c·f²)."""
    N, c, d, _ = X.shape
    r = filter_size // 2
    padded = np.pad(X, ((0, 0), (0, 0), (r, r), (r, r)))
    cols = np.stack([padded[:, :, u:u + d, v:v + d] for u in range(filter_size) for v in range(filter_size)],
                    axis=2)
    return cols.reshape(N, c * filter_size**2, d * d).transpose(0, 2, 1)


class CNNTerms:
    """The input-dependent pieces of docs/finite-depth.md#cnn for one pair of image sets: TX and T1, and what the
    pixel-pair sum K(β²) reads (the patches P1, P2 (N, d², c·f²), their squared norms, the window weights M
    (d², d²), t and d; `reference_pair_sum` and `pair_sum_function`'s others)."""

    def __init__(self, X1, X2, rho, filter_size, filter_variance):
        if filter_size < 1 or filter_size % 2 == 0:
            raise ValueError(f"filter_size must be odd and >= 1, got {filter_size}")
        if filter_variance not in ("paper", "code"):
            raise ValueError(f"filter_variance must be 'paper' or 'code', got {filter_variance!r}")
        self.X1 = check_images(X1, "X1")
        self.X2 = self.X1 if X2 is None else check_images(X2, "X2")
        if self.X1.shape[1:] != self.X2.shape[1:]:
            raise ValueError(f"X1 and X2 hold images of different shapes ({self.X1.shape[1:]}, {self.X2.shape[1:]})")
        _, c, d, _ = self.X1.shape
        self.d = d
        self.M = window_weights(d, filter_size)
        tap = 1.0 / c if filter_variance == "paper" else 1.0 / (c * filter_size**2)
        self.t = rho**2 * tap
        self.P1 = input_patches(self.X1, filter_size)
        self.P2 = self.P1 if X2 is None else input_patches(self.X2, filter_size)
        self.norm1 = np.sum(self.P1**2, axis=2)
        self.norm2 = np.sum(self.P2**2, axis=2)

    @property
    def T1(self) -> float:
        return float(self.M.sum()) / self.d**4

    def TX(self) -> np.ndarray:
        N1, c = self.X1.shape[:2]
        N2 = self.X2.shape[0]
        F1 = self.X1.reshape(N1, c, -1)
        F2 = self.X2.reshape(N2, c, -1)
        return np.einsum("imp,pq,jmq->ij", F1, self.M, F2, optimize=True) / self.d**4


def reference_pair_sum(terms: CNNTerms, beta_sq: float) -> np.ndarray:
    """d⁻⁴ Σ_pq M_pq κ(φ_p(x), φ_q(x')) for every image pair of `terms`, (N1, N2), by evaluating κ for all d⁴ pixel
    pairs in blocked NumPy array code (docs/limit-kernels.md#cnn-theorem-4): the reference every compiled pair sum
    is tested against, `pair_sum="numpy"` of `cnn_limit_kernel` and the NumPy backend's `cnn_pair_sum`."""
    N1, N2, D = terms.P1.shape[0], terms.P2.shape[0], terms.d**2
    symmetric = terms.P2 is terms.P1
    out = np.zeros((N1, N2))
    Mflat = terms.M.ravel()
    cols = max(1, min(N2, BLOCK_ELEMENTS // (D * D)))
    rows = max(1, BLOCK_ELEMENTS // (cols * D * D))
    for i0 in range(0, N1, rows):
        i1 = min(N1, i0 + rows)
        for j0 in range(0, N2, cols):
            j1 = min(N2, j0 + cols)
            if symmetric and j1 <= i0:
                continue  # strictly below the diagonal: mirrored from the upper triangle below
            inner = np.einsum("ipc,jqc->ijpq", terms.P1[i0:i1], terms.P2[j0:j1], optimize=True)
            s1 = terms.t * terms.norm1[i0:i1, None, :, None] + beta_sq
            s2 = terms.t * terms.norm2[None, j0:j1, None, :] + beta_sq
            kappa = arccos_kernel(s1, s2, terms.t * inner + beta_sq)
            out[i0:i1, j0:j1] = kappa.reshape(i1 - i0, j1 - j0, D * D) @ Mflat
    if symmetric:
        out = np.triu(out) + np.triu(out, 1).T
    return out / terms.d**4


# The pair sums `pair_sum` names: the NumPy reference and the fused kernel of `numba_cnn_pair_sum`.
PAIR_SUMS = ("numpy", "numba")


def pair_sum_function(pair_sum=None):
    """The function `(terms, β²) → (N1, N2)` that computes the pixel-pair sum, from `pair_sum` as the closed forms
    take it (docs/limit-kernels.md#which-pair-sum-runs).

    Args:
        pair_sum: a function of that signature (a backend's `cnn_pair_sum`: the engine always passes its
            backend's), "numpy" (`reference_pair_sum`), "numba" (`numba_cnn_pair_sum.fused_pair_sum`, compiled on
            first use and cached on disk), or None: for a standalone call, the fastest installed CPU
            implementation, "numba" where Numba is installed, else "numpy". The GPU's pair sum is the CuPy
            backend's; this never picks it.

    Raises:
        ValueError: `pair_sum` is none of these.
        ImportError: "numba" without Numba installed.
    """
    if callable(pair_sum):
        return pair_sum
    if pair_sum is None:
        pair_sum = "numba" if importlib.util.find_spec("numba") is not None else "numpy"
    if pair_sum == "numpy":
        return reference_pair_sum
    if pair_sum == "numba":
        try:
            from .numba_cnn_pair_sum import fused_pair_sum
        except ModuleNotFoundError as exc:
            if exc.name != "numba":
                raise
            raise ImportError("pair_sum='numba' needs Numba, which is not installed "
                              "(pip install 'deepntk[numba]'); pair_sum='numpy' is the reference") from None
        return fused_pair_sum
    raise ValueError(f"pair_sum must be a function, None or one of {', '.join(map(repr, PAIR_SUMS))}, "
                     f"got {pair_sum!r}")


def cnn_limit_kernel(X1, X2=None, *, outputs: int = 1, rho: float = 1.0, beta: float = 1.0,
                     filter_size: int = 3, filter_variance: str = "paper", pair_sum=None) -> np.ndarray:
    """Θ̃^∞(x, x') of the deep narrow CNN (Theorem 4 as corrected in the module docstring).

    Args:
        X1, X2: images (N, c, d, d) as the conv layers see them (after any fixed input pool).
        outputs: k, the number of outputs.
        rho, beta: the initialization's scales.
        filter_size: odd f.
        filter_variance: "paper" (taps ~ N(0, ρ²/c)) or "code" (N(0, ρ²/(c f²)), the authors' code).
        pair_sum: what computes the pixel-pair sum d⁻⁴ Σ_pq M_pq κ, the one costly term
            (docs/limit-kernels.md#which-pair-sum-runs): None (the default) the fastest installed CPU
            implementation, Numba's fused kernel where Numba is installed, else the NumPy reference; "numpy" the
            reference, "numba" the fused kernel; or a function `(CNNTerms, β²) → (N1, N2)`, such as a backend's
            `cnn_pair_sum` (the engine passes its backend's). All agree to ~1e-15 relative.

    Returns:
        (N1, N2) array, the scalar factor of I_k.

    Raises:
        ValueError: bad images or scales, or an unknown `pair_sum`.
        ImportError: pair_sum="numba" without Numba.
    """
    check_scales(rho=rho, beta=beta, outputs=outputs)
    pair_sum = pair_sum_function(pair_sum)
    terms = CNNTerms(X1, X2, rho, filter_size, filter_variance)
    return terms.TX() + outputs * terms.T1 + pair_sum(terms, beta**2)


def cnn_expected_kernel(X1, X2=None, *, depth: int, C_L: float, outputs: int = 1, rho: float = 1.0,
                        beta: float = 1.0, filter_size: int = 3, filter_variance: str = "paper",
                        pair_sum=None) -> np.ndarray:
    """E Θ̃ at finite depth L and scale C_L over the paper's initialization (docs/limit-kernels.md#cnn-theorem-4 and docs/finite-depth.md#cnn).

    E Θ̃ = [1 + TX + (L−1)(1 + C_L²(TX + k·T1)) + K₁ + (L−2)·C_L²·K] / (L·C_L²), K₁ = K with β² → C_L²β².
    The arguments are `cnn_limit_kernel`'s (`pair_sum` computes both K and K₁), with the depth L and scale C_L.

    Returns:
        (N1, N2) array, the scalar factor of I_k.
    """
    check_scales(C_L=C_L, rho=rho, beta=beta, outputs=outputs)
    L, C2 = check_depth(depth), float(C_L) ** 2
    pair_sum = pair_sum_function(pair_sum)
    terms = CNNTerms(X1, X2, rho, filter_size, filter_variance)
    TX = terms.TX()
    total = (1.0 + TX + (L - 1) * (1.0 + C2 * (TX + outputs * terms.T1))
             + pair_sum(terms, C2 * beta**2) + (L - 2) * C2 * pair_sum(terms, beta**2))
    return total / (L * C2)
