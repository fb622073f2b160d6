"""The backend protocol: one concrete base class written against an array namespace `xp`.

`Backend` is complete and correct on its own for any `xp` with NumPy's API; the NumPy backend is exactly it,
and faster backends override `forward`, `loss_and_gradients` and `ntk` where they have fused kernels. All
three take and return host NumPy arrays of a `PackedNet`'s dtype; the engine (`deepntk.engine.api`) validates
inputs and packs parameters before calling them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from deepntk.backends.layers import ConvOps, DenseOps

LOSSES = ("paper", "mse")


def loss_value_and_output_gradient(outputs: np.ndarray, targets: np.ndarray, loss: str):
    """ℒ and ∂ℒ/∂f for (N, k) outputs (SPEC §Training).

    "paper": ℒ = (1/2N) Σ_i ‖f(x_i) − y_i‖²;  "mse": PyTorch's MSELoss, the mean over N·k of (f − y)².
    """
    N, k = outputs.shape
    residual = outputs - targets
    if loss == "paper":
        return 0.5 * float(np.sum(residual**2)) / N, residual / N
    if loss == "mse":
        return float(np.mean(residual**2)), 2.0 * residual / (N * k)
    raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def check_finite_loss(value: float, step: int) -> None:
    if not np.isfinite(value):
        raise FloatingPointError(f"loss became {value} at step {step}; try a smaller learning rate")


def output_gradient_coefficient(loss: str, N: int, k: int) -> float:
    """c with ∂ℒ/∂f = c·(f − y), for fused kernels that form the residual themselves."""
    return float(loss_value_and_output_gradient(np.ones((1, k)), np.zeros((1, k)), loss)[1][0, 0]) / N


class Backend:
    """Reference implementation of the recurrence on any NumPy-like namespace.

    Class attributes a subclass sets: `name` (used by the registry and CLI), `library` (the module it needs),
    `extra` (the pip extra that installs it), `xp` (its array namespace).
    """

    name = "base"
    library = "numpy"
    extra = None
    xp = np

    # -- description -------------------------------------------------------------------------------------
    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """(available, reason if not)."""
        return True, ""

    def describe(self) -> dict:
        """Name, device and library version for `deepntk backends`."""
        return {"name": self.name, "available": True, "device": "cpu", "version": np.__version__}

    # -- host/device transfer ----------------------------------------------------------------------------
    def to_device(self, array):
        return self.xp.asarray(array)

    def to_host(self, array) -> np.ndarray:
        return np.asarray(array)

    # -- recurrence pieces -------------------------------------------------------------------------------
    def layer_ops(self, net):
        if net.kind == "dense":
            return DenseOps(self.xp)
        return ConvOps(self.xp, net.filter_size)

    def trace(self, net, W, b, X):
        """Forward pass keeping each layer's input activations a^0 … a^{L-1}; returns (outputs, acts)."""
        ops = self.layer_ops(net)
        acts = []
        a = X
        for layer in range(net.depth):
            acts.append(a)
            z = ops.apply(W[layer], b[layer], a)
            a = self.xp.maximum(z, 0)
        return ops.read_output(z, net.outputs), acts

    def _device_net(self, net):
        return self.to_device(net.W), self.to_device(net.b)

    # -- the three operations ----------------------------------------------------------------------------
    def forward(self, net, X: np.ndarray) -> np.ndarray:
        """Network outputs (N, k) for padded inputs X."""
        W, b = self._device_net(net)
        a = self.to_device(X)
        ops = self.layer_ops(net)
        for layer in range(net.depth - 1):
            a = self.xp.maximum(ops.apply(W[layer], b[layer], a), 0)
        z = ops.apply(W[-1], b[-1], a)
        return self.to_host(ops.read_output(z, net.outputs))

    def loss_and_gradients(self, net, X: np.ndarray, Y: np.ndarray, loss: str):
        """(ℒ, outputs (N, k), ∂ℒ/∂W stacked like net.W, ∂ℒ/∂b stacked like net.b) by backpropagation."""
        xp = self.xp
        W, b = self._device_net(net)
        outputs, acts = self.trace(net, W, b, self.to_device(X))
        outputs = self.to_host(outputs)
        value, grad_out = loss_value_and_output_gradient(outputs, Y, loss)
        ops = self.layer_ops(net)
        # ∂ℒ/∂z^L = Σ_j ∂ℒ/∂f_j · ∂f_j/∂z^L, carried with a singleton output axis.
        G_out = ops.output_jacobian(len(X), net.outputs, net.width, net.dtype, net.size)
        grad = self.to_device(grad_out.astype(net.dtype))
        delta = (grad.reshape(grad.shape + (1,) * (G_out.ndim - 2)) * G_out).sum(axis=1)[:, None]
        dW = xp.zeros_like(W)
        db = xp.zeros_like(b)
        for layer in range(net.depth - 1, -1, -1):
            dW[layer], db[layer] = ops.summed_gradients(delta, acts[layer])
            if layer:
                delta = ops.backprop(W[layer], delta) * (acts[layer] > 0)[:, None]
        return value, outputs, self.to_host(dW), self.to_host(db)

    def descend(self, net, X: np.ndarray, Y: np.ndarray, loss: str, rate: float, steps: int, on_step=None):
        """`steps` full-batch GD steps θ ← θ − rate·∇ℒ from `net`; returns (W, b, losses) with the loss before
        each step and after the last. Stops with FloatingPointError (naming the step) on a non-finite loss.

        Backends that keep the weights on a device override this to avoid a round trip per step.
        """
        W, b = net.W.copy(), net.b.copy()
        losses = []
        for step in range(steps + 1):
            value, _, dW, db = self.loss_and_gradients(replace(net, W=W, b=b), X, Y, loss)
            losses.append(value)
            check_finite_loss(value, step)
            if step == steps:
                break
            W -= np.asarray(rate, dtype=W.dtype) * dW
            b -= np.asarray(rate, dtype=b.dtype) * db
            if on_step:
                on_step(step, value)
        return W, b, np.array(losses)

    def ntk(self, net, X1: np.ndarray, X2: np.ndarray | None = None) -> np.ndarray:
        """Unscaled NTK Θ(X1, X2) of shape (N1, N2, k, k), summed layer by layer (SPEC §Scaled NTK).

        One backward sweep for both input sets; per layer only (N1, k, N2, k) is formed, never per-sample
        gradient vectors of the whole network. Memory: the activations, O(N·L·n) (·d² for conv).
        """
        xp = self.xp
        W, b = self._device_net(net)
        ops = self.layer_ops(net)
        _, acts1 = self.trace(net, W, b, self.to_device(X1))
        G1 = ops.output_jacobian(len(X1), net.outputs, net.width, net.dtype, net.size)
        symmetric = X2 is None
        if symmetric:
            acts2, G2 = acts1, G1
        else:
            _, acts2 = self.trace(net, W, b, self.to_device(X2))
            G2 = ops.output_jacobian(len(X2), net.outputs, net.width, net.dtype, net.size)
        theta = xp.zeros((len(X1), net.outputs, len(acts2[0]), net.outputs), dtype=net.dtype)
        for layer in range(net.depth - 1, -1, -1):
            theta += ops.ntk_term(acts1[layer], G1, acts2[layer], G2)
            if layer:
                G1 = ops.backprop(W[layer], G1) * (acts1[layer] > 0)[:, None]
                G2 = G1 if symmetric else ops.backprop(W[layer], G2) * (acts2[layer] > 0)[:, None]
        return self.to_host(theta.transpose(0, 2, 1, 3))
