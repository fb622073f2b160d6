"""The command line: every command's --help, end-to-end runs, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import numpy as np
import pytest
from click.testing import CliRunner

import deepntk
from deepntk.analytic import fig3_inputs, fig3_target, kernel_flow, mlp_limit_kernel
from deepntk.cli.main import cli, main
from oracles import per_network_kernel
from conftest import TOL, assert_close

COMMANDS = ["backends", "init", "ntk", "limit", "gram", "simulate", "train", "reproduce", "predict", "compare",
            "compare depth", "compare trained", "compare spectrum", "compare params", "bench"]


def registered_commands(group, prefix=""):
    """Every command under the click `group`, subcommands as "group sub"."""
    names = []
    for name, command in group.commands.items():
        names.append(prefix + name)
        if isinstance(command, click.Group):
            names += registered_commands(command, f"{prefix}{name} ")
    return names


def test_the_help_list_names_every_command():
    assert sorted(COMMANDS) == sorted(registered_commands(cli))


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    result = CliRunner().invoke(cli, name.split() + ["--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def closed_form_mlp_limit(X):
    """x·x' + 1 + κ with s = |x|²/2 + 1, κ by its arccos form (ρ = β = 1, d_in = 2, d_out = 1)."""
    dot = X @ X.T
    s = np.diag(dot) / 2 + 1
    s12 = dot / 2 + 1
    theta = np.arccos(np.clip(s12 / np.sqrt(np.outer(s, s)), -1, 1))
    return dot + 1 + np.sqrt(np.outer(s, s)) / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_init_ntk_limit_round_trip(tmp_path, capsys):
    p = str(tmp_path / "p.npz")
    x = str(tmp_path / "x.npy")
    np.save(x, np.random.default_rng(0).uniform(0.1, 1, size=(5, 2)))
    assert run(["init", "--d-in", "2", "--depth", "50", "--C-L", "5", "-o", p], capsys)[0] == 0
    k_path, l_path = str(tmp_path / "K.npy"), str(tmp_path / "lim.npy")
    assert run(["ntk", p, "--x1", x, "--backend", "numpy", "-o", k_path], capsys)[0] == 0
    assert run(["limit", "--x1", x, "-o", l_path], capsys)[0] == 0
    K, lim = np.load(k_path), np.load(l_path)
    X = np.load(x)
    # The file's network obeys the exact per-network identity; the limit is the closed form x·x' + 1 + κ.
    assert_close(K, per_network_kernel(deepntk.load_params(p), X, X), TOL["identity"], "ntk of the saved params")
    assert_close(lim, closed_form_mlp_limit(X), TOL["reordering"], "limit")


def test_cnn_init_and_ntk(tmp_path, capsys):
    p = str(tmp_path / "c.npz")
    x = str(tmp_path / "x.npy")
    np.save(x, np.random.default_rng(0).uniform(0.1, 1, size=(3, 1, 8, 8)))
    assert run(["init", "--arch", "cnn", "--size", "8", "--pool", "2", "--depth", "5", "--C-L", "3",
                "-o", p], capsys)[0] == 0
    assert run(["ntk", p, "--x1", x, "-o", str(tmp_path / "K.npy")], capsys)[0] == 0
    assert run(["limit", "--arch", "cnn", "--pool", "2", "--x1", x, "-o", str(tmp_path / "L.npy")], capsys)[0] == 0
    assert np.load(str(tmp_path / "L.npy")).shape == (3, 3)


def test_simulate_end_to_end_and_resume(tmp_path, capsys):
    out = str(tmp_path / "sim")
    argv = ["simulate", "--depths", "20,40,80", "--seeds", "2", "--points", "12", "--backend", "numpy", "-o", out,
            "--quiet"]
    code, stdout, _ = run(argv, capsys)
    assert code == 0
    assert "seeds' fitted slopes" in stdout and "err vs limit" in stdout
    results = json.load(open(os.path.join(out, "results.json")))
    assert [d["depth"] for d in results["depths"]] == [20, 40, 80]
    assert results["depths"][0]["C_L"] == 400.0
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["backend"] == "numpy" and manifest["config"]["seeds"] == 2
    with np.load(os.path.join(out, "arrays.npz")) as arrays:
        assert arrays["kernels"].shape == (3, 2, 1, 12, 1, 1)
    stamp = os.path.getmtime(os.path.join(out, "depth-20.npz"))
    code, stdout2, _ = run(argv + ["--resume"], capsys)
    assert code == 0 and os.path.getmtime(os.path.join(out, "depth-20.npz")) == stamp
    assert stdout2.splitlines()[2:5] == stdout.splitlines()[2:5]  # the stored depths, reported unchanged


