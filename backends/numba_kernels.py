"""Numba kernels of the recurrence: the whole depth loop inside compiled code, one call per batch.

Layouts put the input index last so the innermost loops run over contiguous inputs and vectorize:
  W (E, L, n, n) or (E, L, n, n, f, f) and b (E, L, n): E networks of one architecture (E = 1 for one network);
  dense: X (n, N) padded inputs, activations (n, B) per chunk of B inputs;
  conv:  X (n, d, d, N), activations (n, d, d, B).
Inputs are validated in Python (deepntk.engine); kernels assume consistent shapes.

Parallelism: every kernel takes (part, parts) last and does the tasks part, part + parts, … of its work (a task is
one chunk of inputs of one network, or one layer); the backend calls it from `parts` threads at once (`nogil`).
Kernels are serial code with explicit loops, no `prange` and no array-slicing expressions: both multiply Numba's
compile time, which a newcomer's first call pays (docs/backends.md#compile-time).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Reassociation lets reductions over inputs vectorize; no `nnan`/`ninf`, so NaN still propagates (training
# must see a diverging loss) and comparisons with NaN keep their IEEE meaning.
FAST = {"reassoc", "contract", "nsz", "arcp"}
KERNEL = dict(cache=True, nogil=True, fastmath=FAST)


@njit(cache=True, inline="always")
def _relu(z):
    """max(z, 0) that keeps NaN, like numpy.maximum."""
    return 0.0 if z <= 0 else z


@njit(cache=True)
def _chunk_of(task, chunks, chunk, N):
    """(network, first input, inputs) of task number `task` when each network's N inputs form `chunks` chunks."""
    e = task // chunks
    i0 = (task % chunks) * chunk
    return e, i0, min(N, i0 + chunk) - i0


# ---------------------------------------------------------------------------------------------- dense --
@njit(**KERNEL)
def _load_dense(X, i0, a):
    """a[p, i] = X[p, i0 + i]."""
    for p in range(a.shape[0]):
        for i in range(a.shape[1]):
            a[p, i] = X[p, i0 + i]


@njit(**KERNEL)
def _store_dense(a, Y, i0):
    """Y[p, i0 + i] = a[p, i]."""
    for p in range(a.shape[0]):
        for i in range(a.shape[1]):
            Y[p, i0 + i] = a[p, i]


@njit(**KERNEL)
def _dense_layers(W, b, e, a, z, l0, l1, A):
    """Run network e's layers l0 … l1-1 on a (n, B) in place; A (l1-l0, n, B) receives each layer's input if
    non-empty. On return z holds z^{l1-1} and, when l1 < L, a holds the input of layer l1.

    The sums over inputs m take four rows of a per pass over z[o] (and `_dense_backprop` four rows of g per
    pass): at these widths a pass costs more in loop overhead and memory traffic than its arithmetic. The loops
    are written out here rather than in a shared helper: Numba's inlining of one multiplies the compile time a
    first call pays, and an outlined call costs more than its loop at a few dozen inputs."""
    L = b.shape[1]
    n, B = a.shape
    store = A.shape[0] > 0
    for layer in range(l0, l1):
        if store:
            for p in range(n):
                for i in range(B):
                    A[layer - l0, p, i] = a[p, i]
        for o in range(n):
            bo = b[e, layer, o]
            for i in range(B):
                z[o, i] = bo
            m = 0
            while m + 4 <= n:
                w0, w1 = W[e, layer, o, m], W[e, layer, o, m + 1]
                w2, w3 = W[e, layer, o, m + 2], W[e, layer, o, m + 3]
                for i in range(B):
                    z[o, i] += w0 * a[m, i] + w1 * a[m + 1, i] + w2 * a[m + 2, i] + w3 * a[m + 3, i]
                m += 4
            while m < n:
                w0 = W[e, layer, o, m]
                for i in range(B):
                    z[o, i] += w0 * a[m, i]
                m += 1
        if layer < L - 1:
            for p in range(n):
                for i in range(B):
                    a[p, i] = _relu(z[p, i])


