"""The CuPy backend: NVIDIA GPUs.

Fused CUDA kernels (`kernels.cu`) where the network fits them, for a single network or every network of an
ensemble at once:
  narrow dense (width <= NARROW_WIDTH, the paper's MLPs): the whole depth loop in one launch, a thread per network
      and input for forward/backward, a thread block per Gram tile; the width is compiled into the per-input
      kernels where a thread's arrays then fit in registers (`compiled_width`);
  CNNs whose image fits shared memory (Table 1's 7×7 ones, 28×28 with few channels): a thread block per network
      and image through all layers, forward, then backward to per-image weight gradients (their sum for
      training, their inner products, one batched GEMM, for the NTK).
Other networks run the reference array code of `Backend` with CuPy as its namespace (per-layer cuBLAS).
TF32 stays off (CuPy's default unless CUPY_TF32=1): its 10 mantissa bits cannot hold C_L + signal
(docs/numerical-traps.md).

Everything except the CUDA kernels is plain array code, and every kernel launch goes through `_kernel`, so
`CupyBackend(xp=numpy)` runs the host-side logic on the CPU; the tests compile kernels.cu for the host and run
the launches there (docs/backends.md#cuda-kernels).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from .base import Backend, diverged
from ..base.losses import loss_value_and_output_gradient, output_gradient_coefficient
from ..base.errors import MemoryBudgetError
from ..base.memory import input_blocks

NARROW_WIDTH = 32  # MAX_WIDTH in kernels.cu
GRAM_THREADS = 16  # GRAM_THREADS in kernels.cu
SHARED_LIMIT = 48 * 1024
STAGE_BYTES = 40 * 1024  # shared memory for the weights (or Gram tiles) of several layers at once
THREADS_PER_BLOCK = 128
DEVICE_MEMORY_FRACTION = 0.7
# Values of a thread's per-layer arrays that stay in registers with the width compiled in: ptxas (sm_90) reports no
# stack frame for every kernel `compiled_width` gives a width (tests/backends/test_cuda_compile.py); the trace with
# 3 Jacobian rows at width 16 (96 values) spilled. A float64 value takes two of a thread's 255 registers.
REGISTER_VALUES = 80
KERNEL_SOURCE = os.path.join(os.path.dirname(__file__), "kernels.cu")
# The CNN limit kernel (`cnn_correlation_sums`): threads per image pair (a power of two, for the reduction), the most
# images of the second set on the grid's y axis, and the bytes of their unit patches sent to the device at a time.
PAIR_THREADS = 128
MAX_GRID_Y = 65535
CUDA_CHUNK_BYTES = 1 << 30
# The most threads a block may have: a fused CNN block takes an image's n·d² values (registers for PER of them
# per thread, a template argument).
MAX_BLOCK_THREADS = 1024


def gram_micro_tile(outputs: int) -> int:
    """Pairs per thread side in `dense_gram`: its K²·MICRO² accumulators must stay in registers."""
    return 4 if outputs == 1 else 2 if outputs == 2 else 1


def gram_layer_bytes(width: int, outputs: int, itemsize: int) -> int:
    """Shared memory `dense_gram` stages per layer: the tile's activations and Jacobians, both sides."""
    tile = gram_micro_tile(outputs) * GRAM_THREADS
    return 2 * (1 + outputs) * width * tile * itemsize


