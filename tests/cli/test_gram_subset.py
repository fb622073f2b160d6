"""`deepntk gram --dataset mnist --subset N`: the Gram of the first N images of the split (after the seeded
shuffle `load_mnist` uses), from MNIST files in the folder deepntk reads ($DEEPNTK_DATA here)."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
pytest.importorskip("zarr", reason="the distributed extra (Zarr) is not installed")

import deepntk  # noqa: E402
from deepntk.analytic import mlp_limit_kernel  # noqa: E402
from deepntk.cli.main import main  # noqa: E402
from deepntk.engine.experiments.datasets import load_mnist, write_idx  # noqa: E402
from conftest import TOL, assert_close  # noqa: E402


def test_a_subset_of_mnist_from_deepntk_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    os.makedirs(data)
    rng = np.random.default_rng(2)
    write_idx(str(data / "t10k-images-idx3-ubyte.gz"), rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8))
    write_idx(str(data / "t10k-labels-idx1-ubyte"), np.arange(60, dtype=np.uint8) % 10)
    monkeypatch.setenv("DEEPNTK_DATA", str(data))
    assert main(["gram", "--dataset", "mnist", "--subset", "12", "--store", "K.zarr", "--workers", "1",
                 "--quiet"]) == 0
    assert "limit Gram 12×12 in K.zarr" in capsys.readouterr().out
    images = load_mnist(str(data), download=False).X_train[:12]  # the seeded shuffle's first 12
    assert_close(deepntk.open_store("K.zarr").read(), mlp_limit_kernel(images), TOL["roundoff"], "subset Gram")


def test_subset_without_a_dataset_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.ones((3, 2)))
    assert main(["gram", "--x1", "x.npy", "--subset", "2", "--store", "K.zarr"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == ["Error: --subset takes the first N images of --dataset; with "
                                                      "--x1, pass the rows you want"]
