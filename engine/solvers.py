"""Kernel regression and kernel flow for Grams too large for a dense factorization (docs/training.md#kernel-flow).

Both need only products of the Gram with a block of vectors, which `KernelOperator` computes from an array in
memory or tile by tile from a Gram store (each stored upper tile used twice):
- regression (t = ∞): K α = Y by conjugate gradients with k right-hand sides, preconditioned by a randomized
  Nyström approximation of K (rank m = 2000 by default, from the sketch K·Ω of a random Ω), stopped at a
  relative residual `tol`;
- flow at finite t: α = φ_t(K) Y with φ_t(λ) = (1 − e^{−tλ/N})/λ by the Lanczos method, one Krylov space per
  right-hand side shared by every flow time, the right-hand sides advanced together (one product per
  iteration), stopped when the approximation changes by less than `tol`.
Predictions at test points are K_test_train α. Scalar kernels (the limit and expected kernels, factors of I_k)
act on the k columns of Y independently; NTK Grams (N, N, k, k) act on Y stacked as one vector of N·k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base.errors import InputError


class KernelOperator:
    """Y ↦ K·Y for a symmetric positive semi-definite Gram K, Y of shape (N, r) (scalar K) or (N·k, r) (block K)."""

    def __init__(self, matvec, size: int, samples: int):
        self._matvec = matvec
        self.size = size
        self.samples = samples

    @classmethod
    def from_array(cls, K) -> "KernelOperator":
        """An in-memory Gram: (N, N) scalar or (N, N, k, k) blocks."""
        from ..analytic import stack_kernel

        samples = np.shape(K)[0]
        try:
            K = stack_kernel(K, name="the Gram")
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if K.shape[0] != K.shape[1]:
            raise InputError(f"a Gram must be square, got shape {K.shape}")
        return cls(lambda Y: K @ Y, K.shape[0], samples)

    @classmethod
    def from_store(cls, store, memory: int | None = None, backend=None) -> "KernelOperator":
        """A symmetric Gram store, read tile by tile for every product; its upper tiles are read once and kept
        when they fit in `memory` bytes (default: DEEPNTK_MEMORY_BUDGET), else nothing of size N² is held. Each
        off-diagonal tile's two products are `backend`'s `gram_tile_products` (a name, an instance, or None for
        the best installed)."""
        from ..backends.registry import get_backend

        if not store.symmetric:
            raise InputError(f"Gram store {store.path!r} is not a symmetric Gram (K of the training set with itself)")
        if not store.complete:
            raise InputError(f"Gram store {store.path!r} is incomplete; resume it first")
        from ..base.memory import memory_budget

        engine = get_backend(backend)
        N = store.shape[0]
        k = store.shape[2] if len(store.shape) == 4 else 1
        gram = store.group["gram"]
        upper_bytes = sum(store.entries(i, j) for i, j in store.tiles()) * k * k * 8
        kept = {}
        if upper_bytes <= (memory_budget() if memory is None else memory):
            kept = {(i, j): _stacked(gram[store.slices(i, j)]) for i, j in store.tiles()}

        def matvec(Y):
            out = np.zeros_like(Y)
            for i, j in store.tiles():
                rows, cols = store.slices(i, j)
                block = kept[i, j] if kept else _stacked(gram[rows, cols])
                r, c = _stacked_slice(rows, k), _stacked_slice(cols, k)
                if i == j:
                    out[r] += block @ Y[c]
                else:
                    to_rows, to_cols = engine.gram_tile_products(block, Y[c], Y[r])
                    out[r] += to_rows
                    out[c] += to_cols
            return out

        return cls(matvec, N * k, N)

    def __matmul__(self, Y):
        return self._matvec(Y)


def _stacked(block):
    """A stored tile (B1, B2, k, k) as (B1·k, B2·k), scalar tiles as they are: `stack_kernel` without its checks,
    which the stored tiles passed when written (this runs for every tile of every product)."""
    if block.ndim == 2:
        return block
    B1, B2, k, _ = block.shape
    return block.transpose(0, 2, 1, 3).reshape(B1 * k, B2 * k)


def _stacked_slice(s: slice, k: int) -> slice:
    return slice(s.start * k, s.stop * k)


@dataclass
class NystromPreconditioner:
    """P⁻¹ = λ̂_m·U Λ̂⁻¹ Uᵀ + (I − U Uᵀ) from a rank-m randomized Nyström approximation K̂ = U Λ̂ Uᵀ (Frangella,
    Tropp and Udell 2023): K's top eigenvalues are flattened to about λ̂_m, the smallest kept."""

    U: np.ndarray
    eigenvalues: np.ndarray

    @classmethod
    def build(cls, K: KernelOperator, rank: int, seed: int = 0) -> "NystromPreconditioner":
        """From the sketch K·Ω of an orthonormalized Gaussian Ω (N×m): one product of K with m vectors
        (Frangella, Tropp and Udell, Algorithm 2.1). A sketch, unlike m sampled columns, captures K's top
        eigenspace nearly as well as the exact eigenvectors do (docs/training.md#kernel-flow)."""
        from scipy.linalg import solve_triangular

        from ..base.memory import require_memory

        rank = min(rank, K.size)
        require_memory(4.0 * K.size * rank * 8, f"a rank-{rank} Nyström preconditioner of a Gram of size {K.size}")
        omega = np.linalg.qr(np.random.default_rng(seed).standard_normal((K.size, rank)))[0]
        sketch = K @ omega
        # A shift at round-off level keeps ΩᵀKΩ positive definite; it is taken off the eigenvalues again. It uses
        # the sketch's Frobenius norm, an upper bound of the spectral norm in the paper's shift, to spare an SVD.
        shift = np.sqrt(K.size) * np.finfo(float).eps * max(np.linalg.norm(sketch), 1e-300)
        core = omega.T @ sketch
        core = (core + core.T) / 2
        for _ in range(12):  # ΩᵀKΩ of a Gram that is not positive semi-definite needs more than round-off
            try:
                factor = np.linalg.cholesky(core + shift * np.eye(rank))
                break
            except np.linalg.LinAlgError:
                shift *= 100.0
        else:
            raise InputError("the Gram's sketch is not positive semi-definite: is it a kernel's Gram?")
        sketch += shift * omega  # Y = (K + shift·I)Ω
        del omega
        B = solve_triangular(factor, sketch.T, lower=True, overwrite_b=True).T  # K̂ = B Bᵀ = Y(ΩᵀY)⁻¹Yᵀ
        U, sigma, _ = np.linalg.svd(B, full_matrices=False)
        lam = np.maximum(sigma**2 - shift, 0.0)
        keep = lam > lam[0] * 1e-12
        return cls(U[:, keep], lam[keep])

    def __call__(self, R):
        projected = self.U.T @ R
        return self.U @ ((self.eigenvalues[-1] / self.eigenvalues)[:, None] * projected) + R - self.U @ projected


