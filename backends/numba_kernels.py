"""Numba kernels: the whole depth loop inside compiled code, one call per batch.

Layouts put the input index last so the innermost loops run over contiguous inputs and vectorize:
  X (n, N) padded inputs; A (L, n, N) each layer's input activations; G (L, k, n, N) ∂f/∂z^l.
Conv activations are (n, d, d) per input and are handled one input per task.
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
            for s in range(count):
                CK[s] = a
                _dense_layers(W, b, a, z, s * every, min(L, (s + 1) * every), empty)
            delta = np.zeros((n, B), dtype=W.dtype)
            for j in range(k):
                for i in range(B):
                    out[j, i0 + i] = z[j, i]
                    delta[j, i] = coeff * (z[j, i] - Y[j, i0 + i])
            Aseg = np.empty((every, n, B), dtype=W.dtype)
            prev = np.empty((n, B), dtype=W.dtype)
            for s in range(count - 1, -1, -1):
                l0 = s * every
                l1 = min(L, l0 + every)
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
@njit(cache=True)
def _conv_layer(W, b, layer, a, z):
    """z = w ⋆ a + b for one input: a, z (n, d, d); cross-correlation with zero padding (f-1)/2."""
    n = z.shape[0]
    d = z.shape[1]
    f = W.shape[3]
    r = f // 2
    for o in range(n):
        bo = b[layer, o]
        for y in range(d):
            for x in range(d):
                z[o, y, x] = bo
        for m in range(n):
            for u in range(f):
                for v in range(f):
                    w = W[layer, o, m, u, v]
                    if w == 0.0:
                        continue
                    ylo = max(0, r - u)
                    yhi = min(d, d + r - u)
                    xlo = max(0, r - v)
                    xhi = min(d, d + r - v)
                    for y in range(ylo, yhi):
                        for x in range(xlo, xhi):
                            z[o, y, x] += w * a[m, y + u - r, x + v - r]


@njit(cache=True)
def _conv_backprop(W, layer, g, mask, out):
    """out = (wᵀ ⋆ g) · [mask > 0] for one input and output: g, mask, out (n, d, d)."""
    n = g.shape[0]
    d = g.shape[1]
    f = W.shape[3]
    r = f // 2
    out[:] = 0.0
    for o in range(n):
        for m in range(n):
            for u in range(f):
                for v in range(f):
                    w = W[layer, o, m, u, v]
                    if w == 0.0:
                        continue
                    ylo = max(0, r - u)
                    yhi = min(d, d + r - u)
                    xlo = max(0, r - v)
                    xhi = min(d, d + r - v)
                    for y in range(ylo, yhi):
                        for x in range(xlo, xhi):
                            out[m, y + u - r, x + v - r] += w * g[o, y, x]
    for m in range(n):
        for y in range(d):
            for x in range(d):
                if not mask[m, y, x] > 0:
                    out[m, y, x] = 0.0


@njit(cache=True)
def _conv_weight_gradient(g, a, f, gw, gb):
    """gw[o, m, u, v] += Σ_pixels g[o, y, x]·a[m, y+u-r, x+v-r]; gb[o] += Σ g[o]."""
    n = g.shape[0]
    d = g.shape[1]
    r = f // 2
    for o in range(n):
        s = 0.0
        for y in range(d):
            for x in range(d):
                s += g[o, y, x]
        gb[o] += s
        for m in range(n):
            for u in range(f):
                for v in range(f):
                    ylo = max(0, r - u)
                    yhi = min(d, d + r - u)
                    xlo = max(0, r - v)
                    xhi = min(d, d + r - v)
                    s = 0.0
                    for y in range(ylo, yhi):
                        for x in range(xlo, xhi):
                            s += g[o, y, x] * a[m, y + u - r, x + v - r]
                    gw[o, m, u, v] += s


@njit(cache=True)
def _conv_input_forward(W, b, x, A, store):
    L, n = b.shape
    d = x.shape[1]
    a = x.copy()
    z = np.empty((n, d, d), dtype=W.dtype)
    for layer in range(L):
        if store:
            A[layer] = a
        _conv_layer(W, b, layer, a, z)
        if layer < L - 1:
            for p in range(n):
                for y in range(d):
                    for xx in range(d):
                        a[p, y, xx] = _relu(z[p, y, xx])
    return z


@njit(cache=True, parallel=True)
def conv_forward(W, b, X, k):
    """Outputs (N, k): global average pool of the first k channels of z^L; X is (N, n, d, d) padded."""
    N = X.shape[0]
    d = X.shape[2]
    out = np.empty((N, k), dtype=W.dtype)
    dummy = np.empty((0, 0, 0, 0), dtype=W.dtype)
    for i in prange(N):
        z = _conv_input_forward(W, b, X[i], dummy, False)
        for j in range(k):
            out[i, j] = z[j].sum() / (d * d)
    return out


@njit(cache=True, parallel=True)
def conv_loss_gradients(W, b, X, Y, coeff, nparts):
    """Fused forward+backward for ∂ℒ/∂f = coeff·(f − y); Y is (N, k). Returns outputs, dW, db."""
    L, n = b.shape
    N = X.shape[0]
    k = Y.shape[1]
    d = X.shape[2]
    f = W.shape[3]
    out = np.empty((N, k), dtype=W.dtype)
    dW_part = np.zeros((nparts,) + W.shape, dtype=W.dtype)
    db_part = np.zeros((nparts, L, n), dtype=W.dtype)
    per = (N + nparts - 1) // nparts
    for part in prange(nparts):
        A = np.empty((L, n, d, d), dtype=W.dtype)
        delta = np.empty((n, d, d), dtype=W.dtype)
        prev = np.empty((n, d, d), dtype=W.dtype)
        for i in range(part * per, min(N, (part + 1) * per)):
            z = _conv_input_forward(W, b, X[i], A, True)
            delta[:] = 0.0
            for j in range(k):
                out[i, j] = z[j].sum() / (d * d)
                g = coeff * (out[i, j] - Y[i, j]) / (d * d)
                for y in range(d):
                    for x in range(d):
                        delta[j, y, x] = g
            for layer in range(L - 1, -1, -1):
                _conv_weight_gradient(delta, A[layer], f, dW_part[part, layer], db_part[part, layer])
                if layer > 0:
                    _conv_backprop(W, layer, delta, A[layer], prev)
                    delta[:] = prev
    dW = np.zeros(W.shape, dtype=W.dtype)
    db = np.zeros((L, n), dtype=W.dtype)
    for part in range(nparts):
        dW += dW_part[part]
        db += db_part[part]
    return out, dW, db


@njit(cache=True, parallel=True)
def conv_jacobians(W, b, X, k):
    """Per-sample, per-layer parameter gradients J (N, k, L·(n·n·f·f + n)) of the k outputs."""
    L, n = b.shape
    N = X.shape[0]
    d = X.shape[2]
    f = W.shape[3]
    per_layer = n * n * f * f + n
    J = np.zeros((N, k, L * per_layer), dtype=W.dtype)
    for i in prange(N):
        A = np.empty((L, n, d, d), dtype=W.dtype)
        _conv_input_forward(W, b, X[i], A, True)
        g = np.empty((n, d, d), dtype=W.dtype)
        prev = np.empty((n, d, d), dtype=W.dtype)
        gw = np.empty((n, n, f, f), dtype=W.dtype)
        gb = np.empty(n, dtype=W.dtype)
        for j in range(k):
            g[:] = 0.0
            g[j] = 1.0 / (d * d)
            for layer in range(L - 1, -1, -1):
                gw[:] = 0.0
                gb[:] = 0.0
                _conv_weight_gradient(g, A[layer], f, gw, gb)
                base = layer * per_layer
                J[i, j, base:base + n * n * f * f] = gw.ravel()
                J[i, j, base + n * n * f * f:base + per_layer] = gb
                if layer > 0:
                    _conv_backprop(W, layer, g, A[layer], prev)
                    g[:] = prev
    return J
