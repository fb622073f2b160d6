"""`deepntk reproduce table1 --scale paper --max-steps N`: the paper's networks (here the binary CNN of depth
20,000) trained for a bounded number of steps on a learnable MNIST stand-in, with their rate and the whole
schedule's time at that rate."""

from __future__ import annotations

import json
import os

import pytest

from deepntk.cli.main import main
from deepntk.engine.experiments.table1 import BATCH_SIZE, StepClock, table1_rows
from test_table1_predict import learnable_mnist


def test_a_bounded_run_of_the_paper_schedule_reports_its_rate(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    os.makedirs("mnist")
    learnable_mnist("mnist")
    argv = ["reproduce", "table1", "--scale", "paper", "--max-steps", "3", "--networks", "cnn-binary",
            "--data-dir", "mnist", "-o", "out", "--no-plot"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    (row,) = json.load(open("out/results.json"))["rows"]
    _, _, (_, _, spec, lr, epochs, _, _) = table1_rows("paper")[0]
    train_images = 48 * 4 // 5  # the stand-in's 0s and 1s, split for training as with only the test files
    assert row["run"] == "CNN binary" and row["depth"] == spec.depth == 20000
    assert row["steps"] == 3 and row["schedule_steps"] == epochs * -(-train_images // BATCH_SIZE)
    assert row["schedule_seconds_estimate"] == pytest.approx(row["schedule_steps"] / row["steps_per_second"])
    assert row["theory"]["flow_time"] == pytest.approx(3 * lr * spec.depth * spec.C_L**2 * 2.0)
    assert "3 of the schedule's" in out and "the whole schedule ≈" in out
    assert row["evaluated_images"] == 1000 and json.load(open("out/manifest.json"))["max_steps"] == 3


def test_the_step_clock_measures_from_the_first_step_to_the_last(monkeypatch):
    from deepntk.engine.experiments import table1

    ends, seen = iter([10.0, 10.5, 12.0]), []
    monkeypatch.setattr(table1.time, "perf_counter", lambda: next(ends))
    clock = StepClock(lambda step, total, value: seen.append(step))
    for step in (1, 2, 5):
        clock(step, 5, 0.0)
    assert clock.rate() == pytest.approx(4 / 2.0) and seen == [1, 2, 5]
    assert StepClock().rate() is None
