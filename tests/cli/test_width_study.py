"""`deepntk simulate --arch wide-mlp --widths …`: the width study's table, rate and interval against what it
stores, recomputed here by other means (numpy.polyfit per seed, a printed t table, the exact recursion); its usage
errors; its results folder (resume, overwrite) and an interrupt."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from deepntk.analytic import wide_ntk_kernel
from deepntk.cli.main import main
from conftest import TOL, assert_close, wait_for
from test_progress_and_interrupts import Running, assert_one_interrupt_line

T_TABLE_95 = {2: 4.303}  # two-sided 95% quantile of Student's t with 2 degrees of freedom (Fisher & Yates)
STUDY = ["simulate", "--arch", "wide-mlp", "--widths", "32,64,128", "--depth", "2", "--seeds", "3", "--points", "4",
         "--backend", "numpy", "--quiet"]


def test_width_study_prints_each_width_and_the_seeds_interval_of_the_rate(tmp_path, capsys):
    """Before: `--widths` was no option (exit 2). Now one row per width and the rate's t interval over seeds,
    equal to the interval recomputed from the stored per-seed errors, and a statement on the theory's −1/2."""
    out = str(tmp_path / "w")
    assert main(STUDY + ["-o", out]) == 0
    stdout = capsys.readouterr().out
    stored = json.load(open(os.path.join(out, "results.json")))
    arrays = np.load(os.path.join(out, "arrays.npz"))
    widths = [row["width"] for row in stored["widths"]]
    assert widths == [32, 64, 128] and list(arrays["widths"]) == widths
    # The limit is Θ² of the study's inputs, by the exact layer-by-layer recursion (not the table the code uses).
    assert_close(arrays["limit"], wide_ntk_kernel(arrays["inputs"], depth=2, exact=True), TOL["identity"], "Θ^L")
    seed_errors = np.array([row["seed_errors"] for row in stored["widths"]]).T  # (seeds, widths)
    for s in range(3):  # each seed's error is its kernel's mean relative error over the input pairs
        for w in range(3):
            K = arrays["kernels"][w, s, :, :, 0, 0]
            assert abs(np.mean(np.abs(K - arrays["limit"]) / arrays["limit"]) - seed_errors[s, w]) < 1e-12
    for width, mean in zip(widths, seed_errors.mean(axis=0)):
        row = re.search(rf"^\s+{width}\s+3\s+(\S+) \[(\S+), (\S+)\]", stdout, re.M)
        assert row, stdout
        assert abs(float(row[1]) - mean) < 1e-3 * mean and float(row[2]) <= mean <= float(row[3])
    slopes = [np.polyfit(np.log(widths), np.log(errors), 1)[0] for errors in seed_errors]
    half_width = T_TABLE_95[2] * np.std(slopes, ddof=1) / math.sqrt(3)
    printed = re.search(r"rate of the error vs Θ\^L against n: mean of the 3 seeds' fitted slopes ([-+]\d\.\d+), "
                        r"95% interval \[([-+]\d\.\d+), ([-+]\d\.\d+)\]; slope of the mean errors ([-+]\d\.\d+)  "
                        r"\(theory: -0\.5, (inside|OUTSIDE) the interval\)", stdout)
    assert printed, stdout
    low, high = np.mean(slopes) - half_width, np.mean(slopes) + half_width
    assert abs(float(printed[1]) - np.mean(slopes)) < 5e-4
    assert abs(float(printed[2]) - low) < 5e-3 and abs(float(printed[3]) - high) < 5e-3
    assert printed[5] == ("inside" if low <= -0.5 <= high else "OUTSIDE")
    # Beside it, the slope through the mean errors the table printed (not the mean of the seeds' slopes).
    table = [float(re.search(rf"^\s+{width}\s+3\s+(\S+) \[", stdout, re.M)[1]) for width in widths]
    assert abs(float(printed[4]) - np.polyfit(np.log(widths), np.log(table), 1)[0]) < 2e-3  # printed digits
    assert stored["theory_inside_interval"] == (low <= -0.5 <= high)
    # The stored fit names what it was fitted against (before: "against log(L)" and "depths": 3).
    assert stored["fit"]["widths"] == 3 and "depths" not in stored["fit"] and "log(n)" in stored["fit"]["method"]


