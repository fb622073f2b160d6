"""`deepntk reproduce depth` (docs/depth-study.md): the depth study end to end through the command line on a small,
learnable MNIST stand-in (class l is a bright square at its own place), its resume, and its numbers against
independent computations (collapse measures by hand, regression by numpy.linalg.solve, flow by scipy's expm, the
1/|x|-weighted vote by an explicit solve)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from deepntk.analytic import wide_ntk_kernel
from deepntk.cli.main import main
from deepntk.engine.experiments.datasets import load_mnist, write_idx
from deepntk.engine.experiments.depth import (DEPTHS, FLOW_TIME, QUICK_IMAGES, DepthResult, collapse_measures,
                                              depth_scale, inverse_norm_vote, predict_in_memory, units)
from tests.conftest import TOL, assert_close

# Θ̃^∞ once, the wide NTK and NNGP at every depth, E Θ̃ at every depth but L = 1 (the narrow MLP needs L ≥ 2).
QUICK_ROWS = 1 + 2 * len(DEPTHS) + (len(DEPTHS) - 1)


def learnable_mnist(folder, n=1200):
    """Test files only: `load_mnist` splits them 1000/200. Each class's square has its own brightness, so the
    classes' norms differ (the 1/|x|-weighted vote has one clear winner)."""
    rng = np.random.default_rng(5)
    labels = np.arange(n, dtype=np.uint8) % 10
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        images[index, 2 + 8 * row: 9 + 8 * row, 1 + 7 * col: 7 + 7 * col] = 120 + 13 * int(label)
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), images)
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte"), labels)


@pytest.fixture
def mnist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("mnist")
    learnable_mnist("mnist")
    return "mnist"


def run_quick(mnist, *extra):
    return main(["reproduce", "depth", "--scale", "quick", "--data-dir", mnist, "-o", "out", *extra])


def test_reproduce_depth_quick_end_to_end(mnist, capsys):
    assert run_quick(mnist) == 0
    out = capsys.readouterr().out
    result = json.load(open("out/results.json"))
    rows = {(row["kernel"], row["depth"]): row for row in result["rows"]}
    assert result["complete"] is True and len(result["rows"]) == len(rows) == QUICK_ROWS
    assert result["train_images"] == result["test_images"] == QUICK_IMAGES
    assert ("narrow-limit", None) in rows and ("narrow-expected", 1) not in rows and ("wide-nngp", 10000) in rows
    # The majority vote from the labels the study read, counted here.
    data = load_mnist(mnist, train_size=QUICK_IMAGES, test_size=QUICK_IMAGES)
    majority = np.bincount(data.labels_train).argmax()
    assert result["majority_class"] == majority
    assert result["majority_accuracy"] == pytest.approx(np.mean(data.labels_test == majority), abs=0)
    # The classes are separable: a shallow kernel finds that; the deepest wide NTK gives every image one class,
    # the one the 1/|x|-weighted vote picks (its L → ∞ form, docs/depth-study.md#the-limit-classifier).
    assert rows[("wide-ntk", 1)]["regression_accuracy"] >= 0.9 and rows[("wide-nngp", 1)]["regression_accuracy"] >= 0.9
    deepest = rows[("wide-ntk", 10000)]
    assert deepest["top_class_share"] == 1.0 and deepest["top_class"] == result["inverse_norm_vote_class"]
    assert rows[("wide-ntk", 1)]["top_class_share"] < 0.5
    # Collapse: the wide kernels' normalised entries narrow with depth; the narrow MLP's do not.
    spreads = [rows[("wide-ntk", L)]["spread"] for L in DEPTHS]
    assert all(a > b for a, b in zip(spreads, spreads[1:])), spreads
    assert rows[("narrow-expected", 10000)]["spread"] > 100 * rows[("wide-ntk", 10000)]["spread"]
    assert "majority vote (class" in out and "wide NNGP Σ^L" in out and "  10000 " in out
    assert os.path.getsize("out/depth.png") > 10000 and os.path.exists("out/manifest.json")


def test_depth_figure_draws_every_kernel_on_a_log_axis(mnist):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    assert run_quick(mnist, "--no-plot") == 0
    figure = DepthResult.load("out").figure()
    ax = figure.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert ax.get_xscale() == "log"
    for kernel in ("wide NTK", "wide NNGP", "mathbb{E}", "Theta^\\infty", "majority vote"):
        assert any(kernel in label for label in labels), (kernel, labels)
    solid = [line for line in ax.get_lines() if "NTK" in line.get_label() and "regression" in line.get_label()]
    assert len(solid[0].get_xdata()) == len(DEPTHS) and solid[0].get_linestyle() == "-"


