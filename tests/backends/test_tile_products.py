"""The solvers' one-pass product of a Gram tile and its transpose against two BLAS products."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TOL, assert_close
from deepntk.backends.tile_products import both_products


@pytest.mark.parametrize("shape,r", [((300, 200), 7), ((5, 130), 1), ((64, 64), 10), ((131, 3), 2)])
def test_one_pass_equals_two_products(shape, r):
    pytest.importorskip("numba", reason="the numba extra is not installed: only the BLAS path exists")
    rng = np.random.default_rng(sum(shape) + r)
    block = rng.normal(size=shape)
    Y_cols, Y_rows = rng.normal(size=(shape[1], r)), rng.normal(size=(shape[0], r))
    to_rows, to_cols = both_products(block, Y_cols, Y_rows)
    # einsum as the oracle: neither BLAS (the fallback) nor the kernel.
    assert_close(to_rows, np.einsum("ij,jc->ic", block, Y_cols), TOL["roundoff"], "tile · Y[cols]")
    assert_close(to_cols, np.einsum("ij,ic->jc", block, Y_rows), TOL["roundoff"], "tileᵀ · Y[rows]")