@njit(**KERNEL)
def _dense_backprop(W, e, layer, g, mask, out):
    """out[m] = Σ_o W[e, layer, o, m]·g[o] where mask[m] > 0, else 0; g, mask, out (n, B). Four rows of g per
    pass, as in `_dense_layers`."""
    n, B = g.shape
    for m in range(n):
        for i in range(B):
            out[m, i] = 0.0
        o = 0
        while o + 4 <= n:
            w0, w1 = W[e, layer, o, m], W[e, layer, o + 1, m]
            w2, w3 = W[e, layer, o + 2, m], W[e, layer, o + 3, m]
            for i in range(B):
                out[m, i] += w0 * g[o, i] + w1 * g[o + 1, i] + w2 * g[o + 2, i] + w3 * g[o + 3, i]
            o += 4
        while o < n:
            w0 = W[e, layer, o, m]
            for i in range(B):
                out[m, i] += w0 * g[o, i]
            o += 1
        for i in range(B):
            # A select, not a branch: it vectorizes, and ReLU masks are too irregular to predict.
            out[m, i] = out[m, i] if mask[m, i] > 0 else 0.0


@njit(**KERNEL)
def dense_forward(W, b, X, chunk, out, part, parts):
    """Outputs out (E, k, N) of every network for padded inputs X (n, N)."""
    E, L, n, _ = W.shape
    k = out.shape[1]
    N = X.shape[1]
    chunks = (N + chunk - 1) // chunk
    for task in range(part, E * chunks, parts):
        e, i0, B = _chunk_of(task, chunks, chunk, N)
        a = np.empty((n, B), dtype=W.dtype)
        z = np.empty((n, B), dtype=W.dtype)
        _load_dense(X, i0, a)
        _dense_layers(W, b, e, a, z, 0, L, np.empty((0, n, B), dtype=W.dtype))
        for j in range(k):
            for i in range(B):
                out[e, j, i0 + i] = z[j, i]


@njit(**KERNEL)
def _add_layer_term(a, g, N1, ad, gd, acc):
    """acc[x, y, i, j] += (ã_i·ã_{N1+j})·(g[x, :, i]·g[y, :, N1+j]) with ã = [a, 1]: one layer's NTK term between
    the first N1 inputs of a batch (a tile's rows) and the rest (its columns), from their inputs a (n, M) and
    output Jacobians g (k, n, M).
    The column index runs unsigned, so Numba emits no negative-index wraparound inside the loop (1.9× faster in
    a prototype of this loop)."""
    k, n, M = g.shape
    start = np.uint64(N1)
    end = np.uint64(M)
    if n <= 4:  # both inner products and the update in one pass; rows past n get weight 0
        r1, r2, r3 = min(1, n - 1), min(2, n - 1), min(3, n - 1)
        w1, w2, w3 = (1.0 if n > 1 else 0.0), (1.0 if n > 2 else 0.0), (1.0 if n > 3 else 0.0)
        for x in range(k):
            u = g[x]
            for y in range(k):
                v = g[y]
                out = acc[x, y]
                for i in range(N1):
                    p0, p1, p2, p3 = a[0, i], a[r1, i] * w1, a[r2, i] * w2, a[r3, i] * w3
                    q0, q1, q2, q3 = u[0, i], u[r1, i] * w1, u[r2, i] * w2, u[r3, i] * w3
                    for j in range(start, end):
                        out[i, j - start] += ((1.0 + p0 * a[0, j] + p1 * a[r1, j] + p2 * a[r2, j] + p3 * a[r3, j])
                                              * (q0 * v[0, j] + q1 * v[r1, j] + q2 * v[r2, j] + q3 * v[r3, j]))
        return
    for i in range(N1):
        for j in range(start, end):
            ad[j - start] = 1.0
        for p in range(n):
            c = a[p, i]
            for j in range(start, end):
                ad[j - start] += c * a[p, j]
        for x in range(k):
            for y in range(k):
                for j in range(start, end):
                    gd[j - start] = 0.0
                for q in range(n):
                    c = g[x, q, i]
                    for j in range(start, end):
                        gd[j - start] += c * g[y, q, j]
                for j in range(start, end):
                    acc[x, y, i, j - start] += ad[j - start] * gd[j - start]


