"""An architecture is the places docs/networks.md#adding-an-architecture names: a toy third architecture
(tests/engine/toy_architecture.py: scaled-dense layers z = γ(W a + b) and an `input_scale` field), registered in
`ARCHITECTURES` and `LAYER_OPS` only, runs init, forward, NTK, gradients and GD on every backend (the Numba and
CuPy backends through the reference path, for a layer kind they have no kernels for), and `deepntk init` and
`deepntk simulate` with options generated from its fields and defaults from its study.

Oracles: the toy's layers as plain per-layer loops over the unpacked weights, its Jacobian in forward mode and
its loss gradient by central differences; none shares code with the backends or the toy's layer-ops class."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import deepntk
import toy_architecture
from toy_architecture import GAIN, Toy
from conftest import RTOL, TOL, assert_close
from oracles import flat_parameters, perturbed

from deepntk.analytic import mlp_expected_kernel, mlp_limit_kernel


@pytest.fixture(autouse=True)
def toy_registered():
    toy_architecture.register()
    yield
    toy_architecture.unregister()


def small_toy(d_out=2, depth=4, seed=0, perturb=True):
    spec = Toy(d_in=3, d_out=d_out, depth=depth, C_L=1.5, rho=0.8, beta=1.2, input_scale=0.7)
    params = deepntk.init_params(spec, seed=seed)
    return perturbed(params, scale=0.3, seed=seed + 7) if perturb else params


def inputs(n, d=3, seed=1):
    return np.random.default_rng(seed).uniform(0.1, 1.0, size=(n, d))


# -- oracles: the toy's definition, layer by layer ---------------------------------------------------------------
def oracle_forward(weights, biases, input_scale, X):
    """(outputs (N, k), pre-activations z^1 … z^L, layer inputs a^0 … a^{L-1}) of z^l = γ(W^l a^{l-1} + b^l)."""
    a = input_scale * np.asarray(X, dtype=np.float64)
    zs, acts = [], []
    for w, b in zip(weights, biases):
        acts.append(a)
        z = GAIN * (np.einsum("oi,ni->no", w, a) + b[None, :])
        zs.append(z)
        a = np.where(z > 0, z, 0.0)
    return zs[-1], zs, acts


def oracle_jacobian(params, X):
    """∂f/∂θ (N, k, P) in forward mode, one parameter entry at a time, θ ordered as `flat_parameters`."""
    weights = [np.array(w, dtype=np.float64) for w in params.weights]
    biases = [np.array(b, dtype=np.float64) for b in params.biases]
    _, zs, acts = oracle_forward(weights, biases, params.spec.input_scale, X)
    columns = []
    for layer in range(len(weights)):
        for shape, is_weight in ((weights[layer].shape, True), (biases[layer].shape, False)):
            for index in np.ndindex(shape):
                zdot = np.zeros_like(zs[layer])
                row = index[0]
                zdot[:, row] = GAIN * (acts[layer][:, index[1]] if is_weight else 1.0)
                for later in range(layer + 1, len(weights)):
                    zdot = GAIN * np.einsum("oi,ni->no", weights[later], zdot * (zs[later - 1] > 0))
                columns.append(zdot)
    return np.stack(columns, axis=-1)


def unflatten(spec, theta):
    weights, biases, at = [], [], 0
    for layer in range(1, spec.depth + 1):
        for shape, into in ((spec.weight_shape(layer), weights), (spec.bias_shape(layer), biases)):
            size = int(np.prod(shape))
            into.append(theta[at:at + size].reshape(shape))
            at += size
    return weights, biases


def oracle_loss(spec, theta, X, Y):
    """ℒ = (1/2N) Σ‖f(x) − y‖² (the "paper" loss) at flat parameters θ."""
    f, _, _ = oracle_forward(*unflatten(spec, theta), spec.input_scale, X)
    return 0.5 * np.sum((f - Y) ** 2) / len(X)


def oracle_gradient(spec, theta, X, Y, step=1e-6):
    grad = np.empty_like(theta)
    for i in range(theta.size):
        h = step * max(1.0, abs(theta[i]))
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (oracle_loss(spec, up, X, Y) - oracle_loss(spec, down, X, Y)) / (2 * h)
    return grad


# -- the engine on every backend ---------------------------------------------------------------------------------
def test_forward_matches_the_layer_loop(backend):
    params = small_toy()
    X = inputs(7)
    expected, _, _ = oracle_forward(params.weights, params.biases, 0.7, X)
    assert_close(deepntk.forward(params, X, backend=backend), expected, RTOL[np.dtype("float64")], "toy forward")


def test_scaled_ntk_matches_the_explicit_jacobian(backend):
    params = small_toy()
    X1, X2 = inputs(5, seed=2), inputs(4, seed=3)
    J1, J2 = oracle_jacobian(params, X1), oracle_jacobian(params, X2)
    assert J1.shape[-1] == flat_parameters(params).size
    assert_close(deepntk.scaled_ntk(params, X1, X2, backend=backend),
                 np.einsum("iap,jbp->ijab", J1, J2) / (4 * 1.5**2), TOL["oracle"], "toy cross Gram")
    assert_close(deepntk.scaled_ntk(params, X1, backend=backend),
                 np.einsum("iap,jbp->ijab", J1, J1) / (4 * 1.5**2), TOL["oracle"], "toy symmetric Gram")


def test_loss_gradients_match_central_differences(backend):
    params = small_toy(depth=3)
    X, Y = inputs(6), np.random.default_rng(5).normal(size=(6, 2))
    value, outputs, grads = deepntk.loss_and_gradients(params, X, Y, loss="paper", backend=backend)
    flat = np.concatenate([np.concatenate([w.ravel(), b.ravel()]) for w, b in zip(grads.weights, grads.biases)])
    theta = flat_parameters(params)
    assert_close(flat, oracle_gradient(params.spec, theta, X, Y), TOL["finite_difference"], "toy gradients")
    assert value == pytest.approx(oracle_loss(params.spec, theta, X, Y), rel=TOL["identity"])


def test_gradient_descent_takes_the_oracle_steps(backend):
    params = small_toy(d_out=1, depth=3, seed=2)
    X, Y = inputs(5, seed=4), np.random.default_rng(6).normal(size=(5, 1))
    lr, steps = 0.02, 3
    result = deepntk.gradient_descent(params, X, Y, steps, lr=lr, backend=backend)
    theta = start = flat_parameters(params)
    losses = []
    for _ in range(steps):
        losses.append(oracle_loss(params.spec, theta, X, Y))
        theta = theta - lr * oracle_gradient(params.spec, theta, X, Y)
    losses.append(oracle_loss(params.spec, theta, X, Y))
    assert_close(flat_parameters(result.params) - start, theta - start, TOL["finite_difference"], "toy GD steps")
    assert_close(result.losses, losses, TOL["finite_difference"], "toy GD losses")


def test_paper_init_kernel_is_gain_squared_times_the_mlps(backend):
    """Module docstring of toy_architecture: the toy's draw is the MLP's divided by γ, so its Θ̃ is γ² times the
    MLP's on input_scale·x, network by network (the MLP runs the dense kernels, the toy the reference path)."""
    toy = deepntk.init_params(Toy(d_in=2, d_out=2, depth=30, C_L=4.0, input_scale=0.5), seed=3)
    mlp = deepntk.init_params(deepntk.MLP(d_in=2, d_out=2, depth=30, C_L=4.0), seed=3)
    X = inputs(6, d=2, seed=9)
    assert_close(deepntk.scaled_ntk(toy, X, backend=backend), GAIN**2 * deepntk.scaled_ntk(mlp, 0.5 * X, backend="numpy"),
                 TOL["identity"], "toy vs MLP kernel")