# Why a solve stopped (`SolveReport.stop`).
CONVERGED = "converged"
ITERATION_LIMIT = "iteration limit"
# Restarts of conjugate gradients from the true residual no longer reduce it: the float64 round-off in products
# with an ill-conditioned K bounds it above the tolerance.
ATTAINABLE = "attainable residual"
STOPS = (CONVERGED, ITERATION_LIMIT, ATTAINABLE)


@dataclass
class SolveReport:
    """Coefficients α (K α = Y, or α = φ_t(K) Y) and how the iteration ended: after `iterations` products with K
    (of at most `max_iterations`), at `residual`, the relative residual (conjugate gradients) or change (Lanczos)
    to compare with `tolerance`, for the reason `stop` (one of STOPS). `condition` is, for conjugate gradients,
    an estimate of K's condition number from the Nyström preconditioner's eigenvalues (a lower bound where its
    rank is below K's)."""

    coefficients: np.ndarray
    iterations: int
    residual: float
    converged: bool
    solver: str
    tolerance: float
    max_iterations: int
    stop: str
    condition: float | None = None

    def describe(self, more_iterations: str = "raise --max-iterations") -> str:
        """One sentence: the solver, its iterations, the residual it reached against its tolerance, why it
        stopped and, where it did not converge, what that means and the way out (docs/training.md#kernel-flow);
        `more_iterations`: how the caller's user allows more iterations."""
        measure = "relative change" if self.solver == "Lanczos" else "relative residual"
        reached = f"{measure} {self.residual:.1e}"
        if self.stop == CONVERGED:
            return (f"{self.solver} converged in {self.iterations} iterations: {reached} below the tolerance "
                    f"{self.tolerance:g}")
        head = (f"{self.solver} stopped after {self.iterations} of {self.max_iterations} iterations at {reached}, "
                f"above the tolerance {self.tolerance:g}")
        if self.stop == ITERATION_LIMIT:
            return f"{head}: it reached its iteration limit; {more_iterations}"
        condition = "" if self.condition is None else f" (condition ≳ {self.condition:.1e})"
        return (f"{head}: restarts from the true residual no longer reduce it, so float64 cannot reach the "
                f"tolerance on this Gram{condition}; the predictions are as accurate as float64 allows (more "
                f"iterations will not help)")


