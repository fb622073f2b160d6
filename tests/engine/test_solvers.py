"""Iterative kernel regression and kernel flow against the dense eigendecomposition (deepntk.analytic.flow),
on a well-conditioned MLP limit kernel, on a CNN limit kernel whose constant mode is ≥ 10³ times its next
eigenvalue, on NTK blocks, and through a Gram store read tile by tile."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from deepntk.analytic import cnn_limit_kernel, kernel_flow, mlp_limit_kernel
from deepntk.engine.solvers import KernelOperator, NystromPreconditioner, flow, flows, regression
from conftest import TOL, assert_close

# The solvers' default; the CNN Gram's condition number (≈ 2·10¹⁰) puts its attainable residual near 4·10⁻⁷.
SOLVER_TOL = 1e-6


def dense(K, Y, t, Kx=None):
    """The dense eigendecomposition's answer for a scalar kernel, column by column (K ⊗ I_k)."""
    return np.column_stack([kernel_flow(K, Y[:, c], t, K_test_train=Kx).reshape(-1) for c in range(Y.shape[1])])


@pytest.fixture(scope="module")
def mlp_problem():
    rng = np.random.default_rng(0)
    X, Xt = rng.uniform(0.05, 1, size=(1500, 3)), rng.uniform(0.05, 1, size=(40, 3))
    Y = np.sin(3 * X[:, :1]) * X[:, 1:3]
    return mlp_limit_kernel(X), mlp_limit_kernel(Xt, X), Y


@pytest.fixture(scope="module")
def cnn_problem():
    rng = np.random.default_rng(1)
    X, Xt = rng.uniform(0.05, 1, size=(260, 1, 5, 5)), rng.uniform(0.05, 1, size=(20, 1, 5, 5))
    K = cnn_limit_kernel(X, outputs=10, filter_variance="code", rho=1 / 3)
    lam = np.linalg.eigvalsh(K)
    assert lam[-1] / lam[-2] >= 1e3  # the constant mode dominates, as for the paper's 10-class CNN
    Y = np.eye(10)[rng.integers(0, 10, size=260)]
    return K, cnn_limit_kernel(Xt, X, outputs=10, filter_variance="code", rho=1 / 3), Y


def test_the_nystrom_sketch_recovers_a_low_rank_gram_exactly():
    """A PSD matrix of rank 20 < m with eigenvalues from 1 to 10⁻⁴: the randomized Nyström approximation is exact,
    so its eigenvalues are the matrix's (eigvalsh), each to `solve` relative accuracy, and it rebuilds the
    matrix."""
    rng = np.random.default_rng(11)
    V = np.linalg.qr(rng.standard_normal((300, 20)))[0]
    eigenvalues = np.geomspace(1.0, 1e-4, 20)
    K = (V * eigenvalues) @ V.T
    P = NystromPreconditioner.build(KernelOperator.from_array(K), rank=40, seed=3)
    assert P.eigenvalues.shape == (20,)
    assert_close(P.eigenvalues / np.linalg.eigvalsh(K)[::-1][:20], np.ones(20), TOL["solve"], "eigenvalues")
    assert_close((P.U * P.eigenvalues) @ P.U.T, K, TOL["solve"], "K̂ = U Λ̂ Uᵀ")


@pytest.mark.parametrize("problem", ["mlp_problem", "cnn_problem"])
def test_regression_matches_the_dense_solution(problem, request):
    K, Kx, Y = request.getfixturevalue(problem)
    report = regression(KernelOperator.from_array(K), Y, tol=SOLVER_TOL, rank=100)
    assert report.converged and report.residual < SOLVER_TOL, report
    assert_close(Kx @ report.coefficients, dense(K, Y, np.inf, Kx), TOL["iterative"], "test predictions")


@pytest.mark.parametrize("problem", ["mlp_problem", "cnn_problem"])
@pytest.mark.parametrize("t", [0.5, 30.0, 1e4])
def test_flow_matches_the_dense_matrix_function(problem, t, request):
    K, Kx, Y = request.getfixturevalue(problem)
    report = flow(KernelOperator.from_array(K), Y, t, tol=SOLVER_TOL)
    assert report.converged, report
    assert_close(Kx @ report.coefficients, dense(K, Y, t, Kx), TOL["iterative"], f"flow to t = {t}")
    assert_close(K @ report.coefficients, dense(K, Y, t), TOL["iterative"], "training predictions")