# -- the reference path of the fused backends --------------------------------------------------------------------
def fused_launch_refused(*args, **kwargs):
    raise AssertionError("a fused kernel was asked for a layer kind it does not have")


def fallback_backend(name, monkeypatch):
    """The Numba backend, or the CuPy backend on the host claiming its kernels, with every fused kernel refused:
    a layer kind without kernels must run the reference array code."""
    if name == "numba":
        pytest.importorskip("numba", reason="the Numba backend needs numba")
        from deepntk.backends import numba_backend

        monkeypatch.setattr(numba_backend, "fused_kernel", fused_launch_refused)
        monkeypatch.setattr(numba_backend, "_kernels", fused_launch_refused)
        return numba_backend.NumbaBackend()
    from deepntk.backends import cupy_backend

    on_host = cupy_backend.CupyBackend(xp=np)
    on_host.kernels_available = True  # as on a GPU: only the layer kind can send it to the reference path
    monkeypatch.setattr(cupy_backend, "_kernel", fused_launch_refused)
    return on_host


@pytest.mark.parametrize("name", ["numba", "cupy-on-host"])
def test_fused_backends_run_an_unknown_layer_kind_through_the_reference_path(monkeypatch, name):
    backend = fallback_backend(name, monkeypatch)
    params = small_toy(d_out=1, depth=3)
    X, Y = inputs(5), np.random.default_rng(5).normal(size=(5, 1))
    J = oracle_jacobian(params, X)
    kernel = np.einsum("iap,jbp->ijab", J, J) / (3 * 1.5**2)
    theta = flat_parameters(params)
    gradient = oracle_gradient(params.spec, theta, X, Y)
    expected, _, _ = oracle_forward(params.weights, params.biases, 0.7, X)
    assert_close(deepntk.forward(params, X, backend=backend), expected, TOL["oracle"], "forward")
    assert_close(deepntk.scaled_ntk(params, X, backend=backend), kernel, TOL["oracle"], "NTK")
    ensemble = deepntk.stack_params([params, small_toy(d_out=1, depth=3, seed=4)])
    assert_close(deepntk.scaled_ntk(ensemble, X, backend=backend)[0], kernel, TOL["oracle"], "ensemble NTK")
    _, _, grads = deepntk.loss_and_gradients(params, X, Y, backend=backend)
    flat = np.concatenate([np.concatenate([w.ravel(), b.ravel()]) for w, b in zip(grads.weights, grads.biases)])
    assert_close(flat, gradient, TOL["finite_difference"], "gradients")
    trained = deepntk.gradient_descent(params, X, Y, 1, lr=0.02, backend=backend).params
    assert_close(flat_parameters(trained) - theta, -0.02 * gradient, TOL["finite_difference"], "GD step")