def test_resume_computes_only_the_missing_rows(mnist, capsys):
    assert run_quick(mnist, "--no-plot") == 0
    finished = json.load(open("out/results.json"))
    kept = 20
    partial = {**finished, "rows": [{**row, "seconds": -1.0} for row in finished["rows"][:kept]], "complete": False}
    with open("out/results.json", "w") as handle:
        json.dump(partial, handle)
    capsys.readouterr()
    assert run_quick(mnist, "--no-plot", "--resume") == 0
    assert f"resuming: the {kept} finished parts" in capsys.readouterr().out
    resumed = json.load(open("out/results.json"))
    assert resumed["complete"] is True and len(resumed["rows"]) == QUICK_ROWS
    assert [row["seconds"] for row in resumed["rows"][:kept]] == [-1.0] * kept  # kept, not recomputed
    assert all(row["seconds"] >= 0 for row in resumed["rows"][kept:])
    for old, new in zip(finished["rows"][kept:], resumed["rows"][kept:]):
        assert (old["kernel"], old["depth"], old["regression_accuracy"]) == \
               (new["kernel"], new["depth"], new["regression_accuracy"])
    assert run_quick(mnist, "--no-plot", "--resume") == 0  # finished: printed again, nothing computed
    assert "reusing the results" in capsys.readouterr().out


def test_a_resumed_run_shows_its_reused_rows_first_and_never_again(mnist):
    """The progress a resumed run reports: its first count is the rows it keeps (so they are not rated as this
    run's work), and no unit it keeps is shown as being computed."""
    from deepntk.engine.experiments.depth import depth_study

    class Recorder:
        def __init__(self):
            self.shown = []

        def show(self, label, done, total, remark=""):
            if label == "depth study":
                self.shown.append((done, total, remark))

    picked = dict(kernels=["wide-ntk"], depths=[1, 3, 10])
    os.makedirs("out")
    depth_study("quick", mnist, folder="out", **picked)
    finished = DepthResult.load("out").data
    DepthResult({**finished, "rows": finished["rows"][:2], "complete": False}, {}).save("out")
    recorder = Recorder()
    depth_study("quick", mnist, folder="out", progress=recorder, **picked)
    assert recorder.shown == [(2, 3, "wide NTK Θ^L, L = 10"), (3, 3, "")]


@pytest.mark.parametrize("argv, message", [
    (["--scale", "7"], "the depth study's scale is quick, <N>k"),
    (["--scale", "60k"], "the depth study's scale is quick, <N>k"),
    (["--networks", "mlp"], "--networks goes with table1"),
    (["--kernels", "wide-ntk,cntk"], "the depth study's kernels are wide-ntk, wide-nngp, narrow-expected, narrow-limit"),
    (["--depths", "10,0"], "depths"),
])
def test_bad_depth_options_are_one_line_usage_errors(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "depth", *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1 and captured.out == ""
    assert not os.path.exists("deepntk-results")


def test_kernels_and_depths_pick_the_rows(mnist, capsys):
    assert run_quick(mnist, "--no-plot", "--kernels", "wide-nngp,wide-ntk", "--depths", "30,3") == 0
    result = json.load(open("out/results.json"))
    assert [(row["kernel"], row["depth"]) for row in result["rows"]] == [
        ("wide-ntk", 3), ("wide-nngp", 3), ("wide-ntk", 30), ("wide-nngp", 30)]
    assert json.load(open("out/run.json"))["config"] == {
        "scale": "quick", "kernels": ["wide-nngp", "wide-ntk"], "depths": [30, 3]}
    capsys.readouterr()
    # Another choice of rows is another configuration: refused in the same folder, not mixed into it.
    assert run_quick(mnist, "--no-plot", "--kernels", "wide-ntk") == 2
    assert "kernels" in capsys.readouterr().err


def test_a_run_without_kernels_or_depths_keeps_the_key_of_earlier_runs():
    from deepntk.engine.experiments.depth import DepthConfig
    from deepntk.engine.experiments.protocol import config_key

    assert config_key(DepthConfig(scale="10k", data_dir="somewhere")) == {"scale": "10k"}


def test_the_paper_experiments_still_refuse_the_depth_scales(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "fig5", "--scale", "quick"]) == 2
    assert "scale must be one of small, paper" in capsys.readouterr().err


def test_scales_and_units():
    assert depth_scale("10k")["train_size"] == 10000 and depth_scale("10k")["test_size"] is None
    assert depth_scale("full")["train_size"] is None and depth_scale("full")["out_of_core"]
    assert units(("wide-ntk", "narrow-expected", "narrow-limit"), (1, 10)) == [
        ("narrow-limit", None), ("wide-ntk", 1), ("wide-ntk", 10), ("narrow-expected", 10)]