def test_several_flow_times_from_one_krylov_space(cnn_problem):
    """One `flows` call for three times (and a zero target column, and one column that converges long before the
    others) equals the dense answer at each time."""
    K, Kx, Y = cnn_problem
    Y = np.column_stack([Y[:, :3], np.zeros(len(Y)), np.ones(len(Y))])
    times = [0.5, 30.0, 1e4]
    reports = flows(KernelOperator.from_array(K), Y, times, tol=SOLVER_TOL)
    for t, report in zip(times, reports):
        assert report.converged and report.coefficients.shape == Y.shape, (t, report)
        assert_close(Kx @ report.coefficients, dense(K, Y, t, Kx), TOL["iterative"], f"flow to t = {t}")
        assert np.all(report.coefficients[:, 3] == 0.0)


def test_a_lanczos_basis_that_cannot_fit_is_refused_up_front(mlp_problem):
    K, _, Y = mlp_problem
    with pytest.raises(deepntk.base.errors.MemoryBudgetError, match="Lanczos basis"):
        flows(KernelOperator.from_array(K), Y, [1.0], max_iterations=10**9)


def test_block_kernels_are_one_coupled_system(mlp_problem):
    """(N, N, k, k) Grams couple the outputs: K ⊗ C with an SPD 2×2 coupling C, against the dense solve."""
    K, _, Y = mlp_problem
    C = np.array([[1.0, 0.4], [0.4, 0.7]])
    blocks = K[:300, :300, None, None] * C
    Y = Y[:300]
    for t in (5.0, np.inf):
        operator = KernelOperator.from_array(blocks)
        report = (regression(operator, Y, tol=SOLVER_TOL, rank=60) if np.isinf(t) else
                  flow(operator, Y, t, tol=SOLVER_TOL))
        assert report.converged and report.coefficients.shape == Y.shape, report
        stacked = blocks.transpose(0, 2, 1, 3).reshape(600, 600)
        fitted = (stacked @ report.coefficients.reshape(-1)).reshape(300, 2)
        assert_close(fitted, kernel_flow(blocks, Y, t), TOL["iterative"], f"t = {t}")


def test_a_gram_store_gives_the_same_products(tmp_path):
    distributed = pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    from deepntk.engine.clusters import SINGLE_THREADED
    from deepntk.engine.gram import GramKernel, gram

    X = np.random.default_rng(5).uniform(0.1, 1, size=(90, 2))
    kernel = GramKernel.for_spec("limit", deepntk.MLP(2, 1, 2, 1.0))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env=dict(SINGLE_THREADED)) as cluster, distributed.Client(cluster) as client:
        store = gram(kernel, X, store=tmp_path / "K.zarr", tile=16, client=client).store
    operator, dense = KernelOperator.from_store(store, memory=0), mlp_limit_kernel(X)  # read for every product
    V = np.random.default_rng(6).normal(size=(90, 3))
    assert_close(operator @ V, dense @ V, TOL["roundoff"], "store products")
    assert_close(KernelOperator.from_store(store) @ V, dense @ V, TOL["roundoff"], "kept tiles")
    Y = X[:, :1] * X[:, 1:]
    report = regression(operator, Y, tol=SOLVER_TOL, rank=30)
    assert report.converged
    assert_close(dense @ report.coefficients, Y, TOL["iterative"], "store regression interpolates")


@pytest.mark.slow
def test_regression_and_flow_at_four_thousand_points():
    """The issue's size: N = 4000 MLP limit kernel, against the dense eigendecomposition."""
    rng = np.random.default_rng(7)
    X, Xt = rng.uniform(0.05, 1, size=(4000, 4)), rng.uniform(0.05, 1, size=(50, 4))
    K, Kx = mlp_limit_kernel(X, d_out=3), mlp_limit_kernel(Xt, X, d_out=3)
    Y = np.column_stack([np.sin(3 * X[:, 0]), X[:, 1] * X[:, 2], X[:, 3] ** 2])
    operator = KernelOperator.from_array(K)
    for t in (10.0, np.inf):
        report = regression(operator, Y, tol=SOLVER_TOL) if np.isinf(t) else flow(operator, Y, t, tol=SOLVER_TOL)
        assert report.converged, report
        assert_close(Kx @ report.coefficients, dense(K, Y, t, Kx), TOL["iterative"], f"t = {t}")


