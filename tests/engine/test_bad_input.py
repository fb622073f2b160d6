"""Every bad input gets a clear error (or, for x <= 0 and unresolvable float32, a warning)."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from deepntk.engine.trainer import TrainSettings, train
from deepntk.engine.training import gradient_descent
from deepntk.base.errors import BackendUnavailableError, InputError, UnknownBackendError
from deepntk.base.validate import PrecisionWarning, TheoryAssumptionWarning
from deepntk.backends import registry
from conftest import TOL, assert_close, relative_error


@pytest.fixture
def mlp_params():
    return deepntk.init_params(deepntk.MLP(2, 1, 5, 3.0), seed=0)


def test_wrong_input_dimension(mlp_params):
    with pytest.raises(InputError, match=r"shape \(4, 3\); this MLP expects \(N, 2\)"):
        deepntk.forward(mlp_params, np.ones((4, 3)), backend="numpy")


def test_non_finite_inputs(mlp_params):
    X = np.ones((3, 2))
    X[1, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        deepntk.scaled_ntk(mlp_params, X, backend="numpy")
    with pytest.raises(InputError, match="NaN"):
        deepntk.scaled_ntk(mlp_params, np.ones((2, 2)), np.full((2, 2), np.inf), backend="numpy")


def test_non_numeric_and_empty_inputs(mlp_params):
    with pytest.raises(InputError, match="real numbers"):
        deepntk.forward(mlp_params, np.array([["a", "b"]]), backend="numpy")
    with pytest.raises(InputError, match="no points"):
        deepntk.forward(mlp_params, np.ones((0, 2)), backend="numpy")


def test_non_positive_inputs_warn_but_compute(mlp_params):
    with pytest.warns(TheoryAssumptionWarning, match="assumes inputs x > 0"):
        out = deepntk.forward(mlp_params, np.array([[0.0, 0.5], [-0.2, 1.0]]), backend="numpy")
    assert out.shape == (2, 1)


def test_float32_that_cannot_resolve_the_output_warns_where_it_is_chosen_and_used():
    with pytest.warns(PrecisionWarning, match=r"resolves the output only to 3.9e-03"):
        params = deepntk.init_params(deepntk.MLP(2, 1, 4, 5e4), dtype="float32")
    for use in (lambda: deepntk.forward(params, np.ones((1, 2)), backend="numpy"),
                lambda: deepntk.scaled_ntk(params, np.ones((1, 2)), backend="numpy"),
                lambda: gradient_descent(params, np.ones((1, 2)), np.ones((1, 1)), 1, eta=1e-3, backend="numpy"),
                lambda: train(params, np.ones((1, 2)), np.ones((1, 1)), TrainSettings(steps=1, eta=1e-3),
                              backend="numpy")):
        with pytest.warns(PrecisionWarning, match=r"resolves the output only to 3.9e-03"):
            use()


def test_float32_at_small_C_L_does_not_warn(recwarn):
    params = deepntk.init_params(deepntk.MLP(2, 1, 4, 5.0), dtype="float32")
    deepntk.forward(params, np.ones((1, 2)), backend="numpy")
    assert not [w for w in recwarn if issubclass(w.category, PrecisionWarning)]


def test_unknown_backend_lists_the_known_ones(mlp_params):
    with pytest.raises(UnknownBackendError, match="unknown backend 'tpu'; known backends: numpy, numba, cupy"):
        deepntk.forward(mlp_params, np.ones((1, 2)), backend="tpu")


def test_missing_library_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    registry._instances.pop("numba", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'deepntk\[numba\]'"):
        registry.get_backend("numba")


def test_wrong_target_shape(mlp_params):
    with pytest.raises(InputError, match=r"Y has shape \(3, 2\), expected \(3, 1\)"):
        deepntk.loss_and_gradients(mlp_params, np.ones((3, 2)), np.ones((3, 2)), backend="numpy")
    with pytest.raises(InputError, match="unknown loss"):
        deepntk.loss_and_gradients(mlp_params, np.ones((3, 2)), np.ones(3), loss="l1", backend="numpy")


def test_cnn_channel_count_must_match():
    params = deepntk.init_params(deepntk.CNN(2, 4, 1, 3, 2.0))
    with pytest.raises(InputError, match=r"expects \(N, 2, 4, 4\)"):
        deepntk.forward(params, np.ones((1, 1, 4, 4)), backend="numpy")
    with pytest.raises(InputError, match=r"expects \(N, 2, 4, 4\)"):
        deepntk.forward(params, np.ones((1, 2, 4, 5)), backend="numpy")


def test_cnn_fixed_pool_is_applied_to_inputs():
    pooled = deepntk.CNN(1, 8, 1, 3, 2.0, pool=2)
    plain = deepntk.CNN(1, 4, 1, 3, 2.0)
    p_pooled = deepntk.init_params(pooled, seed=1)
    p_plain = deepntk.Params(plain, p_pooled.weights, p_pooled.biases)
    X = np.random.default_rng(0).uniform(0.1, 1, size=(2, 1, 8, 8))
    X_small = X.reshape(2, 1, 4, 2, 4, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(deepntk.scaled_ntk(p_pooled, X, backend="numpy"),
                               deepntk.scaled_ntk(p_plain, X_small, backend="numpy"), rtol=TOL["roundoff"])


def test_zero_inputs_are_harmless_at_initialization():
    """docs/numerical-traps.md#zero-inputs: at initialization no gradient passes through an input carrier, so Θ̃ at
    inputs with zero entries (and an all-zero input) is the Gram of the central-difference Jacobian, which takes no
    side on σ'(0), and the limit of Θ̃(x + ε) as ε → 0 (here within 2ε, relative)."""
    L, C_L = 20, 20.0
    params = deepntk.init_params(deepntk.MLP(3, 1, L, C_L), seed=1)
    X = np.random.default_rng(0).uniform(0.1, 1, size=(5, 3))
    X[:3, 0] = 0.0
    X[1, 2] = 0.0
    X[4] = 0.0
    with pytest.warns(TheoryAssumptionWarning):
        theta = deepntk.scaled_ntk(params, X, backend="numpy")[..., 0, 0]
    W, b = params.W, params.b
    h = 1e-5
    columns = []
    for array in (W, b):
        for index in np.ndindex(array.shape):
            outputs = []
            for sign in (1, -1):
                moved = array.copy()
                moved[index] += sign * h
                shifted = params.with_packed(moved, b) if array is W else params.with_packed(W, moved)
                with pytest.warns(TheoryAssumptionWarning):
                    outputs.append(deepntk.forward(shifted, X, backend="numpy")[:, 0])
            columns.append((outputs[0] - outputs[1]) / (2 * h))
    J = np.array(columns).T
    assert_close(theta, J @ J.T / (L * C_L**2), TOL["finite_difference"], "Θ̃ at zero inputs vs finite differences")
    for eps in (1e-4, 1e-6):
        shifted = deepntk.scaled_ntk(params, X + eps, backend="numpy")[..., 0, 0]
        assert relative_error(shifted, theta) < 2 * eps