def test_simulate_cnn_small(tmp_path, capsys):
    code, stdout, _ = run(["simulate", "--arch", "cnn", "--depths", "10,20", "--seeds", "2", "--points", "2",
                           "--size", "4", "-o", str(tmp_path / "c"), "--quiet"], capsys)
    assert code == 0 and "Gram of 2 random images" in stdout


@pytest.mark.parametrize("argv,message", [
    (["init", "--depth", "1", "--C-L", "5", "-o", "p.npz"], "depth must be >= 2"),
    (["init", "--depth", "10", "--C-L", "0", "-o", "p.npz"], "C_L must be"),
    (["init", "--depth", "10", "--C-L", "5", "--rho", "-1", "-o", "p.npz"], "rho must be"),
    (["init", "--depth", "10", "--C-L", "5", "--init", "xavier", "-o", "p.npz"], "xavier"),
    (["init", "--arch", "cnn", "--filter-size", "4", "--depth", "5", "--C-L", "5", "-o", "p.npz"], "odd"),
    (["init", "--arch", "cnn", "--size", "7", "--pool", "2", "--depth", "5", "--C-L", "5", "-o", "p.npz"],
     "must divide"),
    (["simulate", "--depths", "1,10"], "every depth must be >= 2"),
    (["simulate", "--C-L", "L^x"], "cannot read C_L rule"),
    (["simulate", "--depths", "10,20", "--C-L", "5,6,7"], "3 C_L values for 2 depths"),
    (["simulate", "--train", "--resume"], "--resume reuses stored depths of simulate without --train"),
    (["simulate", "--resume", "--overwrite"], "--resume continues a run and --overwrite replaces it"),
])
def test_usage_errors_are_one_line_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], err


