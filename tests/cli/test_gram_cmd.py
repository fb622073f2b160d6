"""`deepntk gram` and `deepntk predict --gram` end to end: Gram stores written by real Dask workers, solved
iteratively, against the dense predictions of `deepntk predict --x-train`."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")

from deepntk.cli.main import main  # noqa: E402
from conftest import TOL, assert_close  # noqa: E402


def test_predict_from_gram_stores_matches_the_dense_predictions(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X, Xt = rng.uniform(0.1, 1, size=(120, 2)), rng.uniform(0.1, 1, size=(30, 2))
    for name, array in (("x", X), ("xt", Xt), ("y", X[:, :1] * X[:, 1:]), ("yt", Xt[:, :1] * Xt[:, 1:])):
        np.save(f"{name}.npy", array)
    assert main(["gram", "--x1", "x.npy", "--store", "K.zarr", "--tile", "32", "--workers", "1", "--quiet"]) == 0
    assert main(["gram", "--x1", "xt.npy", "--x2", "x.npy", "--store", "Kx.zarr", "--tile", "32", "--workers", "1",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "limit Gram 120×120 in K.zarr: 10 tiles of 32 (10 computed, 0 already complete)" in out
    assert "limit Gram 30×120 in Kx.zarr: 4 tiles of 32 (4 computed" in out
    assert main(["predict", "--gram", "K.zarr", "--gram-test", "Kx.zarr", "--y-train", "y.npy", "--y-test", "yt.npy",
                 "--times", "1,100,inf", "--nystrom-rank", "40", "-o", "iterative.npy"]) == 0
    assert main(["predict", "--x-train", "x.npy", "--x-test", "xt.npy", "--y-train", "y.npy", "--y-test", "yt.npy",
                 "--times", "1,100,inf", "-o", "dense.npy"]) == 0
    assert_close(np.load("iterative.npy"), np.load("dense.npy"), TOL["iterative"], "test predictions")


def test_predict_from_the_wrong_stores_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.random.default_rng(1).uniform(0.1, 1, size=(20, 2)))
    np.save("y.npy", np.ones(20))
    assert main(["gram", "--x1", "x.npy", "--store", "K.zarr", "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    for argv, message in ((["--gram", "K.zarr"], "needs --gram-test"),
                          (["--gram", "K.zarr", "--gram-test", "K.zarr"], "need the test × training Gram"),
                          (["--gram", "missing.zarr", "--gram-test", "K.zarr"], "does not exist")):
        assert main(["predict", "--y-train", "y.npy", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_an_unconverged_solve_says_why_and_what_to_do(tmp_path, monkeypatch, capsys):
    """Before: "Warning: the solver stopped above --tol 1e-15 at t = inf", neither why nor what to do. Now one
    line per time: the solver, its iterations, the residual reached against the tolerance, and the reason: float64's
    floor (a tolerance of 10⁻¹⁵) or the iteration limit (--max-iterations 2, with a preconditioner too weak to
    converge in 2)."""
    monkeypatch.chdir(tmp_path)
    X = np.random.default_rng(3).uniform(0.1, 1, size=(60, 2))
    np.save("x.npy", X)
    np.save("y.npy", X[:, :1] * X[:, 1:])
    assert main(["gram", "--x1", "x.npy", "--store", "K.zarr", "--workers", "1", "--quiet"]) == 0
    assert main(["gram", "--x1", "x.npy", "--x2", "x.npy", "--store", "Kx.zarr", "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", "--gram", "K.zarr", "--gram-test", "Kx.zarr", "--y-train", "y.npy", "--times", "inf",
                 "--tol", "1e-15", "--quiet"]) == 0
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("Warning: t = inf: conjugate gradients stopped after "), warning
    assert "above the tolerance 1e-15" in warning[0] and "float64 cannot reach the tolerance" in warning[0], warning
    assert main(["predict", "--gram", "K.zarr", "--gram-test", "Kx.zarr", "--y-train", "y.npy", "--times", "1,inf",
                 "--max-iterations", "2", "--nystrom-rank", "3", "--quiet"]) == 0
    warnings = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ")[1] for line in warnings] == ["t = 1", "t = inf"], warnings
    assert "Lanczos stopped after 2 of 2 iterations" in warnings[0], warnings
    assert "conjugate gradients stopped after 2 of 2 iterations" in warnings[1], warnings
    assert all(line.endswith("it reached its iteration limit; raise --max-iterations") for line in warnings), warnings
