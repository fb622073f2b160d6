"""The two training losses (docs/training.md#losses), defined once for the engine and every backend."""

from __future__ import annotations

import numpy as np

from .errors import InputError

LOSSES = ("paper", "mse")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise InputError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    return loss


def loss_value_and_output_gradient(outputs: np.ndarray, targets: np.ndarray, loss: str):
    """ℒ and ∂ℒ/∂f for (N, k) outputs.

    "paper": ℒ = (1/2N) Σ_i ‖f(x_i) − y_i‖²;  "mse": PyTorch's MSELoss, the mean over N·k of (f − y)².
    """
    N, k = outputs.shape
    residual = outputs - targets
    if loss == "paper":
        return 0.5 * float(np.sum(residual**2)) / N, residual / N
    if loss == "mse":
        return float(np.mean(residual**2)), 2.0 * residual / (N * k)
    raise InputError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def loss_value(outputs: np.ndarray, targets: np.ndarray, loss: str) -> float:
    return loss_value_and_output_gradient(outputs, targets, loss)[0]


def output_gradient_coefficient(loss: str, N: int, k: int) -> float:
    """c with ∂ℒ/∂f = c·(f − y), for fused kernels that form the residual themselves."""
    return float(loss_value_and_output_gradient(np.ones((1, k)), np.zeros((1, k)), loss)[1][0, 0]) / N
