"""The algorithms, backend-independent: validate at the boundary, pack, and call a backend.

Every function takes host arrays and returns host NumPy arrays in the params' dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepntk.backends.registry import get_backend
from deepntk.engine.losses import check_loss
from deepntk.engine.packed import network_inputs, pack, unpack
from deepntk.engine.params import Params
from deepntk.engine.validate import check_targets, warn_if_unresolved


@dataclass
class Gradients:
    """∂ℒ/∂θ in the same per-layer shapes as `Params.weights` and `Params.biases`."""

    weights: list
    biases: list


def check_params(params) -> Params:
    if not isinstance(params, Params):
        raise TypeError(f"params must be a deepntk.Params (from init_params or load_params), got "
                        f"{type(params).__name__}")
    return params


def _prepared(params, X, name):
    check_params(params)
    warn_if_unresolved(params.spec.C_L, params.dtype)
    net = pack(params)
    return net, network_inputs(net, params.spec, X, name)


def forward(params, X, *, backend=None) -> np.ndarray:
    """Network outputs f(X).

    Args:
        params: a `Params`.
        X: inputs, (N, d_in) for the MLP or (N, c, d, d) for the CNN (a single point is accepted).
        backend: a backend name, instance, or None for the best installed one.

    Returns:
        (N, k) array.
    """
    engine = get_backend(backend)
    net, Xp = _prepared(params, X, "X")
    return engine.forward(net, Xp)


def activations(params, X, *, backend=None) -> np.ndarray:
    """Every layer's input activations a^l = σ(z^l), l = 0 … L−1 (a^0 = X as the first layer sees it), zero-padded
    to the hidden width n (docs/networks.md).

    Returns:
        (L, N, n) for the MLP, (L, N, n, d, d) for the CNN.
    """
    engine = get_backend(backend)
    net, Xp = _prepared(params, X, "X")
    return engine.activations(net, Xp)


def loss_and_gradients(params, X, Y, *, loss: str = "paper", backend=None):
    """Loss value, outputs and the gradient of the loss w.r.t. every weight and bias, by backpropagation.

    Args:
        loss: "paper" for ℒ = (1/2N) Σ‖f(x_i) − y_i‖² (paper §3.2) or "mse" for PyTorch's MSELoss (mean over
            samples and outputs, no ½; its gradient is 2/k times the paper's); docs/training.md#losses.

    Returns:
        (loss value, outputs (N, k), `Gradients`).
    """
    check_loss(loss)
    engine = get_backend(backend)
    net, Xp = _prepared(params, X, "X")
    targets = check_targets(Y, len(Xp), params.spec.outputs)
    value, outputs, dW, db = engine.loss_and_gradients(net, Xp, targets, loss)
    weights, biases = unpack(params, dW, db)
    return value, outputs, Gradients(weights, biases)


def scaled_ntk(params, X1, X2=None, *, backend=None) -> np.ndarray:
    """Scaled NTK Θ̃(X1, X2) = ∂_θf(X1) ∂_θf(X2)ᵀ / (L·C_L²) over all weights and biases (paper §3.2;
    docs/ntk.md).

    Returns:
        (N1, N2, k, k) array; with X2 None, the Gram of X1 with itself.
    """
    engine = get_backend(backend)
    net, X1p = _prepared(params, X1, "X1")
    X2p = None if X2 is None else network_inputs(net, params.spec, X2, "X2")
    theta = engine.ntk(net, X1p, X2p)
    return theta * np.asarray(params.ntk_scale, dtype=theta.dtype)
