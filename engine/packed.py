"""The uniform recurrence backends compute on: z^l = W^l · P(σ(z^{l-1})) + b^l, l = 1 … L.

Every layer is stored at the hidden width n (input and output layers zero-padded), so a whole network is two
stacked arrays and the depth loop has no special cases:
  dense: W (L, n, n), b (L, n), activations (N, n); P is the identity.
  conv:  W (L, n, n, f, f), b (L, n), activations (N, n, d, d); P extracts zero-padded f×f patches.
The padding is exact: padded input channels are zero, padded output rows are never read, and their gradients
are dropped when unpacking. The network output is the first k channels of z^L (averaged over pixels for conv).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..base.validate import check_inputs


@dataclass(frozen=True)
class PackedNet:
    """A network, or an ensemble of E networks of one architecture, as stacked, padded arrays (host NumPy).

    Attributes:
        kind: the layer kind, a key of `deepntk.backends.layers.LAYER_OPS` ("dense" or "conv").
        W: (L, n, n) or (L, n, n, f, f); an ensemble has a leading axis E.
        b: (L, n); (E, L, n) for an ensemble.
        n_in: channels of the network input (d_in or c).
        outputs: k, the number of outputs.
        size: image side d inside the network (1 for dense).
        filter_size: f (1 for dense).
        layer_constants: the spec's `layer_constants`, for `LayerOps.for_net` (empty by default).
    """

    kind: str
    W: np.ndarray
    b: np.ndarray
    n_in: int
    outputs: int
    size: int = 1
    filter_size: int = 1
    layer_constants: tuple = ()

    @property
    def ensemble(self) -> bool:
        return self.b.ndim == 3

    @property
    def networks(self) -> int:
        """E, the number of networks (1 for a single network)."""
        return self.b.shape[0] if self.ensemble else 1

    @property
    def depth(self) -> int:
        return self.b.shape[-2]

    @property
    def width(self) -> int:
        return self.b.shape[-1]

    @property
    def dtype(self) -> np.dtype:
        return self.W.dtype

    def stacked(self) -> "PackedNet":
        """The ensemble form (E = 1 for a single network; views, no copy)."""
        return self if self.ensemble else replace(self, W=self.W[None], b=self.b[None])

    def members(self) -> list["PackedNet"]:
        """The single networks of an ensemble (views)."""
        if not self.ensemble:
            return [self]
        return [replace(self, W=W, b=b) for W, b in zip(self.W, self.b)]


def pack(params) -> PackedNet:
    """The packed form of a `Params` or `Ensemble`: its own arrays, no copy (they are stored packed)."""
    spec = params.spec
    return PackedNet(spec.layer_kind, params.W, params.b, spec.in_features, spec.outputs, spec.inner_size,
                     spec.filter_side, spec.layer_constants)


def pack_layers(spec, weights, biases, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-layer arrays of exact shapes into the padded (W, b).

    The L − 2 middle layers already have the full shape, so they are stacked in one call; only the first and
    last layers are padded. (At L = 10⁴ a per-layer Python loop would cost more than a fused GD step.)
    """
    L, n = spec.weight_layers, spec.width
    W = np.zeros((L, n, n) + spec.packed_tail, dtype=dtype)
    b = np.zeros((L, n), dtype=dtype)
    if L > 2:
        np.stack(weights[1:-1], out=W[1:-1])
        np.stack(biases[1:-1], out=b[1:-1])
    for layer in (0, L - 1):
        w, bias = weights[layer], biases[layer]
        W[(layer,) + tuple(slice(0, s) for s in w.shape)] = w
        b[layer, : bias.shape[0]] = bias
    return W, b


def layer_views(spec, W: np.ndarray, b: np.ndarray) -> tuple[tuple, tuple]:
    """Per-layer views of exact shapes into padded (W, b), which may carry leading axes (an ensemble's E):
    (weights, biases), each a tuple of L arrays. Writing into a view writes into W or b."""
    lead = W.shape[: W.ndim - 3 - len(spec.packed_tail)]
    every = (slice(None),) * len(lead)
    weights, biases = [], []
    for layer in range(1, spec.weight_layers + 1):
        w_shape, b_shape = spec.weight_shape(layer), spec.bias_shape(layer)
        weights.append(W[every + (layer - 1,) + tuple(slice(0, s) for s in w_shape)])
        biases.append(b[every + (layer - 1, slice(0, b_shape[0]))])
    return tuple(weights), tuple(biases)


class LayerViews:
    """Per-layer arrays of exact shapes, `weights` and `biases`, as views into the packed `W`, `b` of the class
    that mixes this in (behind any leading axes), built when first asked for: at L = 10⁴ building them costs
    more than a fused kernel call, and the kernels never need them."""

    spec: object
    W: np.ndarray
    b: np.ndarray
    _views = None

    def _layer_views(self):
        if self._views is None:
            self._views = layer_views(self.spec, self.W, self.b)
        return self._views

    @property
    def weights(self) -> tuple:
        """L arrays, `weights[l-1]` is W^l of shape `spec.weight_shape(l)`; views into `W`."""
        return self._layer_views()[0]

    @property
    def biases(self) -> tuple:
        """L arrays, `biases[l-1]` is b^l of shape `spec.bias_shape(l)`; views into `b`."""
        return self._layer_views()[1]


def network_inputs(net: PackedNet, spec, X, name: str = "X") -> np.ndarray:
    """Validate X for `spec` (pooling CNN inputs) and pad it to the network's width, in the network's dtype."""
    return pad_inputs(net, check_inputs(X, spec, name=name))


def pad_inputs(net: PackedNet, X: np.ndarray) -> np.ndarray:
    """Zero-pad validated inputs from n_in to n channels: (N, n) or (N, n, d, d)."""
    padded = np.zeros((X.shape[0], net.width) + X.shape[2:], dtype=net.dtype)
    padded[:, : net.n_in] = X
    return padded
