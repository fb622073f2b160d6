"""What `simulate` and `compare depth` print about the rate is the seeds' interval: `simulate`'s is recomputed
here from the per-seed errors it stores, by another algorithm (numpy.polyfit per seed) and a printed t table, and
the slope of the mean errors it prints beside from the table's printed rows."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from deepntk.cli.main import main

T_TABLE_95 = {2: 4.303, 4: 2.776}  # two-sided 95% quantiles of Student's t (Fisher & Yates)


def per_seed_interval(depths, seed_errors):
    """Mean of the seeds' polyfit slopes ± t_{S−1} × their standard error."""
    slopes = [np.polyfit(np.log(depths), np.log(errors), 1)[0] for errors in seed_errors]
    half_width = T_TABLE_95[len(slopes) - 1] * np.std(slopes, ddof=1) / math.sqrt(len(slopes))
    return float(np.mean(slopes)), float(half_width)


def test_simulate_prints_the_seeds_interval_of_the_rate(tmp_path, capsys):
    """Today's complaint: three depths printed "± 0.00 (95%)" (a normal quantile on one residual degree of
    freedom). The printed interval is now the seeds' t interval and matches the stored per-seed errors."""
    out = str(tmp_path / "sim")
    assert main(["simulate", "--depths", "100,1000,10000", "--seeds", "5", "--points", "20", "--backend", "numpy",
                 "-o", out, "--quiet"]) == 0
    stdout = capsys.readouterr().out
    stored = json.load(open(os.path.join(out, "results.json")))
    depths = [d["depth"] for d in stored["depths"]]
    seed_errors = np.array([d["seed_errors_limit"] for d in stored["depths"]]).T
    slope, half_width = per_seed_interval(depths, seed_errors)
    printed = re.search(r"rate of the error vs limit against L: mean of the 5 seeds' fitted slopes ([-+]\d\.\d+), "
                        r"95% interval \[([-+]\d\.\d+), ([-+]\d\.\d+)\]; slope of the mean errors ([-+]\d\.\d+)",
                        stdout)
    assert printed, stdout
    assert abs(float(printed[1]) - slope) < 5e-4
    assert abs(float(printed[2]) - (slope - half_width)) < 5e-3 and abs(float(printed[3]) - (slope + half_width)) < 5e-3
    assert half_width > 0.05  # five networks per depth cannot pin a rate to ± 0.00
    # The second number is the slope through the table's own mean errors, read back from the printed rows.
    table = [float(re.search(rf"^\s+{depth}\s+\S+\s+5\s+(\S+)", stdout, re.M)[1]) for depth in depths]
    assert abs(float(printed[4]) - np.polyfit(np.log(depths), np.log(table), 1)[0]) < 2e-3  # printed digits


def test_compare_depth_prints_intervals_over_its_seeds(tmp_path, capsys):
    """The rate's interval is the t interval over 3 seeds (wide, never ± 0.000) and each mean error lies inside
    its own (asymmetric) interval."""
    out = str(tmp_path / "cmp")
    assert main(["compare", "depth", "--depths", "20,40,80", "--C-L", "L^2", "--seeds", "3", "--points", "8",
                 "--backend", "numpy", "-o", out, "--quiet"]) == 0
    stdout = capsys.readouterr().out
    stored = json.load(open(os.path.join(out, "compare-depth.json")))
    fit = stored["fits"]["L^2"]
    printed = re.search(r"fitted rate of the fluctuation L\^([-+]\d\.\d+) ± (\d\.\d+) \(95% over 3 seeds", stdout)
    assert printed, stdout
    assert abs(float(printed[1]) - fit["slope"]) < 5e-4 and float(printed[2]) > 0.05
    for row in stored["rows"]:  # a mean error lies inside its interval, and the interval is not degenerate
        low, high = row["error_expected_interval"]
        assert 0 <= low < row["error_expected"] < high