def test_collapse_measures_by_hand():
    """K's normalised off-diagonal entries are 1/2, 0, 1/2: mean 1/3, standard deviation √(1/18); tr K = 6 and
    Σ K² = 20.5 give the effective rank 36/20.5; det K = 2 > 0, so all three eigenvalues are resolved."""
    K = np.array([[4.0, 1.0, 0.0], [1.0, 1.0, 0.5], [0.0, 0.5, 1.0]])
    lam = np.linalg.eigvalsh(K)
    measures = collapse_measures(K, lam)
    assert measures["one_minus_mean"] == pytest.approx(2 / 3, rel=TOL["roundoff"])
    assert measures["spread"] == pytest.approx(np.sqrt(1 / 18), rel=TOL["roundoff"])
    assert measures["effective_rank"] == pytest.approx(36 / 20.5, rel=TOL["roundoff"])
    p = lam / lam.sum()
    assert measures["entropy_rank"] == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=TOL["roundoff"])
    assert measures["resolved"] == 3 and not measures["condition_is_lower_bound"]
    # Rank one plus 1e-20: two eigenvalues far below the floor 3ε·λ_max.
    v = np.array([1.0, 2.0, 3.0])
    flat = np.outer(v, v) + 1e-20 * np.eye(3)
    collapsed = collapse_measures(flat, np.linalg.eigvalsh(flat))
    assert collapsed["resolved"] == 1 and collapsed["condition_is_lower_bound"]
    assert collapsed["spread"] < TOL["exact"] and abs(collapsed["one_minus_mean"]) < TOL["roundoff"]


def test_a_tiny_spread_around_one_keeps_its_digits():
    """Normalised entries 1 − 10⁻³ ± 10⁻⁶ (a deep NNGP's kind): the spread against NumPy's std of the entries
    themselves. E[x²] − E[x]² would lose it (about 1e-4 relative here, an error of ε·1 on a variance of 1e-12);
    row blocks of 7 rows make the sums cross blocks."""
    from deepntk.engine.experiments.depth import normalised_moments

    rng = np.random.default_rng(6)
    n = 40
    noise = rng.standard_normal((n, n)) * 1e-6
    C = 1 - 1e-3 + np.triu(noise, 1) + np.triu(noise, 1).T
    np.fill_diagonal(C, 1.0)
    norms = rng.uniform(0.5, 2.0, n)
    K = C * np.outer(norms, norms)
    off = C[~np.eye(n, dtype=bool)]
    blocks = lambda: ((slice(s, min(s + 7, n)), slice(0, n), K[s:s + 7], 1) for s in range(0, n, 7))  # noqa: E731
    mean, spread = normalised_moments(blocks, np.diag(K))
    assert mean == pytest.approx(np.mean(off), rel=TOL["roundoff"])
    assert spread == pytest.approx(np.std(off), rel=TOL["oracle"])


def test_predictions_against_solve_and_expm():
    """Regression against numpy.linalg.solve, and flow K(x, X)·K⁻¹(I − e^{−tK/N})Y against scipy's expm, on a
    conditioned wide NTK (L = 3, 30 points)."""
    scipy_linalg = pytest.importorskip("scipy.linalg", reason="scipy is not installed")
    rng = np.random.default_rng(3)
    X, X_test = rng.random((30, 6)), rng.random((7, 6))
    Y = np.eye(10)[rng.integers(0, 10, 30)]
    K, K_test = wide_ntk_kernel(X, depth=3), wide_ntk_kernel(X_test, X, depth=3)
    flow, regression, lam = predict_in_memory(K, K_test, Y, FLOW_TIME)
    assert lam.min() > 1e-8 * lam.max()  # conditioned: nothing is cut at the floor
    assert_close(regression, K_test @ np.linalg.solve(K, Y), TOL["solve"], "regression")
    t = FLOW_TIME * np.mean(np.diag(K))
    expected = K_test @ np.linalg.solve(K, (np.eye(30) - scipy_linalg.expm(-t * K / 30)) @ Y)
    assert_close(flow, expected, TOL["solve"], "flow")


def test_inverse_norm_vote_is_regression_with_the_limit_ntk():
    """K = c₀·aaᵀ + (1 − c₀)·diag(a²) (normalised entries c₀ off the diagonal, a_i = |x_i|), test rows c₀·|x|·aᵀ:
    kernel regression by an explicit solve gives every test point the class of the 1/|x|-weighted vote."""
    rng = np.random.default_rng(4)
    X = rng.random((60, 5)) * rng.uniform(0.2, 3.0, size=(60, 1))
    labels = rng.integers(0, 10, 60)
    labels_test = rng.integers(0, 10, 25)
    a = np.linalg.norm(X, axis=1)
    c0 = 0.25
    K = c0 * np.outer(a, a) + (1 - c0) * np.diag(a * a)
    K_test = c0 * np.outer(rng.uniform(0.5, 2.0, 25), a)
    classes = np.argmax(K_test @ np.linalg.solve(K, np.eye(10)[labels]), axis=1)
    vote, accuracy = inverse_norm_vote(X, labels, labels_test)
    assert set(classes) == {vote}
    assert accuracy == np.mean(labels_test == vote)