def test_bad_files_are_one_line_errors(tmp_path, capsys):
    p = str(tmp_path / "p.npz")
    main(["init", "--depth", "5", "--C-L", "3", "-o", p])
    np.save(tmp_path / "wrong.npy", np.ones((3, 5)))
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0]]))
    (tmp_path / "x.txt").write_text("1 2")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    np.savez(tmp_path / "incomplete.npz", meta="{}")
    cases = [
        (["ntk", p, "--x1", str(tmp_path / "wrong.npy"), "-o", "K.npy"], "expects (N, 2)"),
        (["ntk", p, "--x1", str(tmp_path / "nan.npy"), "-o", "K.npy"], "NaN"),
        (["ntk", p, "--x1", str(tmp_path / "x.txt"), "-o", "K.npy"], "is not a .npy file"),
        (["ntk", p, "--x1", str(tmp_path / "bad.npy"), "-o", "K.npy"], "cannot read"),
        (["ntk", p, "--x1", str(tmp_path / "missing.npy"), "-o", "K.npy"], "does not exist"),
        (["ntk", str(tmp_path / "incomplete.npz"), "--x1", str(tmp_path / "wrong.npy"), "-o", "K.npy"],
         "invalid architecture"),
        (["ntk", p, "--x1", str(tmp_path / "wrong.npy"), "--backend", "tpu", "-o", "K.npy"], "unknown backend"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (argv, err)


def test_missing_option_is_one_line_exit_2(capsys):
    code, _, err = run(["init", "--depth", "5", "-o", "x.npz"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "Missing option" in err


def test_console_script_runs_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "deepntk.cli.main", "init", "--depth", "0", "--C-L", "1", "-o",
                             str(tmp_path / "p.npz")], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "Error: depth must be >= 2 (weight layers, paper §3.1), got 0"


def test_negative_input_warning_in_cli(tmp_path, capsys):
    p = str(tmp_path / "p.npz")
    x = str(tmp_path / "x.npy")
    np.save(x, np.array([[0.0, 0.5]]))
    main(["init", "--depth", "5", "--C-L", "3", "-o", p])
    code, _, err = run(["ntk", p, "--x1", x, "-o", str(tmp_path / "K.npy")], capsys)
    assert code == 0 and "Warning:" in err and "x > 0" in err


def test_compare_commands_end_to_end(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    code, stdout, _ = run(["compare", "depth", "--depths", "20,40,80", "--C-L", "L^2,5", "--seeds", "3", "--points",
                           "8", "--backend", "numpy", "-o", out, "--quiet"], capsys)
    assert code == 0 and "fitted rate" in stdout and os.path.exists(os.path.join(out, "compare-depth.json"))
    rows = json.load(open(os.path.join(out, "compare-depth.json")))["rows"]
    assert len(rows) == 6 and [r["C_L"] for r in rows[3:]] == [5.0, 5.0, 5.0]
    from deepntk.engine.experiments.stats import t_quantile

    for row in rows:  # the measured offset agrees with its exact expectation (|z| < 4; the CI is t₂ × its SE)
        assert abs(row["offset"] - row["expected_offset"]) < 4 * row["offset_ci"] / t_quantile(2), row
    code, stdout, _ = run(["compare", "trained", "--depths", "20,60", "--steps", "20", "--train-points", "6",
                           "-o", out + "-trained"], capsys)
    assert code == 0 and "kernel drift" in stdout
    code, stdout, _ = run(["compare", "spectrum", "--depths", "20", "--points", "6", "-o", out + "-spectrum"], capsys)
    assert code == 0 and "condition" in stdout


def test_compare_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    out = str(tmp_path / "cmp")
    code, stdout, _ = run(["compare", "spectrum", "--depths", "20", "--points", "6", "-o", out, "--plot"], capsys)
    png = os.path.join(out, "compare-spectrum.png")
    assert code == 0 and os.path.getsize(png) > 1000
    with open(png, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_predict_and_symbolic_limit(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X, Xt = rng.uniform(0.1, 1, size=(10, 2)), rng.uniform(0.1, 1, size=(4, 2))
    for name, array in (("x", X), ("y", X[:, 0] * X[:, 1]), ("xt", Xt), ("yt", Xt[:, 0] * Xt[:, 1])):
        np.save(tmp_path / f"{name}.npy", array)
    out = str(tmp_path / "pred.npy")
    code, stdout, _ = run(["predict", "--x-train", str(tmp_path / "x.npy"), "--y-train", str(tmp_path / "y.npy"),
                           "--x-test", str(tmp_path / "xt.npy"), "--y-test", str(tmp_path / "yt.npy"),
                           "--times", "1,inf", "-o", out], capsys)
    assert code == 0 and "test MSE" in stdout and np.load(out).shape == (2, 4, 1)
    pytest.importorskip("sympy")
    code, stdout, _ = run(["limit", "--symbolic"], capsys)
    assert code == 0 and "d_out" in stdout and "acos" in stdout
    code, _, err = run(["limit"], capsys)
    assert code == 2 and "--symbolic" in err



def test_predict_reports_test_accuracy_where_the_targets_are_classes(tmp_path, capsys):
    """Before: train and test MSE only, though every MNIST number is an accuracy. Now a "test acc" column for
    one-hot targets (argmax) and one 0/1 column (rounded), against kernel regression solved here with
    np.linalg.solve on the limit kernel (its scale, which d_out sets, cancels in K_x K⁻¹ Y); none for regression
    targets."""
    rng = np.random.default_rng(3)
    X, Xt = rng.uniform(0.1, 1, size=(40, 2)), rng.uniform(0.1, 1, size=(30, 2))
    labels, labels_test = [(x[:, 0] > 0.55) + 2 * (x[:, 1] > 0.55) for x in (X, Xt)]
    regression = mlp_limit_kernel(Xt, X) @ np.linalg.solve(mlp_limit_kernel(X), np.eye(4)[labels])
    binary = mlp_limit_kernel(Xt, X) @ np.linalg.solve(mlp_limit_kernel(X), (labels % 2).astype(float))
    cases = {"onehot": (np.eye(4)[labels], np.eye(4)[labels_test], np.mean(regression.argmax(1) == labels_test)),
             "binary": (labels % 2.0, labels_test % 2.0, np.mean((binary > 0.5) == (labels_test % 2))),
             "values": (X[:, 0] * X[:, 1], Xt[:, 0] * Xt[:, 1], None)}
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "xt.npy", Xt)
    for name, (Y, Yt, expected) in cases.items():
        np.save(tmp_path / "y.npy", Y)
        np.save(tmp_path / "yt.npy", Yt)
        code, stdout, _ = run(["predict", "--x-train", str(tmp_path / "x.npy"), "--y-train", str(tmp_path / "y.npy"),
                               "--x-test", str(tmp_path / "xt.npy"), "--y-test", str(tmp_path / "yt.npy"),
                               "--times", "10,inf"], capsys)
        header, *rows = stdout.strip().splitlines()
        assert code == 0 and ("test acc" in header) == (expected is not None), (name, stdout)
        if expected is not None:
            assert 0.25 < expected < 1 and rows[-1].split()[0] == "inf", (name, expected)  # neither trivial
            assert float(rows[-1].split()[3]) == pytest.approx(expected, abs=5e-5), (name, stdout)  # 4 digits


def test_train_on_files_and_resume(tmp_path, capsys):
    p = str(tmp_path / "p.npz")
    main(["init", "--depth", "20", "--C-L", "400", "-o", p])
    X = np.random.default_rng(0).uniform(0.1, 1, size=(12, 2))
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", X[:, :1] * X[:, 1:])
    base = ["train", p, "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"), "--eta", "0.5",
            "--batch-size", "4", "--checkpoint-dir", str(tmp_path / "ck"), "--checkpoint-every", "3", "--quiet"]
    code, stdout, _ = run(base + ["--steps", "6", "-o", str(tmp_path / "a.npz")], capsys)
    assert code == 0 and "trained 6 steps" in stdout
    code, stdout, _ = run(base + ["--steps", "9", "--resume", "-o", str(tmp_path / "b.npz")], capsys)
    assert code == 0 and "trained 9 steps" in stdout
    metrics = json.load(open(tmp_path / "b.metrics.json"))
    assert metrics["resumed_from"] == 6 and len(metrics["history"]["batch_loss"]) == 9
    code, _, err = run(base[:8] + ["--steps", "3", "--lr", "1e-3", "-o", str(tmp_path / "c.npz")], capsys)
    assert code == 2 and "exactly one of --eta" in err
    code, _, err = run(["train", "--dataset", "toy", "--depth", "10", "--C-L", "100", "--steps", "3", "--lr", "1e-4",
                        "--checkpoint-dir", str(tmp_path / "ck"), "--resume", "-o", str(tmp_path / "d.npz")], capsys)
    assert code == 2 and "different configuration" in err


def test_train_toy_dataset_and_divergence(tmp_path, capsys):
    code, stdout, _ = run(["train", "--dataset", "toy", "--depth", "30", "--C-L", "900", "--steps", "40", "--eta", "0.5",
                           "--probe-every", "20", "-o", str(tmp_path / "t.npz"), "--quiet"], capsys)
    assert code == 0 and "train loss" in stdout and "kernel change" in stdout
    code, _, err = run(["train", "--dataset", "toy", "--depth", "30", "--C-L", "900", "--steps", "400", "--lr", "1e3",
                        "-o", str(tmp_path / "diverged.npz"), "--quiet"], capsys)
    assert code == 2 and "try a smaller learning rate" in err


def test_simulate_train_small(tmp_path, capsys):
    code, stdout, _ = run(["simulate", "--train", "--depths", "20,40", "--C-L", "5,50", "--seeds", "1", "--steps", "20",
                           "-o", str(tmp_path / "s"), "--quiet"], capsys)
    assert code == 0 and "kernel drift" in stdout


def test_reproduce_fig5_small(tmp_path, capsys):
    code, stdout, _ = run(["reproduce", "fig5", "-o", str(tmp_path / "f5"), "--no-plot"], capsys)
    assert code == 0 and "per-layer" in stdout
    result = json.load(open(tmp_path / "f5" / "results.json"))
    assert len(result["carrier_minus_C"]) == result["depth"]
    # The trained L = 1000 network against the limit kernel's flow to the same time (2000 steps, t = 1/2 each).
    _, X, _ = fig3_inputs(200)
    x = np.array([result["x"]])
    predicted = kernel_flow(mlp_limit_kernel(X), fig3_target(X), 1000.0, K_test_train=mlp_limit_kernel(x, X))[0, 0]
    assert abs(result["output"] - predicted) < TOL["trained_vs_limit_flow"] * abs(predicted)


def test_bench_names_the_requested_peers_it_did_not_run(tmp_path, monkeypatch, capsys):
    """Before: `bench --peers torch` without torch printed no torch row and not a word why. Now one line below the
    table names it with the pip package, and the JSON records it. The peer is made missing for this process as an
    uninstalled package is (None in sys.modules: its import fails and importlib finds no spec)."""
    blocked = "torch"
    monkeypatch.setitem(sys.modules, blocked, None)
    out = str(tmp_path / "bench.json")
    code, stdout, _ = run(["bench", "--peers", blocked, "--quick", "--backends", "numpy", "--workloads",
                           "mlp-gram-N16", "--repeats", "1", "--quiet", "-o", out], capsys)
    assert code == 0 and f"peers not run: {blocked} (not installed: pip install {blocked})" in stdout, stdout
    report = json.load(open(out))
    assert report["peers_not_run"] == {blocked: f"not installed: pip install {blocked}"}, report["peers_not_run"]
    assert [t["implementation"] for t in report["timings"]] == ["numpy"]