@njit(**KERNEL)
def dense_tiled_gram(W, b, X1, X2, every, rows, cols, tiles, out, part, parts):
    """Every network's NTK Θ (out (E, k, k, N1, N2), unscaled), tile by tile: a task is one row of `tiles` (T, 3):
    network e, and the block of up to `rows` inputs of X1 (n, N1) from i0 by up to `cols` inputs of X2 (n, N2)
    from j0, traced as one batch. A forward pass keeps every `every`-th layer's input; then, segment by segment
    from the top, the segment's inputs are recomputed and the output Jacobians backpropagated through it, and each
    layer's term (ã·ã')(g_x·g'_y) is added to the tile on the spot. No per-layer features are written and no
    matrix product is called (docs/ntk.md#tiled-grams). Entries of out outside every tile are left as they were."""
    _, L, n, _ = W.shape  # the network of a task is in `tiles`
    k = out.shape[1]
    N1, N2 = X1.shape[1], X2.shape[1]
    count = (L + every - 1) // every
    dtype = W.dtype
    zero = np.int64(0)  # a literal 0 would compile _load_dense a second time
    for task in range(part, tiles.shape[0], parts):
        e, i0, j0 = tiles[task, 0], tiles[task, 1], tiles[task, 2]
        R = min(N1, i0 + rows) - i0
        B = min(N2, j0 + cols) - j0
        M = R + B
        a, z = np.empty((n, M), dtype=dtype), np.empty((n, M), dtype=dtype)
        for p in range(n):
            for i in range(R):
                a[p, i] = X1[p, i0 + i]
            for j in range(B):
                a[p, R + j] = X2[p, j0 + j]
        CK = np.empty((count, n, M), dtype=dtype)
        keep_none = np.empty((0, n, M), dtype=dtype)
        for s in range(count):
            _load_dense(a, zero, CK[s])
            _dense_layers(W, b, e, a, z, s * every, min(L, (s + 1) * every), keep_none)
        A = np.empty((every, n, M), dtype=dtype)
        g, nxt = np.empty((k, n, M), dtype=dtype), np.empty((k, n, M), dtype=dtype)
        for x in range(k):  # ∂f_x/∂z^{L-1} = e_x
            for q in range(n):
                for i in range(M):
                    g[x, q, i] = 1.0 if q == x else 0.0
        ad, gd = np.empty(B, dtype=dtype), np.empty(B, dtype=dtype)
        acc = np.empty((k, k, R, B), dtype=dtype)  # cleared by loops: np.zeros is one more overload to compile
        for x in range(k):
            for y in range(k):
                for i in range(R):
                    for j in range(B):
                        acc[x, y, i, j] = 0.0
        for s in range(count - 1, -1, -1):
            l0 = s * every
            l1 = min(L, l0 + every)
            _load_dense(CK[s], zero, a)
            _dense_layers(W, b, e, a, z, l0, l1, A)
            for layer in range(l1 - 1, l0 - 1, -1):
                _add_layer_term(A[layer - l0], g, R, ad, gd, acc)
                if layer > 0:
                    for x in range(k):
                        _dense_backprop(W, e, layer, g[x], A[layer - l0], nxt[x])
                    g, nxt = nxt, g
        for x in range(k):
            for y in range(k):
                for i in range(R):
                    for j in range(B):
                        out[e, x, y, i0 + i, j0 + j] = acc[x, y, i, j]


