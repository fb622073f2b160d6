"""Registering an experiment of your own and running it like the paper's, with `deepntk reproduce`.

An experiment is a config dataclass, a `run(config, backend, client, progress)` returning a `Result`, and an
`Experiment` record naming them (docs/experiments.md#adding-an-experiment). Registered, `deepntk reproduce
NAME` runs it: it prints the summary, writes a results folder with its run record (`--resume` shows a finished
run again, a different configuration is refused), and draws the figure when matplotlib is installed.

This one measures how fast the scaled NTK of deep narrow MLPs approaches its expectation: the relative error
‖Θ̃ − E Θ̃‖/‖E Θ̃‖ at several depths, over seeds, and the exponent b of error ∝ L^b with its 95% interval over
seeds. The theory says b = −1/2 (the random units' fluctuation; docs/finite-depth.md), and the example checks
that −1/2 lies in the interval.

Here the experiment is registered in this process (`register_experiment`); a package would declare it under the
entry-point group "deepntk.experiments" and the `deepntk` command would find it.

    python examples/custom_experiment.py            # depths 30 … 1000, 12 networks each
    python examples/custom_experiment.py --small    # seconds
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np

import deepntk
from deepntk.analytic import mlp_expected_kernel
from deepntk.cli.main import main as deepntk_command
from deepntk.engine.experiments.protocol import SILENT, Experiment, Result
from deepntk.engine.experiments.registry import register_experiment
from deepntk.engine.experiments.stats import fit_power_law, relative_block_errors


@dataclass(frozen=True)
class RateConfig:
    """`scale` is the `deepntk reproduce --scale` option: "small" or "paper" (here: more depths and seeds)."""

    scale: str = "small"

    def __post_init__(self):
        if self.scale not in ("small", "paper"):
            raise ValueError(f"scale must be small or paper, got {self.scale!r}")

    @property
    def depths(self):
        return (30, 100, 300, 1000) if self.scale == "paper" else (20, 60, 180)

    @property
    def seeds(self):
        return 12 if self.scale == "paper" else 6


class RateResult(Result):
    def summary(self):
        lines = [f"{'L':>6} {'mean ‖Θ̃ − E Θ̃‖/‖E Θ̃‖':>24}"]
        lines += [f"{L:>6} {error:>24.5f}" for L, error in zip(self.data["depths"], self.data["mean_errors"])]
        low, high = self.data["slope_interval"]
        lines.append(f"error ∝ L^b: b = {self.data['slope']:.3f}, 95% interval [{low:.3f}, {high:.3f}] over "
                     f"{self.data['seeds']} networks per depth")
        return lines

    def figure(self):
        from matplotlib.figure import Figure

        figure = Figure(figsize=(4.5, 3.5))
        axis = figure.subplots()
        axis.loglog(self.data["depths"], np.asarray(self.arrays["errors"]).T, ".", color="tab:blue", alpha=0.5)
        axis.loglog(self.data["depths"], self.data["mean_errors"], "ko-", label="mean")
        axis.set(xlabel="depth L", ylabel="‖Θ̃ − E Θ̃‖/‖E Θ̃‖")
        axis.legend()
        return figure


def run_rate(config, backend=None, client=None, progress=SILENT):
    """The errors of `config.seeds` networks at each depth, C_L = 10, on 12 random inputs in 3 dimensions."""
    X = np.random.default_rng(0).uniform(0.05, 1.0, size=(12, 3))
    errors = np.empty((config.seeds, len(config.depths)))
    for column, L in enumerate(config.depths):
        spec = deepntk.MLP(d_in=3, d_out=1, depth=L, C_L=10.0)
        networks = deepntk.init_params(spec, seeds=range(config.seeds))
        theta = deepntk.scaled_ntk(networks, X, backend=backend)
        expected = mlp_expected_kernel(X, depth=L, C_L=10.0)
        errors[:, column] = [relative_block_errors(K, expected).mean() for K in theta]
        progress.show("depths", column + 1, len(config.depths))
    fit = fit_power_law(config.depths, errors)
    return RateResult({"experiment": "rate", "scale": config.scale, "depths": list(config.depths),
                       "seeds": config.seeds, "mean_errors": errors.mean(axis=0).tolist(), "slope": fit.slope,
                       "slope_interval": list(fit.interval)}, {"errors": errors})


RATE = Experiment("rate", RateConfig, run_rate, RateResult,
                  description="how fast Θ̃ approaches E Θ̃ with depth (examples/custom_experiment.py)")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="depths 20, 60, 180 with 6 networks each")
    parser.add_argument("--out", default=os.path.join("deepntk-examples-out", "custom_experiment"),
                        help="the results folder (default ./deepntk-examples-out/custom_experiment)")
    return parser.parse_args()


def main():
    args = parse_args()
    register_experiment(RATE)
    # The command line, in this process: what `deepntk reproduce rate -o OUT` runs once the experiment is
    # registered through an entry point. --overwrite: rerunning the example replaces its earlier results.
    scale = "small" if args.small else "paper"
    status = deepntk_command(["reproduce", "rate", "--scale", scale, "-o", args.out, "--overwrite", "--quiet"])
    if status:
        raise SystemExit(status)

    # The saved result, read back as `reproduce --resume` would, and the check against the theory's −1/2.
    result = RateResult.load(args.out)
    low, high = result.data["slope_interval"]
    print(f"check: the theory's exponent −1/2 inside the 95% interval [{low:.3f}, {high:.3f}]: "
          f"{'yes' if low <= -0.5 <= high else 'NO (a 95% interval misses 1 time in 20)'}")


if __name__ == "__main__":
    main()
