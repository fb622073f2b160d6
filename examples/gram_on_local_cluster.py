"""A Gram too big for memory: tiles on a local Dask cluster into a Zarr store, then a solve from the store.

`deepntk.gram` computes a kernel's Gram one tile per Dask task and writes each tile into a Zarr store as it
completes, so the Gram never has to fit in memory, a killed run loses at most the tiles in flight, and
`resume=True` completes a store instead of starting again (docs/files.md#gram-stores-deepntk-gram). The
iterative solvers then read the store tile by tile for every product with K (`deepntk.engine.solvers`,
docs/training.md#kernel-flow): kernel regression by preconditioned conjugate gradients, kernel flow by Lanczos.

Here: the MLP limit kernel Θ̃^∞ on N random training inputs in d dimensions with a smooth target, and M test
inputs. `--memory 0` (the default) makes the solver keep nothing of size N² and read the tiles from disk for
every product, as it would for a Gram larger than memory.

The checks: entries of the stores against the closed form evaluated directly, the solvers' residuals, and,
when N is small enough to factor densely (N ≤ --dense-check, default 2000), the predictions against the
dense in-memory solve.

Needs the distributed extra: pip install 'deepntk[distributed]'. Run it again with the same arguments and it
reuses every stored tile (resume=True).

    python examples/gram_on_local_cluster.py                 # N = 2000, M = 500, tiles of 400, 2 workers
    python examples/gram_on_local_cluster.py --train 20000   # a 3.2 GB Gram (no dense check)
    python examples/gram_on_local_cluster.py --small         # seconds (plus the cluster's start)
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import deepntk
from deepntk.analytic import kernel_flow, mlp_limit_kernel


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=2000, help="training inputs N (default 2000)")
    parser.add_argument("--test", type=int, default=500, help="test inputs M (default 500)")
    parser.add_argument("--d-in", type=int, default=8, help="input dimension d (default 8)")
    parser.add_argument("--tile", type=int, default=400, help="tile side (default 400)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    parser.add_argument("--time", type=float, default=1000.0, help="finite flow time t (default 1000)")
    parser.add_argument("--rank", type=int, default=300,
                        help="rank of the regression's Nyström preconditioner (default 300; deepntk's own default, "
                             "2000, is meant for N ≫ 2000: at N ≤ rank it is exact and CG needs one step)")
    parser.add_argument("--memory", type=int, default=0,
                        help="bytes of the training Gram the solver may keep in memory (default 0: none)")
    parser.add_argument("--dense-check", type=int, default=2000,
                        help="compare with the dense in-memory solve when N is at most this (default 2000)")
    parser.add_argument("--small", action="store_true", help="N = 400, M = 100, tiles of 100")
    parser.add_argument("--out", default=os.path.join("deepntk-examples-out", "gram_on_local_cluster"),
                        help="folder for the stores (default ./deepntk-examples-out/gram_on_local_cluster)")
    args = parser.parse_args()
    if args.small:
        args.train, args.test, args.tile, args.rank = 400, 100, 100, 50
    return args


def target(X):
    """A smooth function of the inputs to learn."""
    return np.sin(3 * X[:, :1]) * X[:, 1:2] + np.cos(2 * X[:, 2:3])


def main():
    args = parse_args()
    try:
        from deepntk.engine.gram import GramKernel
        from deepntk.engine.solvers import predict_from_stores
        import distributed  # noqa: F401  (the cluster) and zarr (the stores): the distributed extra
        import zarr  # noqa: F401
    except ImportError as exc:
        sys.exit(f"gram_on_local_cluster.py needs the distributed extra ({exc.name} is missing): "
                 f"pip install 'deepntk[distributed]'")

    rng = np.random.default_rng(0)
    X = rng.uniform(0.05, 1.0, size=(args.train, args.d_in))   # the theory assumes inputs x > 0
    X_test = rng.uniform(0.05, 1.0, size=(args.test, args.d_in))
    Y, Y_test = target(X), target(X_test)

    # The kernel a store holds, with everything its values depend on (a resumed store must match it).
    spec = deepntk.MLP(d_in=args.d_in, d_out=1, depth=2, C_L=1.0)  # the limit kernel needs no depth or C_L
    kernel = GramKernel.for_spec("limit", spec)
    os.makedirs(args.out, exist_ok=True)
    train_path = os.path.join(args.out, f"K-train-{args.train}.zarr")
    test_path = os.path.join(args.out, f"K-test-{args.test}x{args.train}.zarr")
    gigabytes = args.train**2 * 8 / 1e9
    print(f"Gram of {args.train} training inputs ({gigabytes:.3g} GB as one array), tiles of {args.tile}, "
          f"{args.workers} local workers")

    # Each call starts a local cluster (worker processes re-run this script's imports: hence the
    # `if __name__ == "__main__"` guard below) and closes it when the store is complete.
    for path, rows, columns in ((train_path, X, None), (test_path, X_test, X)):
        report = deepntk.gram(kernel, rows, columns, store=path, tile=args.tile, cluster="local",
                              workers=args.workers, resume=True)
        print(f"{path}: {report.computed} tiles computed, {report.reused} reused, in {report.seconds:.1f} s")

    train_store, test_store = deepntk.open_store(train_path), deepntk.open_store(test_path)

    # Check 1: two tiles of the store, an upper one and the lower one read from its mirror, against the
    # closed form evaluated here.
    first, second = slice(0, args.tile), slice(args.tile, 2 * args.tile)
    largest = 0.0
    for rows, cols in ((first, second), (second, first)):
        direct = mlp_limit_kernel(X[rows], X[cols])
        largest = max(largest, np.max(abs(train_store.read(rows, cols) - direct) / abs(direct)))
    print(f"check: two stored tiles against the closed form: largest relative difference {largest:.1e}")

    # The solve from the stores: flow at t (Lanczos) and regression (CG), reading K tile by tile.
    times = [args.time, np.inf]
    prediction, reports = predict_from_stores(train_store, test_store, Y, times, Y_test=Y_test,
                                              memory=args.memory, rank=min(args.rank, args.train))
    for t, solve, train_mse, test_mse in zip(times, reports, prediction.train_mse, prediction.test_mse):
        name = "regression (t = ∞)" if np.isinf(t) else f"flow t = {t:g}"
        print(f"{name:>20}: {solve.iterations} products with K, residual {solve.residual:.1e} "
              f"({'converged' if solve.converged else 'NOT converged'}), train MSE {train_mse:.2e}, "
              f"test MSE {test_mse:.2e} (target variance {np.var(Y_test):.2e})")

    # Check 2: the same predictions from the Gram in memory, by dense linear algebra: the regression by
    # numpy.linalg.solve, the flow by deepntk.analytic.kernel_flow (an eigendecomposition of K).
    if args.train <= args.dense_check:
        K, K_test = mlp_limit_kernel(X), mlp_limit_kernel(X_test, X)
        dense = [kernel_flow(K, Y, args.time, K_test_train=K_test), K_test @ np.linalg.solve(K, Y)]
        for t, from_store, in_memory in zip(times, prediction.test, dense):
            difference = np.max(abs(from_store - in_memory)) / np.max(abs(in_memory))
            print(f"check: t = {t:g}: test predictions from the store against the dense solve: largest "
                  f"difference {difference:.1e} (relative)")
    else:
        print(f"(no dense check: N = {args.train} > --dense-check {args.dense_check})")

if __name__ == "__main__":
    main()