@njit(**KERNEL)
def dense_loss_gradients(W, b, X, Y, coeff, chunk, every, out, dW_part, db_part, part, parts):
    """One fused forward+backward pass for ℒ with ∂ℒ/∂f = coeff·(f − y), for every network; Y is (k, N).

    Writes the outputs out (E, k, N) and this part's sums of the gradients dW_part[part] (E, L, n, n),
    db_part[part] (E, L, n) (so memory is O(parts·E·L·n²), independent of N). A chunk keeps checkpoints every
    `every` layers and recomputes one segment at a time: O((L/every + every)·n·chunk) working memory that stays
    in cache.
    """
    E, L, n, _ = W.shape
    k = Y.shape[0]
    N = X.shape[1]
    chunks = (N + chunk - 1) // chunk
    count = (L + every - 1) // every
    dW = dW_part[part]
    db = db_part[part]
    for task in range(part, E * chunks, parts):
        e, i0, B = _chunk_of(task, chunks, chunk, N)
        CK = np.empty((count, n, B), dtype=W.dtype)
        a = np.empty((n, B), dtype=W.dtype)
        z = np.empty((n, B), dtype=W.dtype)
        empty = np.empty((0, n, B), dtype=W.dtype)
        Aseg = np.empty((every, n, B), dtype=W.dtype)
        _load_dense(X, i0, a)
        for s in range(count):
            _load_dense(a, np.int64(0), CK[s])
            # The last segment's activations are kept now: the backward pass starts there.
            _dense_layers(W, b, e, a, z, s * every, min(L, (s + 1) * every), Aseg if s == count - 1 else empty)
        delta = np.empty((n, B), dtype=W.dtype)  # zeroed by loops: np.zeros is one more overload to compile
        for o in range(n):
            for i in range(B):
                delta[o, i] = 0.0
        for j in range(k):
            for i in range(B):
                out[e, j, i0 + i] = z[j, i]
                delta[j, i] = coeff * (z[j, i] - Y[j, i0 + i])
        prev = np.empty((n, B), dtype=W.dtype)
        for s in range(count - 1, -1, -1):
            l0 = s * every
            l1 = min(L, l0 + every)
            if s < count - 1:
                _load_dense(CK[s], np.int64(0), a)
                _dense_layers(W, b, e, a, z, l0, l1, Aseg)
            for layer in range(l1 - 1, l0 - 1, -1):
                act = Aseg[layer - l0]
                for o in range(n):
                    acc = 0.0
                    for i in range(B):
                        acc += delta[o, i]
                    db[e, layer, o] += acc
                    for m in range(n):
                        acc = 0.0
                        for i in range(B):
                            acc += delta[o, i] * act[m, i]
                        dW[e, layer, o, m] += acc
                if layer > 0:
                    _dense_backprop(W, e, layer, delta, act, prev)
                    delta, prev = prev, delta


# ----------------------------------------------------------------------------------------------- conv --
@njit(cache=True)
def _window(d, r, u):
    """Output rows y whose tap u reads inside the image: y + u − r ∈ [0, d)."""
    return max(0, r - u), min(d, d + r - u)


@njit(cache=True)
def _row_run(d, r, v, B):
    """The flat run that filter column v covers in an image row of d·B entries (pixels x, then inputs i):
    (its first entry at the output pixels x, its first entry at the read pixels x + v − r, its length), for the
    x of `_window(d, r, v)`. Unsigned, so that the loops' indices carry no negative-index wraparound
    (docs/backends.md#conv-rows)."""
    xlo, xhi = _window(d, r, v)
    return np.uint64(xlo * B), np.uint64((xlo + v - r) * B), np.uint64((xhi - xlo) * B)


@njit(**KERNEL)
def _load_conv(X, i0, a):
    """a[p, y, x, i] = X[p, y, x, i0 + i]."""
    n, d, _, B = a.shape
    for p in range(n):
        for y in range(d):
            for x in range(d):
                for i in range(B):
                    a[p, y, x, i] = X[p, y, x, i0 + i]


@njit(**KERNEL)
def _store_conv(a, Y, i0):
    """Y[p, y, x, i0 + i] = a[p, y, x, i]."""
    n, d, _, B = a.shape
    for p in range(n):
        for y in range(d):
            for x in range(d):
                for i in range(B):
                    Y[p, y, x, i0 + i] = a[p, y, x, i]


@njit(**KERNEL)
def _pixel_mean(z, j, i):
    """Mean over pixels of channel j of input i: the global average pool."""
    d = z.shape[1]
    total = 0.0
    for y in range(d):
        for x in range(d):
            total += z[j, y, x, i]
    return total / (d * d)


@njit(**KERNEL)
def _add_three_rows(out, o, out_start, source, m, source_start, span, c0, c1, c2):
    """out[o, y, out_start + q] += c0·source[m, y-1, source_start + q] + c1·source[m, y, …] + c2·source[m, y+1, …]
    for q < span and every row y of the flat (channels, d, d·B) arrays, rows outside the image counting as zero.
    With 3×3 filters, the three taps of a filter column in one pass per row instead of three: the row added to is
    loaded and stored once for three multiply-adds (docs/backends.md#conv-rows)."""
    d = out.shape[1]
    for q in range(span):
        out[o, 0, out_start + q] += c1 * source[m, 0, source_start + q] + c2 * source[m, 1, source_start + q]
    for y in range(1, d - 1):
        for q in range(span):
            out[o, y, out_start + q] += (c0 * source[m, y - 1, source_start + q] + c1 * source[m, y, source_start + q]
                                         + c2 * source[m, y + 1, source_start + q])
    for q in range(span):
        out[o, d - 1, out_start + q] += (c0 * source[m, d - 2, source_start + q]
                                         + c1 * source[m, d - 1, source_start + q])


