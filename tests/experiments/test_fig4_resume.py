"""`deepntk reproduce fig4` keeps its finished training runs (docs/experiments.md#adding-an-experiment,
`checkpoints=True`): a real SIGINT to a real process once its first run is saved, then a --resume rerun that
keeps the saved runs as they are and trains only the others."""

from __future__ import annotations

import os
import sys

import numpy as np

from deepntk.engine.experiments.datasets import write_idx
from deepntk.engine.experiments.fig4 import KAIMING_LEARNING_RATES
from tests.conftest import interrupt_once_saved, resume_keeping

RUNS = 1 + len(KAIMING_LEARNING_RATES)


def tiny_mnist(folder, n=120):
    """Test files only, 120 images (`load_mnist` splits them 100/20): one batch an epoch, so a run is quick."""
    rng = np.random.default_rng(7)
    labels = np.arange(n, dtype=np.uint8) % 10
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        images[index, 3 * int(label): 3 * int(label) + 6, 4:24] = 200
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), images)
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte"), labels)


def test_ctrl_c_keeps_the_finished_trainings_and_resume_reuses_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("mnist")
    tiny_mnist("mnist")
    argv = [sys.executable, "-m", "deepntk.cli.main", "reproduce", "fig4", "--data-dir", "mnist", "-o", "out",
            "--backend", "numpy", "--no-plot", "--quiet"]
    saved, kept = interrupt_once_saved(argv, "runs")
    assert kept < RUNS
    final = resume_keeping(argv, kept)
    assert [run["run"] for run in final["runs"]] == ["paper init"] + [f"kaiming-uniform lr={lr:g}"
                                                                     for lr in KAIMING_LEARNING_RATES]
    # Kept as saved, their training time included: read back, not trained again.
    assert final["runs"][:kept] == saved["runs"]
