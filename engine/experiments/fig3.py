"""Fig. 3 with training (paper §5.1; docs/experiments.md#fig-3): the kernel Θ̃(x₀, x(γ)) at initialization and
after full-batch gradient descent on y = x₁x₂, the kernel drift, and the fit. `deepntk reproduce fig3`,
`deepntk simulate --train` and the benchmark's full-settings run all call `fig3_training`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ...analytic import fig3_inputs, fig3_limit_curve, fig3_target
from ..api import forward, scaled_ntk
from ..architectures import MLP
from ..clusters import run_seed_groups
from .protocol import SILENT, Experiment, PlotResult, check_scale, reduction_lines
from ..params import init_params
from ..training import gradient_descent

# The authors' settings (docs/experiments.md#fig-3): (L, C_L) pairs, seeds, GD steps.
PAPER_DEPTHS = ((100, 5.0), (10000, 5e4))
PAPER_SEEDS = 10
PAPER_STEPS = 2000
TRAINING_POINTS = 200


def fig3_network(depth: int, C_L: float) -> MLP:
    """The Fig. 3 network: d_in = 2, d_out = 1, ρ = β = 1."""
    return MLP(2, 1, depth, C_L)


def fig3_learning_rate(depth: int, C_L: float) -> float:
    """Raw lr = 1/(4·L·C_L²) with MSELoss: flow time 1/2 per step, as in the authors' code."""
    return 1.0 / (4 * depth * C_L**2)


def train_networks(depth: int, C_L: float, seeds, steps: int, backend=None) -> list:
    """The networks of `seeds` trained together as one ensemble: per seed (kernel at init, kernel after training,
    fit on the arc, kernel drift)."""
    x0, X, _ = fig3_inputs(TRAINING_POINTS)
    Y = fig3_target(X)
    networks = init_params(fig3_network(depth, C_L), "paper", seeds=seeds)
    K0 = scaled_ntk(networks, x0, X, backend=backend)[:, 0, :, 0, 0]
    result = gradient_descent(networks, X, Y, steps, lr=fig3_learning_rate(depth, C_L), loss="mse", backend=backend)
    KT = scaled_ntk(result.params, x0, X, backend=backend)[:, 0, :, 0, 0]
    fits = forward(result.params, X, backend=backend)[:, :, 0]
    return [(k0.tolist(), kt.tolist(), fit.tolist(), float(np.linalg.norm(kt - k0) / np.linalg.norm(k0)))
            for k0, kt, fit in zip(K0, KT, fits)]


def fig3_training(depths, seeds: int, steps: int = PAPER_STEPS, backend=None, on_seed=None, client=None) -> dict:
    """Θ̃(x₀, x(γ)) at init and after `steps` full-batch GD steps (MSELoss, raw lr = 1/(4·L·C_L²): flow time 1/2
    per step) on y = x₁x₂ over the 200 arc points, for each (L, C_L) in `depths` and each seed; the seeds of a
    depth train together as one ensemble, or with a `client` one task per (L, seed) on its workers."""
    _, X, gamma = fig3_inputs(TRAINING_POINTS)
    out = {"gamma": gamma.tolist(), "limit": fig3_limit_curve(gamma).tolist(), "target": fig3_target(X)[:, 0].tolist(),
           "depths": []}
    for L, C in depths:
        start = time.perf_counter()
        runs = run_seed_groups(train_networks, (L, C), range(seeds), (steps, backend), client, on_seed)
        init, trained, fits, drift = (list(column) for column in zip(*runs))
        out["depths"].append({"depth": L, "C_L": C, "steps": steps, "kernel_init": init, "kernel_trained": trained,
                              "fit": fits, "kernel_drift": drift, "seconds": time.perf_counter() - start})
    return out


def fig3_scale(scale: str = "small") -> tuple:
    """The (L, C_L) pairs, the seeds, and what was reduced from the paper's settings, at `scale`."""
    if scale == "paper":
        return PAPER_DEPTHS, PAPER_SEEDS, ""
    return (((100, 5.0), (1000, 500.0)), 3,
            "L = 1000 with C_L = 500 instead of L = 10000 with C_L = 5·10⁴; 3 seeds instead of 10")


def fig3(scale: str = "small", backend=None, on_seed=None, client=None) -> dict:
    """Fig. 3 complete: the kernel curve at init and after training, and the fit, per depth over seeds."""
    depths, seeds, reduced = fig3_scale(scale)
    return {"experiment": "fig3", "scale": scale, "reduced": reduced,
            **fig3_training(depths, seeds, PAPER_STEPS, backend, on_seed, client)}


@dataclass(frozen=True)
class Fig3Config:
    """`deepntk reproduce fig3`: the paper's settings or their reduction (`fig3_scale`)."""

    scale: str = "small"

    def __post_init__(self):
        check_scale(self.scale)


class Fig3Result(PlotResult):
    """`fig3`'s result; its summary is one line per depth of `training_summary`."""

    figure_builder = "fig3_figure"

    def summary(self) -> list[str]:
        return reduction_lines(self.data) + [
            f"L = {row['depth']:>6}, C_L = {row['C_L']:g}: init vs limit {row['init_vs_limit']:.2e}, "
            f"kernel drift {row['kernel_drift']:.2e}, fit RMSE {row['fit_rmse']:.2e}, {row['seconds']:.1f} s"
            for row in training_summary(self.data)]


def run(config: Fig3Config, backend=None, client=None, progress=SILENT) -> Fig3Result:
    """Fig. 3 at `config.scale`; the networks' progress as the loop "networks"; with a `client`, one task per
    (L, seed)."""
    depths, seeds, _ = fig3_scale(config.scale)
    total, done = len(depths) * seeds, [0]
    progress.show("networks", 0, total)

    def on_seed():
        done[0] += 1
        progress.show("networks", done[0], total)

    return Fig3Result(fig3(config.scale, backend, on_seed, client))


EXPERIMENT = Experiment("fig3", Fig3Config, run, Fig3Result, uses_client=True,
                        description="the kernel at init and after GD, and the fit (paper Fig. 3)")


def training_summary(result: dict) -> list[dict]:
    """Per depth of a `fig3_training` result, the statistics every report prints: the mean relative distance of
    the kernel from the limit at init and after training, the kernel drift, the fit's RMSE and MSE."""
    limit = np.asarray(result["limit"])
    target = np.asarray(result["target"])
    rows = []
    for row in result["depths"]:
        k0, kt = np.asarray(row["kernel_init"]), np.asarray(row["kernel_trained"])
        fits = np.asarray(row["fit"])
        rows.append({"depth": row["depth"], "C_L": row["C_L"], "seconds": row["seconds"],
                     "init_vs_limit": float(np.mean(np.abs(k0 - limit) / limit)),
                     "trained_vs_limit": float(np.mean(np.abs(kt - limit) / limit)),
                     "kernel_drift": float(np.mean(row["kernel_drift"])),
                     "fit_rmse": float(np.mean([np.sqrt(np.mean((f - target) ** 2)) for f in fits])),
                     "fit_mse": float(np.mean([np.mean((f - target) ** 2) for f in fits]))})
    return rows
