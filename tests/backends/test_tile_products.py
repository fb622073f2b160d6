"""The solvers' products of a Gram tile and its transpose (`Backend.gram_tile_products`) on every backend, against
einsum: Numba's one pass over the tile, the reference's two BLAS products."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from conftest import TOL, assert_close


@pytest.mark.parametrize("shape,r", [((300, 200), 7), ((5, 130), 1), ((64, 64), 10), ((131, 3), 2), ((70, 40), 33)])
def test_tile_products_equal_einsum(backend, shape, r):
    """The last case has more right-hand sides than Numba's one pass takes (ONE_PASS_MAX_COLUMNS): BLAS there."""
    rng = np.random.default_rng(sum(shape) + r)
    block = rng.normal(size=shape)
    Y_cols, Y_rows = rng.normal(size=(shape[1], r)), rng.normal(size=(shape[0], r))
    to_rows, to_cols = deepntk.get_backend(backend).gram_tile_products(block, Y_cols, Y_rows)
    # einsum as the oracle: neither BLAS (the fallback) nor the kernel.
    assert_close(to_rows, np.einsum("ij,jc->ic", block, Y_cols), TOL["roundoff"], "tile · Y[cols]")
    assert_close(to_cols, np.einsum("ij,ic->jc", block, Y_rows), TOL["roundoff"], "tileᵀ · Y[rows]")
