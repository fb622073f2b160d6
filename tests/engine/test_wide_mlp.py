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
    Y = np.random.default_rng(2).normal(size=(len(X), spec.d_out))
    by = {name: deepntk.loss_and_gradients(params, X, Y, backend=name) for name in ("numpy", "numba")}
    assert_close(by["numba"][0], by["numpy"][0], TOL["identity"], "loss")
    assert_close(by["numba"][2].W, by["numpy"][2].W, TOL["identity"], "∂ℒ/∂W")
    assert_close(by["numba"][2].b, by["numpy"][2].b, TOL["identity"], "∂ℒ/∂b")
    steps = {name: deepntk.gradient_descent(params, X, Y, 3, lr=0.05, backend=name).params for name in by}
    assert_close(steps["numba"].W, steps["numpy"].W, TOL["identity"], "W after 3 GD steps")
    assert not np.allclose(steps["numpy"].W, params.W)  # the steps moved the weights


def test_the_cupy_backend_s_array_code_runs_the_wide_mlp_on_numpy(small, monkeypatch):
    """CupyBackend(xp=numpy): the wide MLP goes through its per-layer (BLAS) reference path, never a fused CUDA
    kernel (each launch would raise here), and equals the NumPy backend on identical weights."""
    from deepntk.backends import cupy_backend

    def no_kernel(name, *args):
        raise AssertionError(f"the wide MLP launched the fused kernel {name}")

    monkeypatch.setattr(cupy_backend, "_kernel", no_kernel)
    backend = cupy_backend.CupyBackend(xp=np)
    spec, params, X = small
    Y = np.random.default_rng(2).normal(size=(len(X), spec.d_out))
    numpy_backend = deepntk.get_backend("numpy")
    assert_close(deepntk.forward(params, X, backend=backend), deepntk.forward(params, X, backend=numpy_backend),
                 TOL["identity"], "forward")
    assert_close(deepntk.scaled_ntk(params, X, backend=backend), deepntk.scaled_ntk(params, X, backend=numpy_backend),
                 TOL["identity"], "NTK")
    got = deepntk.loss_and_gradients(params, X, Y, backend=backend)
    want = deepntk.loss_and_gradients(params, X, Y, backend=numpy_backend)
    assert_close(got[2].W, want[2].W, TOL["identity"], "∂ℒ/∂W")
    stepped = deepntk.gradient_descent(params, X, Y, 3, lr=0.05, backend=backend).params
    assert_close(stepped.W, deepntk.gradient_descent(params, X, Y, 3, lr=0.05, backend=numpy_backend).params.W,
                 TOL["identity"], "W after 3 GD steps")


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


def test_cli_simulate_refuses_the_depth_study_for_the_wide_mlp(tmp_path, capsys):
    """simulate's depth study sets C_L per depth; the wide MLP has none and is studied over --widths: one line,
    exit 2, not a TypeError."""
    code = main(["simulate", "--arch", "wide-mlp", "--depths", "2", "--seeds", "1", "--points", "3", "--quiet",
                 "-o", str(tmp_path / "s")])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.strip().count("\n") == 0 and "--widths" in captured.err


def test_cli_ntk_and_limit_name_the_wide_mlp_s_kernels(tmp_path, capsys):
    """Before: both said Θ̃ / Θ̃^∞ (the deep narrow networks' scaled kernels) for the wide MLP; the labels now
    come from the architecture."""
    p, x = str(tmp_path / "p.npz"), str(tmp_path / "X.npy")
    np.save(x, np.random.default_rng(0).normal(size=(3, 2)))
    assert main(["init", "--arch", "wide-mlp", "--width", "16", "--depth", "2", "-o", p]) == 0
    assert main(["ntk", p, "--x1", x, "--backend", "numpy", "-o", str(tmp_path / "K.npy")]) == 0
    assert main(["limit", "--arch", "wide-mlp", "--depth", "3", "--x1", x, "-o", str(tmp_path / "L.npy")]) == 0
    out = capsys.readouterr().out
    assert ": Θ with shape (3, 3, 1, 1)" in out and ": Θ^L with shape (3, 3)" in out and "Θ̃" not in out
    # Before: limit had no --depth and wrote Θ² whatever the depth meant.
    assert_close(np.load(str(tmp_path / "L.npy")), wide_ntk_kernel(np.load(x), depth=3, exact=True), TOL["identity"],
                 "Θ³")
    # New -o files: an existing one would be refused first (unless --overwrite).
    assert main(["limit", "--arch", "wide-mlp", "--x1", x, "-o", str(tmp_path / "L2.npy")]) == 2
    assert "--depth is required" in capsys.readouterr().err
    p = str(tmp_path / "narrow.npz")
    assert main(["init", "--depth", "3", "--C-L", "2", "-o", p]) == 0
    assert main(["ntk", p, "--x1", x, "--backend", "numpy", "-o", str(tmp_path / "K2.npy")]) == 0
    assert ": Θ̃ with shape" in capsys.readouterr().out


@pytest.mark.parametrize("extra, words", [([], "--dataset needs --depth (weight layers"), (["--depth", "2", "--C-L", "1"],
                                          "--C-L: the wide MLP has no carrier scale"),
                                         (["--depth", "2", "--width", "1"], "width 1 is below its d_in 2")])
