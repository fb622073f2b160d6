"""`deepntk reproduce table1` keeps its finished networks (docs/experiments.md#adding-an-experiment,
`checkpoints=True`): a real SIGINT to a real process once its first row is saved, then a --resume rerun that keeps
the saved row as it is, trains only the other network, and ends with the table of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import interrupt_once_saved, resume_keeping
from test_table1_predict import learnable_mnist

# The MLP (≈ 2 s) is saved first; the CNN after it (≈ 5 s on 2 cores) is the window for the SIGINT.
ARGV = [sys.executable, "-m", "deepntk.cli.main", "reproduce", "table1", "--networks", "mlp,cnn", "--data-dir",
        "mnist", "--backend", "numpy", "--no-plot", "--quiet"]


def without_timings(rows):
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


@pytest.mark.slow  # ≈ 20 s: three processes, two of them training the CNN
def test_ctrl_c_keeps_the_finished_networks_and_resume_trains_only_the_others(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("mnist")
    learnable_mnist("mnist")
    argv = ARGV + ["-o", "out"]
    saved, kept = interrupt_once_saved(argv, "rows")
    assert [row["run"] for row in saved["rows"]] == ["MLP"]
    final = resume_keeping(argv, kept)
    assert [row["run"] for row in final["rows"]] == ["MLP", "CNN"]
    assert final["rows"][0] == saved["rows"][0]  # read back as saved, its training time included: not trained again

    whole = subprocess.run(ARGV + ["-o", "whole"], capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    uninterrupted = json.load(open("whole/results.json"))
    assert without_timings(final["rows"]) == without_timings(uninterrupted["rows"])
    assert {**final, "rows": None} == {**uninterrupted, "rows": None}