@njit(**KERNEL)
def _conv_layers(W, b, e, a, z, l0, l1, A):
    """Run network e's conv layers l0 … l1-1 on a (n, d, d, B) in place; A (l1-l0, n, d, d, B) receives layer
    inputs if non-empty. On return z holds z^{l1-1} and, when l1 < L, a holds the input of layer l1.

    A tap (u, v) of the filter shifts a whole image row: pixels x and inputs i are one flat, contiguous axis of
    d·B entries, so each row is one loop of (x-window)·B iterations (`_row_run`) rather than one per pixel
    (docs/backends.md#conv-rows)."""
    L = b.shape[1]
    f = W.shape[4]
    r = f // 2
    n, d, _, B = a.shape
    flat_a = a.reshape((n, d, d * B))
    flat_z = z.reshape((n, d, d * B))
    row = np.uint64(d * B)
    store = A.shape[0] > 0
    for layer in range(l0, l1):
        if store:
            _load_conv(a, np.int64(0), A[layer - l0])
        for o in range(n):
            bo = b[e, layer, o]
            for y in range(d):
                for q in range(row):
                    flat_z[o, y, q] = bo
            for m in range(n):
                if f == 3:  # the three taps of a filter column read rows y-1, y, y+1 into row y
                    for v in range(3):
                        w0, w1, w2 = W[e, layer, o, m, 0, v], W[e, layer, o, m, 1, v], W[e, layer, o, m, 2, v]
                        if w0 != 0.0 or w1 != 0.0 or w2 != 0.0:
                            pixels, taps, span = _row_run(d, r, v, B)
                            _add_three_rows(flat_z, o, pixels, flat_a, m, taps, span, w0, w1, w2)
                    continue
                for u in range(f):
                    ylo, yhi = _window(d, r, u)
                    for v in range(f):
                        w = W[e, layer, o, m, u, v]
                        if w == 0.0:
                            continue
                        pixels, taps, span = _row_run(d, r, v, B)
                        for y in range(ylo, yhi):
                            ys = y + u - r
                            for q in range(span):
                                flat_z[o, y, pixels + q] += w * flat_a[m, ys, taps + q]
        if layer < L - 1:
            for p in range(n):
                for y in range(d):
                    for q in range(row):
                        flat_a[p, y, q] = _relu(flat_z[p, y, q])


@njit(**KERNEL)
def _conv_backprop(W, e, layer, g, mask, out):
    """out = (wᵀ ⋆ g)·[mask > 0]: g, mask, out (n, d, d, B); image rows as flat loops, as in `_conv_layers`."""
    n, d, _, B = g.shape
    f = W.shape[4]
    r = f // 2
    flat_g = g.reshape((n, d, d * B))
    flat_mask = mask.reshape((n, d, d * B))
    flat_out = out.reshape((n, d, d * B))
    row = np.uint64(d * B)
    for m in range(n):
        for y in range(d):
            for q in range(row):
                flat_out[m, y, q] = 0.0
    for o in range(n):
        for m in range(n):
            if f == 3:  # row ys gathers rows ys+1, ys, ys-1 of g through taps u = 0, 1, 2
                for v in range(3):
                    w0, w1, w2 = W[e, layer, o, m, 0, v], W[e, layer, o, m, 1, v], W[e, layer, o, m, 2, v]
                    if w0 != 0.0 or w1 != 0.0 or w2 != 0.0:
                        pixels, taps, span = _row_run(d, r, v, B)
                        _add_three_rows(flat_out, m, taps, flat_g, o, pixels, span, w2, w1, w0)
                continue
            for u in range(f):
                ylo, yhi = _window(d, r, u)
                for v in range(f):
                    w = W[e, layer, o, m, u, v]
                    if w == 0.0:
                        continue
                    pixels, taps, span = _row_run(d, r, v, B)
                    for y in range(ylo, yhi):
                        ys = y + u - r
                        for q in range(span):
                            flat_out[m, ys, taps + q] += w * flat_g[o, y, pixels + q]
    for m in range(n):
        for y in range(d):
            for q in range(row):
                flat_out[m, y, q] = flat_out[m, y, q] if flat_mask[m, y, q] > 0 else 0.0


