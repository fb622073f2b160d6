"""CNN engine on every backend: conv vs direct loops, backprop vs finite differences, NTK vs forward-mode
J·Jᵀ, the per-network identity of docs/finite-depth.md#cnn, and the MLP as the CNN with d = 1, f = 1."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from deepntk.backends.layers import ConvOps
from oracles import (conv_loops, finite_difference_gradient, per_network_kernel, perturbed, reference_forward,
                     tangent_jacobian)
from conftest import TOL, assert_close


def small_cnn(c=2, k=2, f=3, d=4, depth=3, seed=0, C_L=2.5):
    spec = deepntk.CNN(in_channels=c, size=d, outputs=k, depth=depth, C_L=C_L, rho=0.7, beta=1.3, filter_size=f)
    return perturbed(deepntk.init_params(spec, seed=seed), scale=0.3, seed=seed + 3)


def images(N, c=2, d=4, seed=1):
    return np.random.default_rng(seed).uniform(0.1, 1.0, size=(N, c, d, d))


def test_patch_conv_matches_six_nested_loops():
    rng = np.random.default_rng(0)
    for f in (1, 3, 5):
        w = rng.normal(size=(3, 2, f, f))
        b = rng.normal(size=3)
        h = rng.normal(size=(2, 2, 5, 5))
        got = ConvOps(np, f).apply(w, b, h)
        assert_close(got, conv_loops(w, b, h), TOL["reordering"], f"conv f={f}")


def test_fold_is_the_adjoint_of_patches():
    """⟨P(a), c⟩ = ⟨a, Pᵀ(c)⟩ for random a and c: backprop through the conv uses the exact adjoint."""
    rng = np.random.default_rng(1)
    ops = ConvOps(np, 3)
    a = rng.normal(size=(2, 3, 5, 5))
    cols = rng.normal(size=(2, 27, 25))
    assert np.vdot(ops.patches(a), cols) == pytest.approx(np.vdot(a, ops.fold(cols, 5)), rel=TOL["reordering"])


# f = 3 takes the Numba kernels' three-row passes, f = 5 their general loops; d = 2 and 3 give the three-row
# passes no inner row and one.
FILTERS_AND_SIZES = [(3, 5), (5, 5), (3, 2), (3, 3)]


@pytest.mark.parametrize("f, d", FILTERS_AND_SIZES)
def test_forward_matches_direct_conv(backend, f, d):
    params = small_cnn(f=f, d=d)
    X = images(4, d=d)
    assert_close(deepntk.forward(params, X, backend=backend), reference_forward(params, X), TOL["oracle"])


@pytest.mark.parametrize("loss", ["paper", "mse"])
@pytest.mark.parametrize("f, d", FILTERS_AND_SIZES)
def test_backprop_matches_central_finite_differences(backend, loss, f, d):
    params = small_cnn(depth=3, f=f, d=d)
    X = images(3, d=d)
    Y = np.random.default_rng(4).normal(size=(3, 2))
    _, _, grads = deepntk.loss_and_gradients(params, X, Y, loss=loss, backend=backend)
    flat = np.concatenate([np.concatenate([w.ravel(), b.ravel()]) for w, b in zip(grads.weights, grads.biases)])
    assert_close(flat, finite_difference_gradient(params, X, Y, loss), TOL["finite_difference"], "backprop vs finite differences")


@pytest.mark.parametrize("f, d", FILTERS_AND_SIZES)
def test_ntk_matches_explicit_jacobian(backend, f, d):
    params = small_cnn(f=f, d=d, depth=3)
    X1, X2 = images(3, d=d, seed=2), images(2, d=d, seed=3)
    J1, J2 = tangent_jacobian(params, X1), tangent_jacobian(params, X2)
    expected = np.einsum("iap,jbp->ijab", J1, J2) * params.ntk_scale
    assert_close(deepntk.scaled_ntk(params, X1, X2, backend=backend), expected, TOL["oracle"], "cross Gram")
    expected_sym = np.einsum("iap,jbp->ijab", J1, J1) * params.ntk_scale
    assert_close(deepntk.scaled_ntk(params, X1, backend=backend), expected_sym, TOL["oracle"], "symmetric Gram")


def test_paper_init_output_is_exactly_zero(backend):
    spec = deepntk.CNN(in_channels=1, size=6, outputs=2, depth=50, C_L=9.0)
    out = deepntk.forward(deepntk.init_params(spec, seed=2), images(3, c=1, d=6), backend=backend)
    if backend == "cupy":  # no exact zero expected on the GPU (docs/numerical-traps.md)
        assert np.max(np.abs(out)) < 1e-12 * spec.C_L
    else:
        assert np.all(out == 0.0)


@pytest.mark.parametrize("c,k,f,d", [(1, 1, 3, 5), (2, 2, 5, 4)])
def test_paper_init_ntk_equals_per_network_identity(backend, c, k, f, d):
    """docs/finite-depth.md#cnn, per network: Θ̃·LC² = 1 + TX + (L−1)(1 + C²(TX + k·T1)) + Σ_l Σ_ab T_ab(σ(z_r^l))
    T_ab(σ(z_r^l')), with the random channel from a direct convolution and brute-force window counts."""
    L, C = 12, 4.0
    spec = deepntk.CNN(in_channels=c, size=d, outputs=k, depth=L, C_L=C, rho=0.7, beta=1.3, filter_size=f)
    params = deepntk.init_params(spec, seed=5)
    X1, X2 = images(3, c=c, d=d, seed=6), images(2, c=c, d=d, seed=7)
    K = deepntk.scaled_ntk(params, X1, X2, backend=backend)
    assert_close(K, per_network_kernel(params, X1, X2), TOL["identity"], "per-network identity")


def test_mlp_is_the_cnn_with_one_pixel_and_unit_filter(backend):
    d_in, k, L, C = 3, 2, 8, 3.0
    mlp = deepntk.init_params(deepntk.MLP(d_in, k, L, C, rho=0.8, beta=1.1), seed=9)
    mlp = perturbed(mlp, seed=10)
    cnn_spec = deepntk.CNN(in_channels=d_in, size=1, outputs=k, depth=L, C_L=C, rho=0.8, beta=1.1, filter_size=1)
    cnn = deepntk.Params(cnn_spec, [w[:, :, None, None] for w in mlp.weights], list(mlp.biases))
    X = np.random.default_rng(3).uniform(0.1, 1, size=(5, d_in))
    Ximg = X[:, :, None, None]
    assert_close(deepntk.forward(cnn, Ximg, backend=backend), deepntk.forward(mlp, X, backend=backend), TOL["reordering"])
    assert_close(deepntk.scaled_ntk(cnn, Ximg, backend=backend), deepntk.scaled_ntk(mlp, X, backend=backend), TOL["reordering"])
