"""The benchmark rows of the limit-kernel work (`deepntk bench --workloads solvers|cnn-limit`) on real MNIST:
the numbers they report are checked against independent computations, not timed."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from conftest import TOL

from mnist_data import mnist_data_dir, needs_mnist

SHARED_MNIST = mnist_data_dir()


@needs_mnist
def test_solver_rows_agree_with_the_dense_eigendecomposition():
    from deepntk.engine.experiments.benchmark import solver_rates

    report = solver_rates(SHARED_MNIST, size=300, test_size=60, max_iterations=300)
    assert report["train_images"] == 300 and report["test_images"] == 60
    flows = [row for row in report["rows"] if np.isfinite(row["t"])]
    assert [row["t"] for row in flows] == report["flow_times"] and all(row["residual"] < 1e-6 for row in flows)
    assert report["dense"]["flow_vs_dense"] < TOL["iterative"]
    assert flows[1]["test_accuracy"] == report["dense"]["test_accuracy"]
    assert all(row["peak_bytes"] > 0 and row["seconds"] > 0 for row in report["rows"])


@needs_mnist
def test_cnn_limit_rows_include_mnist_and_a_bound():
    pytest.importorskip("numba", reason="the numba extra is not installed")
    from deepntk.engine.experiments.benchmark import cnn_limit_rates

    report = cnn_limit_rates(sizes=((7, 12),), data_dir=SHARED_MNIST)
    names = [(row["image"], row["gram"]) for row in report["rows"]]
    assert names == [("7×7 uniform", "symmetric"), ("7×7 uniform", "cross"), ("7×7 MNIST", "symmetric"),
                     ("7×7 MNIST", "cross")]
    # Rates only: which of two timings is larger is for the benchmark to show, not for a test to assert (a
    # loaded machine reorders them).
    assert np.isfinite(report["root_bound_per_second"]) and report["root_bound_per_second"] > 1e6
    assert np.isfinite(report["kappa_loop_per_second"]) and report["kappa_loop_per_second"] > 1e6
    for row in report["rows"]:
        assert row["pairs"] == {"symmetric": 12 * 13 / 2, "cross": 3 * 9}[row["gram"]]
        assert np.isfinite(row["fraction_of_bound"]) and row["fraction_of_bound"] > 0
        assert np.isfinite(row["fraction_of_kappa_loop"]) and row["fraction_of_kappa_loop"] > 0
        # `cnn_limit_kernel` as a standalone user calls it, timed beside the Numba backend's pair sum.
        assert np.isfinite(row["analytic_over_numba"]) and row["analytic_over_numba"] > 0
        assert row["analytic"]["arccos_per_second"] > 0
        if row["image"].endswith("uniform"):
            assert row["evaluated_fraction"] == 1.0 and row["polynomial"] == "full"
        else:  # Table 1's scales: every correlation of MNIST's patches is near one
            assert 0.3 < row["evaluated_fraction"] < 0.95 and row["polynomial"] == "near one"


def test_time_call_runs_the_reference_once_when_told_no_repeats():
    """The CNN rows time the slow reference with repeats=0: one call, reported as both first and median."""
    from deepntk.engine.experiments.benchmark import time_call

    calls = []
    result, first, median = time_call(lambda: calls.append(None) or len(calls), repeats=0)
    assert (calls, result, median) == ([None], 1, first)
    calls.clear()
    result, _, _ = time_call(lambda: calls.append(None) or len(calls), repeats=2, min_seconds=0.0)
    assert len(calls) == 3 and result == 1


def test_time_call_repeats_fast_calls_for_a_least_time():
    """A call of ~2 ms is timed until 50 ms have passed (not 3 times); one of ~30 ms `repeats` times; neither past
    `max_calls`."""
    from deepntk.engine.experiments.benchmark import time_call

    calls = []

    def sleeper(seconds):
        return lambda: calls.append(time.sleep(seconds))

    time_call(sleeper(0.002), repeats=3, min_seconds=0.05)
    assert 10 <= len(calls) - 1 <= 26, len(calls)
    calls.clear()
    time_call(sleeper(0.03), repeats=3, min_seconds=0.05)
    assert len(calls) - 1 == 3
    calls.clear()
    time_call(sleeper(0.0), repeats=3, min_seconds=10.0, max_calls=7)
    assert len(calls) - 1 == 7


@pytest.mark.parametrize("lines,cpu,vector", [
    (["model name\t: AMD EPYC 9654", "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq"], "AMD EPYC 9654", "AVX-512"),
    (["model name\t: Intel(R) Xeon(R) CPU E5-2680 v4", "flags\t\t: fpu sse2 avx avx2 fma"],
     "Intel(R) Xeon(R) CPU E5-2680 v4", "AVX2"),
    (["processor\t: 0", "Features\t: fp asimd evtstrm crc32"], None, "NEON"),
])
def test_the_machine_line_names_the_widest_vector_instructions(tmp_path, lines, cpu, vector):
    """Reports record the CPU: its model and widest vector instructions, from cpuinfo files of three machines."""
    from deepntk.engine.experiments.benchmark import machine

    path = tmp_path / "cpuinfo"
    path.write_text("\n".join(lines) + "\n")
    described = machine(str(path))
    assert described["vector"] == vector and described["cpus"] >= 1
    if cpu is not None:
        assert described["cpu"] == cpu


def test_the_wide_gram_row_counts_its_flops_and_is_the_api_s_kernel():
    """The wide MLP's Gram row (issue #33): its FLOP count, recomputed layer by layer here, and its workload is the
    empirical NTK of the spec it names (checked against a central-difference-free identity: the Gram of a
    2-point slice equals the corresponding block of the full Gram)."""
    from deepntk.engine.experiments.benchmark import wide_gram_workload, wide_ntk_flops, run_deepntk

    N, L, n, d, k = 6, 3, 16, 5, 2
    products = 2 * N * n * d + (L - 1) * 2 * N * n * n + 2 * N * k * n  # forward, layer by layer
    products += (L - 1) * 2 * N * k * n * n + 2 * N * k * k * n  # the Jacobians back through W^L … W^2 and the read-out
    layers = [(d, n)] + [(n, n)] * (L - 1) + [(n, k)]  # (fan-in, fan-out) of the L + 1 layers
    products += N * (N + 1) / 2 * sum(2 * fan_in + 2 * k * k * fan_out for fan_in, fan_out in layers)
    assert wide_ntk_flops(N, L, n, d, k) == products
    workload = wide_gram_workload(N=8, width=32, depth=2, d_in=6)
    spec = workload.params.spec
    assert (spec.arch, spec.width, spec.depth, spec.d_in, workload.X1.shape) == ("wide-mlp", 32, 2, 6, (8, 6))
    full = run_deepntk(workload, "numpy")
    import deepntk

    assert np.allclose(deepntk.scaled_ntk(workload.params, workload.X1[2:4], workload.X1[5:7], backend="numpy"),
                       full[2:4, 5:7], rtol=TOL["identity"], atol=0)


@needs_mnist
def test_wide_limit_rows_count_their_pairs_and_their_limit():
    """`deepntk bench --workloads wide-limit`'s rows on uniform inputs and MNIST: the pairs of a size × size cross
    Gram, the limit recomputed from the two measured rates it is built of, and both paths' rates."""
    pytest.importorskip("numba", reason="the numba extra is not installed")
    from deepntk.engine.experiments.benchmark import wide_limit_rates

    report = wide_limit_rates(size=48, depth=20, data_dir=SHARED_MNIST, repeats=1)
    assert [row["inputs"] for row in report["rows"]] == ["uniform", "MNIST"]
    peak = report["matmul_peak_flops"]
    assert peak > 1e8
    for row in report["rows"]:
        ceiling = row["pair_map_per_second"]
        assert ceiling > 1e5
        assert row["pairs"] == 48 * 48 and row["d_in"] == 784 and row["depth"] == 20
        assert row["limit_seconds"] == pytest.approx(2 * 784 * 48 * 48 / peak + 48 * 48 / ceiling, rel=TOL["exact"])
        assert row["fraction_of_limit"] == pytest.approx(row["limit_seconds"] / row["numba"]["seconds"])
        for path in ("numba", "numpy"):
            assert row[path]["pairs_per_second"] == pytest.approx(48 * 48 / row[path]["seconds"])
