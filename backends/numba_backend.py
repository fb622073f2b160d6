"""The Numba backend: the whole depth loop in compiled CPU code (the fast CPU path).

Narrow nets (width or channels <= NARROW_WIDTH: the paper's toy MLP and its CNNs) run fused kernels from
`numba_kernels`; wide layers (e.g. the MNIST MLP, width 795) are BLAS-bound, so they use the reference
per-layer path, which already spends its time in matrix products.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from deepntk.backends.base import Backend
from deepntk.engine.losses import loss_value_and_output_gradient, output_gradient_coefficient

NARROW_WIDTH = 64
MIN_CHUNK = 32
# Activations one GD task keeps at once (per parallel worker).
GD_ACTIVATION_BYTES = 64 << 20
# Bytes of layer features built per BLAS call (a few hundred layers at a time).
FEATURE_CHUNK_BYTES = 48 << 20


def _kernels():
    from deepntk.backends import numba_kernels

    return numba_kernels


class DenseKernels:
    """The compiled kernels of dense layers, and how the NTK sweep lays out their features."""

    forward = "dense_forward"
    loss_gradients = "dense_loss_gradients"
    checkpoints = "dense_checkpoints"

    @staticmethod
    def features_per_layer(net) -> int:
        return (net.width + 1) * net.width

    @staticmethod
    def pixel_axes(net) -> tuple:
        return ()

    @staticmethod
    def scratch(net, every, N):
        n, k = net.width, net.outputs
        return np.empty((every, n, N), dtype=net.dtype), np.empty((every, k, n, N), dtype=net.dtype)

    @staticmethod
    def segment_features(kern, net, start, l0, l1, jac, phi, g_next, chunk, scratch):
        A, G = scratch
        kern.dense_segment_trace(net.W, net.b, start, l0, l1, jac, A, G, g_next, chunk)
        kern.dense_features(A, G, 0, l1 - l0, phi)


class ConvKernels:
    """The compiled kernels of conv layers (per-input filter gradients as features)."""

    forward = "conv_forward"
    loss_gradients = "conv_loss_gradients"
    checkpoints = "conv_checkpoints"

    @staticmethod
    def features_per_layer(net) -> int:
        return net.width * net.width * net.filter_size**2 + net.width

    @staticmethod
    def pixel_axes(net) -> tuple:
        return (net.size, net.size)

    @staticmethod
    def scratch(net, every, N):
        return None

    @staticmethod
    def segment_features(kern, net, start, l0, l1, jac, phi, g_next, chunk, scratch):
        kern.conv_segment_features(net.W, net.b, start, l0, l1, jac, phi, g_next, chunk)


# layer kind → its fused kernels; kinds without an entry run the reference array code.
FUSED_KERNELS = {"dense": DenseKernels, "conv": ConvKernels}


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
        return net.width <= NARROW_WIDTH and net.kind in FUSED_KERNELS

    # -- layouts ------------------------------------------------------------------------------------------
    @staticmethod
    def _inputs_last(X):
        """(N, n) → (n, N) or (N, n, d, d) → (n, d, d, N): the kernels' layout, inputs contiguous."""
        return np.ascontiguousarray(np.moveaxis(X, 0, -1))

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, net, X):
        if not self._fused(net):
            return super().forward(net, X)
        run = getattr(_kernels(), FUSED_KERNELS[net.kind].forward)
        out = run(net.W, net.b, self._inputs_last(X), net.outputs, self._chunk(len(X)))
        return np.ascontiguousarray(out.T)

    # -- loss gradients -----------------------------------------------------------------------------------
    def loss_and_gradients(self, net, X, Y, loss):
        if not self._fused(net):
            return super().loss_and_gradients(net, X, Y, loss)
        N, k = Y.shape
        coeff = output_gradient_coefficient(loss, N, k)
        run = getattr(_kernels(), FUSED_KERNELS[net.kind].loss_gradients)
        # Segments as long as a chunk's activation budget allows (at least √L): the fewer segments, the less
        # forward work is recomputed; one segment means a single forward pass.
        per_layer = net.width * net.size**2 * self._chunk(N) * net.dtype.itemsize
        every = int(min(net.depth, max(np.ceil(np.sqrt(net.depth)), GD_ACTIVATION_BYTES // per_layer)))
        out, dW, db = run(net.W, net.b, self._inputs_last(X), np.ascontiguousarray(Y.T.astype(net.dtype)),
                          coeff, self._chunk(N), every, self._threads())
        outputs = np.ascontiguousarray(out.T)
        value, _ = loss_value_and_output_gradient(outputs, Y, loss)
        return value, outputs, dW, db

    # -- NTK ----------------------------------------------------------------------------------------------
    def _ntk_bytes_per_input(self, net) -> int:
        if not self._fused(net):
            return super()._ntk_bytes_per_input(net)
        # √L checkpoints and one segment of activations and Jacobians per input, beside the feature block.
        segment = int(np.ceil(np.sqrt(net.depth)))
        return 2 * segment * (1 + net.outputs) * net.width * net.size**2 * net.dtype.itemsize

    def _gram(self, net, X1, X2=None):
        """Checkpointed sweep: one forward pass keeps the input of every S-th layer; then, segment by segment
        from the top, the segment's activations are recomputed, the output Jacobians backpropagated through it,
        and each layer's contribution written as per-input features whose inner products are that layer's NTK
        term (dense: ã ⊗ G with ã = [a, 1]; conv: the per-input filter and bias gradients). One BLAS SYRK (or
        GEMM for X1 ≠ X2) per segment adds them to the Gram. Memory: O((L/S + S)·width·N) plus the features
        of one segment (FEATURE_CHUNK_BYTES); no per-layer N×N pass."""
        if not self._fused(net):
            return super()._gram(net, X1, X2)
        from scipy.linalg import blas

        kern = _kernels()
        kernels = FUSED_KERNELS[net.kind]
        k, n, L, dtype = net.outputs, net.width, net.depth, net.dtype
        symmetric = X2 is None
        sets = [self._inputs_last(X1)] + ([] if symmetric else [self._inputs_last(X2)])
        sizes = [X.shape[-1] for X in sets]
        per_layer = kernels.features_per_layer(net)
        checkpoints = getattr(kern, kernels.checkpoints)
        spatial = kernels.pixel_axes(net)
        feature_bytes = min(FEATURE_CHUNK_BYTES, self.memory_budget() // 2)
        every = int(max(1, min(L, feature_bytes // (per_layer * k * sum(sizes) * dtype.itemsize))))
        chunks = [self._chunk(N) for N in sizes]
        starts = [checkpoints(net.W, net.b, X, every, c) for X, c in zip(sets, chunks)]
        jac, g_next, phi, scratch = [], [], [], []
        for N in sizes:
            g = np.zeros((k, n) + spatial + (N,), dtype=dtype)
            g[np.arange(k), np.arange(k)] = 1.0 / net.size**2  # ∂f/∂z^L (global average pool for conv)
            jac.append(g)
            g_next.append(np.empty_like(g))
            phi.append(np.empty((every * per_layer, k, N), dtype=dtype))
            scratch.append(kernels.scratch(net, every, N))
        gram = np.zeros((k * sizes[0], k * sizes[-1]), dtype=dtype, order="F")
        syrk = blas.dsyrk if dtype == np.float64 else blas.ssyrk
        for s in range((L + every - 1) // every - 1, -1, -1):
            l0, l1 = s * every, min(L, (s + 1) * every)
            rows = (l1 - l0) * per_layer
            features = []
            for t, N in enumerate(sizes):
                kernels.segment_features(kern, net, starts[t][s], l0, l1, jac[t], phi[t], g_next[t], chunks[t],
                                         scratch[t])
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
