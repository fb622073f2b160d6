"""`deepntk gram --kernel wide-ntk|wide-nngp` through the Zarr/Dask tile path (a real LocalCluster), against the
kernels computed in memory, and `deepntk predict` with the wide MLP's kernels, dense and from those stores."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")

from deepntk.analytic import wide_nngp_kernel, wide_ntk_kernel  # noqa: E402
from deepntk.cli.main import main  # noqa: E402
from deepntk.engine.gram import open_store  # noqa: E402
from conftest import TOL, assert_close  # noqa: E402


@pytest.fixture(scope="module")
def scheduler():
    """One real LocalCluster (a worker process, one thread) that the module's gram runs connect to."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_wide_grams_in_zarr_equal_the_kernels_in_memory_and_predict_from_them(tmp_path, monkeypatch, capsys,
                                                                            scheduler):
    """A symmetric Θ^1000 Gram in 6 upper tiles of 16 (resumed: nothing recomputed), a cross Σ^30 Gram with
    σ_b² > 0 (the recursion per pair), and `predict --gram` on wide-ntk stores against `predict --kernel wide-ntk`
    in memory."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X, Xt = rng.normal(size=(48, 5)), rng.normal(size=(20, 5))
    for name, array in (("x", X), ("xt", Xt), ("y", np.sin(X[:, 0])), ("yt", np.sin(Xt[:, 0]))):
        np.save(f"{name}.npy", array)
    ntk = ["--kernel", "wide-ntk", "--depth", "1000", "--tile", "16", "--cluster", scheduler, "--quiet"]
    assert main(["gram", "--x1", "x.npy", "--store", "K.zarr", *ntk]) == 0
    assert main(["gram", "--x1", "xt.npy", "--x2", "x.npy", "--store", "Kx.zarr", *ntk]) == 0
    assert main(["gram", "--x1", "x.npy", "--store", "K.zarr", "--resume", *ntk]) == 0
    assert main(["gram", "--kernel", "wide-nngp", "--depth", "30", "--sigma-w2", "1.5", "--sigma-b2", "0.2", "--x1",
                 "xt.npy", "--x2", "x.npy", "--store", "S.zarr", "--tile", "16", "--cluster", scheduler, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "wide-ntk Gram 48×48 in K.zarr: 6 tiles of 16 (6 computed, 0 already complete)" in out
    assert "wide-ntk Gram 48×48 in K.zarr: 6 tiles of 16 (0 computed, 6 already complete)" in out
    assert_close(open_store("K.zarr").read(), wide_ntk_kernel(X, depth=1000), TOL["roundoff"], "Θ^1000")
    assert_close(open_store("Kx.zarr").read(), wide_ntk_kernel(Xt, X, depth=1000), TOL["roundoff"], "Θ^1000 cross")
    assert_close(open_store("S.zarr").read(), wide_nngp_kernel(Xt, X, depth=30, sigma_w2=1.5, sigma_b2=0.2),
                 TOL["roundoff"], "Σ^30")
    assert main(["predict", "--gram", "K.zarr", "--gram-test", "Kx.zarr", "--y-train", "y.npy", "--y-test", "yt.npy",
                 "--times", "10,inf", "--nystrom-rank", "40", "-o", "iterative.npy"]) == 0
    assert main(["predict", "--kernel", "wide-ntk", "--depth", "1000", "--x-train", "x.npy", "--x-test", "xt.npy",
                 "--y-train", "y.npy", "--y-test", "yt.npy", "--times", "10,inf", "-o", "dense.npy"]) == 0
    assert_close(np.load("iterative.npy"), np.load("dense.npy"), TOL["iterative"], "test predictions")


def test_predict_with_the_wide_kernels_is_kernel_regression_with_them(tmp_path, monkeypatch):
    """`predict --kernel wide-nngp` (and `--arch wide-mlp`'s limit, Θ^L) against kernel regression written out:
    f(X_test) = K(X_test, X)·K(X, X)⁻¹·Y."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    X, Xt = rng.normal(size=(12, 3)), rng.normal(size=(5, 3))
    Y = rng.normal(size=(12, 2))
    for name, array in (("x", X), ("xt", Xt), ("y", Y)):
        np.save(f"{name}.npy", array)
    common = ["--x-train", "x.npy", "--x-test", "xt.npy", "--y-train", "y.npy", "--times", "inf", "--depth", "7",
              "--sigma-b2", "0.3"]
    for options, kernel in ((["--kernel", "wide-nngp"], wide_nngp_kernel), (["--arch", "wide-mlp"], wide_ntk_kernel)):
        output = f"f-{options[-1]}.npy"
        assert main(["predict", *options, *common, "-o", output]) == 0
        K, Kx = kernel(X, depth=7, sigma_b2=0.3), kernel(Xt, X, depth=7, sigma_b2=0.3)
        assert_close(np.load(output)[0], Kx @ np.linalg.solve(K, Y), TOL["solve"], options[-1])


@pytest.mark.parametrize("argv,message", [
    (["gram", "--kernel", "wide-ntk", "--x1", "x.npy", "--store", "K.zarr"], "--kernel wide-ntk needs --depth"),
    (["gram", "--kernel", "wide-nngp", "--x1", "x.npy", "--store", "K.zarr"], "--kernel wide-nngp needs --depth"),
    (["gram", "--arch", "wide-mlp", "--x1", "x.npy", "--store", "K.zarr"],
     "--kernel limit of --arch wide-mlp needs --depth"),
    (["gram", "--kernel", "wide-ntk", "--arch", "mlp", "--depth", "3", "--x1", "x.npy", "--store", "K.zarr"],
     "--kernel wide-ntk is the wide MLP's kernel; drop --arch mlp"),
    (["gram", "--kernel", "wide-ntk", "--depth", "0", "--x1", "x.npy", "--store", "K.zarr"], "'--depth': 0 is not"),
    (["predict", "--kernel", "wide-nngp", "--x-train", "x.npy", "--x-test", "x.npy", "--y-train", "y.npy"],
     "--kernel wide-nngp needs --depth"),
    (["predict", "--arch", "wide-mlp", "--x-train", "x.npy", "--x-test", "x.npy", "--y-train", "y.npy"],
     "--kernel limit of --arch wide-mlp needs --depth"),
    (["predict", "--kernel", "wide-ntk", "--arch", "cnn", "--depth", "2", "--x-train", "x.npy", "--x-test", "x.npy",
      "--y-train", "y.npy"], "--kernel wide-ntk is the wide MLP's kernel; drop --arch cnn"),
])
def test_wide_kernel_usage_errors_exit_2_in_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.ones((4, 3)))
    np.save("y.npy", np.ones(4))
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1 and message in err[0], captured


