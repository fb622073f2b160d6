"""The algorithms, backend-independent: validate at the boundary, pack, and call a backend.

Every function takes host arrays and returns host NumPy arrays in the params' dtype.
"""

from __future__ import annotations

import numpy as np
from ..backends.registry import get_backend
from ..base.losses import check_loss
from .packed import LayerViews, pack, pad_inputs
from .params import Ensemble, Params
from ..base.validate import check_input_sets, check_targets, warn_if_unresolved, warns_once_per_cause


class Gradients(LayerViews):
    """∂ℒ/∂θ: packed `W`, `b` like the params' (behind a leading E for an ensemble), and per-layer views
    `weights`, `biases` in the shapes of `Params.weights` and `Params.biases`."""

    def __init__(self, spec, W: np.ndarray, b: np.ndarray):
        self.spec, self.W, self.b = spec, W, b


def check_params(params, ensembles: bool = True):
    """`params` itself if it is a `Params` (or an `Ensemble`, where `ensembles`); else a TypeError."""
    kinds = (Params, Ensemble) if ensembles else (Params,)
    if not isinstance(params, kinds):
        raise TypeError(f"params must be a deepntk.Params{' or deepntk.Ensemble' if ensembles else ''} (from "
                        f"init_params or load_params), got {type(params).__name__}")
    return params


def _prepared(params, X, name="X", X2=None, name2="X2"):
    """The packed network and its inputs `X` (and `X2`, None where absent), checked with one warning per cause."""
    check_params(params)
    warn_if_unresolved(params.spec.carrier_scale, params.dtype)
    net = pack(params)
    inputs = check_input_sets({name: X, name2: X2}, params.spec)
    return (net, *(None if array is None else pad_inputs(net, array) for array in inputs))


@warns_once_per_cause
def forward(params, X, *, backend=None) -> np.ndarray:
    """Network outputs f(X).

    Args:
        params: a `Params`, or an `Ensemble` of E networks.
        X: inputs, (N, d_in) for the MLP or (N, c, d, d) for the CNN (a single point is accepted).
        backend: a backend name, instance, or None for the best installed one.

    Returns:
        (N, k) array; (E, N, k) for an ensemble.
    """
    engine = get_backend(backend)
    net, Xp, _ = _prepared(params, X)
    return engine.forward_ensemble(net, Xp) if net.ensemble else engine.forward(net, Xp)


@warns_once_per_cause
def activations(params, X, *, backend=None) -> np.ndarray:
    """Every layer's input activations a^l = σ(z^l), l = 0 … L−1 (a^0 = X as the first layer sees it), zero-padded
    to the hidden width n (docs/networks.md). One network (`Params`) at a time.

    Returns:
        (L, N, n) for the MLP, (L, N, n, d, d) for the CNN.
    """
    check_params(params, ensembles=False)
    engine = get_backend(backend)
    net, Xp, _ = _prepared(params, X)
    return engine.activations(net, Xp)


@warns_once_per_cause
def loss_and_gradients(params, X, Y, *, loss: str = "paper", backend=None):
    """Loss value, outputs and the gradient of the loss w.r.t. every weight and bias, by backpropagation.

    Args:
        params: a `Params`, or an `Ensemble` of E networks (all on the same X, Y).
        loss: "paper" for ℒ = (1/2N) Σ‖f(x_i) − y_i‖² (paper §3.2) or "mse" for PyTorch's MSELoss (mean over
            samples and outputs, no ½; its gradient is 2/k times the paper's); docs/training.md#losses.

    Returns:
        (loss value, outputs (N, k), `Gradients`); for an ensemble, (values (E,), outputs (E, N, k), `Gradients`
        with a leading E axis).
    """
    check_loss(loss)
    engine = get_backend(backend)
    net, Xp, _ = _prepared(params, X)
    targets = check_targets(Y, len(Xp), params.spec.outputs)
    run = engine.loss_and_gradients_ensemble if net.ensemble else engine.loss_and_gradients
    value, outputs, dW, db = run(net, Xp, targets, loss)
    return value, outputs, Gradients(params.spec, dW, db)


@warns_once_per_cause
def scaled_ntk(params, X1, X2=None, *, backend=None) -> np.ndarray:
    """Scaled NTK Θ̃(X1, X2) = ∂_θf(X1) ∂_θf(X2)ᵀ / (L·C_L²) over all weights and biases (paper §3.2;
    docs/ntk.md).

    Returns:
        (N1, N2, k, k) array; (E, N1, N2, k, k) for an ensemble; with X2 None, the Gram of X1 with itself.
    """
    engine = get_backend(backend)
    net, X1p, X2p = _prepared(params, X1, "X1", X2, "X2")
    theta = engine.ntk_ensemble(net, X1p, X2p) if net.ensemble else engine.ntk(net, X1p, X2p)
    scale = np.asarray(params.ntk_scale, dtype=theta.dtype)
    if not theta.flags.writeable:  # scaled in place where allowed: a copy would double the Gram's memory
        return theta * scale
    theta *= scale
    return theta