@njit(**KERNEL)
def _conv_layer_gradients(W, e, layer, delta, act, prev, dW, db):
    """A GD step's work at one conv layer, given delta = ∂ℒ/∂z (n, d, d, B) and the layer's input act: adds the
    sums over inputs Σ delta·act (per tap) to dW[e, layer] and Σ delta to db[e, layer], and writes
    prev = (wᵀ ⋆ delta)·[act > 0], as `_conv_backprop`. A tap's gradient sum and its share of the backpropagated
    delta read the same rows of delta, so both are done in one pass over them (docs/backends.md#conv-rows)."""
    n, d, _, B = delta.shape
    f = W.shape[4]
    r = f // 2
    row = np.uint64(d * B)
    flat_delta = delta.reshape((n, d, d * B))
    flat_act = act.reshape((n, d, d * B))
    flat_prev = prev.reshape((n, d, d * B))
    for m in range(n):
        for y in range(d):
            for q in range(row):
                flat_prev[m, y, q] = 0.0
    for o in range(n):
        acc = 0.0
        for y in range(d):
            for q in range(row):
                acc += flat_delta[o, y, q]
        db[e, layer, o] += acc
        for m in range(n):
            if f == 3:
                # As in `_conv_backprop`, row ys of prev gathers rows ys+1, ys, ys-1 of delta (taps u = 0, 1, 2);
                # those rows times row ys of act are the three taps' terms of the gradient sums.
                for v in range(3):
                    w0, w1, w2 = W[e, layer, o, m, 0, v], W[e, layer, o, m, 1, v], W[e, layer, o, m, 2, v]
                    pixels, taps, span = _row_run(d, r, v, B)
                    acc0 = acc1 = acc2 = 0.0
                    for q in range(span):
                        g0, g1 = flat_delta[o, 1, pixels + q], flat_delta[o, 0, pixels + q]
                        x = flat_act[m, 0, taps + q]
                        acc0 += g0 * x
                        acc1 += g1 * x
                        flat_prev[m, 0, taps + q] += w0 * g0 + w1 * g1
                    for ys in range(1, d - 1):
                        for q in range(span):
                            g0, g1 = flat_delta[o, ys + 1, pixels + q], flat_delta[o, ys, pixels + q]
                            g2 = flat_delta[o, ys - 1, pixels + q]
                            x = flat_act[m, ys, taps + q]
                            acc0 += g0 * x
                            acc1 += g1 * x
                            acc2 += g2 * x
                            flat_prev[m, ys, taps + q] += w0 * g0 + w1 * g1 + w2 * g2
                    for q in range(span):
                        g1, g2 = flat_delta[o, d - 1, pixels + q], flat_delta[o, d - 2, pixels + q]
                        x = flat_act[m, d - 1, taps + q]
                        acc1 += g1 * x
                        acc2 += g2 * x
                        flat_prev[m, d - 1, taps + q] += w1 * g1 + w2 * g2
                    dW[e, layer, o, m, 0, v] += acc0
                    dW[e, layer, o, m, 1, v] += acc1
                    dW[e, layer, o, m, 2, v] += acc2
                continue
            for u in range(f):
                ylo, yhi = _window(d, r, u)
                for v in range(f):
                    w = W[e, layer, o, m, u, v]
                    pixels, taps, span = _row_run(d, r, v, B)
                    acc = 0.0
                    for y in range(ylo, yhi):
                        ys = y + u - r
                        for q in range(span):
                            g = flat_delta[o, y, pixels + q]
                            acc += g * flat_act[m, ys, taps + q]
                            flat_prev[m, ys, taps + q] += w * g
                    dW[e, layer, o, m, u, v] += acc
    for m in range(n):
        for y in range(d):
            for q in range(row):
                flat_prev[m, y, q] = flat_prev[m, y, q] if flat_act[m, y, q] > 0 else 0.0


