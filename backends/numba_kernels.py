"""Numba kernels: the whole depth loop inside compiled code, one call per batch.

Layouts put the input index last so the innermost loops run over contiguous inputs and vectorize:
  X (n, N) padded inputs; A (L, n, N) each layer's input activations; G (L, k, n, N) ∂f/∂z^l.
Conv: X (n, d, d, N) and activations (n, d, d, B) per chunk of B inputs, also inputs innermost.
Inputs are validated in Python (deepntk.engine); kernels assume consistent shapes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


# Reassociation lets reductions over inputs vectorize; no `nnan`/`ninf`, so NaN still propagates (training
# must see a diverging loss) and comparisons with NaN keep their IEEE meaning.
FAST = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, inline="always")
def _relu(z):
    """max(z, 0) that keeps NaN, like numpy.maximum."""
    return 0.0 if z <= 0 else z


# ---------------------------------------------------------------------------------------------- dense --
@njit(cache=True, fastmath=FAST)
def _dense_layers(W, b, a, z, l0, l1, A):
    """Run layers l0 … l1-1 on a (n, B) in place; A (l1-l0, n, B) receives each layer's input if non-empty.

    On return z holds z^{l1-1} and, when l1 < L, a holds the input of layer l1.
    """
    L, n, _ = W.shape
    B = a.shape[1]
    store = A.shape[0] > 0
    for layer in range(l0, l1):
        if store:
            for p in range(n):
                for i in range(B):
                    A[layer - l0, p, i] = a[p, i]
        for o in range(n):
            bo = b[layer, o]
            for i in range(B):
                z[o, i] = bo
            for m in range(n):
                w = W[layer, o, m]
                for i in range(B):
                    z[o, i] += w * a[m, i]
        if layer < L - 1:
            for p in range(n):
                for i in range(B):
                    a[p, i] = _relu(z[p, i])


@njit(cache=True, fastmath=FAST)
def _dense_backprop(W, layer, g, mask, out):
    """out[m] = Σ_o W[layer, o, m]·g[o] where mask[m] > 0, else 0; g, mask, out (n, B)."""
    n, B = g.shape
    for m in range(n):
        for i in range(B):
            out[m, i] = 0.0
    for o in range(n):
        for m in range(n):
            w = W[layer, o, m]
            for i in range(B):
                out[m, i] += w * g[o, i]
    for m in range(n):
        for i in range(B):
            if not mask[m, i] > 0:
                out[m, i] = 0.0


@njit(cache=True, parallel=True)
def dense_forward(W, b, X, k, chunk):
    """Outputs (k, N) of the dense recurrence for padded inputs X (n, N)."""
    L, n, _ = W.shape
    N = X.shape[1]
    out = np.empty((k, N), dtype=W.dtype)
    nchunks = (N + chunk - 1) // chunk
    for c in prange(nchunks):
        i0 = c * chunk
        i1 = min(N, i0 + chunk)
        a = X[:, i0:i1].copy()
        z = np.empty_like(a)
        _dense_layers(W, b, a, z, 0, L, np.empty((0, n, i1 - i0), dtype=W.dtype))
        out[:, i0:i1] = z[:k]
    return out


@njit(cache=True, parallel=True)
def dense_checkpoints(W, b, X, every, chunk):
    """Inputs of layers 0, every, 2·every, …: (ceil(L/every), n, N). The forward pass is run once."""
    L, n, _ = W.shape
    N = X.shape[1]
    count = (L + every - 1) // every
    CK = np.empty((count, n, N), dtype=W.dtype)
    nchunks = (N + chunk - 1) // chunk
    for c in prange(nchunks):
        i0 = c * chunk
        i1 = min(N, i0 + chunk)
        a = X[:, i0:i1].copy()
        z = np.empty_like(a)
        empty = np.empty((0, n, i1 - i0), dtype=W.dtype)
        for s in range(count):
            CK[s, :, i0:i1] = a
            _dense_layers(W, b, a, z, s * every, min(L, (s + 1) * every), empty)
    return CK


@njit(cache=True, parallel=True)
def dense_segment_trace(W, b, start, l0, l1, g_in, A, G, g_out, chunk):
    """Layers l0 … l1-1 of a checkpointed NTK sweep.

    Recomputes their inputs A (l1-l0, n, N) from `start` (the input of layer l0), then backpropagates the
    Jacobian g_in = ∂f/∂z^{l1-1} (k, n, N) down the segment, storing G (l1-l0, k, n, N) and leaving
    ∂f/∂z^{l0-1} in g_out (when l0 > 0).
    """
    L, n, _ = W.shape
    N = start.shape[1]
    k = g_in.shape[0]
    nchunks = (N + chunk - 1) // chunk
    for c in prange(nchunks):
        i0 = c * chunk
        i1 = min(N, i0 + chunk)
        B = i1 - i0
        a = start[:, i0:i1].copy()
        z = np.empty_like(a)
        Ac = np.empty((l1 - l0, n, B), dtype=W.dtype)
        _dense_layers(W, b, a, z, l0, l1, Ac)
        A[: l1 - l0, :, i0:i1] = Ac
        g = np.empty((n, B), dtype=W.dtype)
        nxt = np.empty((n, B), dtype=W.dtype)
        for j in range(k):
            g[:, :] = g_in[j, :, i0:i1]
            for layer in range(l1 - 1, l0 - 1, -1):
                G[layer - l0, j, :, i0:i1] = g
                if layer > 0:
                    _dense_backprop(W, layer, g, Ac[layer - l0], nxt)
                    g[:, :] = nxt
            if l0 > 0:
                g_out[j, :, i0:i1] = g


@njit(cache=True, parallel=True, fastmath=FAST)
def dense_loss_gradients(W, b, X, Y, coeff, chunk, every, nparts):
    """One fused forward+backward pass for ℒ with ∂ℒ/∂f = coeff·(f − y); Y is (k, N).

    `nparts` parallel workers take chunks of `chunk` inputs in turn, each with its own partial gradients (so
    memory is O(nparts·L·n²), independent of N). A chunk keeps checkpoints every `every` layers and recomputes
    one segment at a time: O((L/every + every)·n·chunk) working memory that stays in cache.
    Returns outputs (k, N), dW (L, n, n), db (L, n).
    """
    L, n, _ = W.shape
    k = Y.shape[0]
    N = X.shape[1]
    nchunks = (N + chunk - 1) // chunk
    count = (L + every - 1) // every
    out = np.empty((k, N), dtype=W.dtype)
    dW_part = np.zeros((nparts, L, n, n), dtype=W.dtype)
    db_part = np.zeros((nparts, L, n), dtype=W.dtype)
    for part in prange(nparts):
        for c in range(part, nchunks, nparts):
            i0 = c * chunk
            i1 = min(N, i0 + chunk)
            B = i1 - i0
            CK = np.empty((count, n, B), dtype=W.dtype)
            a = X[:, i0:i1].copy()
            z = np.empty_like(a)
            empty = np.empty((0, n, B), dtype=W.dtype)
            Aseg = np.empty((every, n, B), dtype=W.dtype)
            for s in range(count):
                CK[s] = a
                # The last segment's activations are kept now: the backward pass starts there.
                _dense_layers(W, b, a, z, s * every, min(L, (s + 1) * every), Aseg if s == count - 1 else empty)
            delta = np.zeros((n, B), dtype=W.dtype)
            for j in range(k):
                for i in range(B):
                    out[j, i0 + i] = z[j, i]
                    delta[j, i] = coeff * (z[j, i] - Y[j, i0 + i])
            prev = np.empty((n, B), dtype=W.dtype)
            for s in range(count - 1, -1, -1):
                l0 = s * every
                l1 = min(L, l0 + every)
                if s < count - 1:
                    a[:, :] = CK[s]
                    _dense_layers(W, b, a, z, l0, l1, Aseg)
                for layer in range(l1 - 1, l0 - 1, -1):
                    act = Aseg[layer - l0]
                    for o in range(n):
                        acc = 0.0
                        for i in range(B):
                            acc += delta[o, i]
                        db_part[part, layer, o] += acc
                        for m in range(n):
                            acc = 0.0
                            for i in range(B):
                                acc += delta[o, i] * act[m, i]
                            dW_part[part, layer, o, m] += acc
                    if layer > 0:
                        _dense_backprop(W, layer, delta, act, prev)
                        delta[:, :] = prev
    dW = np.zeros((L, n, n), dtype=W.dtype)
    db = np.zeros((L, n), dtype=W.dtype)
    for part in range(nparts):
        dW += dW_part[part]
        db += db_part[part]
    return out, dW, db


@njit(cache=True, parallel=True)
def dense_features(A, G, l0, l1, phi):
    """Layer features whose inner products give the NTK terms of layers l0 … l1-1.

    (ã·ã')(g_x·g'_y) = ⟨ã ⊗ g_x, ã' ⊗ g'_y⟩ with ã = [a, 1], so
    phi[((l-l0)·(n+1) + p)·n + q, x, i] = ã[l, p, i]·G[l, x, q, i] and Θ = Σ_chunks phiᵀ phi (one GEMM per
    chunk instead of one N×N pass per layer). phi is (F, k, N), inputs contiguous.
    """
    L, n, N = A.shape
    k = G.shape[1]
    for l in prange(l0, l1):
        base = (l - l0) * (n + 1) * n
        for p in range(n + 1):
            for q in range(n):
                row = base + p * n + q
                for x in range(k):
                    if p < n:
                        for i in range(N):
                            phi[row, x, i] = A[l, p, i] * G[l, x, q, i]
                    else:
                        for i in range(N):
                            phi[row, x, i] = G[l, x, q, i]


# ----------------------------------------------------------------------------------------------- conv --
# Conv activations are (n, d, d, B) with the inputs of a chunk innermost; W is (L, n, n, f, f).
@njit(cache=True, inline="always")
def _window(d, r, u):
    """Output rows y whose tap u reads inside the image: y + u − r ∈ [0, d)."""
    return max(0, r - u), min(d, d + r - u)


@njit(cache=True, fastmath=FAST)
def _conv_layers(W, b, a, z, l0, l1, A):
    """Run conv layers l0 … l1-1 on a (n, d, d, B) in place; A (l1-l0, n, d, d, B) receives layer inputs if
    non-empty. On return z holds z^{l1-1} and, when l1 < L, a holds the input of layer l1."""
    L, n = b.shape
    f = W.shape[3]
    r = f // 2
    d = a.shape[1]
    B = a.shape[3]
    store = A.shape[0] > 0
    for layer in range(l0, l1):
        if store:
            A[layer - l0] = a
        for o in range(n):
            z[o] = b[layer, o]
            for m in range(n):
                for u in range(f):
                    ylo, yhi = _window(d, r, u)
                    for v in range(f):
                        w = W[layer, o, m, u, v]
                        if w == 0.0:
                            continue
                        xlo, xhi = _window(d, r, v)
                        for y in range(ylo, yhi):
                            for x in range(xlo, xhi):
                                for i in range(B):
                                    z[o, y, x, i] += w * a[m, y + u - r, x + v - r, i]
        if layer < L - 1:
            for p in range(n):
                for y in range(d):
                    for x in range(d):
                        for i in range(B):
                            a[p, y, x, i] = _relu(z[p, y, x, i])


@njit(cache=True, fastmath=FAST)
def _conv_backprop(W, layer, g, mask, out):
    """out = (wᵀ ⋆ g)·[mask > 0]: g, mask, out (n, d, d, B)."""
    n = g.shape[0]
    d = g.shape[1]
    B = g.shape[3]
    f = W.shape[3]
    r = f // 2
    out[:] = 0.0
    for o in range(n):
        for m in range(n):
            for u in range(f):
                ylo, yhi = _window(d, r, u)
                for v in range(f):
                    w = W[layer, o, m, u, v]
                    if w == 0.0:
                        continue
                    xlo, xhi = _window(d, r, v)
                    for y in range(ylo, yhi):
                        for x in range(xlo, xhi):
                            for i in range(B):
                                out[m, y + u - r, x + v - r, i] += w * g[o, y, x, i]
    for m in range(n):
        for y in range(d):
            for x in range(d):
                for i in range(B):
                    if not mask[m, y, x, i] > 0:
                        out[m, y, x, i] = 0.0


@njit(cache=True, fastmath=FAST)
def _conv_sample_gradients(g, a, f, phi, row0, out_index, i0):
    """Per-input gradients of one output w.r.t. one layer's filters and biases, written as feature rows:
    phi[row0 + ((o·n + m)·f + u)·f + v, out_index, i0 + i] = Σ_pixels g[o, y, x, i]·a[m, y+u-r, x+v-r, i],
    then n bias rows phi[row0 + n·n·f·f + o, …] = Σ_pixels g[o, y, x, i]."""
    n = g.shape[0]
    d = g.shape[1]
    B = g.shape[3]
    r = f // 2
    acc = np.empty(B)
    for o in range(n):
        for m in range(n):
            for u in range(f):
                ylo, yhi = _window(d, r, u)
                for v in range(f):
                    xlo, xhi = _window(d, r, v)
                    acc[:] = 0.0
                    for y in range(ylo, yhi):
                        for x in range(xlo, xhi):
                            for i in range(B):
                                acc[i] += g[o, y, x, i] * a[m, y + u - r, x + v - r, i]
                    row = row0 + ((o * n + m) * f + u) * f + v
                    for i in range(B):
                        phi[row, out_index, i0 + i] = acc[i]
        acc[:] = 0.0
        for y in range(d):
            for x in range(d):
                for i in range(B):
                    acc[i] += g[o, y, x, i]
        for i in range(B):
            phi[row0 + n * n * f * f + o, out_index, i0 + i] = acc[i]


@njit(cache=True, parallel=True)
def conv_forward(W, b, X, k, chunk):
    """Outputs (k, N): global average pool of the first k channels of z^L; X is (n, d, d, N) padded."""
    L, n = b.shape
    d = X.shape[1]
    N = X.shape[3]
    out = np.empty((k, N), dtype=W.dtype)
    nchunks = (N + chunk - 1) // chunk
    for c in prange(nchunks):
        i0 = c * chunk
        i1 = min(N, i0 + chunk)
        a = X[:, :, :, i0:i1].copy()
        z = np.empty_like(a)
        _conv_layers(W, b, a, z, 0, L, np.empty((0, n, d, d, i1 - i0), dtype=W.dtype))
        for j in range(k):
            for i in range(i1 - i0):
                out[j, i0 + i] = z[j, :, :, i].sum() / (d * d)
    return out


@njit(cache=True, parallel=True)
def conv_checkpoints(W, b, X, every, chunk):
    """Inputs of layers 0, every, 2·every, …: (ceil(L/every), n, d, d, N)."""
    L, n = b.shape
    d = X.shape[1]
    N = X.shape[3]
    count = (L + every - 1) // every
    CK = np.empty((count, n, d, d, N), dtype=W.dtype)
    nchunks = (N + chunk - 1) // chunk
    for c in prange(nchunks):
        i0 = c * chunk
        i1 = min(N, i0 + chunk)
        a = X[:, :, :, i0:i1].copy()
        z = np.empty_like(a)
        empty = np.empty((0, n, d, d, i1 - i0), dtype=W.dtype)
        for s in range(count):
            CK[s, :, :, :, i0:i1] = a
            _conv_layers(W, b, a, z, s * every, min(L, (s + 1) * every), empty)
    return CK


@njit(cache=True, parallel=True)
def conv_segment_features(W, b, start, l0, l1, g_in, phi, g_out, chunk):
    """Layers l0 … l1-1 of a checkpointed conv NTK sweep: recompute their inputs from `start` (n, d, d, N),
    backpropagate g_in = ∂f/∂z^{l1-1} (k, n, d, d, N), and write each layer's per-input parameter gradients
    as feature rows of phi ((l1-l0)·P, k, N), P = n·n·f·f + n. Leaves ∂f/∂z^{l0-1} in g_out (when l0 > 0)."""
    L, n = b.shape
    f = W.shape[3]
    d = start.shape[1]
    N = start.shape[3]
    k = g_in.shape[0]
    P = n * n * f * f + n
    nchunks = (N + chunk - 1) // chunk
    for c in prange(nchunks):
        i0 = c * chunk
        i1 = min(N, i0 + chunk)
        B = i1 - i0
        a = start[:, :, :, i0:i1].copy()
        z = np.empty_like(a)
        Ac = np.empty((l1 - l0, n, d, d, B), dtype=W.dtype)
        _conv_layers(W, b, a, z, l0, l1, Ac)
        g = np.empty((n, d, d, B), dtype=W.dtype)
        nxt = np.empty((n, d, d, B), dtype=W.dtype)
        for j in range(k):
            g[:] = g_in[j, :, :, :, i0:i1]
            for layer in range(l1 - 1, l0 - 1, -1):
                _conv_sample_gradients(g, Ac[layer - l0], f, phi, (layer - l0) * P, j, i0)
                if layer > 0:
                    _conv_backprop(W, layer, g, Ac[layer - l0], nxt)
                    g[:] = nxt
            if l0 > 0:
                g_out[j, :, :, :, i0:i1] = g


@njit(cache=True, parallel=True, fastmath=FAST)
def conv_loss_gradients(W, b, X, Y, coeff, chunk, every, nparts):
    """Fused, checkpointed forward+backward for ∂ℒ/∂f = coeff·(f − y); X (n, d, d, N), Y (k, N).
    Returns outputs (k, N), dW (L, n, n, f, f), db (L, n)."""
    L, n = b.shape
    f = W.shape[3]
    r = f // 2
    d = X.shape[1]
    N = X.shape[3]
    k = Y.shape[0]
    nchunks = (N + chunk - 1) // chunk
    count = (L + every - 1) // every
    out = np.empty((k, N), dtype=W.dtype)
    dW_part = np.zeros((nparts,) + W.shape, dtype=W.dtype)
    db_part = np.zeros((nparts, L, n), dtype=W.dtype)
    for part in prange(nparts):
        for c in range(part, nchunks, nparts):
            i0 = c * chunk
            i1 = min(N, i0 + chunk)
            B = i1 - i0
            CK = np.empty((count, n, d, d, B), dtype=W.dtype)
            a = X[:, :, :, i0:i1].copy()
            z = np.empty_like(a)
            empty = np.empty((0, n, d, d, B), dtype=W.dtype)
            Aseg = np.empty((every, n, d, d, B), dtype=W.dtype)
            for s in range(count):
                CK[s] = a
                # The last segment's activations are kept now: the backward pass starts there.
                _conv_layers(W, b, a, z, s * every, min(L, (s + 1) * every), Aseg if s == count - 1 else empty)
            delta = np.zeros((n, d, d, B), dtype=W.dtype)
            for j in range(k):
                for i in range(B):
                    out[j, i0 + i] = z[j, :, :, i].sum() / (d * d)
                    g = coeff * (out[j, i0 + i] - Y[j, i0 + i]) / (d * d)
                    for y in range(d):
                        for x in range(d):
                            delta[j, y, x, i] = g
            prev = np.empty((n, d, d, B), dtype=W.dtype)
            for s in range(count - 1, -1, -1):
                l0 = s * every
                l1 = min(L, l0 + every)
                if s < count - 1:
                    a[:] = CK[s]
                    _conv_layers(W, b, a, z, l0, l1, Aseg)
                for layer in range(l1 - 1, l0 - 1, -1):
                    act = Aseg[layer - l0]
                    for o in range(n):
                        acc = 0.0
                        for y in range(d):
                            for x in range(d):
                                for i in range(B):
                                    acc += delta[o, y, x, i]
                        db_part[part, layer, o] += acc
                        for m in range(n):
                            for u in range(f):
                                ylo, yhi = _window(d, r, u)
                                for v in range(f):
                                    xlo, xhi = _window(d, r, v)
                                    acc = 0.0
                                    for y in range(ylo, yhi):
                                        for x in range(xlo, xhi):
                                            for i in range(B):
                                                acc += delta[o, y, x, i] * act[m, y + u - r, x + v - r, i]
                                    dW_part[part, layer, o, m, u, v] += acc
                    if layer > 0:
                        _conv_backprop(W, layer, delta, act, prev)
                        delta[:] = prev
    dW = np.zeros(W.shape, dtype=W.dtype)
    db = np.zeros((L, n), dtype=W.dtype)
    for part in range(nparts):
        dW += dW_part[part]
        db += db_part[part]
    return out, dW, db


# ---------------------------------------------------------------------------------------------------------------
# The CNN limit kernel's pixel-pair sum d⁻⁴ Σ_pq M_pq κ(φ_p(x), φ_q(x')) (docs/limit-kernels.md#cnn-theorem-4),
# fused: no (N1, N2, d², d²) temporaries. The loop over q is written with selects and no calls so that LLVM
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
