"""MNIST kernel regression, and kernel flow at finite times, with the infinite-depth limit kernel.

An infinitely deep narrow MLP trained by gradient flow from the paper's initialization follows the kernel flow
of its limit kernel Θ̃^∞ (paper Theorem 3; docs/training.md#kernel-flow). This example predicts MNIST digits
with that kernel on a subset: N training and M test images (one-hot targets, pixels in [0, 1]), the kernel
flow at the flow times you give and kernel regression (t = ∞), and prints the test accuracy of each.

The flow and the regression run on deepntk's iterative solvers (Lanczos and preconditioned conjugate
gradients, which never factor K). The checks: the regression's predictions against an independent dense solve
of K α = Y (`numpy.linalg.solve`), and the flow's against `deepntk.analytic.kernel_flow`, which goes through
an eigendecomposition of K.

MNIST is read from --data-dir, else $DEEPNTK_DATA (a folder holding the IDX files, plain or .gz):

    DEEPNTK_DATA=~/data/mnist python examples/mnist_kernel_regression.py               # N = 4000, M = 1000: ~96%
    python examples/mnist_kernel_regression.py --data-dir ~/data/mnist --train 10000   # more data
    python examples/mnist_kernel_regression.py --data-dir ~/data/mnist --small         # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from deepntk.analytic import kernel_flow, mlp_limit_kernel
from deepntk.engine.experiments.datasets import DataError, load_mnist
from deepntk.engine.solvers import KernelOperator, flows, regression


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="folder holding the MNIST IDX files (default: $DEEPNTK_DATA)")
    parser.add_argument("--train", type=int, default=4000, help="training images N (default 4000)")
    parser.add_argument("--test", type=int, default=1000, help="test images M (default 1000)")
    parser.add_argument("--times", type=float, nargs="+", default=[100.0, 1000.0],
                        help="finite flow times t (default 100 1000); t = ∞ (regression) is always added")
    parser.add_argument("--pool", type=int, default=1, help="average-pool the images pool×pool first (default 1)")
    parser.add_argument("--small", action="store_true", help="N = 300, M = 200, images pooled to 7×7")
    parser.add_argument("--out", default=os.path.join("deepntk-examples-out", "mnist_kernel_regression"),
                        help="folder for the results (default ./deepntk-examples-out/mnist_kernel_regression)")
    args = parser.parse_args()
    if args.small:
        # With N below the 784 pixels the (nearly linear) kernel interpolates badly; 7×7 images do not.
        args.train, args.test, args.pool = 300, 200, 4
    return args


def main():
    args = parse_args()
    folder = args.data_dir or os.environ.get("DEEPNTK_DATA")
    if not folder:
        sys.exit("mnist_kernel_regression.py: no MNIST folder: give --data-dir DIR or set DEEPNTK_DATA=DIR "
                 "(a folder holding the MNIST IDX files)")
    try:
        # download=False: an example never fetches data behind your back; `deepntk` commands can.
        data = load_mnist(folder, task="digits", layout="flat", pool=args.pool, train_size=args.train,
                          test_size=args.test, download=False)
    except DataError as exc:
        sys.exit(f"mnist_kernel_regression.py: {exc}")
    N, M = len(data.X_train), len(data.X_test)
    print(f"MNIST: {N} training and {M} test images of {data.X_train.shape[1]} pixels from {folder}")

    # Θ̃^∞ = K·I_10: the scalar factor K is all the solvers need (docs/training.md#kernel-flow). It depends on
    # d_in, d_out, ρ and β only, not on a depth or C_L.
    K = mlp_limit_kernel(data.X_train, d_out=10)
    K_test = mlp_limit_kernel(data.X_test, data.X_train, d_out=10)

    # Kernel flow from f₀ = 0 at every finite time (one Lanczos run serves them all) and kernel regression
    # (t = ∞, conjugate gradients): coefficients α, predictions K_test α. For a Gram in a store, not in
    # memory, KernelOperator.from_store reads it tile by tile (examples/gram_on_local_cluster.py).
    operator = KernelOperator.from_array(K)
    solves = flows(operator, data.Y_train, args.times) + [regression(operator, data.Y_train)]
    times = list(args.times) + [np.inf]

    results = []
    print(f"{'flow time t':>14} {'train MSE':>10} {'test MSE':>10} {'test accuracy':>14}")
    for t, solve in zip(times, solves):
        train_outputs, test_outputs = K @ solve.coefficients, K_test @ solve.coefficients
        train_mse = float(np.mean((train_outputs - data.Y_train) ** 2))
        test_mse = float(np.mean((test_outputs - data.Y_test) ** 2))
        accuracy = float(np.mean(np.argmax(test_outputs, axis=1) == data.labels_test))
        results.append({"t": t, "train_mse": train_mse, "test_mse": test_mse, "test_accuracy": accuracy})
        print(f"{'∞ (regression)' if np.isinf(t) else f'{t:g}':>14} {train_mse:>10.4f} {test_mse:>10.4f} "
              f"{accuracy:>13.1%}")

    # Independent checks, dense: the regression against numpy.linalg.solve, the last flow time against the
    # closed form through an eigendecomposition (deepntk.analytic.kernel_flow). K is ill-conditioned (~1e10 at
    # N = 4000): solvers agree to about cond(K)·ε and to the iterations' tolerance 1e-6, not to ε.
    for name, exact, approximate in (
            ("regression against a dense solve of K α = Y", K_test @ np.linalg.solve(K, data.Y_train),
             K_test @ solves[-1].coefficients),
            (f"flow at t = {times[-2]:g} against kernel_flow's eigendecomposition",
             kernel_flow(K, data.Y_train, times[-2], K_test_train=K_test), K_test @ solves[-2].coefficients)):
        difference = np.max(abs(exact - approximate)) / np.max(abs(exact))
        print(f"check: {name}: largest difference {difference:.1e} (relative): "
              f"{'agree' if difference < 1e-5 else 'DISAGREE'}")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "accuracy.json")
    with open(path, "w") as handle:
        json.dump({"train": N, "test": M, "pool": args.pool, "results": results}, handle, indent=1, default=str)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
