"""The uniform recurrence backends compute on: z^l = W^l · P(σ(z^{l-1})) + b^l, l = 1 … L.

Every layer is stored at the hidden width n (input and output layers zero-padded), so a whole network is two
stacked arrays and the depth loop has no special cases:
  dense: W (L, n, n), b (L, n), activations (N, n); P is the identity.
  conv:  W (L, n, n, f, f), b (L, n), activations (N, n, d, d); P extracts zero-padded f×f patches.
The padding is exact: padded input channels are zero, padded output rows are never read, and their gradients
are dropped when unpacking. The network output is the first k channels of z^L (averaged over pixels for conv).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepntk.engine.validate import check_inputs


@dataclass(frozen=True)
class PackedNet:
    """A network as stacked, padded arrays (host NumPy).

    Attributes:
        kind: the layer kind, a key of `deepntk.backends.layers.LAYER_OPS` ("dense" or "conv").
        W: (L, n, n) or (L, n, n, f, f).
        b: (L, n).
        n_in: channels of the network input (d_in or c).
        outputs: k, the number of outputs.
        size: image side d inside the network (1 for dense).
        filter_size: f (1 for dense).
    """

    kind: str
    W: np.ndarray
    b: np.ndarray
    n_in: int
    outputs: int
    size: int = 1
    filter_size: int = 1

    @property
    def depth(self) -> int:
        return self.W.shape[0]

    @property
    def width(self) -> int:
        return self.W.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.W.dtype


def pack(params) -> PackedNet:
    """Stack a `Params` into the padded form.

    The L − 2 middle layers already have the full shape, so they are stacked in one call; only the first and
    last layers are padded. (At L = 10⁴ a per-layer Python loop would cost more than a fused GD step.)
    """
    spec = params.spec
    L, n, k = spec.depth, spec.width, spec.outputs
    W = np.zeros((L, n, n) + spec.packed_tail, dtype=params.dtype)
    b = np.zeros((L, n), dtype=params.dtype)
    if L > 2:
        np.stack(params.weights[1:-1], out=W[1:-1])
        np.stack(params.biases[1:-1], out=b[1:-1])
    for layer in (0, L - 1):
        w, bias = params.weights[layer], params.biases[layer]
        W[(layer,) + tuple(slice(0, s) for s in w.shape)] = w
        b[layer, : bias.shape[0]] = bias
    return PackedNet(spec.layer_kind, W, b, spec.in_features, k, spec.inner_size, spec.filter_side)


def unpack(params, dW: np.ndarray, db: np.ndarray):
    """Cut padded per-layer arrays back to the exact shapes of `params` (lists of arrays).

    Middle layers are returned as views of `dW`/`db` (already full-shaped); the first and last are copies.
    """
    L = len(params.weights)
    first, last = params.weights[0].shape, params.weights[-1].shape
    weights = ([dW[(0,) + tuple(slice(0, s) for s in first)].copy()] + list(dW[1:L - 1])
               + [dW[(L - 1,) + tuple(slice(0, s) for s in last)].copy()])
    biases = ([db[0, : params.biases[0].shape[0]].copy()] + list(db[1:L - 1])
              + [db[L - 1, : params.biases[-1].shape[0]].copy()])
    return weights, biases


def network_inputs(net: PackedNet, spec, X, name: str = "X") -> np.ndarray:
    """Validate X for `spec` (pooling CNN inputs) and pad it to the network's width, in the network's dtype."""
    return pad_inputs(net, check_inputs(X, spec, name=name))


def pad_inputs(net: PackedNet, X: np.ndarray) -> np.ndarray:
    """Zero-pad validated inputs from n_in to n channels: (N, n) or (N, n, d, d)."""
    padded = np.zeros((X.shape[0], net.width) + X.shape[2:], dtype=net.dtype)
    padded[:, : net.n_in] = X
    return padded
