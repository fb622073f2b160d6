"""`deepntk compare params` and `deepntk.compare_with_theory`: a saved network against Θ̃^∞ and E Θ̃ at its own
(L, C_L), the numbers recomputed here from the scaled NTK and the closed-form kernels block by block."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from deepntk.analytic import mlp_expected_kernel, mlp_limit_kernel
from deepntk.cli.main import main
from deepntk.base.errors import InputError
from conftest import TOL

L, C_L, K_OUT = 12, 30.0, 2


def block_errors(theta, reference):
    """‖Θ̃(x, x') − r·I_k‖_F / ‖r·I_k‖_F, written out pair by pair."""
    out = np.empty(reference.shape)
    for i in range(reference.shape[0]):
        for j in range(reference.shape[1]):
            target = reference[i, j] * np.eye(theta.shape[-1])
            out[i, j] = np.sqrt(np.sum((theta[i, j] - target) ** 2)) / np.sqrt(np.sum(target**2))
    return out


@pytest.fixture
def saved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--arch", "mlp", "--d-in", "2", "--d-out", str(K_OUT), "--depth", str(L), "--C-L", str(C_L),
                 "--seed", "3", "-o", "params.npz"]) == 0
    X = np.random.default_rng(5).uniform(0.1, 1, size=(5, 2))
    np.save("X.npy", X)
    np.save("X2.npy", X[:3] + 0.05)
    np.save("bad.npy", np.ones((4, 3)))
    return deepntk.load_params("params.npz"), X


def test_one_network_against_numbers_computed_here(saved):
    params, X = saved
    theta = deepntk.scaled_ntk(params, X, backend="numpy")
    upper = np.triu_indices(len(X))  # each unordered pair once
    limit = mlp_limit_kernel(X, d_out=K_OUT)
    expected = mlp_expected_kernel(X, depth=L, C_L=C_L, d_out=K_OUT)
    err_limit = block_errors(theta, limit)[upper]
    err_expected = block_errors(theta, expected)[upper]
    offsets = (np.einsum("ijaa->ij", theta) / K_OUT - limit)[upper]
    result = deepntk.compare_with_theory(params, X, backend="numpy")
    assert (result.depth, result.C_L, result.outputs, result.pairs, result.networks) == (L, C_L, K_OUT, 15, 1)
    np.testing.assert_allclose([result.error_limit, result.error_expected, result.offset],
                               [err_limit.mean(), err_expected.mean(), offsets.mean()], rtol=TOL["identity"])
    np.testing.assert_allclose([result.max_error_limit, result.max_error_expected],
                               [err_limit.max(), err_expected.max()], rtol=TOL["identity"])
    np.testing.assert_allclose(result.expected_offset, np.mean((expected - limit)[upper]), rtol=TOL["identity"])
    assert result.predicted_offset == 1 / C_L**2
    assert 1e-3 < result.error_limit < 1  # a network this shallow is visibly off the limit
    # One network is one draw: the spread over its correlated input pairs is no interval for another draw.
    assert np.all(np.isnan([*result.error_limit_interval, *result.error_expected_interval, result.offset_ci]))


def test_an_ensemble_gives_intervals_over_its_networks(saved):
    _, X = saved
    spec = deepntk.MLP(d_in=2, d_out=K_OUT, depth=L, C_L=C_L)
    seeds = deepntk.init_params(spec, seeds=range(4))
    X2 = X[:3] + 0.05
    thetas = deepntk.scaled_ntk(seeds, X, X2, backend="numpy")
    limit = mlp_limit_kernel(X, X2, d_out=K_OUT)
    per_network = [block_errors(theta, limit).mean() for theta in thetas]
    result = deepntk.compare_with_theory(seeds, X, X2, backend="numpy")
    assert (result.networks, result.pairs) == (4, 15)
    np.testing.assert_allclose(result.error_limit, np.mean(per_network), rtol=TOL["identity"])
    low, high = result.error_limit_interval  # over the 4 networks: around their mean, not degenerate
    assert 0 <= low < result.error_limit < high < np.inf
    assert result.offset_ci > 0


def test_the_command_prints_the_comparison(saved, capsys):
    params, X = saved
    assert main(["compare", "params", "params.npz", "--x1", "X.npy", "--x2", "X2.npy", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    result = deepntk.compare_with_theory(params, X, np.load("X2.npy"), backend="numpy")
    assert f"L = {L}, C_L = 30, k = {K_OUT}; 15 input pairs" in out and "one network, so no interval" in out
    assert f"{result.error_limit:.3e}" in out and f"{result.error_expected:.3e}" in out and "interval]" not in out


def test_several_params_files_are_one_ensemble_with_intervals(saved, capsys):
    _, X = saved
    for seed in (4, 5, 6, 7):
        assert main(["init", "--arch", "mlp", "--d-in", "2", "--d-out", str(K_OUT), "--depth", str(L), "--C-L",
                     str(C_L), "--seed", str(seed), "-o", f"p{seed}.npz"]) == 0
    capsys.readouterr()
    files = ["params.npz", "p4.npz", "p5.npz", "p6.npz", "p7.npz"]
    assert main(["compare", "params", *files, "--x1", "X.npy", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    networks = [deepntk.load_params(p) for p in files]
    result = deepntk.compare_with_theory(deepntk.stack_params(networks), X, backend="numpy")
    low, high = result.error_limit_interval
    assert "5 networks, 95% intervals over them" in out and f"{result.error_limit:.3e} [{low:.1e}, {high:.1e}]" in out
    assert 0 <= low < result.error_limit < high < np.inf  # five networks bound it (coverage: test_stats.py)


@pytest.mark.parametrize("argv,message", [
    (["params.npz", "--x1", "bad.npy"], "X1 has shape (4, 3); this MLP expects (N, 2)"),
    (["params.npz", "--x1", "X.npy", "--x2", "bad.npy"], "X2 has shape (4, 3)"),
    (["missing.npz", "--x1", "X.npy"], "params file 'missing.npz' does not exist"),
    (["params.npz", "--x1", "missing.npy"], "missing.npy"),
])
def test_bad_input_is_one_line_and_exit_2(saved, capsys, argv, message):
    code = main(["compare", "params"] + argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err, (code, out, err)


def test_the_api_refuses_what_is_not_a_network(saved):
    _, X = saved
    with pytest.raises(InputError, match="params must be a deepntk.Params"):
        deepntk.compare_with_theory({"W1": 1}, X)
