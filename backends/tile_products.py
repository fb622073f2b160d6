"""Products of a symmetric Gram's stored upper tile with a block of vectors, for the iterative solvers
(deepntk.engine.solvers): an off-diagonal tile K[rows, cols] contributes K[rows, cols]·Y[cols] to the rows and
its transpose times Y[rows] to the columns. Two BLAS products read the tile twice; with Numba installed one
pass does both, which halves the memory traffic the solvers are bound by."""

from __future__ import annotations

import numpy as np

from deepntk.backends.limit_kernels import numba_available


# Beyond this many right-hand sides the products are bound by arithmetic, not by reading the tile, and BLAS's
# two GEMMs win; the one-pass kernel's transposed accumulator (r × B2) would also no longer stay in cache.
ONE_PASS_MAX_COLUMNS = 32


def both_products(block, Y_cols, Y_rows):
    """(block @ Y_cols, block.T @ Y_rows) for a 2-D float64 tile and (B2, r), (B1, r) right-hand sides."""
    if (not numba_available() or block.dtype != np.float64 or not block.flags.c_contiguous
            or Y_cols.shape[1] > ONE_PASS_MAX_COLUMNS):
        return block @ Y_cols, block.T @ Y_rows
    from deepntk.backends.numba_backend import kernel_threads, run_in_parts
    from deepntk.backends.numba_tile_kernels import tile_both_products

    B1, B2 = block.shape
    parts = max(1, min(kernel_threads(), B1 // 64))
    Yc = np.ascontiguousarray(Y_cols.T)
    Yr = np.ascontiguousarray(Y_rows.T)
    rows_out = np.zeros((Yc.shape[0], B1))
    cols_out = np.zeros((parts, Yc.shape[0], B2))
    run_in_parts(tile_both_products, block, Yc, Yr, rows_out, cols_out, parts=parts)
    return rows_out.T, cols_out.sum(axis=0).T
