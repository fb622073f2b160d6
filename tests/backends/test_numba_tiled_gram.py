"""The Numba backend's fused dense NTK (`dense_tiled_gram`, docs/ntk.md#tiled-grams) against a forward-mode Jacobian
and the NumPy reference, over the widths, output counts, orientations and tilings that take its different code
paths."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from conftest import TOL, assert_close
from oracles import perturbed, tangent_jacobian

pytest.importorskip("numba", reason="the numba extra is not installed")
from deepntk.backends import numba_backend  # noqa: E402


def network(d_in, d_out, depth, seed=1):
    return perturbed(deepntk.init_params(deepntk.MLP(d_in, d_out, depth, 4.0), seed=seed), scale=0.2, seed=seed)


def inputs(N, d_in, seed):
    return np.random.default_rng(seed).uniform(0.1, 1.0, size=(N, d_in))


def took_tiled_path(monkeypatch):
    """Record the calls of the fused kernel, so a test knows it ran the path it is about."""
    calls = []
    original = numba_backend.NumbaBackend._dense_gram

    def recording(self, nets, sets):
        calls.append([X.shape[-1] for X in sets])
        return original(self, nets, sets)

    monkeypatch.setattr(numba_backend.NumbaBackend, "_dense_gram", recording)
    return calls


def small_tiles(monkeypatch, rows=4, columns=6):
    """Tiles of a few inputs, so that small Grams take several row blocks and column blocks, short last ones."""
    monkeypatch.setattr(numba_backend, "TILE_ROWS", rows)
    monkeypatch.setattr(numba_backend, "TILE_COLUMNS", columns)


def test_tiled_gram_equals_the_tangent_jacobian_product(monkeypatch):
    calls = took_tiled_path(monkeypatch)
    small_tiles(monkeypatch, rows=4, columns=4)  # k = 2: tiles of 2 × 2 inputs
    params = network(2, 2, 9)
    X1, X2 = inputs(5, 2, 2), inputs(3, 2, 3)
    J1, J2 = tangent_jacobian(params, X1), tangent_jacobian(params, X2)  # (N, k, P)
    scale = params.spec.depth * params.spec.C_L**2
    for A, B, JA, JB in ((X1, X2, J1, J2), (X1, None, J1, J1)):
        expected = np.einsum("ixp,jyp->ijxy", JA, JB) / scale
        assert_close(deepntk.scaled_ntk(params, A, B, backend="numba"), expected, TOL["oracle"])
    assert calls == [[5, 3], [5]]


# (d_in, d_out): widths n = d_in + 1 + d_out of 3 (rows past n weighted 0), 4 (the paper's), 5 and 7 (the
# general path), with one, two and three outputs.
WIDTHS = [(1, 1), (2, 1), (2, 2), (3, 1), (3, 3)]


@pytest.mark.parametrize("d_in, d_out", WIDTHS)
@pytest.mark.parametrize("sizes", [(7, None), (6, 11), (13, 2), (1, 40), (23, None), (17, 14)])
def test_tiled_gram_equals_numpy(monkeypatch, d_in, d_out, sizes):
    calls = took_tiled_path(monkeypatch)
    small_tiles(monkeypatch)
    monkeypatch.setattr(numba_backend, "GD_SEGMENT_BYTES", 1)  # segments of ceil(√L) layers, a short last one
    params = network(d_in, d_out, 23)
    N1, N2 = sizes
    X1 = inputs(N1, d_in, 2)
    X2 = None if N2 is None else inputs(N2, d_in, 3)
    got = deepntk.scaled_ntk(params, X1, X2, backend="numba")
    assert_close(got, deepntk.scaled_ntk(params, X1, X2, backend="numpy"), TOL["identity"])
    assert len(calls) == 1


@pytest.mark.parametrize("tiles", [(4, 6), (64, 128)])
def test_tiled_ensemble_equals_single_networks(monkeypatch, tiles):
    calls = took_tiled_path(monkeypatch)
    small_tiles(monkeypatch, *tiles)
    members = [network(2, 2, 17, seed=s) for s in range(3)]
    X1, X2 = inputs(4, 2, 2), inputs(9, 2, 3)
    for A, B, shape in ((X1, X2, (3, 4, 9, 2, 2)), (X2, None, (3, 9, 9, 2, 2))):
        gram = deepntk.scaled_ntk(deepntk.stack_params(members), A, B, backend="numba")
        assert gram.shape == shape
        for e, params in enumerate(members):
            assert_close(gram[e], deepntk.scaled_ntk(params, A, B, backend="numpy"), TOL["identity"], f"network {e}")
    assert len(calls) == 2


def test_tiled_gram_in_float32(monkeypatch):
    calls = took_tiled_path(monkeypatch)
    small_tiles(monkeypatch)
    params = network(2, 1, 12)
    X = inputs(15, 2, 2)
    got = deepntk.scaled_ntk(params.astype("float32"), X, backend="numba")
    assert got.dtype == np.float32
    assert_close(got, deepntk.scaled_ntk(params, X, backend="numpy"), TOL["float32"])
    assert calls


@pytest.mark.parametrize("tiles", [(4, 6), (6, 4), (64, 128)])
def test_symmetric_gram_is_exactly_symmetric(monkeypatch, tiles):
    # Entries below the diagonal are copies of those above (eigensolvers and Cholesky take one triangle), whether
    # a row block's first column block is wider or narrower than the block.
    calls = took_tiled_path(monkeypatch)
    small_tiles(monkeypatch, *tiles)
    params = network(2, 2, 14)
    gram = deepntk.scaled_ntk(params, inputs(13, 2, 2), backend="numba")
    np.testing.assert_array_equal(gram, gram.transpose(1, 0, 3, 2))
    assert calls


def test_tile_shape_keeps_the_sums_within_the_cache_budget():
    # One output: the full 64 × 128 tile (64 KiB of float64 sums). Ten outputs: 100 sums per pair, so the tile
    # halves to 32 × 128 (3.3 MB, too many) and then 32 × 64 (1.6 MB, within 2 MiB).
    assert numba_backend.tile_shape(1, 8) == (64, 128)
    assert numba_backend.tile_shape(10, 8) == (32, 64)
    for outputs in (2, 3, 10, 37, 1000):
        for itemsize in (4, 8):
            rows, cols = numba_backend.tile_shape(outputs, itemsize)
            assert rows >= 1 and cols >= rows
            assert outputs**2 * rows * cols * itemsize <= numba_backend.TILE_BYTES or rows * cols == 1


@pytest.mark.parametrize("networks, N1, N2, upper", [(1, 512, 512, True), (3, 70, 70, True), (10, 1, 200, False),
                                                      (2, 13, 300, False), (1, 16, 16, True)])
def test_gram_tiles_cover_each_entry_once_largest_first(networks, N1, N2, upper):
    rows, cols, tiles = numba_backend.gram_tiles(networks, N1, N2, 1, 8, upper, threads=2)
    covered = np.zeros((networks, N1, N2), dtype=int)
    for e, i0, j0 in tiles:
        covered[e, i0:i0 + rows, j0:j0 + cols] += 1
    needed = np.triu(np.ones((N1, N2), dtype=bool)) if upper else np.ones((N1, N2), dtype=bool)
    assert (covered[:, needed] == 1).all()  # the upper triangle, or all of it, exactly once
    assert cols % numba_backend.COLUMN_VECTOR == 0 and rows <= numba_backend.TILE_ROWS
    sizes = [(min(N1, i0 + rows) - i0) * (min(N2, j0 + cols) - j0) for _, i0, j0 in tiles]
    assert sizes == sorted(sizes, reverse=True)
    assert len(tiles) >= 2  # a task for each of the two threads


def test_a_narrow_side_s_columns_split_evenly():
    # 200 columns in blocks of at most 128: 104 + 96, not 128 + 72, so ten networks' tasks split evenly.
    rows, cols, tiles = numba_backend.gram_tiles(10, 1, 200, 1, 8, False, threads=2)
    assert (rows, cols, len(tiles)) == (1, 104, 20)


@pytest.mark.parametrize("rows", [1, 3, 7, 64])
def test_mirror_upper_copies_the_upper_triangle(rows):
    # Garbage (NaN) below the diagonal, as the kernel leaves it; the result is the symmetric matrix of the upper
    # triangle, whatever the block of rows.
    rng = np.random.default_rng(0)
    full = rng.normal(size=(2, 10, 10, 2, 2))
    full = full + full.transpose(0, 2, 1, 4, 3)
    theta = full.copy()
    i, j = np.tril_indices(10, -1)
    theta[:, i, j] = np.nan
    np.testing.assert_array_equal(numba_backend.mirror_upper(theta, rows), full)