def weight_stage_layers(depth: int, width: int, itemsize: int) -> int:
    """Layers whose weights and biases a block stages in shared memory at once."""
    return int(max(1, min(depth, STAGE_BYTES // ((width * width + width) * itemsize))))


def mirror_lower_tiles(xp, theta, tile: int):
    """Fill the Gram tiles strictly below the diagonal (skipped by a symmetric launch) from their mirror; theta is
    (…, N, N, k, k)."""
    N = theta.shape[-3]
    blocks = xp.arange(N) // tile
    lower = (blocks[:, None] > blocks[None, :])[:, :, None, None]
    return xp.where(lower, xp.swapaxes(xp.swapaxes(theta, -4, -3), -2, -1), theta)


def compiled_width(width: int, rows: int) -> int:
    """The WIDTH template argument of a per-input kernel carrying `rows` Jacobian rows (0 forward, 1 for loss
    deltas, k for output Jacobians): the width itself where a thread's per-layer arrays, about rows + 3 of them,
    fit REGISTER_VALUES, else 0, the run-time width (arrays in local memory)."""
    return width if (rows + 3) * width <= REGISTER_VALUES else 0


def conv_block(values: int) -> tuple[int, int]:
    """(threads, PER) of a fused CNN block for an image of `values` = n·d² activations: whole warps, each thread
    PER values."""
    threads = min(MAX_BLOCK_THREADS, -(-values // 32) * 32)
    return threads, -(-values // threads)


def conv_image_values(net) -> int:
    """n·d²: one image's activations in one layer."""
    return net.width * net.size**2


def conv_layer_parameters(net) -> int:
    """n·n·f·f + n: one layer's weights and biases."""
    return net.width**2 * net.filter_size**2 + net.width


def conv_layer_bytes(net) -> int:
    return conv_layer_parameters(net) * net.dtype.itemsize


def conv_shared_bytes(net, rows: int, layers: int) -> int:
    """Shared memory of a fused CNN block: the image's layer input, `rows` δ images, `layers` layers' weights."""
    return conv_image_values(net) * (1 + rows) * net.dtype.itemsize + layers * conv_layer_bytes(net)


def conv_trace_bytes(nets, rows: int) -> int:
    """Device memory per image of the fused CNN kernels, for every network: each layer's input image (stored by
    `conv_forward`) and `rows` rows of the image's gradients with respect to the layer (by `conv_backward`)."""
    per_layer = conv_image_values(nets) + rows * conv_layer_parameters(nets)
    return nets.networks * nets.depth * per_layer * nets.dtype.itemsize


def conv_rows_per_launch(net) -> int:
    """Output rows `conv_backward` carries in one launch within the shared-memory limit (0: not even one)."""
    rows = net.outputs
    while rows and conv_shared_bytes(net, rows, 1) > SHARED_LIMIT:
        rows -= 1
    return rows


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


def kernel_expression(name: str, dtype: str, *template_args: int) -> str:
    """The name expression of a kernels.cu template instance, e.g. dense_gram<double, 1, 4>."""
    ctype = {"float64": "double", "float32": "float"}[dtype]
    return f"{name}<{', '.join([ctype] + [str(a) for a in template_args])}>"


@functools.lru_cache(maxsize=None)
def _kernel(name: str, dtype: str, *template_args: int):
    import cupy

    expression = kernel_expression(name, dtype, *template_args)
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
        # Whether the `_launch_*` kernels can run: on a GPU, or where a test supplies a host build of them.
        self.kernels_available = self.on_gpu

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
        """A fraction of the device's free memory (on the host: DEEPNTK_MEMORY_BUDGET)."""
        if not self.on_gpu:
            return super().memory_budget()
        free, _ = self.xp.cuda.runtime.memGetInfo()
        return int(free * DEVICE_MEMORY_FRACTION)

    def _fused(self, net) -> bool:
        if not self.kernels_available:
            return False
        if net.kind == "conv":
            return conv_rows_per_launch(net) > 0
        return (net.kind == "dense" and net.width <= NARROW_WIDTH
                and gram_layer_bytes(net.width, net.outputs, net.dtype.itemsize) <= SHARED_LIMIT)

    # -- kernel launches (kernels.cu); `nets` is an ensemble (E = 1 for one network), its network the grid's
    # y index (the Gram's z) ----------------------------------------------------------------------------------
    def _grid(self, N, E):
        return ((N + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK, E), (THREADS_PER_BLOCK,)

    def _dims(self, nets, N):
        return np.int32(nets.depth), np.int32(nets.width), np.int32(N)

    def _weight_stage(self, nets):
        """(layers staged per chunk, dynamic shared memory bytes) for the per-input kernels."""
        chunk = weight_stage_layers(nets.depth, nets.width, nets.dtype.itemsize)
        return chunk, chunk * (nets.width**2 + nets.width) * nets.dtype.itemsize

    def _per_input_kernel(self, name, nets, rows, *template_args):
        return _kernel(name, nets.dtype.name, *template_args, compiled_width(nets.width, rows))

    def _launch_forward(self, nets, W, b, Xt):
        """Outputs (E, k, N) of inputs Xt (n, N): a thread per network and input through all layers."""
        N = Xt.shape[1]
        out = self.xp.empty((nets.networks, nets.outputs, N), dtype=nets.dtype)
        L, n, N32 = self._dims(nets, N)
        chunk, shared = self._weight_stage(nets)
        self._per_input_kernel("dense_forward", nets, 0)(
            *self._grid(N, nets.networks), (W, b, Xt, out, L, n, np.int32(nets.outputs), N32, np.int32(chunk)),
            shared_mem=shared)
        return out

    def _launch_deltas(self, nets, W, b, Xt, Yt, coeff):
        """(A, D, out): each layer's input activations A (E, L, n, N), its δ = ∂ℒ/∂z D (E, L, n, N) for
        ∂ℒ/∂f = coeff·(f − y), and the outputs (E, k, N)."""
        N, k = Xt.shape[1], Yt.shape[0]
        A = self.xp.empty((nets.networks, nets.depth, nets.width, N), dtype=nets.dtype)
        D = self.xp.empty_like(A)
        out = self.xp.empty((nets.networks, k, N), dtype=nets.dtype)
        L, n, N32 = self._dims(nets, N)
        chunk, shared = self._weight_stage(nets)
        self._per_input_kernel("dense_deltas", nets, 1)(
            *self._grid(N, nets.networks),
            (W, b, Xt, Yt, nets.dtype.type(coeff), A, D, out, L, n, np.int32(k), N32, np.int32(chunk)),
            shared_mem=shared)
        return A, D, out

    def _launch_trace(self, nets, W, b, Xt):
        """(A, G): each layer's input activations (E, L, n, B) and output Jacobians ∂f/∂z (E, L, k, n, B)."""
        B = Xt.shape[1]
        A = self.xp.empty((nets.networks, nets.depth, nets.width, B), dtype=nets.dtype)
        G = self.xp.empty((nets.networks, nets.depth, nets.outputs, nets.width, B), dtype=nets.dtype)
        L, n, B32 = self._dims(nets, B)
        chunk, shared = self._weight_stage(nets)
        self._per_input_kernel("dense_trace", nets, nets.outputs, nets.outputs)(
            *self._grid(B, nets.networks), (W, b, Xt, A, G, L, n, B32, np.int32(chunk)), shared_mem=shared)
        return A, G

    def _launch_gram(self, nets, A1, G1, A2, G2, same: bool):
        """Σ_l (a₁·a₂ + 1)·G₁G₂ᵀ for every network and pair, (E, B1, B2, k, k); with `same` (A2 is A1) the tiles
        strictly below the diagonal are left unwritten (see `mirror_lower_tiles`)."""
        k = nets.outputs
        micro = gram_micro_tile(k)
        tile = micro * GRAM_THREADS
        layer_bytes = gram_layer_bytes(nets.width, k, nets.dtype.itemsize)
        stage = int(max(1, min(nets.depth, STAGE_BYTES // layer_bytes)))
        B1, B2 = A1.shape[-1], A2.shape[-1]
        out = self.xp.empty((nets.networks, B1, B2, k, k), dtype=nets.dtype)
        grid = ((B2 + tile - 1) // tile, (B1 + tile - 1) // tile, nets.networks)
        _kernel("dense_gram", nets.dtype.name, k, micro)(
            grid, (GRAM_THREADS, GRAM_THREADS),
            (A1, G1, A2, G2, out, np.int32(nets.depth), np.int32(nets.width), np.int32(B1), np.int32(B2),
             np.int32(same), np.int32(stage)), shared_mem=stage * layer_bytes)
        return out

    def _conv_launch(self, nets, name, rows):
        """(kernel, grid's block, shared bytes, layers staged) of a fused CNN kernel carrying `rows` δ images."""
        threads, per = conv_block(conv_image_values(nets))
        room = (SHARED_LIMIT - conv_shared_bytes(nets, rows, 0)) // conv_layer_bytes(nets)
        layers = int(max(1, min(nets.depth, room)))
        kernel = _kernel(name, nets.dtype.name, nets.filter_size, per)
        return kernel, (threads,), conv_shared_bytes(nets, rows, layers), layers

    def _conv_dims(self, nets, N):
        return (np.int32(nets.depth), np.int32(nets.width), np.int32(nets.outputs), np.int32(nets.size),
                np.int32(N))

    def _launch_conv_forward(self, nets, W, b, X, store: bool):
        """(outputs (E, N, k), every layer's input (E, L, N, n, d, d) if `store`, else None) of images X
        (N, n, d, d): a thread block per network and image through all layers."""
        N = X.shape[0]
        A = self.xp.empty((nets.networks, nets.depth) + X.shape if store else (1,), dtype=nets.dtype)
        out = self.xp.empty((nets.networks, N, nets.outputs), dtype=nets.dtype)
        kernel, block, shared, layers = self._conv_launch(nets, "conv_forward", 0)
        kernel((N, nets.networks), block, (W, b, X, A, out, np.int32(store), *self._conv_dims(nets, N),
                                           np.int32(layers)), shared_mem=shared)
        return out, (A if store else None)

    def _launch_conv_backward(self, nets, W, b, X, A, top):
        """Per network, image and row r of top (E, N, rows, k): the gradients of Σ_j top[.., r, j]·f_j with respect
        to every layer's weights and biases, (E, N, rows, L, n·n·f·f + n)."""
        N, rows = X.shape[0], top.shape[2]
        grads = self.xp.empty((nets.networks, N, rows, nets.depth, conv_layer_parameters(nets)), dtype=nets.dtype)
        kernel, block, shared, layers = self._conv_launch(nets, "conv_backward", rows)
        kernel((N, nets.networks), block, (W, b, X, A, top, grads, *self._conv_dims(nets, N), np.int32(rows),
                                           np.int32(layers)), shared_mem=shared)
        return grads

    # -- device layouts: the kernels' inputs axis is last for dense networks (a thread per input reads along
    # it), first for CNNs (a block per image reads its image) ------------------------------------------------
    @staticmethod
    def _inputs_axis(nets) -> int:
        return 0 if nets.kind == "conv" else -1

    def _device_rows(self, nets, array):
        """Host (N, …) rows on the device in the kernels' layout (`_inputs_axis`), contiguous, in nets' dtype."""
        host = np.ascontiguousarray(np.moveaxis(array, 0, self._inputs_axis(nets)).astype(nets.dtype, copy=False))
        return self.xp.asarray(host)

    # -- forward (one network is the ensemble of one: `Backend.forward`) -------------------------------------
    def forward_ensemble(self, nets, X):
        """Every network's outputs (E, N, k) from one launch."""
        if not self._fused(nets):
            return super().forward_ensemble(nets, X)
        W, b = self._device_net(nets)
        if nets.kind == "conv":
            return self.to_host(self._launch_conv_forward(nets, W, b, self._device_rows(nets, X), False)[0])
        out = self._launch_forward(nets, W, b, self._device_rows(nets, X))
        return np.ascontiguousarray(self.to_host(out).transpose(0, 2, 1))

    # -- loss gradients -----------------------------------------------------------------------------------
    def _device_loss_gradients(self, nets, W, b, Xd, Yd, coeff):
        """Fused forward+backward of every network on device inputs and targets in the kernels' layout: (outputs
        (E, N, k), dW, db) on the device."""
        if nets.kind == "conv":
            out, A = self._launch_conv_forward(nets, W, b, Xd, True)
            top = self.xp.ascontiguousarray((coeff * (out - Yd))[:, :, None, :])
            summed = self._launch_conv_backward(nets, W, b, Xd, A, top).sum(axis=(1, 2))  # (E, L, weights + biases)
            weights = nets.W.shape[-4:]
            return out, summed[..., :-nets.width].reshape(summed.shape[:2] + weights), summed[..., -nets.width:]
        A, D, out = self._launch_deltas(nets, W, b, Xd, Yd, coeff)
        # Σ_i δ_i a_iᵀ per network and layer: one batched GEMM instead of a reduction across threads.
        return out.swapaxes(1, 2), self.xp.matmul(D, A.swapaxes(-1, -2)), D.sum(axis=-1)

    def _per_input_gradient_bytes(self, nets) -> int:
        if nets.kind == "conv":
            return conv_trace_bytes(nets, 1)
        return 2 * nets.networks * nets.depth * nets.width * nets.dtype.itemsize

    def loss_and_gradients_ensemble(self, nets, X, Y, loss):
        """Every network in each launch; the sums over inputs accumulated over blocks of inputs that fit in device
        memory (one block when all fit)."""
        if not self._fused(nets):
            return super().loss_and_gradients_ensemble(nets, X, Y, loss)
        N, k = Y.shape
        W, b = self._device_net(nets)
        coeff = output_gradient_coefficient(loss, N, k)
        dW, db = self.xp.zeros_like(W), self.xp.zeros_like(b)
        outputs = np.empty((nets.networks, N, k), dtype=nets.dtype)
        for block in input_blocks(N, self._per_input_gradient_bytes(nets), self.memory_budget()):
            out, gW, gb = self._device_loss_gradients(nets, W, b, self._device_rows(nets, X[block]),
                                                      self._device_rows(nets, Y[block]), coeff)
            dW += gW
            db += gb
            outputs[:, block] = self.to_host(out)
        values = np.array([loss_value_and_output_gradient(o, Y, loss)[0] for o in outputs])
        return values, outputs, self.to_host(dW), self.to_host(db)

    def descend(self, net, X, Y, loss, rate, batches, on_step=None):
        """`Backend.descend` with the weights, inputs, targets and index plans kept on the device, for one network
        or an ensemble alike: per step one fused forward+backward for every network, the sums over inputs, and a
        gather of the batch's inputs; only the batch losses come back to the host."""
        batches = list(batches)
        nets = net.stacked()
        largest = max((len(X) if idx is None else len(idx) for idx in batches), default=0)
        if not self._fused(net) or largest * self._per_input_gradient_bytes(nets) > self.memory_budget():
            return super().descend(net, X, Y, loss, rate, batches, on_step)
        xp = self.xp
        W, b = self._device_net(nets)
        W, b = W.copy(), b.copy()
        X_all, Y_all = self._device_rows(nets, X), self._device_rows(nets, Y)
        axis = self._inputs_axis(nets)
        unstack = (lambda a: a) if net.ensemble else (lambda a: a[0])
        # Every step's index plan goes to the device in one transfer; a step takes its slice.
        plans = [idx for idx in batches if idx is not None]
        all_rows = xp.asarray(np.concatenate(plans)) if plans else None
        used = 0
        losses = []
        for step, idx in enumerate(batches):
            if idx is None:
                Xd, Yd, Yb = X_all, Y_all, Y
            else:
                rows = all_rows[used:used + len(idx)]
                used += len(idx)
                Xd, Yd, Yb = xp.take(X_all, rows, axis=axis), xp.take(Y_all, rows, axis=axis), Y[idx]
            coeff = output_gradient_coefficient(loss, len(Yb), Y.shape[1])
            out, dW, db = self._device_loss_gradients(nets, W, b, Xd, Yd, coeff)
            value = unstack(np.array([loss_value_and_output_gradient(o, Yb, loss)[0] for o in self.to_host(out)]))
            if not np.all(np.isfinite(value)):
                raise diverged(step, value, unstack(self.to_host(W)), unstack(self.to_host(b)), losses)
            losses.append(value)
            W -= nets.dtype.type(rate) * dW
            b -= nets.dtype.type(rate) * db
            if on_step:
                on_step(step, value)
        return unstack(self.to_host(W)), unstack(self.to_host(b)), np.array(losses)

    # -- NTK (one network is the ensemble of one: `Backend.ntk`) ----------------------------------------------
    def _ntk_traces(self, nets, W, b, X):
        """What the Gram of a block of inputs needs, on the device. Dense: the activations and output Jacobians of
        `_launch_trace`. CNN: every image's Jacobian of each output with respect to all weights and biases,
        (E, N, k, L·(n·n·f·f + n)), from `conv_backward` with the unit vectors as its rows (in groups that fit
        shared memory)."""
        Xd = self._device_rows(nets, X)
        if nets.kind != "conv":
            return self._launch_trace(nets, W, b, Xd)
        xp, (E, N, k) = self.xp, (nets.networks, len(X), nets.outputs)
        _, A = self._launch_conv_forward(nets, W, b, Xd, True)
        group = conv_rows_per_launch(nets)
        eye = xp.eye(k, dtype=nets.dtype)
        jacobians = []
        for r0 in range(0, k, group):
            top = xp.ascontiguousarray(xp.broadcast_to(eye[r0:r0 + group], (E, N) + eye[r0:r0 + group].shape))
            jacobians.append(self._launch_conv_backward(nets, W, b, Xd, A, top).reshape(E, N, top.shape[2], -1))
        return jacobians[0] if len(jacobians) == 1 else xp.concatenate(jacobians, axis=2)

    def _ntk_block(self, nets, traces1, traces2, same: bool):
        """The (E, B1, B2, k, k) Gram block of two blocks' `_ntk_traces`."""
        if nets.kind == "conv":
            E, B1, k, P = traces1.shape
            B2 = traces2.shape[1]
            gram = self.xp.matmul(traces1.reshape(E, B1 * k, P), traces2.reshape(E, B2 * k, P).swapaxes(1, 2))
            return gram.reshape(E, B1, k, B2, k).transpose(0, 1, 3, 2, 4)
        out = self._launch_gram(nets, *traces1, *traces2, same)
        return mirror_lower_tiles(self.xp, out, gram_micro_tile(nets.outputs) * GRAM_THREADS) if same else out

    def _fused_ntk_bytes_per_input(self, nets) -> int:
        if nets.kind == "conv":
            return conv_trace_bytes(nets, nets.outputs)
        return nets.networks * nets.depth * nets.width * (1 + nets.outputs) * nets.dtype.itemsize

    def ntk_ensemble(self, nets, X1, X2=None):
        """Blocks of inputs whose traces (`_ntk_traces`), for every network, fit in device memory beside Θ; per pair
        of blocks one Gram block serving all networks; with X2 None only blocks on or above the diagonal are
        computed, the rest mirrored. (E, N1, N2, k, k)."""
        if not self._fused(nets):
            return super().ntk_ensemble(nets, X1, X2)
        xp = self.xp
        W, b = self._device_net(nets)
        E, k = nets.networks, nets.outputs
        symmetric = X2 is None
        N1 = len(X1)
        N2 = N1 if symmetric else len(X2)
        gram_bytes = E * N1 * N2 * k * k * nets.dtype.itemsize
        budget = self.memory_budget() - gram_bytes
        if budget <= 0:
            networks = f" of {E} networks" if E > 1 else ""
            raise MemoryBudgetError(f"the Gram{networks} of {N1}×{N2} inputs alone takes {gram_bytes} bytes, more than "
                                    f"the budget of {self.memory_budget()}")
        per_input = self._fused_ntk_bytes_per_input(nets)
        blocks1 = input_blocks(N1, per_input, budget // 2)
        blocks2 = blocks1 if symmetric else input_blocks(N2, per_input, budget // 2)
        theta = xp.empty((E, N1, N2, k, k), dtype=nets.dtype)
        for bi, block1 in enumerate(blocks1):
            traces1 = self._ntk_traces(nets, W, b, X1[block1])
            for bj, block2 in enumerate(blocks2):
                if symmetric and bj < bi:
                    theta[:, block1, block2] = theta[:, block2, block1].transpose(0, 2, 1, 4, 3)
                    continue
                same = symmetric and bi == bj
                traces2 = traces1 if same else self._ntk_traces(nets, W, b, (X1 if symmetric else X2)[block2])
                theta[:, block1, block2] = self._ntk_block(nets, traces1, traces2, same)
        return self.to_host(theta)

    # -- closed-form kernels (Gram tile products: `Backend.gram_tile_products` with CuPy as its namespace) --------
    def cnn_pair_sum(self, terms, beta_sq):
        """kernels.cu's `cnn_correlation_sums` (`_launch_pair_sums`), one thread block per image pair, κ in its
        correlation form as in Numba's kernel (docs/limit-kernels.md#the-correlation-form); the pairs with a
        zero patch in closed form on the host. Without the kernels (`CupyBackend(xp=numpy)` and no host build of
        them): the reference."""
        if not self.kernels_available:
            return super().cnn_pair_sum(terms, beta_sq)
        from ..analytic.cnn_pair_sum import pair_sum_from_nonzero

        return pair_sum_from_nonzero(terms, beta_sq, self._launch_pair_sums)

    def _launch_pair_sums(self, P1, norm1, P2, norm2, t: float, M, beta_sq: float, symmetric: bool) -> np.ndarray:
        """`deepntk.analytic.numba_cnn_pair_sum.nonzero_pair_sums` on the device: one thread block per image pair, its
        threads taking the pairs of nonzero patches in turn. The second set goes to the device in chunks of at most
        CUDA_CHUNK_BYTES of unit patches (and at most MAX_GRID_Y images, the grid's limit)."""
        from ..analytic.cnn_pair_sum import kappa_polynomial, unit_patches

        xp = self.xp

        def device(array):
            return xp.asarray(np.ascontiguousarray(array))

        U1, root1, live1, count1 = unit_patches(P1, norm1, t, beta_sq, multiple=1)
        N1, R1, width = U1.shape
        N2, D = norm2.shape
        near_one, constants = kappa_polynomial(P1, norm1, P2, norm2, t, beta_sq)
        first = [device(U1), device(root1), device(live1), device(count1), np.int32(R1)]
        weights, constants = device(M), device(np.array(constants))
        sums = xp.zeros((N1, N2))
        kernel = _kernel("cnn_correlation_sums", "float64", int(near_one))
        chunk = int(max(1, min(MAX_GRID_Y, CUDA_CHUNK_BYTES // (D * (width + 2) * 8))))
        for j0 in range(0, N2, chunk):
            U2, root2, live2, count2 = unit_patches(P2[j0:j0 + chunk], norm2[j0:j0 + chunk], t, beta_sq, multiple=1)
            kernel((N1, len(U2)), (PAIR_THREADS,),
                   first + [device(U2), device(root2), device(live2), device(count2), np.int32(U2.shape[1]),
                            np.int32(width), weights, np.int32(D), np.int32(N2), np.int32(symmetric), np.int32(j0),
                            constants, sums],
                   shared_mem=PAIR_THREADS * 8)
        return self.to_host(sums)