@pytest.mark.parametrize("argv, words", [
    (["--widths", "64,128"], "--widths is the width study"),
    (["--depth", "3"], "--depth is the width study"),
    (["--arch", "wide-mlp", "--depths", "2,3"], "--depths does not apply"),
    (["--arch", "wide-mlp", "--C-L", "5"], "--C-L does not apply"),
    (["--arch", "wide-mlp", "--width", "64"], "--width does not apply"),
    (["--arch", "wide-mlp", "--widths", "64,64"], "widths must differ"),
    (["--arch", "wide-mlp", "--widths", "0,64"], "--widths"),
    (["--arch", "wide-mlp", "--train"], "--train runs the Fig. 3 MLP experiment"),
], ids=["widths-mlp", "depth-mlp", "depths-wide", "C_L-wide", "width-wide", "repeated", "zero", "train"])
def test_options_of_the_other_study_are_one_line_usage_errors(tmp_path, capsys, argv, words):
    code = main(["simulate", *argv, "--quiet", "-o", str(tmp_path / "s")])
    captured = capsys.readouterr()
    assert code == 2 and not captured.out and captured.err.strip().count("\n") == 0, captured
    assert words in captured.err, captured.err
    assert not os.path.exists(tmp_path / "s")


def test_resume_reuses_the_stored_widths_and_overwrite_recomputes_them(tmp_path, capsys):
    out = str(tmp_path / "w")
    assert main(STUDY + ["-o", out]) == 0
    first = capsys.readouterr().out
    stored = os.path.join(out, "width-64.npz")
    written = os.stat(stored).st_mtime_ns
    assert main(STUDY + ["-o", out]) == 2  # the same settings again, without --resume or --overwrite
    assert "--resume" in capsys.readouterr().err
    assert main(STUDY + ["-o", out, "--resume"]) == 0
    resumed = capsys.readouterr().out
    assert "3 widths reused, 0 computed" in resumed and os.stat(stored).st_mtime_ns == written
    table = lambda text: [line for line in text.splitlines() if re.match(r"^\s+\d+\s+3\s", line)]
    # Reused rows print the same errors and intervals (the time column aside).
    assert [line.rsplit(None, 1)[0] for line in table(resumed)] == [line.rsplit(None, 1)[0] for line in table(first)]
    assert main(STUDY[:-2] + ["--depth", "3", "--quiet", "-o", out, "--resume"]) == 2  # another depth: refused
    assert "depth" in capsys.readouterr().err
    assert main(STUDY + ["-o", out, "--overwrite"]) == 0
    assert os.stat(stored).st_mtime_ns != written


def test_ctrl_c_in_the_width_study_keeps_the_finished_widths_and_resume_reuses_them(tmp_path):
    argv = ["simulate", "--arch", "wide-mlp", "--widths", "16,2048,2049", "--depth", "2", "--seeds", "2",
            "--points", "4", "--backend", "numpy", "-o", "out"]
    run = Running(*argv, cwd=tmp_path)
    assert wait_for(lambda: os.path.exists(tmp_path / "out" / "width-16.npz") or run.process.poll() is not None, 120)
    run.signal_group(signal.SIGINT)
    status, _, stderr = run.finish()
    assert status == 130, stderr
    kept = int(assert_one_interrupt_line(
        stderr, r"interrupted: (\d) of 3 widths kept in out; rerun with -o out --resume").group(1))
    assert 1 <= kept < 3
    resumed = subprocess.run([sys.executable, "-m", "deepntk.cli.main", *argv, "--resume", "--quiet"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{kept} width{'s' if kept > 1 else ''} reused, {3 - kept} computed" in resumed.stdout, resumed.stdout


def test_the_help_names_the_inputs_and_depths_each_architecture_runs_with(tmp_path, capsys):
    """Before: `simulate --help` said "wide-mlp: 6 random inputs" (its unused depth study's default) and listed
    wide-mlp depths that --depths refuses, while the width study ran on 8. Now the help's count is the one each
    run prints ("Gram of N …"), and --depths lists only the architectures studied over depth."""
    from click.testing import CliRunner

    from deepntk.cli.main import cli

    text = " ".join(CliRunner().invoke(cli, ["simulate", "--help"], terminal_width=1000).output.split())
    points = dict(re.findall(r"([\w-]+): (\d+) random (?:inputs|images)", text))
    assert set(points) == {"cnn", "wide-mlp"}, text
    assert "wide-mlp" not in re.search(r"--depths LIST (.*?)\]", text)[1], text
    for arch, extra in (("wide-mlp", ["--widths", "8"]), ("cnn", ["--depths", "2", "--C-L", "1"])):
        assert main(["simulate", "--arch", arch, *extra, "--seeds", "2", "--backend", "numpy", "--quiet",
                     "-o", str(tmp_path / arch)]) == 0
        assert f"Gram of {points[arch]} random" in capsys.readouterr().out, (arch, points)
