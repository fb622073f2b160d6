"""Numba kernels: the whole depth loop inside compiled code, one call per batch.

Layouts put the input index last so the innermost loops run over contiguous inputs and vectorize:
  X (n, N) padded inputs; A (L, n, N) each layer's input activations; G (L, k, n, N) ∂f/∂z^l.
Conv activations are (n, d, d) per input and are handled one input per task.
Inputs are validated in Python (deepntk.engine); kernels assume consistent shapes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


# ---------------------------------------------------------------------------------------------- dense --
@njit(cache=True)
def _dense_layer(W, b, layer, a, z):
    n, B = z.shape
    for o in range(n):
        bo = b[layer, o]
        for i in range(B):
            z[o, i] = bo
        for m in range(n):
            w = W[layer, o, m]
            for i in range(B):
                z[o, i] += w * a[m, i]


@njit(cache=True)
def _relu_into(z, a):
    n, B = z.shape
    for p in range(n):
        for i in range(B):
            a[p, i] = z[p, i] if z[p, i] > 0 else 0.0


@njit(cache=True)
def _dense_chunk_forward(W, b, X, i0, i1, A, store):
    """Run inputs i0:i1 through all layers; store each layer's input in A if `store`; return z^L (n, B)."""
    L, n, _ = W.shape
    B = i1 - i0
    a = np.empty((n, B), dtype=W.dtype)
    z = np.empty((n, B), dtype=W.dtype)
    for p in range(n):
        for i in range(B):
            a[p, i] = X[p, i0 + i]
    for layer in range(L):
        if store:
            for p in range(n):
                for i in range(B):
                    A[layer, p, i0 + i] = a[p, i]
        _dense_layer(W, b, layer, a, z)
        if layer < L - 1:
            _relu_into(z, a)
    return z


@njit(cache=True, parallel=True)
def dense_forward(W, b, X, k, chunk):
    """Outputs (k, N) of the dense recurrence for padded inputs X (n, N)."""
    N = X.shape[1]
    out = np.empty((k, N), dtype=W.dtype)
    dummy = np.empty((0, 0, 0), dtype=W.dtype)
    nchunks = (N + chunk - 1) // chunk
    for c in prange(nchunks):
        i0 = c * chunk
        i1 = min(N, i0 + chunk)
        z = _dense_chunk_forward(W, b, X, i0, i1, dummy, False)
        for j in range(k):
            for i in range(i1 - i0):
                out[j, i0 + i] = z[j, i]
    return out


@njit(cache=True, parallel=True)
def dense_loss_gradients(W, b, X, Y, coeff, chunk):
    """One fused forward+backward pass for ℒ with ∂ℒ/∂f = coeff·(f − y).

    Returns outputs (k, N), dW (L, n, n), db (L, n); Y is (k, N). Each chunk of inputs keeps its own
    activations and partial gradients, summed at the end.
    """
    L, n, _ = W.shape
    k = Y.shape[0]
    N = X.shape[1]
    nchunks = (N + chunk - 1) // chunk
    out = np.empty((k, N), dtype=W.dtype)
    dW_part = np.zeros((nchunks, L, n, n), dtype=W.dtype)
    db_part = np.zeros((nchunks, L, n), dtype=W.dtype)
    for c in prange(nchunks):
        i0 = c * chunk
        i1 = min(N, i0 + chunk)
        B = i1 - i0
        A = np.empty((L, n, B), dtype=W.dtype)
        Xc = X[:, i0:i1]
        z = _dense_chunk_forward(W, b, Xc, 0, B, A, True)
        delta = np.zeros((n, B), dtype=W.dtype)
        for j in range(k):
            for i in range(B):
                out[j, i0 + i] = z[j, i]
                delta[j, i] = coeff * (z[j, i] - Y[j, i0 + i])
        prev = np.empty((n, B), dtype=W.dtype)
        for layer in range(L - 1, -1, -1):
            for o in range(n):
                s = 0.0
                for i in range(B):
                    s += delta[o, i]
                db_part[c, layer, o] += s
                for m in range(n):
                    s = 0.0
                    for i in range(B):
                        s += delta[o, i] * A[layer, m, i]
                    dW_part[c, layer, o, m] += s
            if layer > 0:
                for m in range(n):
                    for i in range(B):
                        prev[m, i] = 0.0
                for o in range(n):
                    for m in range(n):
                        w = W[layer, o, m]
                        for i in range(B):
                            prev[m, i] += w * delta[o, i]
                for m in range(n):
                    for i in range(B):
                        delta[m, i] = prev[m, i] if A[layer, m, i] > 0 else 0.0
    dW = np.zeros((L, n, n), dtype=W.dtype)
    db = np.zeros((L, n), dtype=W.dtype)
    for c in range(nchunks):
        dW += dW_part[c]
        db += db_part[c]
    return out, dW, db


