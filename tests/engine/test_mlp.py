"""MLP engine on every backend: forward vs a plain oracle, backprop vs finite differences, NTK vs forward-mode
J·Jᵀ, on perturbed (not only initial) parameters."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from oracles import (finite_difference_gradient, flat_parameters, per_network_kernel, perturbed, reference_forward,
                     tangent_jacobian)
from conftest import RTOL, TOL, assert_close


def small_mlp(d_out, depth=5, C_L=3.0, seed=0):
    spec = deepntk.MLP(d_in=3, d_out=d_out, depth=depth, C_L=C_L, rho=0.8, beta=1.2)
    return perturbed(deepntk.init_params(spec, seed=seed), scale=0.3, seed=seed + 7)


def inputs(n, d=3, seed=1):
    return np.random.default_rng(seed).uniform(0.1, 1.0, size=(n, d))


@pytest.mark.parametrize("d_out", [1, 3])
def test_forward_matches_plain_layer_loop(backend, d_out):
    params = small_mlp(d_out)
    X = inputs(7)
    assert_close(deepntk.forward(params, X, backend=backend), reference_forward(params, X), RTOL[np.dtype("float64")])


@pytest.mark.parametrize("loss", ["paper", "mse"])
@pytest.mark.parametrize("d_out", [1, 3])
def test_backprop_matches_central_finite_differences(backend, loss, d_out):
    params = small_mlp(d_out, depth=4)
    X = inputs(6)
    Y = np.random.default_rng(5).normal(size=(6, d_out))
    value, outputs, grads = deepntk.loss_and_gradients(params, X, Y, loss=loss, backend=backend)
    flat = np.concatenate([np.concatenate([w.ravel(), b.ravel()]) for w, b in zip(grads.weights, grads.biases)])
    oracle = finite_difference_gradient(params, X, Y, loss)
    assert_close(flat, oracle, TOL["finite_difference"], "backprop vs finite differences")
    residual = reference_forward(params, X) - Y
    expected_value = 0.5 * np.sum(residual**2) / 6 if loss == "paper" else np.mean(residual**2)
    assert value == pytest.approx(expected_value, rel=TOL["identity"])


@pytest.mark.parametrize("d_out", [1, 3])
def test_structured_ntk_matches_explicit_jacobian(backend, d_out):
    params = small_mlp(d_out)
    X1, X2 = inputs(5, seed=2), inputs(4, seed=3)
    J1 = tangent_jacobian(params, X1)
    J2 = tangent_jacobian(params, X2)
    assert J1.shape[-1] == flat_parameters(params).size
    explicit = np.einsum("iap,jbp->ijab", J1, J2) * params.ntk_scale
    assert_close(deepntk.scaled_ntk(params, X1, X2, backend=backend), explicit, TOL["oracle"], "cross Gram")
    explicit_sym = np.einsum("iap,jbp->ijab", J1, J1) * params.ntk_scale
    assert_close(deepntk.scaled_ntk(params, X1, backend=backend), explicit_sym, TOL["oracle"], "symmetric Gram")


def test_float32_tracks_float64(backend):
    params = small_mlp(2)
    X = inputs(6)
    K64 = deepntk.scaled_ntk(params, X, backend=backend)
    K32 = deepntk.scaled_ntk(params.astype("float32"), X, backend=backend)
    assert K32.dtype == np.float32
    assert_close(K32, K64, RTOL[np.dtype("float32")], "float32 NTK")
    f64 = deepntk.forward(params, X, backend=backend)
    f32 = deepntk.forward(params.astype("float32"), X, backend=backend)
    assert_close(f32, f64, RTOL[np.dtype("float32")], "float32 forward")


def test_paper_init_output_is_exactly_zero(backend):
    spec = deepntk.MLP(d_in=2, d_out=3, depth=300, C_L=7.0)
    params = deepntk.init_params(spec, seed=4)
    out = deepntk.forward(params, inputs(9, d=2), backend=backend)
    if backend == "cupy":
        assert np.max(np.abs(out)) < 1e-12 * spec.C_L
    else:
        assert np.all(out == 0.0)


@pytest.mark.parametrize("d_out", [1, 3])
def test_paper_init_ntk_equals_per_network_identity(backend, d_out):
    """docs/finite-depth.md#mlp, exact per network: Θ̃ = [(x·x'+1) + (L−1)(C²(x·x'+k)+1) + Σ_l σ(z_r^l(x))σ(z_r^l(x'))]
    /(LC²), with the random unit's activations from a plain layer loop."""
    L, C = 40, 6.0
    spec = deepntk.MLP(d_in=2, d_out=d_out, depth=L, C_L=C, rho=0.9, beta=1.1)
    params = deepntk.init_params(spec, seed=11)
    X1, X2 = inputs(4, d=2, seed=8), inputs(3, d=2, seed=9)
    K = deepntk.scaled_ntk(params, X1, X2, backend=backend)
    assert_close(K, per_network_kernel(params, X1, X2), TOL["identity"], "per-network identity")
