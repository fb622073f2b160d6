"""The float64 floor of a symmetric spectrum (deepntk.engine.spectrum), checked on matrices Q diag(λ) Qᵀ whose
eigenvalues λ are chosen, some of them below the floor, and `deepntk compare spectrum`, which must never print a
negative or round-off condition number."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import TOL, assert_close
from deepntk.cli.main import main
from deepntk.engine.spectrum import format_condition, resolve_spectrum

EPS = np.finfo(np.float64).eps


def with_eigenvalues(values, seed=0):
    """Q diag(values) Qᵀ with Q a random orthogonal matrix (QR of a Gaussian one)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((len(values), len(values))))
    K = (Q * np.asarray(values)) @ Q.T
    return 0.5 * (K + K.T)


def test_eigenvalues_below_the_floor_are_marked_and_the_condition_is_a_bound():
    n, top = 50, 100.0
    floor = n * EPS * top  # 1.1e-12
    above = np.concatenate([np.logspace(2, -6, 42), [10 * floor]])  # 43 chosen above the floor, one just so
    below = np.array([0.1 * floor, 1e-14, 0.0, 0.0, -1e-15, -3e-15, -1e-14])  # 7 chosen round-off
    spectrum = resolve_spectrum(np.linalg.eigvalsh(with_eigenvalues(np.concatenate([above, below]))))
    assert spectrum.resolved == len(above)
    assert_close(spectrum.floor, floor, TOL["solve"], "floor")
    assert_close(spectrum.eigenvalues[:spectrum.resolved], np.sort(above)[::-1], TOL["solve"], "resolved")
    assert np.all(spectrum.eigenvalues[spectrum.resolved:] <= spectrum.floor)
    assert spectrum.condition_is_lower_bound
    assert_close(spectrum.condition, 1 / (n * EPS), TOL["solve"], "bound λ_max/floor")
    assert format_condition(spectrum.condition, True).startswith("≥ ")


def test_a_fully_resolved_spectrum_has_its_condition_number():
    chosen = np.logspace(2, -3, 30)
    spectrum = resolve_spectrum(np.linalg.eigvalsh(with_eigenvalues(chosen, seed=1)))
    assert spectrum.resolved == 30 and not spectrum.condition_is_lower_bound
    assert_close(spectrum.condition, 1e5, TOL["solve"], "λ_max/λ_min")
    assert format_condition(spectrum.condition, False) == "1e+05"


def test_negative_round_off_never_gives_a_negative_condition():
    # λ_min = −1e−14 is what the L = 100 Gram of `compare spectrum` had: the old ratio λ_max/λ_min was −1e16.
    spectrum = resolve_spectrum([100.0, 1.0, 1e-6, -1e-14])
    assert spectrum.resolved == 3 and spectrum.condition_is_lower_bound
    assert spectrum.condition == pytest.approx(1 / (4 * EPS), rel=TOL["exact"])
    assert list(spectrum.eigenvalues) == [100.0, 1.0, 1e-6, -1e-14]  # largest first, unchanged


def test_compare_spectrum_reports_the_floor_and_never_a_negative_condition(tmp_path, capsys):
    out = str(tmp_path / "spectrum")
    # 40 arc points at L = 100 (seed 0): a Gram of rank < 40, whose smallest eigenvalues are ±1e−14 round-off.
    assert main(["compare", "spectrum", "--depths", "100", "-o", out]) == 0
    stdout = capsys.readouterr().out
    lines = [line.split() for line in stdout.splitlines()]
    header = next(i for i, line in enumerate(lines) if line and line[0] == "kernel")
    rows = {line[0]: line for line in lines[header + 1:header + 3]}
    assert set(rows) == {"limit", "L=100"}
    for row in rows.values():
        assert not any(field.startswith("-") for field in row[1:]), f"a negative number is printed: {row}"
    assert "≥" in rows["L=100"], "the unresolved condition is not printed as a bound"
    with open(os.path.join(out, "compare-spectrum.json"), encoding="utf-8") as handle:
        saved = json.load(handle)["rows"]
    for row in saved:
        eig = np.asarray(row["eigenvalues"])
        assert row["floor"] == pytest.approx(len(eig) * EPS * eig.max(), rel=TOL["exact"])
        assert row["resolved"] == np.count_nonzero(eig > row["floor"]) and row["condition"] > 0
        expected = eig.max() / (eig.min() if row["resolved"] == len(eig) else row["floor"])
        assert row["condition"] == pytest.approx(expected, rel=TOL["exact"])
    network = saved[1]
    assert network["resolved"] < 40 and network["condition_is_lower_bound"] and min(network["eigenvalues"]) < 0
