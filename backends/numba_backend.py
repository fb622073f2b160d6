"""The Numba backend: the whole depth loop in compiled CPU code (the fast CPU path).

Narrow dense nets (width <= NARROW_WIDTH, the paper's toy and CNN cases) and conv nets run fused kernels
from `numba_kernels`; wide dense layers (e.g. the MNIST MLP, width 795) are BLAS-bound, so they use the
reference per-layer path, which already spends its time in matrix products.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from deepntk.backends.base import Backend, loss_value_and_output_gradient, output_gradient_coefficient
from deepntk.backends.memory import input_blocks, memory_budget

NARROW_WIDTH = 64
GRAM_TILE_I = 4
GRAM_TILE_J = 64


def _kernels():
    from deepntk.backends import numba_kernels

    return numba_kernels


class NumbaBackend(Backend):
    """Fused, parallel Numba kernels; float64 and float32."""

    name = "numba"
    library = "numba"
    extra = "numba"

    @classmethod
    def availability(cls):
        if importlib.util.find_spec("numba") is None:
            return False, "numba is not installed (pip install 'deepntk[numba]')"
        return True, ""

    def describe(self):
        import numba

        return {"name": self.name, "available": True, "device": f"cpu ({numba.config.NUMBA_NUM_THREADS} threads)",
                "version": numba.__version__}

    @staticmethod
    def _threads() -> int:
        import numba

        return numba.get_num_threads()

    def _chunk(self, N: int) -> int:
        return int(min(128, max(1, -(-N // self._threads()))))

    def _fused(self, net) -> bool:
        return net.kind == "conv" or net.width <= NARROW_WIDTH

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, net, X):
        if not self._fused(net):
            return super().forward(net, X)
        kern = _kernels()
        if net.kind == "dense":
            Xt = np.ascontiguousarray(X.T)
            return np.ascontiguousarray(kern.dense_forward(net.W, net.b, Xt, net.outputs, self._chunk(len(X))).T)
        return kern.conv_forward(net.W, net.b, np.ascontiguousarray(X), net.outputs)

    # -- loss gradients -----------------------------------------------------------------------------------
    def loss_and_gradients(self, net, X, Y, loss):
        if not self._fused(net):
            return super().loss_and_gradients(net, X, Y, loss)
        kern = _kernels()
        N, k = Y.shape
        coeff = output_gradient_coefficient(loss, N, k)
        Yc = Y.astype(net.dtype)
        itemsize = net.dtype.itemsize
        outputs = np.empty((N, k), dtype=net.dtype)
        dW = np.zeros_like(net.W)
        db = np.zeros_like(net.b)
        per_input = net.depth * net.width * net.size**2 * itemsize
        for block in input_blocks(N, per_input):
            if net.kind == "dense":
                out, gW, gb = kern.dense_loss_gradients(net.W, net.b, np.ascontiguousarray(X[block].T),
                                                        np.ascontiguousarray(Yc[block].T), coeff,
                                                        self._chunk(block.stop - block.start))
                outputs[block] = out.T
            else:
                out, gW, gb = kern.conv_loss_gradients(net.W, net.b, np.ascontiguousarray(X[block]), Yc[block],
                                                       coeff, self._threads())
                outputs[block] = out
            dW += gW
            db += gb
        value, _ = loss_value_and_output_gradient(outputs, Y, loss)
        return value, outputs, dW, db

    # -- NTK ----------------------------------------------------------------------------------------------
    def ntk(self, net, X1, X2=None):
        if not self._fused(net):
            return super().ntk(net, X1, X2)
        if net.kind == "dense":
            return self._dense_ntk(net, X1, X2)
        return self._conv_ntk(net, X1, X2)

    def _dense_ntk(self, net, X1, X2):
        kern = _kernels()
        k = net.outputs
        per_input = net.depth * net.width * (1 + k) * net.dtype.itemsize
        # Half the budget for each side of a Gram block.
        blocks1 = input_blocks(len(X1), per_input, memory_budget() // 2)
        symmetric = X2 is None
        blocks2 = blocks1 if symmetric else input_blocks(len(X2), per_input, memory_budget() // 2)
        N2 = len(X1) if symmetric else len(X2)
        theta = np.empty((len(X1), N2, k, k))

        def trace(X, block):
            Xt = np.ascontiguousarray(X[block].T)
            return kern.dense_trace(net.W, net.b, Xt, k, self._chunk(block.stop - block.start))

        for bi, block1 in enumerate(blocks1):
            A1, G1 = trace(X1, block1)
            for bj, block2 in enumerate(blocks2):
                if symmetric and bj < bi:
                    theta[block1, block2] = theta[block2, block1].transpose(1, 0, 3, 2)
                    continue
                same = symmetric and bi == bj
                A2, G2 = (A1, G1) if same else trace(X1 if symmetric else X2, block2)
                theta[block1, block2] = kern.dense_gram(A1, G1, A2, G2, same, GRAM_TILE_I, GRAM_TILE_J)
        return theta.astype(net.dtype, copy=False)

    def _conv_ntk(self, net, X1, X2):
        kern = _kernels()
        k, n, f = net.outputs, net.width, net.filter_size
        jac_bytes = k * net.depth * (n * n * f * f + n) * net.dtype.itemsize
        trace_bytes = net.depth * n * net.size**2 * net.dtype.itemsize
        if (len(X1) + (0 if X2 is None else len(X2))) * jac_bytes + trace_bytes * self._threads() > memory_budget():
            # Per-sample gradients of every layer do not fit: stream over layers on the reference path.
            return super().ntk(net, X1, X2)
        J1 = kern.conv_jacobians(net.W, net.b, np.ascontiguousarray(X1), k)
        J2 = J1 if X2 is None else kern.conv_jacobians(net.W, net.b, np.ascontiguousarray(X2), k)
        N1, N2 = len(J1), len(J2)
        gram = J1.reshape(N1 * k, -1) @ J2.reshape(N2 * k, -1).T
        return gram.reshape(N1, k, N2, k).transpose(0, 2, 1, 3).copy()
