"""The wide ReLU MLP in the NTK parameterization (`deepntk.WideMLP`, docs/networks.md#the-wide-mlp): its forward
pass, NTK, gradients and GD step on the engine's reference path against independent NumPy loops and central
differences, numpy against numba, its empirical NTK against the infinite-width Θ^L, and the CLI."""

import numpy as np
import pytest

import deepntk
from deepntk.analytic import wide_ntk_kernel
from deepntk.base.validate import TheoryAssumptionWarning
from deepntk.cli.main import main
from tests.conftest import TOL, assert_close

SIGMA_B2 = 0.1  # non-zero, so the biases' scale enters every check


def loop_outputs(spec, weights, biases, X):
    """The network written out layer by layer from its definition, sharing no code with the engine: z^1 =
    √(σ_w²/d_in) W^1 x + σ_b b^1, z^l = √(σ_w²/fan_in) W^l relu(z^{l-1}) + σ_b b^l, output z^{L+1}."""
    a = np.asarray(X, dtype=float)
    for layer, (w, b) in enumerate(zip(weights, biases)):
        z = np.sqrt(spec.sigma_w2 / w.shape[1]) * a @ w.T + np.sqrt(spec.sigma_b2) * b
        a = np.maximum(z, 0.0)
    return z


def flat(params):
    return np.concatenate([np.concatenate([w.ravel(), b.ravel()]) for w, b in zip(params.weights, params.biases)])


def unflat(spec, theta):
    weights, biases, at = [], [], 0
    for layer in range(1, spec.weight_layers + 1):
        for shape, into in ((spec.weight_shape(layer), weights), (spec.bias_shape(layer), biases)):
            size = int(np.prod(shape))
            into.append(theta[at:at + size].reshape(shape))
            at += size
    return weights, biases


def central_jacobian(spec, params, X, h=1e-6):
    """(N·k, P): ∂f/∂θ by central differences of `loop_outputs`."""
    theta = flat(params)
    columns = []
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = h
        plus = loop_outputs(spec, *unflat(spec, theta + step), X)
        minus = loop_outputs(spec, *unflat(spec, theta - step), X)
        columns.append(((plus - minus) / (2 * h)).ravel())
    return np.stack(columns, axis=-1)


@pytest.fixture
def small():
    spec = deepntk.WideMLP(d_in=3, d_out=2, width=8, depth=2, sigma_b2=SIGMA_B2)
    X = np.random.default_rng(1).normal(size=(4, 3))
    return spec, deepntk.init_params(spec, seed=0), X


def test_spec_counts_hidden_layers_as_the_closed_form():
    spec = deepntk.WideMLP(d_in=3, d_out=1, width=16, depth=2)
    assert spec.weight_layers == 3 and spec.ntk_scale == 1.0
    assert spec.parameter_count() == (16 * 3 + 16) + (16 * 16 + 16) + (16 + 1)


def test_forward_matches_a_numpy_layer_loop(small):
    spec, params, X = small
    expected = loop_outputs(spec, params.weights, params.biases, X)
    assert_close(deepntk.forward(params, X, backend="numpy"), expected, TOL["roundoff"], "forward")


def test_ntk_matches_a_central_difference_jacobian_gram(small):
    spec, params, X = small
    J = central_jacobian(spec, params, X)
    N, k = X.shape[0], spec.d_out
    expected = (J @ J.T).reshape(N, k, N, k).transpose(0, 2, 1, 3)  # the engine's (N1, N2, k, k)
    assert_close(deepntk.scaled_ntk(params, X, backend="numpy"), expected, TOL["finite_difference"], "NTK")


def test_gradients_match_central_differences(small):
    spec, params, X = small
    Y = np.random.default_rng(2).normal(size=(X.shape[0], spec.d_out))

    def loss(theta):  # the paper's loss (1/2N) Σ‖f − y‖², written here
        return 0.5 * np.mean(np.sum((loop_outputs(spec, *unflat(spec, theta), X) - Y) ** 2, axis=1))

    theta, h = flat(params), 1e-6
    numeric = np.array([(loss(theta + h * e) - loss(theta - h * e)) / (2 * h) for e in np.eye(theta.size)])
    _, _, grads = deepntk.loss_and_gradients(params, X, Y, backend="numpy")
    analytic = np.concatenate([np.concatenate([w.ravel(), b.ravel()])
                               for w, b in zip(grads.weights, grads.biases)])
    assert_close(analytic, numeric, TOL["finite_difference"], "gradients")


