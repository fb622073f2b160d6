"""`deepntk predict --gram K.zarr --gram-test Kt.zarr --dataset mnist`: the targets of the images that
`deepntk gram --dataset mnist` stored, read from MNIST-like files in the folder deepntk reads ($DEEPNTK_DATA here),
against kernel regression solved densely with NumPy on the same images; and the one-line refusals of stores whose
images are not the dataset's, or whose columns are not the training store's inputs."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
pytest.importorskip("zarr", reason="the distributed extra (Zarr) is not installed")

from deepntk.analytic import mlp_limit_kernel  # noqa: E402
from deepntk.cli.main import main  # noqa: E402
from deepntk.engine.experiments.datasets import load_mnist, write_idx  # noqa: E402
from conftest import TOL, assert_close  # noqa: E402


def write_mnist_like(folder, seed: int, train: int = 40, test: int = 20) -> None:
    """The four IDX files of an MNIST-shaped dataset of random images, labels cycling through 0…9."""
    os.makedirs(folder)
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"),
                  rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8))
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), (np.arange(count) % 10).astype(np.uint8))


def test_predict_takes_the_targets_of_the_stored_mnist_images(tmp_path, monkeypatch, capsys):
    """Before: `predict --gram` had no --dataset (exit 2, "No such option") and `gram --dataset` could not write
    the test × training store it needs. Now the documented path runs, and its predictions are kernel regression's."""
    monkeypatch.chdir(tmp_path)
    write_mnist_like(tmp_path / "data", seed=2)
    monkeypatch.setenv("DEEPNTK_DATA", str(tmp_path / "data"))
    for split, store in (("train", "K.zarr"), ("test-train", "Kt.zarr")):
        assert main(["gram", "--dataset", "mnist", "--split", split, "--subset", "12", "--store", store,
                     "--workers", "1", "--quiet"]) == 0
    assert main(["predict", "--gram", "K.zarr", "--gram-test", "Kt.zarr", "--dataset", "mnist", "--times", "inf",
                 "-o", "pred.npy"]) == 0
    out = capsys.readouterr().out
    assert "limit Gram 12×12 in Kt.zarr" in out, out
    data = load_mnist(str(tmp_path / "data"), download=False)  # the seeded shuffle's first 12 of each split
    X, Y, Xt, Yt = data.X_train[:12], data.Y_train[:12], data.X_test[:12], data.Y_test[:12]
    assert Y.shape == (12, 10) and np.all(Y.sum(axis=1) == 1)  # one-hot digits
    dense = mlp_limit_kernel(Xt, X) @ np.linalg.solve(mlp_limit_kernel(X), Y)
    assert_close(np.load("pred.npy")[-1], dense, TOL["iterative"], "test predictions")
    test_mse = float(np.mean((dense - Yt) ** 2))
    printed = re.search(r"^\s+inf\s+\S+\s+(\S+)", out, re.M)  # the row t = inf: t, train MSE, test MSE
    assert printed and abs(float(printed[1]) - test_mse) <= 1e-4 * test_mse, out  # 5 digits printed
    # The test accuracy of the digits (before: not printed), against the dense predictions' argmax.
    accuracy = re.search(r"^\s+inf\s+\S+\s+\S+\s+(\S+)", out, re.M)
    assert "test acc" in out and float(accuracy[1]) == pytest.approx(np.mean(dense.argmax(1) == Yt.argmax(1)),
                                                                     abs=5e-5), out

    # The same files' counts with other images: the stores' rows are not those images.
    write_mnist_like(tmp_path / "other", seed=3)
    assert main(["predict", "--gram", "K.zarr", "--gram-test", "Kt.zarr", "--dataset", "mnist", "--data-dir",
                 str(tmp_path / "other")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == [
        "Error: Gram store 'K.zarr': its 12 rows are not the first 12 training images of mnist (what deepntk gram "
        "--dataset mnist writes); pass their targets with --y-train"], err


def test_a_test_store_against_other_training_inputs_is_refused_before_any_solve(tmp_path, monkeypatch, capsys):
    """Before: a cross store whose columns were other inputs of the same count gave predictions without a word."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(4)
    for name, shape in (("x", (16, 2)), ("other", (16, 2)), ("xt", (5, 2))):
        np.save(f"{name}.npy", rng.uniform(0.1, 1, size=shape))
    np.save("y.npy", np.ones(16))
    assert main(["gram", "--x1", "x.npy", "--store", "K.zarr", "--workers", "1", "--quiet"]) == 0
    assert main(["gram", "--x1", "xt.npy", "--x2", "other.npy", "--store", "Kt.zarr", "--workers", "1",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", "--gram", "K.zarr", "--gram-test", "Kt.zarr", "--y-train", "y.npy"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == [
        "Error: Gram store 'Kt.zarr': its columns are not the inputs of the training Gram 'K.zarr'; predictions "
        "need the test × training Gram of those inputs"], err


@pytest.mark.parametrize("argv, message", [
    (["--x-train", "x.npy", "--x-test", "x.npy", "--dataset", "mnist"], "--dataset gives the targets of the images"),
    (["--gram", "K.zarr", "--gram-test", "Kt.zarr", "--dataset", "mnist", "--y-train", "y.npy"],
     "--dataset mnist gives the targets; drop --y-train and --y-test"),
    (["--gram", "K.zarr", "--gram-test", "Kt.zarr"], "give --y-train (or --dataset"),
])
def test_targets_from_two_places_or_none_are_usage_errors(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and message in err, err
