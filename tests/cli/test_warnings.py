"""What the CLI warns about, and how often: deepntk's own MNIST gives no theory warning, a user's inputs with
zeros give one line, float32 precision one line, and a finite loss blow-up one line naming step and factor."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import deepntk
from deepntk.cli.main import main
from deepntk.engine.experiments.datasets import load_mnist, write_idx
from deepntk.engine.trainer import TrainSettings, train
from deepntk.engine.training import LossGrowthWarning, gradient_descent
from deepntk.base.validate import TheoryAssumptionWarning


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def warning_lines(err: str, text: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("Warning:") and text in line]


@pytest.fixture
def mnist_folder(tmp_path):
    """A tiny MNIST test set in IDX files: 40 images, most pixels 0 as in MNIST."""
    rng = np.random.default_rng(0)
    images = (rng.integers(0, 256, size=(40, 28, 28)) * (rng.random((40, 28, 28)) < 0.2)).astype(np.uint8)
    write_idx(str(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte"), (np.arange(40) % 10).astype(np.uint8))
    return str(tmp_path)


def test_deepntk_mnist_gives_no_theory_warning(mnist_folder, recwarn):
    data = load_mnist(mnist_folder, pool=4, download=False)
    assert np.any(data.X_train == 0)
    params = deepntk.init_params(deepntk.MLP(49, 10, 3, 2.0), seed=0)
    deepntk.scaled_ntk(params, data.X_train[:5], data.X_test, backend="numpy")
    assert not [w for w in recwarn if issubclass(w.category, TheoryAssumptionWarning)]
    with pytest.warns(TheoryAssumptionWarning, match="entries <= 0"):  # the same pixels as the user's own array
        deepntk.scaled_ntk(params, data.X_train[:5].copy(), backend="numpy")


def test_mnist_in_the_cli_gives_no_theory_warning(mnist_folder, tmp_path, capsys):
    code, _, err = run(["train", "--dataset", "mnist", "--data-dir", mnist_folder, "--pool", "4", "--train-size",
                        "20", "--test-size", "5", "--depth", "3", "--C-L", "2", "--steps", "1", "--eta", "0.1",
                        "--backend", "numpy", "-o", str(tmp_path / "t.npz")], capsys)
    assert code == 0, err
    assert not warning_lines(err, "x > 0"), err


def test_users_inputs_with_zeros_give_one_warning_line(tmp_path, capsys):
    p, x = str(tmp_path / "p.npz"), str(tmp_path / "x.npy")
    X = np.random.default_rng(0).uniform(0.1, 1, size=(6, 2))
    X[:2, 0] = 0.0
    np.save(x, X)
    assert main(["init", "--depth", "4", "--C-L", "3", "-o", p]) == 0
    code, _, err = run(["ntk", p, "--x1", x, "--x2", x, "--backend", "numpy", "-o", str(tmp_path / "K.npy")], capsys)
    assert code == 0 and len(warning_lines(err, "x > 0")) == 1, err


def test_float32_precision_warning_is_printed_once(tmp_path, capsys):
    code, _, err = run(["train", "--dataset", "toy", "--depth", "3", "--C-L", "1e5", "--dtype", "float32", "--steps",
                        "1", "--eta", "0.01", "--backend", "numpy", "-o", str(tmp_path / "t.npz")], capsys)
    assert code == 0, err
    assert len(warning_lines(err, "float32 resolves the output only")) == 1, err


def toy_files(tmp_path):
    p, x, y = (str(tmp_path / name) for name in ("p.npz", "x.npy", "y.npy"))
    X = np.random.default_rng(0).uniform(0.1, 1, size=(20, 3))
    np.save(x, X)
    np.save(y, X[:, :1] * X[:, 1:2])
    deepntk.init_params(deepntk.MLP(3, 1, 10, 4.0), seed=0).save(p)
    return p, x, y


def test_a_finite_loss_blow_up_warns_once_naming_step_and_factor(tmp_path, capsys):
    p, x, y = toy_files(tmp_path)
    out = str(tmp_path / "t.npz")
    code, _, err = run(["train", p, "--x", x, "--y", y, "--steps", "4", "--eta", "1e6", "--backend", "numpy", "-o",
                        out], capsys)
    losses = json.load(open(os.path.splitext(out)[0] + ".metrics.json"))["history"]["batch_loss"]
    assert code == 0 and np.all(np.isfinite(losses)) and losses[1] > 1e3 * losses[0]
    lines = warning_lines(err, "the loss grew")
    assert len(lines) == 1, err
    assert f"at step 1, {losses[1] / losses[0]:.3g} × its start ({losses[0]:.3g})" in lines[0], lines


def test_the_api_warns_once_per_run_about_a_blow_up(tmp_path):
    params = deepntk.init_params(deepntk.MLP(3, 1, 10, 4.0), seed=0)
    X = np.random.default_rng(0).uniform(0.1, 1, size=(20, 3))
    Y = X[:, :1] * X[:, 1:2]
    with pytest.warns(LossGrowthWarning, match=r"at step 1, .* × its start") as caught:
        result = gradient_descent(params, X, Y, 3, eta=1e6, backend="numpy")
    assert result.losses[1] > 1e3 * result.losses[0] and len(caught) == 1
    with pytest.warns(LossGrowthWarning) as caught:  # full batch: the trainer calls the backend once per step
        train(params, X, Y, TrainSettings(steps=4, eta=1e6), backend="numpy")
    assert len([w for w in caught if issubclass(w.category, LossGrowthWarning)]) == 1


def test_a_stable_run_does_not_warn(recwarn):
    params = deepntk.init_params(deepntk.MLP(3, 1, 10, 4.0), seed=0)
    X = np.random.default_rng(0).uniform(0.1, 1, size=(20, 3))
    result = gradient_descent(params, X, X[:, :1] * X[:, 1:2], 20, eta=0.5, backend="numpy")
    assert result.losses[-1] < result.losses[0]
    assert not [w for w in recwarn if issubclass(w.category, LossGrowthWarning)]