def solve_fields(solves, more_iterations: str = "raise --max-iterations") -> dict:
    """The fields a results row keeps of its solves (one per flow time): iterations, residuals, whether each
    converged, why each stopped (`SolveReport.stop`) and its one-sentence account (`SolveReport.describe`), which
    the commands print for each unconverged solve."""
    return {"iterations": [s.iterations for s in solves], "residuals": [s.residual for s in solves],
            "converged": [s.converged for s in solves], "stops": [s.stop for s in solves],
            "solver_reports": [s.describe(more_iterations) for s in solves]}


def unconverged_solves(row: dict, times, label: str) -> list[str]:
    """One line per solve of `row` (fields of `solve_fields`, one per flow time of `times`) that did not converge:
    "<label>, t = <t>: <its account>", for a warning."""
    return [f"{label}, t = {t:.3g}: {report}"
            for t, converged, report in zip(times, row["converged"], row["solver_reports"]) if not converged]


def _rhs(K: KernelOperator, Y) -> tuple:
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if not np.all(np.isfinite(Y)):
        raise InputError("targets contain NaN or infinite values")
    if Y.shape[0] == K.size:
        return Y, Y.shape
    if Y.shape[0] * Y.shape[1] == K.size:  # a block Gram: the (N, k) targets stacked as one vector
        return Y.reshape(-1, 1), Y.shape
    raise InputError(f"targets of shape {Y.shape} do not fit a Gram of size {K.size}")


MAX_RESTARTS = 8
# Rank of the Nyström preconditioner: the MLP limit Gram of 8,000 MNIST images (condition 4.5·10¹⁰) reaches 10⁻⁶
# in 112 CG iterations with rank 2000 and 219 with 1000; 2000 sampled columns instead of a sketch had not in 1000.
NYSTROM_RANK = 2000
# A residual this many times the right-hand side means K is singular and Y has parts outside its range.
DIVERGED = 1e6
# Bound on the products with K of one regression (and of the Lanczos run in `predict_from_stores`, the CLI).
MAX_ITERATIONS = 1000


