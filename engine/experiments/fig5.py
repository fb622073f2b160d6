"""Fig. 5 (paper §5.1; docs/experiments.md#fig-5): per layer, σ(z^l)_last − C_L for the last output carrier of a
trained Fig. 3 network: the output is built up a little in every layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...analytic import fig3_inputs, fig3_target
from ..api import activations, forward
from .fig3 import PAPER_STEPS, TRAINING_POINTS, fig3_learning_rate, fig3_network
from .protocol import SILENT, Experiment, PlotResult, check_scale, reduction_lines
from ..params import init_params
from ..training import gradient_descent


def fig5(scale: str = "small", backend=None, on_step=None) -> dict:
    """σ(z^l)_last − C_L, l = 1 … L−1, and the output at l = L, for x = (cos π/3, sin π/3) after training;
    `on_step(step, total, loss)` after each GD step."""
    L, C, reduced = (10000, 5e4, "") if scale == "paper" else (1000, 500.0, "L = 1000 (C_L = 500) instead of 10000")
    _, X, _ = fig3_inputs(TRAINING_POINTS)
    params = init_params(fig3_network(L, C), "paper", 0)
    report = None if on_step is None else lambda step, value: on_step(step + 1, PAPER_STEPS, value)
    trained = gradient_descent(params, X, fig3_target(X), PAPER_STEPS, lr=fig3_learning_rate(L, C), loss="mse",
                               backend=backend, on_step=report).params
    x = np.array([[np.cos(np.pi / 3), np.sin(np.pi / 3)]])
    acts = activations(trained, x, backend=backend)
    carrier = acts[1:, 0, -1] - C  # σ(z^l) of the last output carrier, l = 1 … L-1
    output = float(forward(trained, x, backend=backend)[0, 0])
    return {"experiment": "fig5", "scale": scale, "reduced": reduced, "depth": L, "C_L": C, "x": x[0].tolist(),
            "carrier_minus_C": carrier.tolist() + [output], "output": output, "target": float(fig3_target(x)[0, 0])}


@dataclass(frozen=True)
class Fig5Config:
    """`deepntk reproduce fig5`: L = 10000 at the paper's scale, 1000 at the small one."""

    scale: str = "small"

    def __post_init__(self):
        check_scale(self.scale)


class Fig5Result(PlotResult):
    """`fig5`'s result; its summary is the output against the target and the range of the per-layer values."""

    figure_builder = "fig5_figure"

    def summary(self) -> list[str]:
        data = self.data
        values = data["carrier_minus_C"]
        return reduction_lines(data) + [
            f"L = {data['depth']}: output {data['output']:.4f} (target {data['target']:.4f}); per-layer "
            f"σ(z^l)_last − C_L from {values[0]:.3e} to {values[-1]:.3e}"]


def run(config: Fig5Config, backend=None, client=None, progress=SILENT) -> Fig5Result:
    """Fig. 5 at `config.scale`; the GD steps through `progress.on_step`."""
    return Fig5Result(fig5(config.scale, backend, progress.on_step))


EXPERIMENT = Experiment("fig5", Fig5Config, run, Fig5Result,
                        description="the output built up layer by layer (paper Fig. 5)")