def test_gram_report_records_what_the_run_did(tmp_path, monkeypatch, scheduler):
    """`gram --report`: the pairs of the upper tiles of a 40 × 40 Gram in tiles of 16 (sides 16, 16, 8:
    ((16 + 16 + 8)² + 16² + 16² + 8²)/2 = 1088 pairs, written out here), 8 bytes each written uncompressed,
    rates consistent with the seconds, and the kernel's configuration; a resumed run computes and reports none.
    A --report in a missing folder is a one-line usage error before any work."""
    import json

    monkeypatch.chdir(tmp_path)
    # 80 input dimensions, above the wide MLP's preset width 64: its infinite-width kernels have no width to fit
    # (before: "the wide MLP's width 64 is below its d_in 80").
    np.save("x.npy", np.random.default_rng(2).normal(size=(40, 80)))
    common = ["gram", "--kernel", "wide-ntk", "--depth", "7", "--x1", "x.npy", "--store", "K.zarr", "--tile", "16",
              "--cluster", scheduler, "--quiet"]
    assert main([*common, "--report", "run.json"]) == 0
    report = json.loads(open("run.json").read())
    assert (report["shape"], report["tile"], report["tiles"], report["computed"], report["reused"]) == \
        ([40, 40], 16, 6, 6, 0)
    assert report["pairs"] == 1088 and report["bytes_written"] == 1088 * 8
    assert report["seconds"] > 0 and report["pairs_per_second"] == pytest.approx(1088 / report["seconds"])
    assert report["kernel"]["kind"] == "wide-ntk" and report["kernel"]["spec"]["depth"] == 7
    assert report["machine"]["cpus"] >= 1 and "numpy" in report["environment"]["libraries"]
    assert main([*common, "--resume", "--report", "again.json"]) == 0
    again = json.loads(open("again.json").read())
    assert (again["computed"], again["reused"], again["pairs"]) == (0, 6, 0)
    elsewhere = [arg if arg != "K.zarr" else "M.zarr" for arg in common]
    assert main([*elsewhere, "--report", "missing/run.json"]) == 2
    assert not (tmp_path / "M.zarr").exists()
