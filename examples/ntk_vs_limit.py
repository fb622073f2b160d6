"""The NTK of your own network against the infinite-depth limit.

Builds a deep narrow MLP with the paper's initialization (or loads one you trained or drew yourself with
`--params`), computes its scaled NTK Θ̃ on random inputs, and compares it, block by block, with the limit
kernel Θ̃^∞ and with the exact expectation E Θ̃ at the network's own depth L and scale C_L
(`deepntk.compare_with_theory`; docs/finite-depth.md#comparing-a-network-with-the-theory).

An ensemble of seeds gives 95% intervals over networks. The check that closes the example: the mean offset
tr Θ̃/k − Θ̃^∞ of the networks must contain, within its interval, the offset E Θ̃ − Θ̃^∞ that the closed forms
predict (≈ 1/C_L²): the simulated networks and the formulas agree.

    python examples/ntk_vs_limit.py                    # L = 1000, C_L = 10, 16 networks, 30 inputs
    python examples/ntk_vs_limit.py --params my.npz    # a network of your own (one network: no intervals)
    python examples/ntk_vs_limit.py --small            # seconds
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import deepntk


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=1000, help="layers L (default 1000)")
    parser.add_argument("--C-L", dest="C_L", type=float, default=10.0, help="carrier scale C_L (default 10)")
    parser.add_argument("--d-in", type=int, default=3, help="input dimension (default 3)")
    parser.add_argument("--outputs", type=int, default=2, help="outputs k (default 2)")
    parser.add_argument("--seeds", type=int, default=16, help="networks in the ensemble (default 16)")
    parser.add_argument("--points", type=int, default=30, help="random inputs (default 30)")
    parser.add_argument("--params", help="compare this params .npz (from `deepntk init` or Params.save) instead")
    parser.add_argument("--backend", default=None, help="numpy, numba, cupy (default: the best installed)")
    parser.add_argument("--small", action="store_true", help="L = 50, 4 networks, 10 inputs: runs in seconds")
    parser.add_argument("--plot", action="store_true", help="also draw Θ̃ against Θ̃^∞ (needs matplotlib)")
    parser.add_argument("--out", default=os.path.join("deepntk-examples-out", "ntk_vs_limit"),
                        help="folder for the outputs (default ./deepntk-examples-out/ntk_vs_limit)")
    args = parser.parse_args()
    if args.small:
        args.depth, args.seeds, args.points = 50, 4, 10
    return args


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)

    if args.params:
        params = deepntk.load_params(args.params)  # checks every array against the spec stored in the file
        spec = params.spec
        print(f"loaded {args.params}: {spec}")
    else:
        spec = deepntk.MLP(d_in=args.d_in, d_out=args.outputs, depth=args.depth, C_L=args.C_L)
        # An Ensemble: network e is exactly init_params(spec, seed=e); every API call runs all of them at once.
        params = deepntk.init_params(spec, init="paper", seeds=range(args.seeds))
        print(f"{args.seeds} networks {spec}")

    # The theory assumes inputs x > 0 (docs/conventions.md): draw them away from zero.
    rng = np.random.default_rng(1)
    X = rng.uniform(0.05, 1.0, size=(args.points,) + spec.input_shape)

    comparison = deepntk.compare_with_theory(params, X, backend=args.backend)
    c = comparison
    print(f"\n{c.networks} network(s), {c.pairs} input pairs (x, x'), k = {c.outputs}, L = {c.depth}, "
          f"C_L = {c.C_L:g}")
    print(f"{'relative error of Θ̃ against':<30} {'mean':>10} {'95% interval':>24} {'largest':>10}")
    for name, mean, (low, high), largest in (("Θ̃^∞ (the limit)", c.error_limit, c.error_limit_interval,
                                              c.max_error_limit),
                                             ("E Θ̃ (at this L, C_L)", c.error_expected, c.error_expected_interval,
                                              c.max_error_expected)):
        print(f"{name:<30} {mean:>10.4f} {f'[{low:.4f}, {high:.4f}]':>24} {largest:>10.4f}")
    print(f"\noffset tr Θ̃/k − Θ̃^∞: {c.offset:.5f} ± {c.offset_ci:.5f} (95%); "
          f"E Θ̃ − Θ̃^∞ = {c.expected_offset:.5f}; 1/C_L² = {c.predicted_offset:.5f}")

    # The independent check: the closed-form expectation must lie in the networks' interval. (With one
    # network there is no interval: the spread over correlated input pairs says nothing about another draw.)
    if c.networks == 1:
        print("(one network: no intervals; compare several, e.g. deepntk.stack_params([...]), to get them)")
    else:
        inside = abs(c.offset - c.expected_offset) <= c.offset_ci
        print(f"check: E Θ̃ − Θ̃^∞ inside the networks' 95% interval: "
              f"{'yes' if inside else 'NO (a 95% interval misses 1 time in 20: try other --seeds)'}")

    with open(os.path.join(args.out, "comparison.json"), "w") as handle:
        json.dump(c.as_dict(), handle, indent=1)
    print(f"wrote {os.path.join(args.out, 'comparison.json')}")

    if args.plot:
        draw(params, spec, X, args)


def draw(params, spec, X, args):
    """Θ̃(x, x') of every network against Θ̃^∞(x, x') and E Θ̃(x, x'): points on the diagonal agree."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib: pip install 'deepntk[plot]'")
        return
    theta = deepntk.scaled_ntk(params, X, backend=args.backend)
    theta = theta.reshape((-1,) + theta.shape[-4:])  # one network or an ensemble alike: (E, N, N, k, k)
    diagonal = np.trace(theta, axis1=-2, axis2=-1) / spec.outputs
    # The closed forms of whatever architecture the network has (an MLP's or a CNN's, on the inputs as its
    # first layer sees them): the spec knows its own (docs/limit-kernels.md, docs/finite-depth.md).
    prepared = spec.prepare_inputs(X)
    limit = spec.limit_kernel(prepared, backend=args.backend)
    expected = spec.expected_kernel(prepared, backend=args.backend)
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    for network in diagonal:
        axis.plot(limit.ravel(), network.ravel(), ".", alpha=0.4, color="tab:blue")
    axis.plot(limit.ravel(), expected.ravel(), ".", color="tab:red", label="E Θ̃")
    line = [limit.min(), limit.max()]
    axis.plot(line, line, "k-", lw=0.8, label="Θ̃ = Θ̃^∞")
    axis.set(xlabel="Θ̃^∞(x, x')", ylabel="tr Θ̃(x, x') / k", title=f"L = {spec.depth}, C_L = {spec.C_L:g}")
    axis.legend()
    path = os.path.join(args.out, "ntk_vs_limit.png")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
