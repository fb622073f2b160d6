"""An experiment is one module plus its registration (docs/experiments.md#adding-an-experiment): a toy experiment
defined here, registered through `register_experiment` (or the entry-point group "deepntk.experiments"), runs
through `deepntk reproduce` end to end — summary, results folder, figure, --resume and --overwrite — with no other
file of deepntk touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import numpy as np
import pytest

from deepntk.cli.main import main
from deepntk.base.errors import InputError
from deepntk.engine.experiments.protocol import SILENT, Experiment, Result
from deepntk.engine.experiments.registry import ENTRY_POINT_GROUP, register_experiment, unregister_experiment


@dataclass(frozen=True)
class SquaresConfig:
    scale: str = "small"


class SquaresResult(Result):
    def summary(self):
        return [f"squares: mean {self.data['mean']:.6f} over {len(self.arrays['values'])} points"]

    def figure(self):
        from matplotlib.figure import Figure

        fig = Figure()
        fig.subplots().plot(self.arrays["values"], label="i²")
        return fig


CALLS = []


def run_squares(config, backend=None, client=None, progress=SILENT):
    """0², 1², …, (n−1)², n = 5 (small) or 9 (paper): a study whose answer the test knows independently."""
    CALLS.append(config)
    n = 5 if config.scale == "small" else 9
    values = np.arange(n, dtype=float) ** 2
    progress.show("points", n, n)
    return SquaresResult({"experiment": "squares", "scale": config.scale, "mean": float(values.mean())},
                         {"values": values})


SQUARES = Experiment("squares", SquaresConfig, run_squares, SquaresResult, description="a toy study")


@pytest.fixture
def squares():
    register_experiment(SQUARES)
    CALLS.clear()
    yield SQUARES
    unregister_experiment("squares")


def reproduce(argv, capsys):
    code = main(["reproduce", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_registered_experiment_runs_through_reproduce_end_to_end(squares, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = reproduce(["squares", "-o", str(out), "--quiet"], capsys)
    assert code == 0, err
    # mean of i² for i < 5: (n−1)(2n−1)/6 = 4·9/6 = 6
    assert stdout.splitlines()[0] == "squares: mean 6.000000 over 5 points"
    assert f"results in {out}" in stdout
    assert json.load(open(out / "results.json")) == {"experiment": "squares", "scale": "small", "mean": 6.0}
    np.testing.assert_array_equal(np.load(out / "arrays.npz")["values"], [0, 1, 4, 9, 16])
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["command"] == "reproduce squares" and manifest["scale"] == "small"
    record = json.load(open(out / "run.json"))
    assert record["command"] == "reproduce squares" and record["config"] == {"scale": "small"}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no figure: plots need matplotlib" in err
        assert sorted(record["files"]) == ["arrays.npz", "manifest.json", "results.json"]
    else:
        assert (out / "squares.png").stat().st_size > 0 and f"figure in {out / 'squares.png'}" in stdout
        assert sorted(record["files"]) == ["arrays.npz", "manifest.json", "results.json", "squares.png"]
    assert len(CALLS) == 1


def test_the_run_folder_refuses_a_rerun_and_resumes_or_overwrites(squares, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert reproduce(["squares", "-o", out, "--quiet", "--no-plot"], capsys)[0] == 0
    code, stdout, err = reproduce(["squares", "-o", out, "--quiet", "--no-plot"], capsys)
    assert code == 2 and stdout == "" and "already holds the results of this configuration" in err, err
    assert "--resume" in err and "--overwrite" in err
    code, stdout, err = reproduce(["squares", "-o", out, "--scale", "paper", "--quiet", "--no-plot"], capsys)
    assert code == 2 and "different configuration (differs in: scale)" in err, err
    assert len(CALLS) == 1
    # --resume reads the saved result back: the same summary, nothing computed
    code, stdout, err = reproduce(["squares", "-o", out, "--quiet", "--no-plot", "--resume"], capsys)
    assert code == 0, err
    assert "squares: mean 6.000000 over 5 points" in stdout.splitlines() and "reusing the results" in stdout
    assert len(CALLS) == 1
    # --overwrite computes another configuration in its place
    code, stdout, err = reproduce(["squares", "-o", out, "--scale", "paper", "--quiet", "--no-plot", "--overwrite"],
                                  capsys)
    assert code == 0, err
    assert "squares: mean 22.666667 over 9 points" in stdout  # Σ i², i < 9 = 204, / 9
    assert json.load(open(os.path.join(out, "results.json")))["scale"] == "paper" and len(CALLS) == 2


def test_resume_where_nothing_was_kept_says_it_starts_afresh_and_computes(squares, tmp_path, capsys):
    code, stdout, err = reproduce(["squares", "-o", str(tmp_path / "fresh"), "--quiet", "--no-plot", "--resume"],
                                  capsys)
    assert code == 0, err
    assert stdout.splitlines()[0] == f"nothing to resume in {tmp_path / 'fresh'}: starting afresh", stdout
    assert "squares: mean 6.000000 over 5 points" in stdout.splitlines() and len(CALLS) == 1


def test_options_an_experiment_does_not_take_are_refused_naming_those_that_do(squares, tmp_path, capsys):
    code, stdout, err = reproduce(["squares", "--networks", "mlp", "-o", str(tmp_path / "r")], capsys)
    assert code == 2 and stdout == "" and "--networks goes with table1" in err, err
    code, _, err = reproduce(["squares", "--cluster", "local", "-o", str(tmp_path / "r")], capsys)
    assert code == 2 and "--cluster goes with fig3" in err, err
    assert not os.path.exists(tmp_path / "r") and CALLS == []


def test_the_help_lists_registered_experiments_and_names_are_unique(squares, capsys):
    assert main(["reproduce", "--help"]) == 0
    assert "squares" in capsys.readouterr().out
    with pytest.raises(InputError, match="registered already"):
        register_experiment(Experiment("fig3", SquaresConfig, run_squares))
    with pytest.raises(InputError, match="registered already"):
        register_experiment(Experiment("squares", SquaresConfig, run_squares))


def test_an_experiment_registered_by_entry_point_runs_through_reproduce(tmp_path):
    """A package's entry point in the group "deepntk.experiments" makes its experiment a `reproduce` choice."""
    (tmp_path / "cubes_study.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from deepntk.engine.experiments.protocol import Experiment, Result

        @dataclass(frozen=True)
        class Config:
            scale: str = "small"

        class Cubes(Result):
            def summary(self):
                return [f"cubes: sum {self.data['sum']:g}"]

        def run(config, backend=None, client=None, progress=None):
            return Cubes({"experiment": "cubes", "sum": float(sum(i ** 3 for i in range(4)))})

        EXPERIMENT = Experiment("cubes", Config, run, Cubes)
    """))
    dist = tmp_path / "deepntk_test_cubes-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: deepntk-test-cubes\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ncubes = cubes_study:EXPERIMENT\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "deepntk.cli.main", "reproduce", "cubes", "-o",
                             str(tmp_path / "out"), "--no-plot"], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "cubes: sum 36"  # 0 + 1 + 8 + 27
    assert json.load(open(tmp_path / "out" / "results.json")) == {"experiment": "cubes", "sum": 36.0}
