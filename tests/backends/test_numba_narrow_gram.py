"""The Numba backend's fused NTK for products with a narrow side (`dense_narrow_gram`, docs/ntk.md#narrow-products)
against a forward-mode Jacobian and the NumPy reference, over the widths, output counts, orientations and task
splits that take its different code paths."""

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


def took_narrow_path(monkeypatch):
    """Record the calls of the fused kernel, so a test knows it ran the path it is about."""
    calls = []
    original = numba_backend.NumbaBackend._narrow_dense_gram

    def recording(self, nets, sets):
        calls.append([X.shape[-1] for X in sets])
        return original(self, nets, sets)

    monkeypatch.setattr(numba_backend.NumbaBackend, "_narrow_dense_gram", recording)
    return calls


def test_narrow_gram_equals_the_tangent_jacobian_product(monkeypatch):
    calls = took_narrow_path(monkeypatch)
    params = network(2, 2, 9)
    X1, X2 = inputs(5, 2, 2), inputs(3, 2, 3)
    J1, J2 = tangent_jacobian(params, X1), tangent_jacobian(params, X2)  # (N, k, P)
    scale = params.spec.depth * params.spec.C_L**2
    expected = np.einsum("ixp,jyp->ijxy", J1, J2) / scale
    assert_close(deepntk.scaled_ntk(params, X1, X2, backend="numba"), expected, TOL["oracle"])
    assert calls == [[5, 3]]


# (d_in, d_out): widths n = d_in + 1 + d_out of 3 (rows past n weighted 0), 4 (the paper's), 5 and 7 (the
# general path), with one, two and three outputs.
WIDTHS = [(1, 1), (2, 1), (2, 2), (3, 1), (3, 3)]


@pytest.mark.parametrize("d_in, d_out", WIDTHS)
@pytest.mark.parametrize("sizes", [(7, None), (6, 11), (13, 2), (1, 40)])
def test_narrow_gram_equals_numpy(monkeypatch, d_in, d_out, sizes):
    calls = took_narrow_path(monkeypatch)
    monkeypatch.setattr(numba_backend, "NARROW_TASK_INPUTS", 4)  # several tasks, a short last one
    monkeypatch.setattr(numba_backend, "GD_SEGMENT_BYTES", 1)  # segments of ceil(√L) layers, a short last one
    params = network(d_in, d_out, 23)
    N1, N2 = sizes
    X1 = inputs(N1, d_in, 2)
    X2 = None if N2 is None else inputs(N2, d_in, 3)
    got = deepntk.scaled_ntk(params, X1, X2, backend="numba")
    assert_close(got, deepntk.scaled_ntk(params, X1, X2, backend="numpy"), TOL["identity"])
    assert len(calls) == 1


def test_narrow_ensemble_equals_single_networks(monkeypatch):
    calls = took_narrow_path(monkeypatch)
    members = [network(2, 2, 17, seed=s) for s in range(3)]
    X1, X2 = inputs(4, 2, 2), inputs(9, 2, 3)
    gram = deepntk.scaled_ntk(deepntk.stack_params(members), X1, X2, backend="numba")
    assert gram.shape == (3, 4, 9, 2, 2)
    for e, params in enumerate(members):
        assert_close(gram[e], deepntk.scaled_ntk(params, X1, X2, backend="numpy"), TOL["identity"], f"network {e}")
    assert calls


def test_narrow_gram_in_float32(monkeypatch):
    calls = took_narrow_path(monkeypatch)
    params = network(2, 1, 12)
    X = inputs(6, 2, 2)
    got = deepntk.scaled_ntk(params.astype("float32"), X, backend="numba")
    assert got.dtype == np.float32
    assert_close(got, deepntk.scaled_ntk(params, X, backend="numpy"), TOL["float32"])
    assert calls


def test_wide_products_keep_the_feature_path(monkeypatch):
    calls = took_narrow_path(monkeypatch)
    monkeypatch.setattr(numba_backend, "NARROW_PRODUCT", 4)
    params = network(2, 1, 15)
    X = inputs(9, 2, 2)
    assert_close(deepntk.scaled_ntk(params, X, backend="numba"), deepntk.scaled_ntk(params, X, backend="numpy"),
                 TOL["identity"])
    assert calls == []


def test_narrow_symmetric_gram_is_exactly_symmetric(monkeypatch):
    # Each pair is summed twice, by different tasks, with the same arithmetic: the feature path's mirrored SYRK
    # is exactly symmetric, and so must this be (eigensolvers and Cholesky take one triangle).
    calls = took_narrow_path(monkeypatch)
    params = network(2, 2, 14)
    gram = deepntk.scaled_ntk(params, inputs(13, 2, 2), backend="numba")
    np.testing.assert_array_equal(gram, gram.transpose(1, 0, 3, 2))
    assert calls