def regression(K: KernelOperator, Y, *, tol: float = 1e-6, max_iterations: int = MAX_ITERATIONS,
               rank: int = NYSTROM_RANK, seed: int = 0, on_iteration=None) -> SolveReport:
    """α with K α = Y by preconditioned conjugate gradients, stopped when every column's relative residual
    ‖Y − K α‖/‖Y‖ is below `tol`; `on_iteration(iteration)` is called after each product with K, and with 0
    before the preconditioner is built (minutes at N = 60,000: a progress display starts the regression's stage
    there, instead of leaving the previous solve's stage running)."""
    B, shape = _rhs(K, Y)
    if on_iteration:
        on_iteration(0)
    P = NystromPreconditioner.build(K, rank, seed)
    norms = np.linalg.norm(B, axis=0)
    norms[norms == 0] = 1.0
    X = np.zeros_like(B)
    iteration = 0
    stop = ATTAINABLE
    previous = np.inf
    # The recursively updated residual drifts from the true one on ill-conditioned K: when it reports
    # convergence, the true residual decides, and CG restarts from it if it has not converged. A restart that
    # does not halve the true residual has met the float64 round-off floor: more restarts only spend iterations.
    for _ in range(MAX_RESTARTS):
        R = B - K @ X if iteration else B.copy()
        true_residual = float(np.max(np.linalg.norm(R, axis=0) / norms))
        if true_residual < tol:
            stop = CONVERGED
            break
        if iteration >= max_iterations:
            stop = ITERATION_LIMIT
            break
        if true_residual > previous / 2:
            break
        previous = true_residual
        Z = P(R)
        D = Z.copy()
        rz = np.sum(R * Z, axis=0)
        residual = np.linalg.norm(R, axis=0) / norms
        while iteration < max_iterations and tol <= residual.max() < DIVERGED:
            iteration += 1
            KD = K @ D
            if on_iteration:
                on_iteration(iteration)
            curvature = np.sum(D * KD, axis=0)
            step = np.where(curvature > 0, rz / np.where(curvature > 0, curvature, 1.0), 0.0)
            X += step * D
            R -= step * KD
            residual = np.linalg.norm(R, axis=0) / norms
            Z = P(R)
            rz_next = np.sum(R * Z, axis=0)
            D = Z + np.where(rz > 0, rz_next / np.where(rz > 0, rz, 1.0), 0.0) * D
            rz = rz_next
    else:
        true_residual = float(np.max(np.linalg.norm(B - K @ X, axis=0) / norms))
        stop = (CONVERGED if true_residual < tol else ITERATION_LIMIT if iteration >= max_iterations else
                ATTAINABLE)
    return SolveReport(X.reshape(shape), iteration, true_residual, stop == CONVERGED, "conjugate gradients", tol,
                       max_iterations, stop, float(P.eigenvalues[0] / P.eigenvalues[-1]))


def flow(K: KernelOperator, Y, t: float, *, tol: float = 1e-6, max_iterations: int = 400) -> SolveReport:
    """α = φ_t(K) Y, φ_t(λ) = (1 − e^{−tλ/N})/λ (→ t/N at λ = 0): `flows` at one time."""
    return flows(K, Y, [t], tol=tol, max_iterations=max_iterations)[0]


