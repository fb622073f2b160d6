"""Gradient descent: one step against a hand computation, and against the kernel-flow prediction
(docs/training.md#kernel-flow)."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from deepntk.base.errors import InputError
from deepntk.engine.training import gradient_descent, raw_learning_rate
from oracles import perturbed
from conftest import TOL, assert_close


def setup(d_out=1, L=6, C=3.0):
    params = perturbed(deepntk.init_params(deepntk.MLP(2, d_out, L, C), seed=2), scale=0.2, seed=3)
    X = np.random.default_rng(4).uniform(0.1, 1, size=(7, 2))
    Y = np.random.default_rng(5).normal(size=(7, d_out))
    return params, X, Y


@pytest.mark.parametrize("loss", ["paper", "mse"])
def test_one_step_equals_hand_computed_update(backend, loss):
    params, X, Y = setup(d_out=2)
    lr = 1e-3
    result = gradient_descent(params, X, Y, 1, lr=lr, loss=loss, backend=backend)
    _, _, grads = deepntk.loss_and_gradients(params, X, Y, loss=loss, backend="numpy")
    for new, old, g in zip(result.params.weights + result.params.biases, params.weights + params.biases,
                           grads.weights + grads.biases):
        assert_close(new, old - lr * g, TOL["identity"], "θ − lr·∇ℒ")
    assert len(result.losses) == 2 and result.losses[1] < result.losses[0]


def test_one_step_follows_the_kernel_flow_to_second_order():
    """f(θ − η/(LC²)·∇ℒ) − f(θ) = −(η/N)·Θ̃(x, X)(f(X) − Y) + O(η²): halving η quarters the remainder."""
    params, X, Y = setup(d_out=2, L=8, C=4.0)
    x_test = np.array([[0.4, 0.7], [0.9, 0.2]])
    f0 = deepntk.forward(params, x_test, backend="numpy")
    residual = deepntk.forward(params, X, backend="numpy") - Y
    theta = deepntk.scaled_ntk(params, x_test, X, backend="numpy")  # (2, 7, k, k)
    remainders = []
    for eta in (1e-4, 5e-5):
        moved = gradient_descent(params, X, Y, 1, eta=eta, loss="paper", backend="numpy").params
        change = deepntk.forward(moved, x_test, backend="numpy") - f0
        predicted = -(eta / len(X)) * np.einsum("ijab,jb->ia", theta, residual)
        remainders.append(np.max(np.abs(change - predicted)))
        assert np.max(np.abs(change - predicted)) < 0.05 * np.max(np.abs(predicted))
    assert 3.0 < remainders[0] / remainders[1] < 5.0  # second order in η


def test_step_conventions_and_bad_values():
    spec = deepntk.MLP(2, 1, 10, 5.0)
    assert raw_learning_rate(spec, eta=2.0) == pytest.approx(2.0 / (10 * 25.0))
    assert raw_learning_rate(spec, lr=1e-4) == 1e-4
    with pytest.raises(InputError, match="exactly one"):
        raw_learning_rate(spec, eta=1.0, lr=1.0)
    with pytest.raises(InputError, match="> 0"):
        raw_learning_rate(spec, lr=-1.0)


def test_divergence_stops_with_the_step_named(backend):
    params, X, Y = setup()
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match=r"at step \d+; try a smaller learning rate"):
        gradient_descent(params, X, Y * 1e3, 200, lr=1e6, backend=backend)
