"""Numba kernel of the iterative solvers' Gram products (`NumbaBackend.gram_tile_products`): both products of a
stored upper tile in one pass over it."""

from __future__ import annotations

import numba

# Rows of the tile that share one pass over the accumulator of the transposed product.
ROW_BLOCK = 4


@numba.njit(nogil=True, cache=True, fastmath=True)
def tile_both_products(T, Yc, Yr, rows_out, cols_out, part, parts):
    """rows_out[c, i] += Σ_j T[i, j] Yc[c, j] and cols_out[part, c, j] += Σ_i T[i, j] Yr[c, i] over this part's
    rows i (the right-hand sides c on the leading axis, so every inner loop runs along contiguous memory); each
    part owns its rows of rows_out and its own cols_out[part], summed by the caller."""
    B1, B2 = T.shape
    r = Yc.shape[0]
    lo = part * B1 // parts
    hi = (part + 1) * B1 // parts
    out = cols_out[part]
    i = lo
    while i + ROW_BLOCK <= hi:
        t0, t1, t2, t3 = T[i], T[i + 1], T[i + 2], T[i + 3]
        for c in range(r):
            y0, y1, y2, y3 = Yr[c, i], Yr[c, i + 1], Yr[c, i + 2], Yr[c, i + 3]
            yc, o = Yc[c], out[c]
            a0 = a1 = a2 = a3 = 0.0
            for j in range(B2):
                v = yc[j]
                a0 += t0[j] * v
                a1 += t1[j] * v
                a2 += t2[j] * v
                a3 += t3[j] * v
                o[j] += t0[j] * y0 + t1[j] * y1 + t2[j] * y2 + t3[j] * y3
            rows_out[c, i] += a0
            rows_out[c, i + 1] += a1
            rows_out[c, i + 2] += a2
            rows_out[c, i + 3] += a3
        i += ROW_BLOCK
    while i < hi:
        t0 = T[i]
        for c in range(r):
            y0 = Yr[c, i]
            yc, o = Yc[c], out[c]
            a0 = 0.0
            for j in range(B2):
                a0 += t0[j] * yc[j]
                o[j] += t0[j] * y0
            rows_out[c, i] += a0
        i += 1
