"""Full-batch gradient descent on packed parameters (paper §3.2): the loop the experiments and benchmark use.

Step conventions (SPEC §Training): a *scaled* step η moves θ by −η/(L·C_L²)·∇ℒ, so n steps follow the kernel
flow to time t = nη (2η/k per step with MSELoss); a *raw* learning rate lr moves θ by −lr·∇ℒ (what the
paper's Table 1 lists). `raw_learning_rate` converts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepntk.backends.registry import get_backend
from deepntk.engine.errors import InputError
from deepntk.engine.packed import network_inputs, pack, unpack
from deepntk.engine.validate import check_targets


def raw_learning_rate(spec, *, eta: float | None = None, lr: float | None = None) -> float:
    """The raw step size from exactly one of a scaled step η (lr = η/(L·C_L²)) or a raw lr."""
    if (eta is None) == (lr is None):
        raise InputError("give exactly one of eta (scaled step) or lr (raw learning rate)")
    value = lr if lr is not None else eta / (spec.depth * float(spec.C_L) ** 2)
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"the learning rate must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass
class DescentResult:
    """Parameters after training and the loss before each step (and after the last)."""

    params: object
    losses: np.ndarray


def gradient_descent(params, X, Y, steps: int, *, eta: float | None = None, lr: float | None = None,
                     loss: str = "paper", backend=None, on_step=None) -> DescentResult:
    """`steps` full-batch GD steps θ ← θ − lr·∇ℒ(θ) on all N points.

    Runs on the backend's packed arrays throughout (`Backend.descend`: no per-step repacking, and on a GPU no
    per-step transfer of the weights); padded entries have zero gradients and stay zero. Raises
    FloatingPointError naming the step if the loss stops being finite.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise InputError(f"steps must be a non-negative integer, got {steps!r}")
    rate = raw_learning_rate(params.spec, eta=eta, lr=lr)
    net = pack(params)
    Xp = network_inputs(net, params.spec, X)
    targets = check_targets(Y, len(Xp), params.spec.outputs)
    W, b, losses = get_backend(backend).descend(net, Xp, targets, loss, rate, int(steps), on_step)
    weights, biases = unpack(params, W, b)
    return DescentResult(params.with_arrays(weights, biases), np.array(losses))
