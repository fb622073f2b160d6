"""`deepntk reproduce table1 --predict N`: the limit-kernel predictions of Table 1 from Gram stores on a small,
learnable MNIST stand-in (class l is a bright square at its own place), end to end through Dask and Zarr."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")

from deepntk.cli.main import main  # noqa: E402
from deepntk.engine.experiments.datasets import write_idx  # noqa: E402
from deepntk.engine.experiments.table1 import PAPER_ACCURACY, paper_flow_time, table1_rows  # noqa: E402


def learnable_mnist(folder, n=240):
    rng = np.random.default_rng(2)
    labels = np.arange(n, dtype=np.uint8) % 10
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        images[index, 2 + 8 * row: 9 + 8 * row, 1 + 7 * col: 7 + 7 * col] = 250
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), images)
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte"), labels)


def test_paper_flow_times_follow_the_schedule():
    """steps × lr × L·C_L² × 2/k: the MLP's 1500 epochs of 118 batches at lr 1e-5, L = 4000, C_L = 4, k = 10."""
    (_, _, mlp, lr, epochs, _, _), _, (_, _, binary, lr_b, epochs_b, _, _) = table1_rows("paper")[0]
    assert paper_flow_time(mlp, lr, epochs, 60000) == pytest.approx(1500 * 118 * 1e-5 * 4000 * 16 * 2 / 10)
    assert paper_flow_time(binary, lr_b, epochs_b, 12665) == pytest.approx(1000 * 25 * 1e-8 * 20000 * 400 * 2)


def test_reproduce_table1_predict_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    os.makedirs("mnist")
    learnable_mnist("mnist")
    argv = ["reproduce", "table1", "--predict", "120", "--test-size", "40", "--data-dir", "mnist", "-o", "out",
            "--cluster", "local", "--workers", "1", "--no-plot"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    result = json.load(open("out/results.json"))
    rows = {row["run"]: row for row in result["rows"]}
    assert set(rows) == set(PAPER_ACCURACY) and "CNN binary" in out
    for name, row in rows.items():
        assert max(row["residuals"]) < 1e-5 and row["paper_accuracy"] == PAPER_ACCURACY[name], row["residuals"]
        assert row["regression_accuracy"] >= 0.9, row  # the classes are separable: the kernel must find that
        assert len(row["test_accuracy"]) == len(row["flow_times"]) == 4 and np.isinf(row["flow_times"][-1])
    assert rows["MLP"]["train_images"] == 120 and rows["MLP"]["test_images"] == 40
    assert os.path.isdir("out/grams/cnn-binary-train.zarr") and os.path.isdir("out/grams/mlp-test.zarr")


def test_predict_computes_only_the_networks_asked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("mnist")
    learnable_mnist("mnist")
    argv = ["reproduce", "table1", "--predict", "80", "--test-size", "20", "--data-dir", "mnist", "-o", "out",
            "--cluster", "local", "--workers", "1", "--no-plot", "--networks", "cnn-binary", "--max-iterations", "300",
            "--nystrom-rank", "50"]
    assert main(argv) == 0
    result = json.load(open("out/results.json"))
    assert [row["run"] for row in result["rows"]] == ["CNN binary"] and result["max_iterations"] == 300
    assert result["complete"] is True and result["nystrom_rank"] == 50
    arrays = np.load("out/arrays.npz")
    assert sorted(arrays.files) == ["cnn-binary_test_labels", "cnn-binary_test_outputs"]
    images = result["rows"][0]["test_images"]  # the 0s and 1s among the 20
    assert arrays["cnn-binary_test_outputs"].shape == (4, images, 1)
    assert set(arrays["cnn-binary_test_labels"]) <= {0, 1} and len(arrays["cnn-binary_test_labels"]) == images
    assert sorted(os.listdir("out/grams")) == ["cnn-binary-test.zarr", "cnn-binary-train.zarr"]


def test_an_unconverged_row_says_why_and_what_to_do(tmp_path, monkeypatch, capsys):
    """Before: "Warning: MLP: a solver stopped above its tolerance". Now one line per unconverged time with the
    solver's own account (SolveReport.describe), also kept in results.json with each solve's reason."""
    monkeypatch.chdir(tmp_path)
    os.makedirs("mnist")
    learnable_mnist("mnist", n=60)
    argv = ["reproduce", "table1", "--predict", "40", "--test-size", "10", "--data-dir", "mnist", "-o", "out",
            "--cluster", "local", "--workers", "1", "--no-plot", "--networks", "mlp", "--max-iterations", "1",
            "--nystrom-rank", "2", "--quiet"]
    assert main(argv) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Warning")]
    row = json.load(open("out/results.json"))["rows"][0]
    unconverged = [i for i, converged in enumerate(row["converged"]) if not converged]
    assert unconverged and len(warnings) == len(unconverged), (warnings, row["converged"])
    for line, i in zip(warnings, unconverged):
        assert row["stops"][i] == "iteration limit", row["stops"]
        assert line == f"Warning: MLP, t = {row['flow_times'][i]:.3g}: {row['solver_reports'][i]}", line
        assert "stopped after 1 of 1 iterations" in line and line.endswith("raise --max-iterations"), line