def test_one_gd_step_is_the_hand_step(small):
    spec, params, X = small
    Y = np.random.default_rng(3).normal(size=(X.shape[0], spec.d_out))
    lr = 0.05
    _, _, grads = deepntk.loss_and_gradients(params, X, Y, backend="numpy")
    hand = [w - lr * g for w, g in zip(params.weights, grads.weights)]
    trained = deepntk.gradient_descent(params, X, Y, 1, lr=lr, backend="numpy").params
    for layer, (got, want) in enumerate(zip(trained.weights, hand), start=1):
        assert_close(got, want, TOL["exact"] * 10, f"W{layer}")
    # the scaled step η is the raw step here (ntk_scale = 1)
    by_eta = deepntk.gradient_descent(params, X, Y, 1, eta=lr, backend="numpy").params
    assert_close(by_eta.W, trained.W, TOL["exact"], "eta step")


def test_numpy_and_numba_agree(small):
    pytest.importorskip("numba", reason="the numba extra is not installed")
    spec, params, X = small
    assert_close(deepntk.forward(params, X, backend="numba"), deepntk.forward(params, X, backend="numpy"),
                 TOL["identity"], "forward")
    assert_close(deepntk.scaled_ntk(params, X, backend="numba"), deepntk.scaled_ntk(params, X, backend="numpy"),
                 TOL["identity"], "NTK")


def test_empirical_ntk_tends_to_the_infinite_width_kernel():
    """At width n the empirical NTK's relative (Frobenius) error against Θ^L is O(1/√n). Measured at n = 2048,
    L = 2, σ_b² = 0.1 on these inputs over seeds 0-15: mean 0.041, sd 0.022 per seed. The bound 4/√n = 0.088 on
    the mean of 4 seeds sits (0.088 − 0.041)/(0.022/√4) ≈ 4.3 standard errors above the expected mean (a
    correct network fails with probability ≈ 1e-5); a wrong depth count (the network against Θ³: mean error
    0.28, sd 0.029) or a missing √(σ_w²/n) factor (error ≈ 1) exceeds it many times over."""
    X = np.random.default_rng(1).normal(size=(4, 3))
    theory = wide_ntk_kernel(X, depth=2, sigma_b2=SIGMA_B2)
    width = 2048
    errors = []
    for seed in range(4):
        spec = deepntk.WideMLP(d_in=3, d_out=1, width=width, depth=2, sigma_b2=SIGMA_B2)
        K = deepntk.scaled_ntk(deepntk.init_params(spec, seed=seed), X, backend="numpy")[:, :, 0, 0]
        errors.append(np.linalg.norm(K - theory) / np.linalg.norm(theory))
    assert np.mean(errors) < 4 / np.sqrt(width), errors


def test_non_positive_inputs_raise_no_theory_warning(small, recwarn):
    spec, params, X = small
    assert np.any(X <= 0)
    deepntk.forward(params, X, backend="numpy")
    assert not [w for w in recwarn if issubclass(w.category, TheoryAssumptionWarning)]


def test_cli_init_and_ntk(tmp_path, capsys):
    p, x, out = str(tmp_path / "p.npz"), str(tmp_path / "X.npy"), str(tmp_path / "K.npy")
    X = np.random.default_rng(0).normal(size=(5, 2))
    np.save(x, X)
    assert main(["init", "--arch", "wide-mlp", "--width", "64", "--depth", "2", "-o", p]) == 0
    assert main(["ntk", p, "--x1", x, "--backend", "numpy", "-o", out]) == 0
    params = deepntk.load_params(p)
    assert params.spec == deepntk.WideMLP(d_in=2, d_out=1, width=64, depth=2)
    J = central_jacobian(params.spec, params, X)
    assert_close(np.load(out).reshape(5, 5), J @ J.T, TOL["finite_difference"], "CLI NTK")


def test_cli_mlp_still_needs_C_L(tmp_path, capsys):
    code = main(["init", "--depth", "3", "-o", str(tmp_path / "p.npz")])
    captured = capsys.readouterr()
    assert code == 2 and "--C-L" in captured.err and not captured.out


def test_cli_simulate_refuses_an_architecture_without_C_L(tmp_path, capsys):
    """simulate's depth study sets C_L per depth; the wide MLP has none: one line, exit 2, not a TypeError."""
    code = main(["simulate", "--arch", "wide-mlp", "--depths", "2", "--seeds", "1", "--points", "3", "--quiet",
                 "-o", str(tmp_path / "s")])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.strip().count("\n") == 0 and "wide-mlp has no C_L" in captured.err