@njit(**KERNEL)
def _conv_sample_gradients(g, a, f, phi, row0, out_index, i0):
    """Per-input gradients of one output w.r.t. one layer's filters and biases, written as feature rows:
    phi[row0 + ((o·n + m)·f + u)·f + v, out_index, i0 + i] = Σ_pixels g[o, y, x, i]·a[m, y+u-r, x+v-r, i],
    then n bias rows phi[row0 + n·n·f·f + o, …] = Σ_pixels g[o, y, x, i]."""
    n, d, _, B = g.shape
    r = f // 2
    acc = np.empty((3, B), dtype=g.dtype)
    for o in range(n):
        for m in range(n):
            if f == 3:
                # The three taps u of a filter column v: row ys of a pairs with rows ys+1, ys, ys-1 of g, so each
                # of its pixels is read once for all three (bottom and top rows: two).
                for v in range(3):
                    xlo, xhi = _window(d, r, v)
                    for u in range(3):
                        for i in range(B):
                            acc[u, i] = 0.0
                    for ys in range(d):
                        for x in range(xlo, xhi):
                            xs = x + v - r
                            if ys == 0:
                                for i in range(B):
                                    pixel = a[m, 0, xs, i]
                                    acc[0, i] += g[o, 1, x, i] * pixel
                                    acc[1, i] += g[o, 0, x, i] * pixel
                            elif ys == d - 1:
                                for i in range(B):
                                    pixel = a[m, ys, xs, i]
                                    acc[1, i] += g[o, ys, x, i] * pixel
                                    acc[2, i] += g[o, ys - 1, x, i] * pixel
                            else:
                                for i in range(B):
                                    pixel = a[m, ys, xs, i]
                                    acc[0, i] += g[o, ys + 1, x, i] * pixel
                                    acc[1, i] += g[o, ys, x, i] * pixel
                                    acc[2, i] += g[o, ys - 1, x, i] * pixel
                    for u in range(3):
                        row = row0 + ((o * n + m) * f + u) * f + v
                        for i in range(B):
                            phi[row, out_index, i0 + i] = acc[u, i]
                continue
            for u in range(f):
                ylo, yhi = _window(d, r, u)
                for v in range(f):
                    xlo, xhi = _window(d, r, v)
                    for i in range(B):
                        acc[0, i] = 0.0
                    for y in range(ylo, yhi):
                        for x in range(xlo, xhi):
                            for i in range(B):
                                acc[0, i] += g[o, y, x, i] * a[m, y + u - r, x + v - r, i]
                    row = row0 + ((o * n + m) * f + u) * f + v
                    for i in range(B):
                        phi[row, out_index, i0 + i] = acc[0, i]
        for i in range(B):
            acc[0, i] = 0.0
        for y in range(d):
            for x in range(d):
                for i in range(B):
                    acc[0, i] += g[o, y, x, i]
        for i in range(B):
            phi[row0 + n * n * f * f + o, out_index, i0 + i] = acc[0, i]


@njit(**KERNEL)
def conv_forward(W, b, X, chunk, out, part, parts):
    """Outputs out (E, k, N): global average pool of the first k channels of z^L; X is (n, d, d, N) padded."""
    E, L, n = b.shape
    d = X.shape[1]
    N = X.shape[3]
    k = out.shape[1]
    chunks = (N + chunk - 1) // chunk
    for task in range(part, E * chunks, parts):
        e, i0, B = _chunk_of(task, chunks, chunk, N)
        a = np.empty((n, d, d, B), dtype=W.dtype)
        z = np.empty((n, d, d, B), dtype=W.dtype)
        _load_conv(X, i0, a)
        _conv_layers(W, b, e, a, z, 0, L, np.empty((0, n, d, d, B), dtype=W.dtype))
        for j in range(k):
            for i in range(B):
                out[e, j, i0 + i] = _pixel_mean(z, j, i)


@njit(**KERNEL)
def conv_checkpoints(W, b, X, every, chunk, CK, part, parts):
    """CK (ceil(L/every), E, n, d, d, N): every network's inputs of layers 0, every, 2·every, …"""
    E, L, n = b.shape
    d = X.shape[1]
    N = X.shape[3]
    count = CK.shape[0]
    chunks = (N + chunk - 1) // chunk
    for task in range(part, E * chunks, parts):
        e, i0, B = _chunk_of(task, chunks, chunk, N)
        a = np.empty((n, d, d, B), dtype=W.dtype)
        z = np.empty((n, d, d, B), dtype=W.dtype)
        empty = np.empty((0, n, d, d, B), dtype=W.dtype)
        _load_conv(X, i0, a)
        for s in range(count):
            _store_conv(a, CK[s, e], i0)
            _conv_layers(W, b, e, a, z, s * every, min(L, (s + 1) * every), empty)


