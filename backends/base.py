"""The backend protocol: one concrete base class written against an array namespace `xp`.

`Backend` is complete and correct on its own for any `xp` with NumPy's API; the NumPy backend is exactly it,
and faster backends override the ensemble methods, `descend`, the NTK's `_gram`, the CNN limit kernel's
`cnn_pair_sum` and the solvers' `gram_tile_products` where they have fused kernels. Every kernel evaluation of
deepntk is one of these methods, on the backend the caller chose (`backend=` / `--backend`, resolved by
`deepntk.backends.registry`): nothing else picks an implementation (docs/backends.md#who-chooses). Every public
method takes and returns host NumPy arrays of a `PackedNet`'s dtype; the engine (`deepntk.engine.api`,
`deepntk.engine.training`) validates inputs and packs parameters before calling them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from .layers import LAYER_OPS
from ..base.errors import TrainingDiverged
from ..base.losses import loss_value_and_output_gradient
from ..base.memory import gram_blocks, memory_budget, require_memory


def diverged(step: int, value, W, b, losses) -> TrainingDiverged:
    """The one non-finite-loss policy of every backend's `descend`: stop, and hand back the last good state.
    For an ensemble (`value` per network) the message names the networks whose loss is not finite."""
    value = np.asarray(value)
    if value.ndim:
        bad = np.flatnonzero(~np.isfinite(value))
        where = f" of network{'s' if len(bad) > 1 else ''} {', '.join(str(e) for e in bad[:10])}"
        value = value[bad[0]]
    else:
        where = ""
    return TrainingDiverged(f"loss{where} became {value} at step {step}; try a smaller learning rate", step, W, b,
                            losses, float(value))


def batch_of(X, Y, idx):
    """The inputs and targets of one step: all of them for idx None, else the rows in idx."""
    return (X, Y) if idx is None else (X[idx], Y[idx])


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

    def memory_budget(self) -> int:
        """Bytes of working memory one call may use (DEEPNTK_MEMORY_BUDGET on the host)."""
        return memory_budget()

    # -- host/device transfer ----------------------------------------------------------------------------
    def to_device(self, array):
        return self.xp.asarray(array)

    def to_host(self, array) -> np.ndarray:
        return np.asarray(array)

    # -- recurrence pieces -------------------------------------------------------------------------------
    def _layer_ops(self, net):
        return LAYER_OPS[net.kind].for_net(self.xp, net)

    def _trace(self, net, W, b, X):
        """Forward pass keeping each layer's input activations a^0 … a^{L-1}; returns (outputs, acts)."""
        ops = self._layer_ops(net)
        acts = []
        a = X
        for layer in range(net.depth - 1):
            acts.append(a)
            a = self.xp.maximum(ops.apply(W[layer], b[layer], a), 0)
        acts.append(a)
        k = net.outputs
        return ops.read_output(ops.apply(W[-1][:k], b[-1][:k], a), k), acts

    def _device_net(self, net):
        return self.to_device(net.W), self.to_device(net.b)

    def _fused(self, net) -> bool:
        """Whether this backend's ensemble kernels take `net`: then one network runs as the ensemble of one
        (`net.stacked()`), through the same kernels. The reference has none."""
        return False

    # -- the operations ----------------------------------------------------------------------------------
    def forward(self, net, X: np.ndarray) -> np.ndarray:
        """Network outputs (N, k) for padded inputs X."""
        if self._fused(net):
            return self.forward_ensemble(net.stacked(), X)[0]
        W, b = self._device_net(net)
        a = self.to_device(X)
        ops = self._layer_ops(net)
        for layer in range(net.depth - 1):
            a = self.xp.maximum(ops.apply(W[layer], b[layer], a), 0)
        # The read-out's rows past the k outputs are padding (zero, never read): only its first k are multiplied.
        z = ops.apply(W[-1][:net.outputs], b[-1][:net.outputs], a)
        return self.to_host(ops.read_output(z, net.outputs))

    def activations(self, net, X: np.ndarray) -> np.ndarray:
        """Every layer's input a^l = σ(z^l) for l = 0 … L−1 (a^0 = X), padded to the width n: (L, N, n[, d, d])."""
        require_memory(net.depth * X.size * net.dtype.itemsize, f"the activations of {len(X)} inputs")
        W, b = self._device_net(net)
        _, acts = self._trace(net, W, b, self.to_device(X))
        return np.stack([self.to_host(a) for a in acts])

    def loss_and_gradients(self, net, X: np.ndarray, Y: np.ndarray, loss: str):
        """(ℒ, outputs (N, k), ∂ℒ/∂W stacked like net.W, ∂ℒ/∂b stacked like net.b) by backpropagation."""
        if self._fused(net):
            values, outputs, dW, db = self.loss_and_gradients_ensemble(net.stacked(), X, Y, loss)
            return values[0], outputs[0], dW[0], db[0]
        xp = self.xp
        W, b = self._device_net(net)
        outputs, acts = self._trace(net, W, b, self.to_device(X))
        outputs = self.to_host(outputs)
        value, grad_out = loss_value_and_output_gradient(outputs, Y, loss)
        ops = self._layer_ops(net)
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

    def descend(self, net, X: np.ndarray, Y: np.ndarray, loss: str, rate: float, batches, on_step=None):
        """Gradient descent from `net`'s weights: one step θ ← θ − rate·∇ℒ_B(θ) per entry of `batches`, an index
        array of that step's mini-batch B or None for all inputs (docs/training.md).

        The one training loop of deepntk: the trainer, `gradient_descent` and the experiments all call it.
        Returns (W, b, losses): the packed weights after the last step and each step's batch loss ℒ_B before
        its update. An ensemble (`net.ensemble`) steps all its networks together on the same batches through
        `loss_and_gradients_ensemble`; its losses are (steps, E). A non-finite batch loss raises
        `TrainingDiverged` carrying the last good W, b. `on_step(step, loss)` is called after each update.
        Backends that keep the weights on a device override this to avoid a round trip per step.
        """
        gradients = self.loss_and_gradients_ensemble if net.ensemble else self.loss_and_gradients
        W, b = net.W.copy(), net.b.copy()
        losses = []
        for step, idx in enumerate(batches):
            Xb, Yb = batch_of(X, Y, idx)
            value, _, dW, db = gradients(replace(net, W=W, b=b), Xb, Yb, loss)
            if not np.all(np.isfinite(value)):
                raise diverged(step, value, W, b, losses)
            losses.append(value)
            W -= np.asarray(rate, dtype=W.dtype) * dW
            b -= np.asarray(rate, dtype=b.dtype) * db
            if on_step:
                on_step(step, value)
        return W, b, np.array(losses)

    # -- ensembles: E networks of one architecture (a PackedNet with a leading axis) -------------------------
    # These defaults run the networks one after another; backends with kernels over networks × inputs
    # override them. Results carry a leading E axis.
    def forward_ensemble(self, nets, X: np.ndarray) -> np.ndarray:
        """Outputs (E, N, k) of every network."""
        return np.stack([self.forward(net, X) for net in nets.members()])

    def loss_and_gradients_ensemble(self, nets, X: np.ndarray, Y: np.ndarray, loss: str):
        """(ℒ per network (E,), outputs (E, N, k), ∂ℒ/∂W (E, …), ∂ℒ/∂b (E, …)), every network on the same X, Y."""
        values, outputs, dW, db = zip(*(self.loss_and_gradients(net, X, Y, loss) for net in nets.members()))
        return np.array(values), np.stack(outputs), np.stack(dW), np.stack(db)

    def ntk_ensemble(self, nets, X1: np.ndarray, X2: np.ndarray | None = None) -> np.ndarray:
        """Unscaled NTK (E, N1, N2, k, k) of every network, each written into its slice of the result."""
        theta = np.empty((nets.networks, len(X1), len(X1) if X2 is None else len(X2), nets.outputs, nets.outputs),
                         dtype=nets.dtype)
        for net, out in zip(nets.members(), theta):
            self._blocked_ntk(net, X1, X2, out)
        return theta

    def ntk(self, net, X1: np.ndarray, X2: np.ndarray | None = None) -> np.ndarray:
        """Unscaled NTK Θ(X1, X2) of shape (N1, N2, k, k), summed layer by layer (docs/ntk.md).

        Inputs are taken in blocks whose working memory fits the budget (`memory_budget`, beside the Gram
        itself; docs/ntk.md#memory); each pair of blocks is one `_gram` call, and with X2 None only the blocks
        on and above the diagonal are computed, the rest mirrored. A network the backend's ensemble kernels take
        (`_fused`) is their ensemble of one.
        """
        if self._fused(net):
            return self.ntk_ensemble(net.stacked(), X1, X2)[0]
        N2 = len(X1) if X2 is None else len(X2)
        return self._blocked_ntk(net, X1, X2, np.empty((len(X1), N2, net.outputs, net.outputs), dtype=net.dtype))

    def _blocked_ntk(self, net, X1, X2, theta: np.ndarray) -> np.ndarray:
        """`ntk` written into `theta` (N1, N2, k, k), a block pair at a time (`gram_blocks`)."""
        symmetric = X2 is None
        blocks1, blocks2 = gram_blocks(len(X1), len(theta[0]), self._ntk_bytes_per_input(net),
                                       self._ntk_bytes_per_pair(net), self.memory_budget(), symmetric)
        for i, rows in enumerate(blocks1):
            for j, columns in enumerate(blocks2):
                if symmetric and j < i:
                    theta[rows, columns] = theta[columns, rows].transpose(1, 0, 3, 2)
                elif symmetric and i == j:
                    theta[rows, columns] = self._gram(net, X1[rows], None)
                else:
                    theta[rows, columns] = self._gram(net, X1[rows], (X1 if symmetric else X2)[columns])
        return theta

    def _ntk_bytes_per_input(self, net) -> int:
        """Working memory `_gram` needs per input: every layer's activations and the output Jacobians."""
        # A conv layer's per-input filter gradients take f² numbers per channel pair (1 for a dense layer).
        return (net.depth + 2 * net.outputs * net.filter_size**2) * net.width * net.size**2 * net.dtype.itemsize

    def _ntk_bytes_per_pair(self, net) -> int:
        """Working memory `_gram` needs per entry (pair of inputs) of its Gram block: the block's k² sums, a
        layer's term (k², `ntk_term`) and the pair's activation product."""
        return (2 * net.outputs**2 + 1) * net.dtype.itemsize

    def _gram(self, net, X1: np.ndarray, X2: np.ndarray | None = None) -> np.ndarray:
        """Θ(X1, X2) in one piece: one backward sweep for both input sets; per layer only (N1, k, N2, k) is
        formed, never per-sample gradient vectors of the whole network. Memory: the activations, O(N·L·n)
        (·d² for conv)."""
        xp = self.xp
        W, b = self._device_net(net)
        ops = self._layer_ops(net)
        k = net.outputs
        _, acts1 = self._trace(net, W, b, self.to_device(X1))
        # ∂f/∂z of the read-out on its k real units only: its padded rows would multiply zeros through a full
        # n × n product in the first backprop (a 20th of the wide MLP's Gram at L = 10).
        G1 = ops.output_jacobian(len(X1), k, net.width, net.dtype, net.size)[:, :, :k]
        symmetric = X2 is None
        if symmetric:
            acts2, G2 = acts1, G1
        else:
            _, acts2 = self._trace(net, W, b, self.to_device(X2))
            G2 = ops.output_jacobian(len(X2), k, net.width, net.dtype, net.size)[:, :, :k]
        theta = xp.zeros((len(X1), k, len(acts2[0]), k), dtype=net.dtype)
        for layer in range(net.depth - 1, -1, -1):
            theta += ops.ntk_term(acts1[layer], G1, acts2[layer], G2)
            if layer:
                weights = W[layer][:k] if layer == net.depth - 1 else W[layer]
                G1 = ops.backprop(weights, G1) * (acts1[layer] > 0)[:, None]
                G2 = G1 if symmetric else ops.backprop(weights, G2) * (acts2[layer] > 0)[:, None]
        return self.to_host(theta.transpose(0, 2, 1, 3))

    # -- closed-form kernels and Gram products -------------------------------------------------------------
    def cnn_pair_sum(self, terms, beta_sq: float) -> np.ndarray:
        """The CNN limit kernel's pixel-pair sum d⁻⁴ Σ_pq M_pq κ(φ_p(x), φ_q(x')) for every image pair, (N1, N2)
        (docs/limit-kernels.md#cnn-theorem-4): the one costly piece of `cnn_limit_kernel` and
        `cnn_expected_kernel`, which take this method as their `pair_sum`.

        Args:
            terms: the image sets' `deepntk.analytic.cnn.CNNTerms` (patches P1, P2 (N, d², c·f²), their squared
                norms, the window weights M (d², d²), t and d).
            beta_sq: β² (or C_L²β² for the expected kernel's first layer).

        The reference is `deepntk.analytic.cnn.reference_pair_sum`'s blocked NumPy loop, which evaluates κ for every
        pixel pair; named explicitly, since the closed forms' own default (pair_sum None) is the fastest installed.
        """
        from ..analytic.cnn import reference_pair_sum

        return reference_pair_sum(terms, beta_sq)

    def gram_tile_products(self, block: np.ndarray, Y_cols: np.ndarray, Y_rows: np.ndarray):
        """(block · Y_cols, blockᵀ · Y_rows): what an off-diagonal tile K[rows, cols] of a symmetric Gram, stored as
        its upper tiles, adds to the rows and to the columns of K·Y in the iterative solvers
        (`deepntk.engine.solvers`, docs/training.md#kernel-flow). block (B1, B2) float64, Y_cols (B2, r),
        Y_rows (B1, r); returns (B1, r) and (B2, r)."""
        tile = self.to_device(block)
        return (self.to_host(tile @ self.to_device(Y_cols)), self.to_host(tile.T @ self.to_device(Y_rows)))