# -- the command line: options from the toy's fields, defaults from its study -------------------------------------
def test_the_options_come_from_the_spec_fields():
    from deepntk.cli.arch import merged_options

    options = merged_options()
    scale = options["input_scale"]
    assert (scale.flags, scale.type, scale.preset, scale.field) == (("--input-scale",), float, 1.0, "input_scale")
    assert scale.help == "Toy: fixed factor on the inputs before the first layer."
    assert options["outputs"].flags == ("--outputs", "--d-out")  # the MLP's d_out, the CNN's outputs, the toy's d_out


def test_an_option_declared_twice_must_agree(monkeypatch):
    from dataclasses import dataclass

    from deepntk.cli.arch import merged_options
    from deepntk.engine.architectures import ARCHITECTURES, spec_field

    @dataclass(frozen=True)
    class Other(Toy):
        d_in: int = spec_field("Input dimension.", preset=3)

    monkeypatch.setitem(ARCHITECTURES, "other", Other)
    with pytest.raises(TypeError, match="--d-in"):
        merged_options()


def test_init_and_simulate_take_the_toys_options_and_study(tmp_path):
    done = toy_architecture.run_cli(["init", "--arch", "toy", "--d-in", "3", "--outputs", "2", "--input-scale", "0.5",
                                     "--depth", "6", "--C-L", "2", "-o", "p.npz"], tmp_path)
    assert done.returncode == 0, done.stderr
    spec = deepntk.load_params(str(tmp_path / "p.npz")).spec
    assert spec == Toy(d_in=3, d_out=2, depth=6, C_L=2.0, rho=1.0, beta=1.0, input_scale=0.5)

    done = toy_architecture.run_cli(["simulate", "--arch", "toy", "--seeds", "2", "--input-scale", "0.5",
                                     "--backend", "numpy", "-o", "out"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "deepntk simulate: TOY Gram of 4 random inputs" in done.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["depth"] for row in results["depths"]] == [20, 40, 80]  # the toy's study, not the MLP's or CNN's
    assert results["config"]["input_scale"] == 0.5 and results["config"]["points"] == 4
    X, _, _ = Toy.study.inputs(Toy(d_in=2, d_out=1, depth=2, C_L=1.0), 4, 0)
    shallow = np.load(tmp_path / "out" / "depth-20.npz")
    spec = Toy(d_in=2, d_out=1, depth=20, C_L=400.0, input_scale=0.5)
    for seed in (0, 1):  # (at L = 80 the oracle's Jacobian takes seconds)
        J = oracle_jacobian(deepntk.init_params(spec, seed=seed), X)
        assert_close(shallow["kernels"][seed], np.einsum("iap,jbp->ijab", J, J) / (20 * 400.0**2), TOL["oracle"],
                     f"stored kernel of seed {seed}")
    for depth in (20, 80):
        stored = np.load(tmp_path / "out" / f"depth-{depth}.npz")
        assert_close(stored["limit"], GAIN**2 * mlp_limit_kernel(0.5 * X, d_out=1), TOL["roundoff"], "stored limit")
        assert_close(stored["expected"], GAIN**2 * mlp_expected_kernel(0.5 * X, depth=depth, C_L=float(depth) ** 2),
                     TOL["roundoff"], f"stored expectation at L = {depth}")

    shown = toy_architecture.run_cli(["simulate", "--help"], tmp_path).stdout
    assert "--input-scale FLOAT" in shown and "toy: 20,40,80" in shown and "[mlp|cnn|wide-mlp|toy]" in shown
