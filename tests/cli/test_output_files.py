"""One rule for the commands that write one file (-o): an existing file is refused before any work, in one line
with exit status 2, and kept as it was, unless --overwrite is given (cli/common.py check_output_path)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from deepntk.cli.main import main

SENTINEL = b"a file of the user's, not to be replaced\n"


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X = np.random.default_rng(0).uniform(0.1, 1, size=(6, 2))
    np.save("x.npy", X)
    np.save("y.npy", X[:, :1] * X[:, 1:])
    assert main(["init", "--d-in", "2", "--depth", "10", "--C-L", "100", "-o", "p.npz"]) == 0


# Each command with its -o file, cheap enough to run; bench only has its refusal checked (a run takes minutes).
COMMANDS = {
    "init": ["init", "--d-in", "2", "--depth", "10", "--C-L", "100", "-o", "out.npz"],
    "ntk": ["ntk", "p.npz", "--x1", "x.npy", "--backend", "numpy", "-o", "out.npy"],
    "limit": ["limit", "--x1", "x.npy", "-o", "out.npy"],
    "predict": ["predict", "--x-train", "x.npy", "--y-train", "y.npy", "--x-test", "x.npy", "--times", "1,inf",
                "-o", "out.npy"],
    "train": ["train", "p.npz", "--x", "x.npy", "--y", "y.npy", "--eta", "0.5", "--steps", "3", "--quiet",
              "-o", "out.npz"],
    "bench": ["bench", "--quick", "--peers", "none", "-o", "out.json"],
}


def refused_in_one_line(argv, capsys, existing: str) -> None:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured
    assert captured.err == (f"Error: -o: {existing!r} already exists; pass --overwrite to replace it, or choose "
                            f"another file\n")


@pytest.mark.parametrize("name", COMMANDS)
def test_an_existing_output_file_is_refused_unless_overwrite(name, inputs, capsys):
    argv = COMMANDS[name]
    output = argv[-1]
    with open(output, "wb") as handle:
        handle.write(SENTINEL)
    capsys.readouterr()
    refused_in_one_line(argv, capsys, output)
    assert open(output, "rb").read() == SENTINEL
    if name == "bench":
        return
    assert main(argv + ["--overwrite"]) == 0, capsys.readouterr().err
    assert open(output, "rb").read() != SENTINEL


def test_train_refuses_an_existing_metrics_file_beside_its_output_too(inputs, capsys):
    argv = COMMANDS["train"]
    with open("out.metrics.json", "wb") as handle:
        handle.write(SENTINEL)
    capsys.readouterr()
    refused_in_one_line(argv, capsys, "out.metrics.json")
    assert not os.path.exists("out.npz") and open("out.metrics.json", "rb").read() == SENTINEL
    assert main(argv + ["--overwrite"]) == 0, capsys.readouterr().err
    assert json.load(open("out.metrics.json"))["steps"] == 3
    assert main(argv) == 2  # and the second run of the same command is refused: it would replace both