def test_duplicate_inputs_make_a_singular_gram_that_still_solves():
    """Every point twice: K is singular, Y consistent with it; regression still interpolates, like the dense
    pseudo-inverse."""
    X = np.random.default_rng(8).uniform(0.05, 1, size=(40, 2))
    X = np.concatenate([X, X])
    K = mlp_limit_kernel(X)
    Y = X[:, :1] * X[:, 1:]
    report = regression(KernelOperator.from_array(K), Y, tol=SOLVER_TOL)
    assert report.converged
    assert_close(K @ report.coefficients, dense(K, Y, np.inf), TOL["iterative"], "fit with duplicates")


@pytest.fixture(scope="module")
def ill_conditioned():
    """An MLP limit Gram of 300 points, condition ≈ 2·10⁹ (eigvalsh), and smooth targets."""
    X = np.random.default_rng(0).uniform(0.05, 1, size=(300, 3))
    return mlp_limit_kernel(X), np.sin(3 * X[:, :1]) * X[:, 1:3]


def test_an_unattainable_tolerance_stops_when_restarts_stop_helping(ill_conditioned):
    """Tolerance 10⁻¹³ below float64's floor on this Gram (the dense solve's residual is ≈ 10⁻¹¹): before, CG
    spent all 8 restarts and its report said only "not converged"; now it stops when a restart leaves the true
    residual above half the previous one, says so, and estimates K's condition from the preconditioner (exact at
    rank ≥ N) within a factor 2 of eigvalsh's."""
    from deepntk.engine.solvers import ATTAINABLE

    K, Y = ill_conditioned
    dense_residual = np.linalg.norm(Y - K @ np.linalg.solve(K, Y), axis=0) / np.linalg.norm(Y, axis=0)
    assert dense_residual.max() > 1e-13  # the tolerance below is out of float64's reach
    report = regression(KernelOperator.from_array(K), Y, tol=1e-13, rank=400, max_iterations=1000)
    assert report.stop == ATTAINABLE and not report.converged and report.iterations < 20, report
    assert 1e-13 < report.residual < 1e3 * dense_residual.max(), report
    eigenvalues = np.linalg.eigvalsh(K)
    assert 0.5 <= report.condition / (eigenvalues[-1] / eigenvalues[0]) <= 2, report.condition
    text = report.describe()
    assert text.startswith(f"conjugate gradients stopped after {report.iterations} of 1000 iterations at relative "
                           f"residual {report.residual:.1e}, above the tolerance 1e-13"), text
    assert "float64 cannot reach" in text and f"condition ≳ {report.condition:.1e}" in text, text
    assert "--max-iterations" not in text, text


def test_an_iteration_limit_is_named_with_its_way_out(ill_conditioned):
    """CG and Lanczos stopped by their iteration limit say so and point to --max-iterations."""
    from deepntk.engine.solvers import CONVERGED, ITERATION_LIMIT

    K, Y = ill_conditioned
    operator = KernelOperator.from_array(K)
    cg = regression(operator, Y, tol=1e-10, rank=20, max_iterations=3)
    lanczos = flow(operator, Y, 10.0, tol=1e-12, max_iterations=6)
    for report, solver, measure in ((cg, "conjugate gradients", "residual"), (lanczos, "Lanczos", "change")):
        assert report.stop == ITERATION_LIMIT and not report.converged, report
        assert report.describe() == (
            f"{solver} stopped after {report.max_iterations} of {report.max_iterations} iterations at relative "
            f"{measure} {report.residual:.1e}, above the tolerance {report.tolerance:g}: it reached its iteration "
            f"limit; raise --max-iterations")
    converged = regression(operator, Y, tol=1e-6, rank=400)
    assert converged.stop == CONVERGED and converged.describe().startswith("conjugate gradients converged in")


def test_regression_reports_its_start_before_building_the_preconditioner():
    """on_iteration(0) comes before the preconditioner's products with K (minutes at N = 60,000), so a progress
    display opens the regression's stage then, instead of leaving the flow's running; then 1, 2, … per product."""
    rng = np.random.default_rng(2)
    A = rng.standard_normal((30, 30))
    K = A @ A.T + np.eye(30)
    events = []
    operator = KernelOperator(lambda Y: (events.append("product"), K @ Y)[1], 30, 30)
    report = regression(operator, rng.standard_normal((30, 2)), rank=5,
                        on_iteration=lambda j: events.append(j))
    assert events[0] == 0 and events[1] == "product", events[:3]
    assert [e for e in events if e != "product"] == list(range(report.iterations + 1))