@njit(cache=True, parallel=True)
def dense_trace(W, b, X, k, chunk):
    """Activations A (L, n, N) and Jacobians G (L, k, n, N) = ∂f/∂z^l for every layer and input."""
    L, n, _ = W.shape
    N = X.shape[1]
    A = np.empty((L, n, N), dtype=W.dtype)
    G = np.empty((L, k, n, N), dtype=W.dtype)
    nchunks = (N + chunk - 1) // chunk
    for c in prange(nchunks):
        i0 = c * chunk
        i1 = min(N, i0 + chunk)
        B = i1 - i0
        _dense_chunk_forward(W, b, X, i0, i1, A, True)
        g = np.zeros((k, n, B), dtype=W.dtype)
        nxt = np.empty((k, n, B), dtype=W.dtype)
        for j in range(k):
            for i in range(B):
                g[j, j, i] = 1.0
        for layer in range(L - 1, -1, -1):
            for j in range(k):
                for p in range(n):
                    for i in range(B):
                        G[layer, j, p, i0 + i] = g[j, p, i]
            if layer > 0:
                for j in range(k):
                    for m in range(n):
                        for i in range(B):
                            nxt[j, m, i] = 0.0
                    for o in range(n):
                        for m in range(n):
                            w = W[layer, o, m]
                            for i in range(B):
                                nxt[j, m, i] += w * g[j, o, i]
                    for m in range(n):
                        for i in range(B):
                            g[j, m, i] = nxt[j, m, i] if A[layer, m, i0 + i] > 0 else 0.0
    return A, G


@njit(cache=True, parallel=True)
def dense_gram(A1, G1, A2, G2, symmetric, tile_i, tile_j):
    """Θ[i, j] = Σ_l (A1[l,:,i]·A2[l,:,j] + 1) · G1[l,:,:,i] G2[l,:,:,j]ᵀ, as (N1, N2, k, k) in float64.

    Parallel over tiles of the Gram; each tile keeps its accumulator in cache across all L layers, so no
    per-layer N1×N2 array goes through memory. With `symmetric` only tiles on or above the diagonal run.
    """
    L, n, N1 = A1.shape
    k = G1.shape[1]
    N2 = A2.shape[2]
    ti_count = (N1 + tile_i - 1) // tile_i
    tj_count = (N2 + tile_j - 1) // tile_j
    out = np.zeros((N1, N2, k, k))
    for t in prange(ti_count * tj_count):
        ti = t // tj_count
        tj = t % tj_count
        i0 = ti * tile_i
        i1 = min(N1, i0 + tile_i)
        j0 = tj * tile_j
        j1 = min(N2, j0 + tile_j)
        if symmetric and j1 <= i0:
            continue
        TI = i1 - i0
        TJ = j1 - j0
        acc = np.zeros((TI, k, k, TJ))
        pair = np.empty(TJ)
        jac = np.empty(TJ)
        for layer in range(L):
            for ii in range(TI):
                i = i0 + ii
                for jj in range(TJ):
                    pair[jj] = 1.0
                for p in range(n):
                    a = A1[layer, p, i]
                    for jj in range(TJ):
                        pair[jj] += a * A2[layer, p, j0 + jj]
                for x in range(k):
                    for y in range(k):
                        for jj in range(TJ):
                            jac[jj] = 0.0
                        for q in range(n):
                            g = G1[layer, x, q, i]
                            for jj in range(TJ):
                                jac[jj] += g * G2[layer, y, q, j0 + jj]
                        for jj in range(TJ):
                            acc[ii, x, y, jj] += pair[jj] * jac[jj]
        for ii in range(TI):
            for x in range(k):
                for y in range(k):
                    for jj in range(TJ):
                        out[i0 + ii, j0 + jj, x, y] = acc[ii, x, y, jj]
    if symmetric:
        for i in range(N1):
            for j in range(i):
                for x in range(k):
                    for y in range(k):
                        out[i, j, x, y] = out[j, i, y, x]
    return out


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
                if mask[m, y, x] <= 0:
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
                        a[p, y, xx] = z[p, y, xx] if z[p, y, xx] > 0 else 0.0
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