def flows(K: KernelOperator, Y, times, *, tol: float = 1e-6, max_iterations: int = 400,
          on_iteration=None) -> list[SolveReport]:
    """α_t = φ_t(K) Y for several finite flow times, by Lanczos with full reorthogonalization.

    The Krylov space of a column of Y does not depend on t, so one space per column serves every time, and the
    columns advance together: each iteration is one product of K with the columns still running, which costs
    about what one column costs when K is read from memory or disk. A column stops when, for every time, its
    approximation changes by less than `tol` (relative) between checks, or when its Krylov space is exhausted.
    `on_iteration(j)` is called after each product with K.
    """
    from scipy.linalg import eigh_tridiagonal

    from ..base.memory import require_memory

    times = [float(t) for t in times]
    for t in times:
        if not (t >= 0) or np.isinf(t):
            raise InputError(f"flow time t must be a finite number >= 0 (use regression for t = inf), got {t!r}")
    B, shape = _rhs(K, Y)
    n, r = B.shape
    N = K.samples
    norms = np.linalg.norm(B, axis=0)
    # (column, iteration, n): each column's basis contiguous for its reorthogonalization. np.empty commits only
    # the pages the iterations reach, but a run to `max_iterations` needs all of them: refused up front.
    require_memory(r * (max_iterations + 1) * n * 8.0, f"a Lanczos basis of {max_iterations} iterations × {r} "
                   f"right-hand sides × {n} points")
    V = np.empty((r, max_iterations + 1, n))
    V[:, 0] = (B / np.where(norms > 0, norms, 1.0)).T
    alpha, beta = np.zeros((r, max_iterations)), np.zeros((r, max_iterations))
    estimates = np.zeros((len(times), n, r))
    changes = np.full((len(times), r), np.inf)
    used = np.zeros(r, dtype=int)
    running = [c for c in range(r) if norms[c] > 0]
    changes[:, norms == 0] = 0.0
    check = LANCZOS_CHECK_EVERY
    for j in range(max_iterations):
        if not running:
            break
        checking = j + 1 == check
        if checking:  # every 5 iterations, then every tenth of those done: eigendecompositions cost O(j²) each
            check += max(LANCZOS_CHECK_EVERY, check // 10)
        W = K @ np.ascontiguousarray(V[running, j].T)
        if on_iteration:
            on_iteration(j + 1)
        finished = []
        for position, c in enumerate(running):
            w = W[:, position]
            alpha[c, j] = V[c, j] @ w
            w -= alpha[c, j] * V[c, j] + (beta[c, j - 1] * V[c, j - 1] if j else 0.0)
            w -= V[c, : j + 1].T @ (V[c, : j + 1] @ w)
            beta[c, j] = np.linalg.norm(w)
            used[c] = j + 1
            breakdown = beta[c, j] <= 1e-14 * norms[c]  # the Krylov space is invariant: the estimate is exact
            exhausted = breakdown or j == max_iterations - 1
            if checking or exhausted:
                theta, S = eigh_tridiagonal(alpha[c, : j + 1], beta[c, :j])
                for m, t in enumerate(times):
                    estimate = norms[c] * (V[c, : j + 1].T @ (S @ (phi(theta, t, N) * S[0])))
                    previous = estimates[m, :, c]
                    changes[m, c] = (0.0 if breakdown else
                                     np.linalg.norm(estimate - previous) / max(np.linalg.norm(estimate), 1e-300))
                    estimates[m, :, c] = estimate
                if exhausted or (j + 1 > LANCZOS_CHECK_EVERY and changes[:, c].max() < tol):
                    finished.append(c)
                    continue
            V[c, j + 1] = w / beta[c, j]
        running = [c for c in running if c not in finished]
    iterations = int(used.max()) if r else 0
    return [SolveReport(estimates[m].reshape(shape), iterations, float(changes[m].max()), bool(changes[m].max() < tol),
                        "Lanczos", tol, max_iterations, CONVERGED if changes[m].max() < tol else ITERATION_LIMIT)
            for m in range(len(times))]


# Lanczos compares its approximations at least this many iterations apart (an eigendecomposition of the
# tridiagonal each).
LANCZOS_CHECK_EVERY = 5


def phi(lam, t: float, N: int):
    lam = np.asarray(lam, dtype=np.float64)
    small = np.abs(lam) * t / N < 1e-8
    safe = np.where(small, 1.0, lam)
    return np.where(small, t / N * (1 - lam * t / (2 * N)), -np.expm1(-t * lam / N) / safe)


def apply_cross(store, coefficients) -> np.ndarray:
    """K_test_train·α from a cross Gram store (M, N[, k, k]) read tile by tile: the test predictions (M, k)."""
    if store.symmetric:
        raise InputError(f"Gram store {store.path!r} is a symmetric Gram; predictions need the test × training Gram")
    if not store.complete:
        raise InputError(f"Gram store {store.path!r} is incomplete; resume it first")
    M, N = store.shape[:2]
    k = store.shape[2] if len(store.shape) == 4 else 1
    alpha = np.asarray(coefficients, dtype=np.float64)
    if alpha.shape[0] != N:
        raise InputError(f"the test Gram has {N} training columns, the coefficients {alpha.shape[0]} rows")
    stacked = alpha.reshape(N * k, -1) if k > 1 else alpha
    out = np.zeros((M * k, stacked.shape[1]))
    for i, j in store.tiles():
        rows, cols = store.slices(i, j)
        out[_stacked_slice(rows, k)] += _stacked(store.group["gram"][rows, cols]) @ stacked[_stacked_slice(cols, k)]
    return out.reshape(M, -1) if k > 1 else out


def check_cross_store(test_store, train_store) -> None:
    """Refuse, before any solve, a test store that is not a test × training Gram of `train_store`'s inputs: a
    symmetric Gram, or one whose columns are other inputs (by the digests the stores record), which would give
    predictions silently wrong whenever the sizes agree."""
    if test_store.symmetric:
        raise InputError(f"Gram store {test_store.path!r} is a symmetric Gram; predictions need the test × training "
                         f"Gram")
    if test_store.config.get("x2") != train_store.config.get("x1"):
        raise InputError(f"Gram store {test_store.path!r}: its columns are not the inputs of the training Gram "
                         f"{train_store.path!r}; predictions need the test × training Gram of those inputs")


def predict_from_stores(train_store, test_store, Y_train, times, *, Y_test=None, tol: float = 1e-6,
                        rank: int = NYSTROM_RANK, max_iterations: int = MAX_ITERATIONS, memory: int | None = None,
                        on_iteration=None, backend=None):
    """Kernel flow (regression at t = inf) with the Gram stores of the training set and of test × training:
    a `Prediction` like `deepntk.engine.predict.predict`, plus each solve's report. The finite times share one
    Lanczos run; `max_iterations` bounds it and the regression's conjugate gradients; `memory` is the bytes the
    training Gram's upper tiles may occupy to be read once and kept (default DEEPNTK_MEMORY_BUDGET); `backend`
    computes the products with its tiles (`KernelOperator.from_store`).
    `on_iteration(solver, iteration)` reports progress, solver "flow" or "regression"."""
    from .predict import Prediction, check_times, classification_accuracies
    from ..base.validate import check_targets

    times = check_times(times)
    check_cross_store(test_store, train_store)
    K = KernelOperator.from_store(train_store, memory, backend)
    k = train_store.shape[2] if len(train_store.shape) == 4 else None
    Y = check_targets(Y_train, K.samples, k or np.asarray(Y_train).reshape(K.samples, -1).shape[1], "Y_train")
    Yt = None if Y_test is None else check_targets(Y_test, test_store.shape[0], Y.shape[1], "Y_test")
    finite = [t for t in times if np.isfinite(t)]

    def report(solver):
        return None if on_iteration is None else lambda j: on_iteration(solver, j)

    solved = dict(zip(finite, flows(K, Y, finite, tol=tol, max_iterations=max_iterations,
                                    on_iteration=report("flow")))) if finite else {}
    train, test, reports = [], [], []
    for t in times:
        solve = solved[t] if t in solved else regression(K, Y, tol=tol, rank=rank, max_iterations=max_iterations,
                                                         on_iteration=report("regression"))
        coefficients = solve.coefficients
        train.append((K @ coefficients.reshape(K.size, -1)).reshape(Y.shape))
        test.append(apply_cross(test_store, coefficients).reshape(-1, Y.shape[1]))
        reports.append(solve)
    train_mse = [float(np.mean((f - Y) ** 2)) for f in train]
    test_mse = None if Yt is None else [float(np.mean((f - Yt) ** 2)) for f in test]
    return Prediction(times, np.array(train), np.array(test), train_mse, test_mse,
                      classification_accuracies(Y, Yt, test)), reports
