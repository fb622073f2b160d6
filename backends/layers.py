"""The layer kinds of the recurrence, written once against an array namespace `xp` (NumPy or CuPy), and the
table `LAYER_OPS` that maps an architecture's `layer_kind` to them (a new kind: a `LayerOps` subclass added
there; docs/networks.md#adding-an-architecture).

Shapes (N inputs, k outputs, n channels, d×d pixels, f×f filters):
  dense: activations a (N, n); Jacobians G = ∂f/∂z (N, k, n); W (n, n).
  conv:  activations a (N, n, d, d); Jacobians G (N, k, n, d, d); W (n, n, f, f).
A "Jacobian" with k = 1 also carries the loss gradient δ = ∂ℒ/∂z during backprop.
"""

from __future__ import annotations


class LayerOps:
    """What the reference path (`deepntk.backends.base.Backend`) asks of a layer kind; a new kind implements it and
    is added to `LAYER_OPS` (docs/networks.md#adding-an-architecture). The activation is always the ReLU."""

    def __init__(self, xp):
        self.xp = xp

    @classmethod
    def for_net(cls, xp, net):
        """The ops for a `PackedNet` (which carries what they may need: sizes, filter side)."""
        return cls(xp)

    def apply(self, W, b, a):
        """z = the layer's affine map of its input activations a."""
        raise NotImplementedError

    def backprop(self, W, G):
        """∂f/∂a from ∂f/∂z (G carries a Jacobian's output axis, or the loss gradient with k = 1)."""
        raise NotImplementedError

    def output_jacobian(self, N, outputs, width, dtype, size=1):
        """∂f/∂z^L of the read-out: (N, k, n[, d, d])."""
        raise NotImplementedError

    def read_output(self, z, outputs):
        """The network outputs (N, k) from the last layer's z."""
        raise NotImplementedError

    def summed_gradients(self, delta, a):
        """Σ_i ∂ℒ/∂W and Σ_i ∂ℒ/∂b for delta = ∂ℒ/∂z (N, 1, n[, d, d])."""
        raise NotImplementedError

    def ntk_term(self, a1, G1, a2, G2):
        """The layer's contribution ⟨∂f/∂θ^l(x), ∂f/∂θ^l(x')⟩ to the NTK, as (N1, k, N2, k)."""
        raise NotImplementedError


class DenseOps(LayerOps):
    """z = W a + b."""

    def apply(self, W, b, a):
        return a @ W.T + b

    def backprop(self, W, G):
        """∂f/∂a from ∂f/∂z: G W."""
        return G @ W

    def output_jacobian(self, N, outputs, width, dtype, size=1):
        """∂f/∂z^L: identity on the first k units."""
        G = self.xp.zeros((N, outputs, width), dtype=dtype)
        idx = self.xp.arange(outputs)
        G[:, idx, idx] = 1.0
        return G

    def read_output(self, z, outputs):
        return z[:, :outputs]

    def summed_gradients(self, delta, a):
        """Σ_i ∂ℒ/∂W and Σ_i ∂ℒ/∂b for delta (N, 1, n)."""
        d = delta[:, 0]
        return d.T @ a, d.sum(axis=0)

    def ntk_term(self, a1, G1, a2, G2):
        """(a1·a2 + 1) G1 G2ᵀ, the layer's contribution (paper Lemma 8), as (N1, k, N2, k)."""
        N1, k, n = G1.shape
        N2 = G2.shape[0]
        pair = a1 @ a2.T
        pair += 1.0
        jac = (G1.reshape(N1 * k, n) @ G2.reshape(N2 * k, n).T).reshape(N1, k, N2, k)
        jac *= pair[:, None, :, None]  # in place: a term takes two Gram-sized arrays, not three
        return jac