@njit(**KERNEL)
def conv_segment_features(W, b, start, l0, l1, g_in, phi, g_out, chunk, part, parts):
    """Layers l0 … l1-1 of a checkpointed conv NTK sweep of every network e: recompute their inputs from `start`
    (E, n, d, d, N), backpropagate g_in = ∂f/∂z^{l1-1} (E, k, n, d, d, N), and write each layer's per-input
    parameter gradients as feature rows of phi (E, (l1-l0)·P, k, N), P = n·n·f·f + n. Leaves ∂f/∂z^{l0-1} in
    g_out (when l0 > 0)."""
    E, _, n = b.shape
    f = W.shape[4]
    d = start.shape[2]
    N = start.shape[4]
    k = g_in.shape[1]
    P = n * n * f * f + n
    chunks = (N + chunk - 1) // chunk
    for task in range(part, E * chunks, parts):
        e, i0, B = _chunk_of(task, chunks, chunk, N)
        a = np.empty((n, d, d, B), dtype=W.dtype)
        z = np.empty((n, d, d, B), dtype=W.dtype)
        Ac = np.empty((l1 - l0, n, d, d, B), dtype=W.dtype)
        _load_conv(start[e], i0, a)
        _conv_layers(W, b, e, a, z, l0, l1, Ac)
        g = np.empty((n, d, d, B), dtype=W.dtype)
        nxt = np.empty((n, d, d, B), dtype=W.dtype)
        for j in range(k):
            _load_conv(g_in[e, j], i0, g)
            for layer in range(l1 - 1, l0 - 1, -1):
                _conv_sample_gradients(g, Ac[layer - l0], f, phi[e], (layer - l0) * P, j, i0)
                if layer > 0:
                    _conv_backprop(W, e, layer, g, Ac[layer - l0], nxt)
                    g, nxt = nxt, g
            if l0 > 0:
                _store_conv(g, g_out[e, j], i0)


@njit(**KERNEL)
def conv_loss_gradients(W, b, X, Y, coeff, chunk, every, out, dW_part, db_part, part, parts):
    """Fused, checkpointed forward+backward for ∂ℒ/∂f = coeff·(f − y) for every network; X (n, d, d, N), Y (k, N).
    Writes out (E, k, N) and this part's gradient sums dW_part[part] (E, L, n, n, f, f), db_part[part] (E, L, n)."""
    E, L, n = b.shape
    d = X.shape[1]
    N = X.shape[3]
    k = Y.shape[0]
    chunks = (N + chunk - 1) // chunk
    count = (L + every - 1) // every
    dW = dW_part[part]
    db = db_part[part]
    for task in range(part, E * chunks, parts):
        e, i0, B = _chunk_of(task, chunks, chunk, N)
        CK = np.empty((count, n, d, d, B), dtype=W.dtype)
        a = np.empty((n, d, d, B), dtype=W.dtype)
        z = np.empty((n, d, d, B), dtype=W.dtype)
        empty = np.empty((0, n, d, d, B), dtype=W.dtype)
        Aseg = np.empty((every, n, d, d, B), dtype=W.dtype)
        _load_conv(X, i0, a)
        for s in range(count):
            _load_conv(a, np.int64(0), CK[s])
            # The last segment's activations are kept now: the backward pass starts there.
            _conv_layers(W, b, e, a, z, s * every, min(L, (s + 1) * every), Aseg if s == count - 1 else empty)
        delta = np.empty((n, d, d, B), dtype=W.dtype)  # zeroed by loops, as in dense_loss_gradients
        for o in range(n):
            for u in range(d):
                for v in range(d):
                    for i in range(B):
                        delta[o, u, v, i] = 0.0
        for j in range(k):
            for i in range(B):
                mean = _pixel_mean(z, j, i)
                out[e, j, i0 + i] = mean
                g = coeff * (mean - Y[j, i0 + i]) / (d * d)
                for y in range(d):
                    for x in range(d):
                        delta[j, y, x, i] = g
        prev = np.empty((n, d, d, B), dtype=W.dtype)
        for s in range(count - 1, -1, -1):
            l0 = s * every
            l1 = min(L, l0 + every)
            if s < count - 1:
                _load_conv(CK[s], np.int64(0), a)
                _conv_layers(W, b, e, a, z, l0, l1, Aseg)
            for layer in range(l1 - 1, l0 - 1, -1):
                # Layer 0's backpropagated delta is not needed; computing it anyway keeps one loop for every layer.
                _conv_layer_gradients(W, e, layer, delta, Aseg[layer - l0], prev, dW, db)
                delta, prev = prev, delta
