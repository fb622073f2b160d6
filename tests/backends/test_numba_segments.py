"""The Numba backend's checkpointed sweeps with many short segments (forced by tiny budgets) against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from oracles import perturbed
from conftest import TOL, assert_close

pytest.importorskip("numba", reason="the numba extra is not installed")
from deepntk.backends import numba_backend  # noqa: E402


# A narrow product of 0: no product counts as narrow, so the CNN's features take the long segments of wide
# products (else the cached ones); the MLP's Grams take the tiled kernel either way.
@pytest.mark.parametrize("arch, narrow_product", [("mlp", numba_backend.NARROW_PRODUCT),
                                                  ("cnn", numba_backend.NARROW_PRODUCT), ("cnn", 0)])
@pytest.mark.parametrize("fewest", [1, 5])
def test_many_segments_match_numpy(monkeypatch, arch, narrow_product, fewest):
    monkeypatch.setattr(numba_backend, "NARROW_PRODUCT", narrow_product)
    monkeypatch.setattr(numba_backend, "GD_SEGMENT_BYTES", 1)  # segments of ceil(√L) layers
    # NTK segments of `fewest` layers: one layer, or 5 with a shorter last one (L = 23 or 11)
    monkeypatch.setattr(numba_backend, "FEATURE_CHUNK_BYTES", 1)
    monkeypatch.setattr(numba_backend, "CACHED_FEATURE_BYTES", 1)
    monkeypatch.setattr(numba_backend, "MIN_SEGMENT_LAYERS", fewest)
    if arch == "mlp":
        params = perturbed(deepntk.init_params(deepntk.MLP(3, 2, 23, 4.0), seed=1), scale=0.2)
        X1 = np.random.default_rng(2).uniform(0.1, 1, size=(7, 3))
        X2 = np.random.default_rng(3).uniform(0.1, 1, size=(5, 3))
    else:
        params = perturbed(deepntk.init_params(deepntk.CNN(1, 4, 2, 11, 4.0), seed=1), scale=0.2)
        X1 = np.random.default_rng(2).uniform(0.1, 1, size=(7, 1, 4, 4))
        X2 = np.random.default_rng(3).uniform(0.1, 1, size=(5, 1, 4, 4))
    Y = np.random.default_rng(4).normal(size=(7, 2))
    for other in (None, X2):
        assert_close(deepntk.scaled_ntk(params, X1, other, backend="numba"),
                     deepntk.scaled_ntk(params, X1, other, backend="numpy"), TOL["oracle"])
    value_a, out_a, ga = deepntk.loss_and_gradients(params, X1, Y, backend="numba")
    value_b, out_b, gb = deepntk.loss_and_gradients(params, X1, Y, backend="numpy")
    assert value_a == pytest.approx(value_b, rel=TOL["identity"])
    for a, b in zip(ga.weights + ga.biases, gb.weights + gb.biases):
        assert_close(a, b, TOL["oracle"])