def test_cli_train_on_a_dataset_says_what_the_wide_mlp_needs(tmp_path, capsys, extra, words):
    """Before: "--dataset needs --depth and --C-L" (the wide MLP has no C_L, and one given was ignored)."""
    code = main(["train", "--dataset", "toy", "--arch", "wide-mlp", "--steps", "1", "--lr", "0.1", *extra, "-o",
                 str(tmp_path / "t.npz"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2 and words in captured.err and captured.err.strip().count("\n") == 0, captured.err


def test_cli_train_on_a_dataset_trains_the_wide_mlp(tmp_path, capsys):
    out = str(tmp_path / "t.npz")
    assert main(["train", "--dataset", "toy", "--arch", "wide-mlp", "--width", "32", "--depth", "2", "--steps", "5",
                 "--lr", "0.1", "--backend", "numpy", "-o", out, "--quiet"]) == 0
    trained = deepntk.load_params(out)
    assert trained.spec == deepntk.WideMLP(d_in=2, d_out=1, width=32, depth=2)
    assert not np.allclose(trained.W, deepntk.init_params(trained.spec, seed=0).W)


def monte_carlo_kernels(depth, widths, seeds, X):
    """{width: (seeds, N, N)} empirical NTKs of independently drawn wide MLPs (seed offsets keep widths apart)."""
    kernels = {}
    for j, width in enumerate(widths):
        spec = deepntk.WideMLP(d_in=X.shape[1], d_out=1, width=width, depth=depth)
        kernels[width] = np.array([deepntk.scaled_ntk(deepntk.init_params(spec, seed=10_000 * j + s), X,
                                                      backend="numpy")[:, :, 0, 0] for s in range(seeds)])
    return kernels


def rate_and_kernel_z_scores(depth, widths, seeds):
    """(mean slope, its standard error, max |z| of the widest width's mean kernel against Θ^L over the upper
    triangle): each network's relative Frobenius error against Θ^L, its least-squares slope against log n per
    seed (numpy.polyfit, not deepntk.engine.experiments.stats), and the mean kernel's z-scores."""
    X = np.random.default_rng(1).normal(size=(6, 3))
    theory = wide_ntk_kernel(X, depth=depth, exact=True)
    kernels = monte_carlo_kernels(depth, widths, seeds, X)
    errors = np.array([[np.linalg.norm(K - theory) / np.linalg.norm(theory) for K in kernels[n]] for n in widths]).T
    slopes = np.array([np.polyfit(np.log(widths), np.log(e), 1)[0] for e in errors])
    widest = kernels[widths[-1]]
    upper = np.triu_indices(len(X))
    z = (widest.mean(axis=0) - theory) / (widest.std(axis=0, ddof=1) / np.sqrt(seeds))
    return slopes.mean(), slopes.std(ddof=1) / np.sqrt(seeds), np.max(np.abs(z[upper]))


def test_fluctuation_rate_in_width_is_one_half_and_the_mean_kernel_is_the_limit():
    """Issue #33 item 3 at L = 1 (no n×n layer: fast): 48 networks at each of n = 64, 256, 1024.

    Rate: the seeds' mean slope of log(error) against log n, measured −0.46 with per-seed sd 0.27 (standard error
    0.039 at 48 seeds). Test: |slope + 1/2| < 4.5 standard errors; a correct network fails with probability
    ≈ 6e-5 (Student t₄₇). Power: a rate of −1/4 passes only if the estimate lands below −0.325, 1.9 standard
    errors below its mean: power ≈ 0.97.
    Mean kernel: at L = 1 the units are i.i.d. given the inputs, so E Θ = Θ¹ exactly (no 1/n bias). The 21
    upper-triangle entries of the mean over 48 networks at n = 1024 are tested at |z| < 5 (t₄₇: 21 × 1e-5 ≈ 2e-4
    false failures). A kernel off by 10% relative sits ≈ 0.10/0.0093 ≈ 11 standard errors away (measured relative
    standard error of the mean 0.0093): power ≈ 1."""
    slope, stderr, z = rate_and_kernel_z_scores(depth=1, widths=(64, 256, 1024), seeds=48)
    assert abs(slope + 0.5) < 4.5 * stderr, (slope, stderr)
    assert 0.02 < stderr < 0.08, stderr  # the power stated above assumes this spread
    assert z < 5, z


@pytest.mark.slow
def test_the_empirical_ntk_converges_to_theta_L_at_widths_256_to_4096():
    """Issue #33 item 3 at L = 3, n = 256, 1024, 4096, 32 networks each (about a minute: the 4096² weights).

    Rate: measured −0.54 with per-seed sd 0.19 (16 seeds), standard error ≈ 0.034 at 32 seeds. Test: |slope + 1/2|
    < 4.5 standard errors (t₃₁: false failure ≈ 1e-4). Power against a rate of −1/4: the estimate must land below
    −0.346, 2.8 standard errors below −1/4: power ≈ 0.997.
    Mean kernel at n = 4096: the O(1/n) bias of E Θ (of order 1/4096 ≈ 2.4e-4 relative) is ≈ 0.03 standard errors of the mean of
    32 networks (relative standard error measured 0.011 at 16, ≈ 0.0077 at 32); |z| < 6 over the 21 entries (t₃₁:
    21 × 1e-6 false failures). A kernel off by 10% relative is ≈ 13 standard errors away: power ≈ 1."""
    slope, stderr, z = rate_and_kernel_z_scores(depth=3, widths=(256, 1024, 4096), seeds=32)
    assert abs(slope + 0.5) < 4.5 * stderr, (slope, stderr)
    assert 0.015 < stderr < 0.06, stderr
    assert z < 6, z