class ConvOps(LayerOps):
    """z = w ⋆ a + b: stride-1 cross-correlation with zero padding (f-1)/2, as a matrix product over patches."""

    def __init__(self, xp, filter_size: int):
        self.xp = xp
        self.f = filter_size
        self.r = filter_size // 2

    @classmethod
    def for_net(cls, xp, net):
        return cls(xp, net.filter_size)

    def patches(self, a):
        """(..., n, d, d) → (..., n·f·f, d·d), channel-major then filter row then column (Conv2d layout)."""
        xp, f, r = self.xp, self.f, self.r
        d = a.shape[-1]
        pad = [(0, 0)] * (a.ndim - 2) + [(r, r), (r, r)]
        padded = xp.pad(a, pad)
        cols = xp.stack([padded[..., u:u + d, v:v + d] for u in range(f) for v in range(f)], axis=-3)
        return cols.reshape(a.shape[:-3] + (a.shape[-3] * f * f, d * d))

    def fold(self, cols, d):
        """Adjoint of `patches`: (..., n·f·f, d·d) → (..., n, d, d), summing overlapping taps."""
        xp, f, r = self.xp, self.f, self.r
        lead = cols.shape[:-2]
        n = cols.shape[-2] // (f * f)
        cols = cols.reshape(lead + (n, f, f, d, d))
        out = xp.zeros(lead + (n, d + 2 * r, d + 2 * r), dtype=cols.dtype)
        for u in range(f):
            for v in range(f):
                out[..., u:u + d, v:v + d] += cols[..., u, v, :, :]
        return out[..., r:r + d, r:r + d]

    def apply(self, W, b, a):
        N, n, d, _ = a.shape
        z = W.reshape(W.shape[0], -1) @ self.patches(a) + b[:, None]
        return z.reshape(N, W.shape[0], d, d)

    def backprop(self, W, G):
        d = G.shape[-1]
        Wf = W.reshape(W.shape[0], -1)
        cols = Wf.T @ G.reshape(G.shape[:-2] + (d * d,))
        return self.fold(cols, d)

    def output_jacobian(self, N, outputs, width, dtype, size):
        """∂f/∂z^L for the global average pool output: 1/d² on output channel j's pixels."""
        G = self.xp.zeros((N, outputs, width, size, size), dtype=dtype)
        idx = self.xp.arange(outputs)
        G[:, idx, idx] = 1.0 / size**2
        return G

    def read_output(self, z, outputs):
        return z[:, :outputs].mean(axis=(-2, -1))

    def per_sample_gradients(self, G, a):
        """∂f/∂w and ∂f/∂b per input and output: (N, k, n·n·f·f + n)."""
        xp = self.xp
        N, k, n, d, _ = G.shape
        Gf = G.reshape(N, k, n, d * d)
        gw = xp.einsum("ikop,imp->ikom", Gf, self.patches(a))
        gb = Gf.sum(axis=-1)
        return xp.concatenate([gw.reshape(N, k, -1), gb], axis=-1)

    def summed_gradients(self, delta, a):
        N, _, n, d, _ = delta.shape
        df = delta[:, 0].reshape(N, n, d * d)
        cols = self.patches(a)
        dW = self.xp.einsum("iop,imp->om", df, cols).reshape(n, n, self.f, self.f)
        return dW, df.sum(axis=(0, 2))

    def ntk_term(self, a1, G1, a2, G2):
        """⟨∂f/∂θ^l(x), ∂f/∂θ^l(x')⟩ from per-sample weight gradients (docs/ntk.md), as (N1, k, N2, k)."""
        J1 = self.per_sample_gradients(G1, a1)
        N1, k, P = J1.shape
        if a2 is a1 and G2 is G1:
            J2 = J1
        else:
            J2 = self.per_sample_gradients(G2, a2)
        N2 = J2.shape[0]
        return (J1.reshape(N1 * k, P) @ J2.reshape(N2 * k, P).T).reshape(N1, k, N2, k)


class WideDenseOps(DenseOps):
    """z = g·W a + s·b, the NTK parameterization (docs/networks.md#the-wide-mlp): g = √(σ_w²/n), s = σ_b from the
    net's `layer_constants`, W and b standard normal. The scales enter every derivative: ∂f/∂W = g·δ aᵀ,
    ∂f/∂b = s·δ, ∂f/∂a = g·Wᵀ δ."""

    def __init__(self, xp, weight_scale: float, bias_scale: float):
        self.xp = xp
        self.g = weight_scale
        self.s = bias_scale

    @classmethod
    def for_net(cls, xp, net):
        weight_scale, bias_scale = net.layer_constants
        return cls(xp, weight_scale, bias_scale)

    def apply(self, W, b, a):
        z = a @ W.T
        z *= self.g
        z += self.s * b
        return z

    def backprop(self, W, G):
        # One (N·k, n) × (n, n) product: NumPy runs (N, k, n) @ (n, n) as N small products, 10× slower at k = 1.
        out = G.reshape(-1, G.shape[-1]) @ W
        out *= self.g
        return out.reshape(G.shape[:-1] + (W.shape[1],))

    def summed_gradients(self, delta, a):
        dW, db = super().summed_gradients(delta, a)
        return self.g * dW, self.s * db

    def ntk_term(self, a1, G1, a2, G2):
        """(g² a1·a2 + s²) G1 G2ᵀ, as (N1, k, N2, k)."""
        N1, k, n = G1.shape
        N2 = G2.shape[0]
        pair = a1 @ a2.T
        pair *= self.g**2
        pair += self.s**2
        jac = (G1.reshape(N1 * k, n) @ G2.reshape(N2 * k, n).T).reshape(N1, k, N2, k)
        jac *= pair[:, None, :, None]
        return jac


# layer kind (an architecture's `layer_kind`, a PackedNet's `kind`) → its operations, built by
# cls.for_net(xp, net).
LAYER_OPS = {"dense": DenseOps, "conv": ConvOps, "wide-dense": WideDenseOps}
