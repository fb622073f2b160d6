"""Ensembles: E networks in one call equal E single-network calls of the NumPy reference, on every backend."""

from __future__ import annotations

import deepntk
import numpy as np
import pytest
from conftest import TOL, assert_close
from deepntk.backends.registry import get_backend
from deepntk.base.errors import ParamsFileError, SpecError, TrainingDiverged
from deepntk.engine.packed import network_inputs, pack
from oracles import perturbed

NETWORKS = 3
SPECS = {"mlp": deepntk.MLP(2, 2, 30, 4.0), "cnn": deepntk.CNN(1, 5, 2, 12, 3.0)}


def members_and_data(arch):
    """E perturbed networks (distinct, generic weights, so a swapped or repeated network shows) and their data."""
    spec = SPECS[arch]
    members = [perturbed(deepntk.init_params(spec, seed=seed), scale=0.05, seed=seed) for seed in range(NETWORKS)]
    rng = np.random.default_rng(7)
    X = rng.uniform(0.1, 1.0, size=(11,) + spec.input_shape)
    Y = rng.normal(size=(11, spec.outputs))
    return members, X, Y


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_ensemble_forward_gradients_and_ntk_equal_single_reference_calls(backend, arch):
    members, X, Y = members_and_data(arch)
    ensemble = deepntk.stack_params(members)
    outputs = deepntk.forward(ensemble, X, backend=backend)
    values, train_outputs, grads = deepntk.loss_and_gradients(ensemble, X, Y, loss="mse", backend=backend)
    gram = deepntk.scaled_ntk(ensemble, X, backend=backend)
    cross = deepntk.scaled_ntk(ensemble, X, X[:4], backend=backend)
    assert outputs.shape == (NETWORKS, 11, 2) and gram.shape == (NETWORKS, 11, 11, 2, 2)
    assert values.shape == (NETWORKS,) and grads.W.shape == (NETWORKS,) + members[0].W.shape
    for e, params in enumerate(members):
        value, _, single = deepntk.loss_and_gradients(params, X, Y, loss="mse", backend="numpy")
        assert_close(outputs[e], deepntk.forward(params, X, backend="numpy"), TOL["identity"], f"forward {e}")
        assert_close(train_outputs[e], outputs[e], TOL["identity"], f"outputs {e}")
        assert_close(values[e], value, TOL["identity"], f"loss {e}")
        assert_close(grads.W[e], single.W, TOL["identity"], f"dW {e}")
        assert_close(grads.b[e], single.b, TOL["identity"], f"db {e}")
        for got, want in zip(grads.weights[-1][e], single.weights[-1]):
            assert_close(got, want, TOL["identity"], f"last-layer view {e}")
        assert_close(gram[e], deepntk.scaled_ntk(params, X, backend="numpy"), TOL["identity"], f"Gram {e}")
        assert_close(cross[e], deepntk.scaled_ntk(params, X, X[:4], backend="numpy"), TOL["identity"], f"cross {e}")


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_ensemble_training_with_minibatches_equals_single_reference_training(backend, arch):
    members, X, Y = members_and_data(arch)
    engine, reference = get_backend(backend), get_backend("numpy")
    nets = pack(deepntk.stack_params(members))
    Xp = network_inputs(nets, members[0].spec, X)
    batches = [None, np.array([0, 3, 5, 9]), np.array([10, 1, 2]), None, np.array([4, 6, 7, 8])]
    W, b, losses = engine.descend(nets, Xp, Y, "paper", 1e-3, batches)
    assert losses.shape == (len(batches), NETWORKS)
    for e, params in enumerate(members):
        We, be, losses_e = reference.descend(pack(params), Xp, Y, "paper", 1e-3, batches)
        assert_close(W[e], We, TOL["identity"], f"W after training, network {e}")
        assert_close(b[e], be, TOL["identity"], f"b after training, network {e}")
        assert_close(losses[:, e], losses_e, TOL["identity"], f"batch losses, network {e}")


def test_full_batch_gradient_descent_of_an_ensemble(backend):
    members, X, Y = members_and_data("mlp")
    result = deepntk.gradient_descent(deepntk.stack_params(members), X, Y, 4, eta=0.5, backend=backend)
    assert isinstance(result.params, deepntk.Ensemble) and result.losses.shape == (5, NETWORKS)
    for e, params in enumerate(members):
        single = deepntk.gradient_descent(params, X, Y, 4, eta=0.5, backend="numpy")
        assert_close(result.params[e].W, single.params.W, TOL["identity"], f"trained network {e}")
        assert_close(result.losses[:, e], single.losses, TOL["identity"], f"losses of network {e}")


def test_init_params_with_seeds_draws_the_single_seed_networks_exactly():
    spec = SPECS["cnn"]
    ensemble = deepntk.init_params(spec, seeds=[4, 0, 9], dtype="float32")
    assert ensemble.seeds == (4, 0, 9) and ensemble.dtype == np.float32
    for e, seed in enumerate([4, 0, 9]):
        single = deepntk.init_params(spec, seed=seed, dtype="float32")
        assert np.array_equal(ensemble.W[e], single.W) and np.array_equal(ensemble.b[e], single.b)
        assert ensemble[e].seed == seed
        for got, want in zip(ensemble[e].weights, single.weights):
            assert np.array_equal(got, want)


def test_params_are_stored_packed_and_layers_are_views():
    params = deepntk.init_params(deepntk.MLP(3, 2, 6, 2.0), seed=1)
    assert pack(params).W is params.W
    for layer, (w, b) in enumerate(zip(params.weights, params.biases)):
        assert np.shares_memory(w, params.W) and np.shares_memory(b, params.b)
        assert w.shape == params.spec.weight_shape(layer + 1)
    rebuilt = deepntk.Params(params.spec, list(params.weights), list(params.biases))
    assert np.array_equal(rebuilt.W, params.W) and not np.shares_memory(rebuilt.W, params.W)


def test_ensembles_refuse_mixed_or_missing_members():
    a = deepntk.init_params(deepntk.MLP(2, 1, 5, 2.0), seed=0)
    with pytest.raises(SpecError, match="one architecture"):
        deepntk.stack_params([a, deepntk.init_params(deepntk.MLP(2, 1, 6, 2.0))])
    with pytest.raises(SpecError, match="one dtype"):
        deepntk.stack_params([a, a.astype("float32")])
    with pytest.raises(SpecError, match="at least one"):
        deepntk.stack_params([])
    with pytest.raises(TypeError, match="deepntk.Params"):
        deepntk.stack_params([a, a.W])
    with pytest.raises(SpecError, match="not both"):
        deepntk.init_params(a.spec, seed=3, seeds=[1, 2])
    with pytest.raises(SpecError, match="non-negative"):
        deepntk.init_params(a.spec, seeds=[1, -2])
    with pytest.raises(ParamsFileError, match="shape"):
        deepntk.Params.from_packed(a.spec, a.W[:-1], a.b)
    with pytest.raises(TypeError, match="deepntk.Params"):
        deepntk.activations(deepntk.stack_params([a, a]), np.ones((1, 2)))


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_a_diverging_network_is_named(backend):
    members, X, Y = members_and_data("mlp")
    members[1].b[-1, 0] = 1e300  # its output, and so its loss, overflows at the first step
    with pytest.raises(TrainingDiverged, match="network 1 became inf at step 0"):
        deepntk.gradient_descent(deepntk.stack_params(members), X, Y, 2, eta=0.1, backend=backend)
