"""Gradient descent on packed parameters (paper §3.2): step sizes and the full-batch entry point.

Every training path — this module, the checkpointing trainer (`deepntk.engine.trainer`) and the experiments —
runs through one backend method, `Backend.descend`, with one update rule and one non-finite-loss policy.

Step conventions (docs/training.md#step-sizes): a *scaled* step η moves θ by −η/(L·C_L²)·∇ℒ, so n steps follow
the kernel flow to time t = nη (2η/k per step with MSELoss); a *raw* learning rate lr moves θ by −lr·∇ℒ (what
the paper's Table 1 lists). `raw_learning_rate` converts.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import numpy as np
from ..backends.registry import get_backend
from ..base.errors import InputError, TrainingDiverged
from ..base.losses import check_loss, loss_value
from .packed import network_inputs, pack
from ..base.validate import DeepNTKWarning, check_targets, warn, warn_if_unresolved, warns_once_per_cause

# A loss above this many times its first value means the steps diverge, though it is still finite
# (docs/training.md#divergence).
LOSS_GROWTH_LIMIT = 1e3


class LossGrowthWarning(DeepNTKWarning):
    """The loss grew far above its start (LOSS_GROWTH_LIMIT ×) while staying finite: the steps diverge."""

    cause = "loss growth"


def loss_growth(losses, start=None, first_step: int = 0) -> dict | None:
    """The first of `losses` above LOSS_GROWTH_LIMIT × `start` (default: the first of them), as {"step", "factor",
    "loss", "start", "network" (None for one network)}, where losses[i] is step first_step + i; None if there is
    none. `losses` holds one loss per step, (steps,) or (steps, E) for an ensemble; a start of 0 (exact targets)
    gives no reference."""
    values = np.asarray(losses, dtype=np.float64)
    if not len(values):
        return None
    start = values[0] if start is None else np.asarray(start, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        factors = np.where(start > 0, values / np.where(start > 0, start, 1.0), 0.0)
    over = np.argwhere(factors > LOSS_GROWTH_LIMIT)
    if not len(over):
        return None
    index = tuple(int(i) for i in over[0])
    network = index[1:]
    return {"step": first_step + index[0], "factor": float(factors[index]), "loss": float(values[index]),
            "start": float(start[network]), "network": network[0] if network else None}


def warn_if_loss_grew(losses, start=None, first_step: int = 0) -> bool:
    """Warn (`LossGrowthWarning`, naming the step and the factor) where `loss_growth` finds a loss far above its
    start; return whether it did, so that a run warns once."""
    growth = loss_growth(losses, start, first_step)
    if growth is None:
        return False
    network = "" if growth["network"] is None else f" of network {growth['network']}"
    warn(f"the loss{network} grew to {growth['loss']:.3g} at step {growth['step']}, {growth['factor']:.3g} × its "
         f"start ({growth['start']:.3g}): the steps diverge; try a smaller learning rate", LossGrowthWarning)
    return True


def raw_learning_rate(spec, *, eta: float | None = None, lr: float | None = None) -> float:
    """The raw step size from exactly one of a scaled step η (lr = η / spec.ntk_normalization, η/(L·C_L²) for
    the deep narrow networks) or a raw lr."""
    if (eta is None) == (lr is None):
        raise InputError("give exactly one of eta (scaled step) or lr (raw learning rate)")
    given = lr if lr is not None else eta
    if isinstance(given, (bool, np.bool_)) or not isinstance(given, numbers.Real):
        raise InputError(f"the step size must be a number, got {given!r}")
    value = float(lr) if lr is not None else float(eta) / spec.ntk_normalization
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"the learning rate must be a finite number > 0, got {value!r}")
    return value


def check_steps(steps, name: str = "steps") -> int:
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise InputError(f"{name} must be a non-negative integer, got {steps!r}")
    return int(steps)


@dataclass
class DescentResult:
    """Parameters after training and the loss before each step (and after the last)."""

    params: object
    losses: np.ndarray


@warns_once_per_cause
def gradient_descent(params, X, Y, steps: int, *, eta: float | None = None, lr: float | None = None,
                     loss: str = "paper", backend=None, on_step=None) -> DescentResult:
    """`steps` full-batch GD steps θ ← θ − lr·∇ℒ(θ) on all N points, for one network or every network of an
    `Ensemble` at once.

    Runs on the backend's packed arrays throughout (`Backend.descend`: no per-step repacking, and on a GPU no
    per-step transfer of the weights); padded entries have zero gradients and stay zero.

    Returns:
        `DescentResult`: the trained `Params` (or `Ensemble`) and the losses, (steps + 1,) or (steps + 1, E).

    Raises:
        TrainingDiverged: (a FloatingPointError) naming the step (and the network) if the loss stops being
            finite.
    """
    steps = check_steps(steps)
    check_loss(loss)
    rate = raw_learning_rate(params.spec, eta=eta, lr=lr)
    engine = get_backend(backend)
    warn_if_unresolved(params.spec.carrier_scale, params.dtype)
    net = pack(params)
    Xp = network_inputs(net, params.spec, X)
    targets = check_targets(Y, len(Xp), params.spec.outputs)
    W, b, losses = engine.descend(net, Xp, targets, loss, rate, [None] * steps, on_step)
    trained = replace(net, W=W, b=b)
    if net.ensemble:
        final = np.array([loss_value(out, targets, loss) for out in engine.forward_ensemble(trained, Xp)])
    else:
        final = np.asarray(loss_value(engine.forward(trained, Xp), targets, loss))
    if not np.all(np.isfinite(final)):
        raise TrainingDiverged(f"loss became {final} after step {steps - 1}; try a smaller learning rate", steps,
                               losses=losses)
    losses = np.concatenate([np.reshape(losses, (steps,) + final.shape), final[None]])
    warn_if_loss_grew(losses)
    return DescentResult(params.with_packed(W, b), losses)
