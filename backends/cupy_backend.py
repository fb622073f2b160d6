"""The CuPy backend: NVIDIA GPUs.

Two regimes, chosen by width:
  narrow dense (width <= NARROW_WIDTH, the paper's networks): CUDA kernels from `kernels.cu` run the whole
      depth loop in one launch (a thread per input for forward/backward, a thread block per Gram tile);
  wide dense and conv: the reference array code of `Backend` with CuPy as its namespace (per-layer cuBLAS).
TF32 stays off (CuPy's default unless CUPY_TF32=1): its 10 mantissa bits cannot hold C_L + signal
(SPEC §Numerical traps).

Everything except the CUDA kernels is plain array code, so `CupyBackend(xp=numpy)` runs it on the CPU (the
tests do, where no GPU exists).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from deepntk.backends.base import Backend, loss_value_and_output_gradient, output_gradient_coefficient
from deepntk.backends.memory import input_blocks

NARROW_WIDTH = 32  # MAX_WIDTH in kernels.cu
GRAM_THREADS = 16  # GRAM_THREADS in kernels.cu
SHARED_LIMIT = 48 * 1024
THREADS_PER_BLOCK = 128
DEVICE_MEMORY_FRACTION = 0.7
KERNEL_SOURCE = os.path.join(os.path.dirname(__file__), "kernels.cu")


def gram_micro_tile(outputs: int) -> int:
    """Pairs per thread side in `dense_gram`: its K²·MICRO² accumulators must stay in registers."""
    return 4 if outputs == 1 else 2 if outputs == 2 else 1


def gram_shared_bytes(width: int, outputs: int, itemsize: int) -> int:
    tile = gram_micro_tile(outputs) * GRAM_THREADS
    return 2 * (1 + outputs) * width * tile * itemsize


def mirror_lower_tiles(xp, theta, tile: int):
    """Fill the Gram tiles strictly below the diagonal (skipped by a symmetric launch) from their mirror."""
    N = theta.shape[0]
    blocks = xp.arange(N) // tile
    lower = (blocks[:, None] > blocks[None, :])[:, :, None, None]
    return xp.where(lower, theta.transpose(1, 0, 3, 2), theta)


def cuda_unavailable_reason() -> str:
    """'' when CuPy can use a CUDA device here, else why not (without raising)."""
    if importlib.util.find_spec("cupy") is None:
        return "cupy is not installed (pip install 'deepntk[cuda]')"
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, ImportError of the CUDA libraries, driver mismatch
        return f"CuPy cannot reach a CUDA device ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    if count < 1:
        return "no CUDA device is visible"
    return ""


@functools.lru_cache(maxsize=None)
def _kernel(name: str, dtype: str, *template_args: int):
    import cupy

    ctype = {"float64": "double", "float32": "float"}[dtype]
    expression = f"{name}<{', '.join([ctype] + [str(a) for a in template_args])}>"
    with open(KERNEL_SOURCE) as handle:
        module = cupy.RawModule(code=handle.read(), options=("-std=c++17",), name_expressions=[expression])
    return module.get_function(expression)


class CupyBackend(Backend):
    """CuPy on one CUDA device."""

    name = "cupy"
    library = "cupy"
    extra = "cuda"

    def __init__(self, xp=None):
        if xp is None:
            import cupy

            xp = cupy
        self.xp = xp
        self.on_gpu = xp.__name__.startswith("cupy")

    @classmethod
    def availability(cls):
        reason = cuda_unavailable_reason()
        return (not reason), reason

    def describe(self):
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        free, total = cupy.cuda.runtime.memGetInfo()
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        return {"name": self.name, "available": True,
                "device": f"{props['name'].decode()} ({total / 2**30:.0f} GiB, {free / 2**30:.0f} GiB free), "
                          f"CUDA {runtime // 1000}.{runtime % 1000 // 10}",
                "version": cupy.__version__}

    def to_host(self, array):
        return self.xp.asnumpy(array) if self.on_gpu else np.asarray(array)

    def memory_budget(self) -> int:
        if not self.on_gpu:
            from deepntk.backends.memory import memory_budget

            return memory_budget()
        free, _ = self.xp.cuda.runtime.memGetInfo()
        return int(free * DEVICE_MEMORY_FRACTION)

    def _fused(self, net) -> bool:
        return (self.on_gpu and net.kind == "dense" and net.width <= NARROW_WIDTH
                and gram_shared_bytes(net.width, net.outputs, net.dtype.itemsize) <= SHARED_LIMIT)

    def _grid(self, N):
        return ((N + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK,), (THREADS_PER_BLOCK,)

    def _dims(self, net, N):
        return np.int32(net.depth), np.int32(net.width), np.int32(N)

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, net, X):
        if not self._fused(net):
            return super().forward(net, X)
        xp = self.xp
        W, b = self._device_net(net)
        N = len(X)
        Xt = xp.ascontiguousarray(xp.asarray(X.T))
        out = xp.empty((net.outputs, N), dtype=net.dtype)
        L, n, N32 = self._dims(net, N)
        _kernel("dense_forward", net.dtype.name)(*self._grid(N), (W, b, Xt, out, L, n, np.int32(net.outputs), N32))
        return self.to_host(out.T)

    # -- loss gradients -----------------------------------------------------------------------------------
    def loss_and_gradients(self, net, X, Y, loss):
        if not self._fused(net):
            return super().loss_and_gradients(net, X, Y, loss)
        xp = self.xp
        W, b = self._device_net(net)
        N, k = Y.shape
        coeff = output_gradient_coefficient(loss, N, k)
        dW = xp.zeros_like(W)
        db = xp.zeros_like(b)
        outputs = np.empty((N, k), dtype=net.dtype)
        per_input = 2 * net.depth * net.width * net.dtype.itemsize
        kernel = _kernel("dense_deltas", net.dtype.name)
        for block in input_blocks(N, per_input, self.memory_budget()):
            B = block.stop - block.start
            Xt = xp.ascontiguousarray(xp.asarray(X[block].T))
            Yt = xp.ascontiguousarray(xp.asarray(Y[block].T.astype(net.dtype)))
            A = xp.empty((net.depth, net.width, B), dtype=net.dtype)
            D = xp.empty_like(A)
            out = xp.empty((k, B), dtype=net.dtype)
            L, n, B32 = self._dims(net, B)
            kernel(*self._grid(B), (W, b, Xt, Yt, net.dtype.type(coeff), A, D, out, L, n, np.int32(k), B32))
            # Σ_i δ_i a_iᵀ per layer: one batched GEMM instead of a reduction across threads.
            dW += xp.matmul(D, A.transpose(0, 2, 1))
            db += D.sum(axis=2)
            outputs[block] = self.to_host(out.T)
        value, _ = loss_value_and_output_gradient(outputs, Y, loss)
        return value, outputs, self.to_host(dW), self.to_host(db)

    # -- NTK ----------------------------------------------------------------------------------------------
    def ntk(self, net, X1, X2=None):
        if not self._fused(net):
            return super().ntk(net, X1, X2)
        xp = self.xp
        W, b = self._device_net(net)
        k = net.outputs
        micro = gram_micro_tile(k)
        tile = micro * GRAM_THREADS
        trace = _kernel("dense_trace", net.dtype.name, k)
        gram = _kernel("dense_gram", net.dtype.name, k, micro)
        shared = gram_shared_bytes(net.width, k, net.dtype.itemsize)
        symmetric = X2 is None
        N1 = len(X1)
        N2 = N1 if symmetric else len(X2)
        per_input = net.depth * net.width * (1 + k) * net.dtype.itemsize
        budget = self.memory_budget() - N1 * N2 * k * k * net.dtype.itemsize
        blocks1 = input_blocks(N1, per_input, budget // 2)
        blocks2 = blocks1 if symmetric else input_blocks(N2, per_input, budget // 2)
        theta = xp.empty((N1, N2, k, k), dtype=net.dtype)

        def run_trace(X, block):
            B = block.stop - block.start
            Xt = xp.ascontiguousarray(xp.asarray(X[block].T))
            A = xp.empty((net.depth, net.width, B), dtype=net.dtype)
            G = xp.empty((net.depth, k, net.width, B), dtype=net.dtype)
            L, n, B32 = self._dims(net, B)
            trace(*self._grid(B), (W, b, Xt, A, G, L, n, B32))
            return A, G

        for bi, block1 in enumerate(blocks1):
            A1, G1 = run_trace(X1, block1)
            for bj, block2 in enumerate(blocks2):
                if symmetric and bj < bi:
                    theta[block1, block2] = theta[block2, block1].transpose(1, 0, 3, 2)
                    continue
                same = symmetric and bi == bj
                A2, G2 = (A1, G1) if same else run_trace(X1 if symmetric else X2, block2)
                B1, B2 = block1.stop - block1.start, block2.stop - block2.start
                out = xp.empty((B1, B2, k, k), dtype=net.dtype)
                grid = ((B2 + tile - 1) // tile, (B1 + tile - 1) // tile)
                gram(grid, (GRAM_THREADS, GRAM_THREADS),
                     (A1, G1, A2, G2, out, np.int32(net.depth), np.int32(net.width), np.int32(B1), np.int32(B2),
                      np.int32(same)), shared_mem=shared)
                theta[block1, block2] = mirror_lower_tiles(xp, out, tile) if same else out
        return self.to_host(theta)
