"""The paper's Fig. 3 at initialization, in about twenty lines of the deepntk API.

Θ̃(x₀, x(γ)) of deep narrow MLPs (d_in = 2, d_out = 1, ρ = β = 1, the paper's initialization) on the unit arc
x(γ) = (cos γ, sin γ), x₀ = (1/√2, 1/√2), against the infinite-depth limit Θ̃^∞ (paper §5.1,
docs/experiments.md#fig-3). The default is the paper's shallow setting, L = 100 with C_L = 5 and 10 networks.
At finite (L, C_L) the kernel's expectation E Θ̃ differs from the limit (by 1/C_L² as L → ∞, less at L = 100);
the example checks the networks' mean against E Θ̃ in standard errors.

    python examples/fig3_in_twenty_lines.py                          # L = 100, C_L = 5, 10 networks
    python examples/fig3_in_twenty_lines.py --depth 1000 --C-L 500   # deeper: closer to the limit
    python examples/fig3_in_twenty_lines.py --small                  # seconds
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import deepntk
from deepntk.analytic import fig3_inputs, fig3_limit_curve, mlp_expected_kernel


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=100, help="layers L (default 100, as in the paper)")
    parser.add_argument("--C-L", dest="C_L", type=float, default=5.0, help="carrier scale C_L (default 5)")
    parser.add_argument("--seeds", type=int, default=10, help="networks (default 10, as in the paper)")
    parser.add_argument("--points", type=int, default=200, help="points on the arc (default 200)")
    parser.add_argument("--backend", default=None, help="numpy, numba, cupy (default: the best installed)")
    parser.add_argument("--small", action="store_true", help="L = 30, 4 networks, 50 points")
    parser.add_argument("--out", default=os.path.join("deepntk-examples-out", "fig3_in_twenty_lines"),
                        help="folder for the figure (default ./deepntk-examples-out/fig3_in_twenty_lines)")
    args = parser.parse_args()
    if args.small:
        args.depth, args.seeds, args.points = 30, 4, 50
    return args


def main():
    args = parse_args()

    # ---- Fig. 3 at initialization: the twenty lines ------------------------------------------------------
    spec = deepntk.MLP(d_in=2, d_out=1, depth=args.depth, C_L=args.C_L)          # ρ = β = 1
    networks = deepntk.init_params(spec, init="paper", seeds=range(args.seeds))   # one Ensemble of networks
    x0, X, gamma = fig3_inputs(args.points)                                      # x₀ and the arc
    theta = deepntk.scaled_ntk(networks, x0, X, backend=args.backend)[:, 0, :, 0, 0]   # (seeds, points)
    limit = fig3_limit_curve(gamma)                                              # Θ̃^∞(x₀, x(γ))
    expected = mlp_expected_kernel(x0, X, depth=spec.depth, C_L=spec.C_L)[0]     # E Θ̃ at (L, C_L)
    mean = theta.mean(axis=0)
    stderr = theta.std(axis=0, ddof=1) / np.sqrt(len(theta))
    # -------------------------------------------------------------------------------------------------------

    middle = np.argmin(abs(gamma - np.pi / 4))
    print(f"Fig. 3 at init: {args.seeds} networks, L = {spec.depth}, C_L = {spec.C_L:g}, {len(gamma)} arc points")
    print(f"at γ ≈ π/4: limit {limit[middle]:.4f} (2.750 exactly at π/4), E Θ̃ {expected[middle]:.4f}, "
          f"networks {mean[middle]:.4f} ± {stderr[middle]:.4f} (standard error)")
    print(f"mean |Θ̃ − Θ̃^∞| / Θ̃^∞ over the arc and networks: {np.mean(abs(theta - limit) / limit):.4f}")
    print(f"mean (E Θ̃ − Θ̃^∞) / Θ̃^∞: {np.mean((expected - limit) / limit):+.4f} (finite L and C_L; as L → ∞ "
          f"it tends to 1/C_L² / Θ̃^∞ ≈ {np.mean(1 / spec.C_L**2 / limit):.4f})")
    # The check: the networks' mean lies within a few standard errors of the exact expectation. The arc's
    # points are strongly correlated (one network's curve is smooth), so this is about one test, not 200.
    z = np.max(abs(mean - expected) / stderr)
    print(f"check: largest |mean − E Θ̃| over the arc = {z:.2f} standard errors "
          f"({'consistent' if z < 4 else 'INCONSISTENT'} with E Θ̃ at the 4-standard-error level)")
    draw(gamma, theta, limit, expected, spec, args.out)


def draw(gamma, theta, limit, expected, spec, folder):
    """The figure, when matplotlib is installed: each network's curve, the limit and E Θ̃."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no figure: matplotlib is not installed (pip install 'deepntk[plot]')")
        return
    os.makedirs(folder, exist_ok=True)
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot(gamma, theta.T, color="tab:blue", alpha=0.35, lw=0.8)
    axis.plot(gamma, limit, "k-", lw=1.5, label="Θ̃^∞ (limit)")
    axis.plot(gamma, expected, "r--", lw=1.2, label=f"E Θ̃ at L = {spec.depth}, C_L = {spec.C_L:g}")
    axis.set(xlabel="γ", ylabel="Θ̃(x₀, x(γ))", title="Fig. 3 at initialization")
    axis.legend()
    path = os.path.join(folder, "fig3.png")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
