"""The CuPy backend's plain array code, run with NumPy as its namespace (no GPU needed). Its CUDA kernels are
covered by the cross-backend tests when a GPU is present (backend id 'cupy', marked gpu)."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from deepntk.backends import cupy_backend
from deepntk.backends.cupy_backend import CupyBackend, gram_layer_bytes, gram_micro_tile, mirror_lower_tiles
from deepntk.engine.packed import pack
from oracles import perturbed
from conftest import assert_close


def test_mirror_fills_exactly_the_tiles_below_the_diagonal():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(10, 10, 2, 2))
    full = full + full.transpose(1, 0, 3, 2)  # a symmetric Gram
    tile = 4
    blocks = np.arange(10) // tile
    partial = full.copy()
    partial[blocks[:, None] > blocks[None, :]] = np.nan  # what a symmetric launch leaves unwritten
    assert np.array_equal(mirror_lower_tiles(np, partial, tile), full)


def test_micro_tiles_keep_accumulators_small_and_shared_memory_fits():
    for k in range(1, 11):  # a thread's K²·MICRO² accumulators: 16 where several pairs share it, else K²
        assert k * k * gram_micro_tile(k) ** 2 <= max(16, k * k)
    assert gram_layer_bytes(4, 1, 8) == 2 * 2 * 4 * 64 * 8
    assert gram_layer_bytes(12, 10, 8) <= cupy_backend.SHARED_LIMIT


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_array_code_on_numpy_matches_the_reference(arch):
    if arch == "mlp":
        params = perturbed(deepntk.init_params(deepntk.MLP(2, 2, 6, 3.0), seed=1))
        X = np.random.default_rng(2).uniform(0.1, 1, size=(5, 2))
    else:
        params = perturbed(deepntk.init_params(deepntk.CNN(1, 4, 2, 4, 3.0), seed=1))
        X = np.random.default_rng(2).uniform(0.1, 1, size=(5, 1, 4, 4))
    emulated = CupyBackend(xp=np)
    assert not emulated.on_gpu and not emulated._fused(pack(params))
    for fn in (deepntk.forward, deepntk.scaled_ntk):
        assert_close(fn(params, X, backend=emulated), fn(params, X, backend="numpy"), 1e-13)
    Y = np.ones((5, 2))
    _, _, g1 = deepntk.loss_and_gradients(params, X, Y, backend=emulated)
    _, _, g2 = deepntk.loss_and_gradients(params, X, Y, backend="numpy")
    for a, b in zip(g1.weights + g1.biases, g2.weights + g2.biases):
        assert_close(a, b, 1e-13)


def test_unavailable_cupy_says_why_without_raising():
    ok, reason = CupyBackend.availability()
    assert ok or ("not installed" in reason or "CUDA" in reason)
