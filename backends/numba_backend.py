"""The Numba backend: the whole depth loop in compiled CPU code (the fast CPU path).

Narrow dense nets (width <= NARROW_WIDTH, the paper's toy and CNN cases) and conv nets run fused kernels
from `numba_kernels`; wide dense layers (e.g. the MNIST MLP, width 795) are BLAS-bound, so they use the
reference per-layer path, which already spends its time in matrix products.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from deepntk.backends.base import Backend, loss_value_and_output_gradient, output_gradient_coefficient
from deepntk.backends.memory import memory_budget

NARROW_WIDTH = 64
MIN_CHUNK = 32
# Bytes of layer features built per BLAS call (a few hundred layers at a time).
FEATURE_CHUNK_BYTES = 48 << 20


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
        """Inputs per parallel task: enough to fill the vector units (>= 32 where N allows), few enough that
        every thread gets work, and <= 128 so a task's working set stays in cache."""
        return int(min(128, max(-(-N // self._threads()), min(N, MIN_CHUNK))))

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
        if net.kind == "dense":
            every = int(np.ceil(np.sqrt(net.depth)))
            out, dW, db = kern.dense_loss_gradients(net.W, net.b, np.ascontiguousarray(X.T),
                                                    np.ascontiguousarray(Yc.T), coeff, self._chunk(N), every,
                                                    self._threads())
            outputs = np.ascontiguousarray(out.T)
        else:
            outputs, dW, db = kern.conv_loss_gradients(net.W, net.b, np.ascontiguousarray(X), Yc, coeff,
                                                       self._threads())
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
        """Checkpointed sweep: one forward pass keeps the input of every S-th layer; then, segment by segment
        from the top, the segment's activations are recomputed, its Jacobians backpropagated, and its terms
        Σ_l (ã·ã')(G G'ᵀ) added with one BLAS call on layer features (`numba_kernels.dense_features`).
        Memory: O((L/S + S)·n·k·N) plus the Gram; no per-layer N×N pass."""
        from scipy.linalg import blas

        kern = _kernels()
        k, n, L = net.outputs, net.width, net.depth
        dtype = net.dtype
        symmetric = X2 is None
        sets = [np.ascontiguousarray(X1.T)] + ([] if symmetric else [np.ascontiguousarray(X2.T)])
        sizes = [X.shape[1] for X in sets]
        per_layer = (n + 1) * n * k * sum(sizes) * dtype.itemsize
        every = int(max(1, min(L, FEATURE_CHUNK_BYTES // per_layer)))
        chunks = [self._chunk(N) for N in sizes]
        starts = [kern.dense_checkpoints(net.W, net.b, X, every, c) for X, c in zip(sets, chunks)]
        jac = []
        for N in sizes:
            g = np.zeros((k, n, N), dtype=dtype)
            g[np.arange(k), np.arange(k)] = 1.0
            jac.append(g)
        A = [np.empty((every, n, N), dtype=dtype) for N in sizes]
        G = [np.empty((every, k, n, N), dtype=dtype) for N in sizes]
        phi = [np.empty((every * (n + 1) * n, k, N), dtype=dtype) for N in sizes]
        g_next = [np.empty_like(g) for g in jac]
        gram = np.zeros((k * sizes[0], k * sizes[-1]), dtype=dtype, order="F")
        syrk = blas.dsyrk if dtype == np.float64 else blas.ssyrk
        for s in range((L + every - 1) // every - 1, -1, -1):
            l0, l1 = s * every, min(L, (s + 1) * every)
            rows = (l1 - l0) * (n + 1) * n
            features = []
            for t, N in enumerate(sizes):
                kern.dense_segment_trace(net.W, net.b, starts[t][s], l0, l1, jac[t], A[t], G[t], g_next[t],
                                         chunks[t])
                kern.dense_features(A[t], G[t], 0, l1 - l0, phi[t])
                features.append(phi[t][:rows].reshape(rows, k * N))
                jac[t], g_next[t] = g_next[t], jac[t]
            if symmetric:
                # gram += FᵀF on the upper triangle; F.T is Fortran-ordered, so BLAS reads it in place.
                gram = syrk(1.0, features[0].T, beta=1.0, c=gram, overwrite_c=True)
            else:
                gram += features[0].T @ features[1]
        if symmetric:
            gram = np.triu(gram) + np.triu(gram, 1).T
        return np.ascontiguousarray(gram.reshape(k, sizes[0], k, sizes[-1]).transpose(1, 3, 0, 2))

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
