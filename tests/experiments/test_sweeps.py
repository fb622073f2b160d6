"""Sweeps across Dask workers: `simulate`, `simulate --train` and `compare depth` with --cluster give results
bitwise equal to the one-process run, in the same folder format, and resume as before."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")

from deepntk.cli.main import main  # noqa: E402


def run(argv):
    assert main(argv) == 0, argv


def arrays(folder):
    with np.load(os.path.join(folder, "arrays.npz")) as data:
        return {name: data[name] for name in data.files}


def test_simulate_across_workers_equals_the_one_process_run(tmp_path):
    base = ["simulate", "--depths", "20,40", "--seeds", "3", "--points", "10", "--backend", "numpy", "--quiet"]
    run(base + ["-o", str(tmp_path / "here")])
    run(base + ["-o", str(tmp_path / "there"), "--cluster", "local", "--workers", "2"])
    here, there = arrays(tmp_path / "here"), arrays(tmp_path / "there")
    assert here.keys() == there.keys() and all(np.array_equal(here[k], there[k]) for k in here)
    stamp = os.path.getmtime(tmp_path / "there" / "depth-20.npz")
    run(base + ["-o", str(tmp_path / "there"), "--cluster", "local", "--workers", "2", "--resume"])
    assert os.path.getmtime(tmp_path / "there" / "depth-20.npz") == stamp


def test_simulate_train_and_compare_depth_across_workers(tmp_path):
    train = ["simulate", "--train", "--depths", "20", "--C-L", "5", "--seeds", "2", "--steps", "5", "--backend",
             "numpy", "--quiet"]
    run(train + ["-o", str(tmp_path / "a")])
    run(train + ["-o", str(tmp_path / "b"), "--cluster", "local", "--workers", "2"])
    a, b = (json.load(open(tmp_path / name / "results.json")) for name in ("a", "b"))
    for key in ("kernel_init", "kernel_trained", "fit", "kernel_drift"):
        assert a["depths"][0][key] == b["depths"][0][key]
    depth = ["compare", "depth", "--depths", "20,40", "--C-L", "5", "--seeds", "2", "--points", "6", "--backend",
             "numpy", "--quiet"]
    run(depth + ["-o", str(tmp_path / "c")])
    run(depth + ["-o", str(tmp_path / "d"), "--cluster", "local", "--workers", "2"])
    c, d = (json.load(open(tmp_path / name / "compare-depth.json"))["rows"] for name in ("c", "d"))
    assert c == d