def test_full_scale_out_of_core_matches_in_memory(tmp_path, monkeypatch, capsys):
    """`--scale full` on a tiny MNIST stand-in (every one of its 50 training images, through Zarr Gram stores, a
    local Dask cluster and the iterative solvers) gives the in-memory path's accuracies and collapse measures."""
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    from deepntk.engine.experiments.depth import depth_unit_in_memory

    monkeypatch.chdir(tmp_path)
    os.makedirs("mnist")
    learnable_mnist("mnist", n=60)
    assert main(["reproduce", "depth", "--scale", "full", "--data-dir", "mnist", "-o", "out", "--no-plot",
                 "--cluster", "local", "--workers", "1"]) == 0
    result = json.load(open("out/results.json"))
    assert result["train_images"] == 50 and result["out_of_core"] and result["complete"]
    log = capsys.readouterr().err  # a batch log hears from every stage of a row, the solves included
    for stage in ("train Gram", "test Gram", "collapse measures", "flow iterations", "regression iterations"):
        assert f"wide NTK Θ^L at L = 1000: {stage}" in log, (stage, log)
    # Each row's stores are removed once the row is saved (at N = 60,000 they take ≈ 19 GB a row).
    assert os.listdir("out/grams") == [] and "grams" in json.load(open("out/run.json"))["files"]
    data = load_mnist("mnist")
    for row in result["rows"]:
        reference = depth_unit_in_memory(row["kernel"], row["depth"], data)
        assert row["regression_accuracy"] == reference["regression_accuracy"], row
        assert row["flow_accuracy"] == reference["flow_accuracy"], row
        for key in ("spread", "one_minus_mean", "effective_rank"):
            assert row[key] == pytest.approx(reference[key], rel=TOL["identity"]), (row["kernel"], key)


def test_an_out_of_core_solve_that_stopped_early_is_a_warning_of_the_summary():
    """A row of `--scale full` keeps its solves' accounts; the printed summary warns of each one that stopped above
    its tolerance, with the way out this study has (it has no --max-iterations)."""
    from deepntk.engine.solvers import KernelOperator, regression, solve_fields

    K = np.random.default_rng(3).standard_normal((40, 40))
    K = K @ K.T + 1e-3 * np.eye(40)
    Y = np.eye(40)[:, :3]
    converged = regression(KernelOperator.from_array(K), Y, rank=40)
    stopped = regression(KernelOperator.from_array(K), Y, max_iterations=2, rank=3)
    assert converged.converged and not stopped.converged
    measures = {"spread": 0.1, "one_minus_mean": 0.5, "effective_rank": 3.0, "entropy_rank": None, "resolved": None,
                "condition": None, "condition_is_lower_bound": None}
    row = {"kernel": "wide-ntk", "depth": 10, "regression_accuracy": 0.9, "flow_accuracy": 0.8, "top_class": 1,
           "top_class_share": 0.2, "seconds": 1.0, "flow_times": [5.0, float("inf")], **measures,
           **solve_fields([converged, stopped], "the study's bound")}
    data = {"scale": "full", "train_images": 40, "test_images": 40, "targets": "one-hot", "flow_time": 1000.0,
            "C_L": 4.0, "majority_class": 1, "majority_accuracy": 0.1, "inverse_norm_vote_class": 1,
            "inverse_norm_vote_accuracy": 0.1, "rows": [row], "complete": True}
    warnings = [line for line in DepthResult(data, {}).summary() if line.startswith("warning: ")]
    account = stopped.describe("the study's bound")
    assert warnings == [f"warning: wide NTK Θ^L at L = 10, t = inf: {account}"]
    assert "after 2 of 2 iterations" in warnings[0] and warnings[0].endswith("the study's bound")


@pytest.mark.slow  # two processes through every quick row: about 10 s
def test_ctrl_c_keeps_the_finished_rows_and_resume_completes_them(mnist):
    """A real SIGINT to a real `deepntk reproduce depth` once its first row is saved: exit 130, one line naming
    the rows kept, and a --resume rerun that keeps them and computes the others."""
    import sys

    from tests.conftest import interrupt_once_saved, resume_keeping

    argv = [sys.executable, "-m", "deepntk.cli.main", "reproduce", "depth", "--scale", "quick", "--data-dir", mnist,
            "-o", "out", "--no-plot", "--quiet"]
    saved, kept = interrupt_once_saved(argv, "rows", seconds=120)
    assert kept < QUICK_ROWS
    final = resume_keeping(argv, kept, seconds=300)
    assert len(final["rows"]) == QUICK_ROWS
    assert final["rows"][:kept] == saved["rows"]
