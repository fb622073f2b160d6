"""The Numba backend: the whole depth loop in compiled CPU code (the fast CPU path).

Narrow nets (width or channels <= NARROW_WIDTH: the paper's toy MLP and its CNNs) run fused kernels from
`numba_kernels`; wide layers (e.g. the MNIST MLP, width 795) are BLAS-bound, so they use the reference
per-layer path, which already spends its time in matrix products.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from .base import Backend
from ..base.losses import (
    loss_value_and_output_gradient,
    output_gradient_coefficient,
)

NARROW_WIDTH = 64
MIN_CHUNK = 32
# Activations one GD task keeps at once: one checkpoint segment, sized to stay in a core's L2 cache.
GD_SEGMENT_BYTES = 256 << 10
# A conv product whose narrower side has at most NARROW_PRODUCT columns (few inputs, or one input against many) does
# a few FLOPs per byte of features, so its features are kept small enough to be read back from the L3 cache
# (CACHED_FEATURE_BYTES). Wider products are compute-bound and run faster on long segments (FEATURE_CHUNK_BYTES of
# features per BLAS call: a few hundred layers).
FEATURE_CHUNK_BYTES = 48 << 20
CACHED_FEATURE_BYTES = 2 << 20
NARROW_PRODUCT = 64
# Inputs of a dense Gram tile (`dense_tiled_gram`, docs/ntk.md#tiled-grams): TILE_ROWS × TILE_COLUMNS, halved
# (rows, then columns) while the tile's k²·rows·columns sums exceed TILE_BYTES, a core's L2 cache. Columns come in
# multiples of COLUMN_VECTOR: the inner loop runs over them, and a remainder loop cost up to 1.5× in a tile.
TILE_ROWS = 64
TILE_COLUMNS = 128
TILE_BYTES = 2 << 20
COLUMN_VECTOR = 8
# Beyond this many right-hand sides a Gram tile's products (`gram_tile_products`) are bound by arithmetic, not by
# reading the tile, and BLAS's two GEMMs win; the one-pass kernel's transposed accumulator (r × B2) would also no
# longer stay in cache.
ONE_PASS_MAX_COLUMNS = 32
# Rows of a symmetric Gram mirrored at a time (`mirror_upper` on the conv Gram).
MIRROR_ROWS = 256
# Layers per segment at least, so that many inputs or networks do not make a segment (a kernel call on every
# thread and a product per network) per layer or two.
MIN_SEGMENT_LAYERS = 32


def _kernels():
    from . import numba_kernels

    return numba_kernels


def fused_kernel(nets, name: str):
    """The kernel `name` of `numba_kernels`, or for dense nets of width <= MAX_WIDTH its version written out for the
    width (docs/backends.md#width-kernels)."""
    if nets.kind == "dense":
        from .numba_width_kernels import written_out_kernel

        kernel = written_out_kernel(nets.width, name)
        if kernel is not None:
            return kernel
    return getattr(_kernels(), name)


_POOLS = {}


def kernel_threads() -> int:
    """Threads the kernels run on: NUMBA_NUM_THREADS (default: every core)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def checkpoint_segment(depth: int, layer_bytes: int) -> int:
    """Layers per checkpoint segment of a task that recomputes its activations (GD, dense NTK Gram tiles): at least
    √L (the fewer segments, the less memory for checkpoints), and as many as keep `layer_bytes` per layer within
    GD_SEGMENT_BYTES (the longer, the fewer recomputed layers; one segment: a single pass)."""
    return int(min(depth, max(np.ceil(np.sqrt(depth)), GD_SEGMENT_BYTES // layer_bytes)))


def tile_shape(outputs: int, itemsize: int) -> tuple[int, int]:
    """(rows, columns) of a dense Gram tile: TILE_ROWS × TILE_COLUMNS, halved while its sums take more than
    TILE_BYTES (rows first, so a tile stays at least twice as wide as it is tall)."""
    rows, cols = TILE_ROWS, TILE_COLUMNS
    while outputs**2 * rows * cols * itemsize > TILE_BYTES and rows * cols > 1:
        if 2 * rows >= cols and rows > 1:
            rows //= 2
        else:
            cols //= 2
    return rows, cols


def gram_tiles(networks: int, N1: int, N2: int, outputs: int, itemsize: int, upper: bool, threads: int):
    """(rows, cols, tiles) of a dense Gram: tiles (T, 3) lists each task's network, first row and first column,
    largest first, so that threads taking every threads-th task get similar work.

    Rows come in blocks of `tile_shape`'s rows (one block for a narrow side); each row block's columns (from the
    block's first row when `upper`, else from 0) in equal blocks of at most `tile_shape`'s columns, rounded up to
    a multiple of COLUMN_VECTOR, and in at least as many blocks as it takes to give every thread a task."""
    rows, cols = tile_shape(outputs, itemsize)
    rows = min(N1, rows)
    row_tasks = networks * -(-N1 // rows)
    blocks = max(-(-threads // row_tasks), -(-N2 // cols))
    cols = COLUMN_VECTOR * -(-N2 // (blocks * COLUMN_VECTOR))
    tiles = [(e, i0, j0) for e in range(networks) for i0 in range(0, N1, rows)
             for j0 in range(i0 if upper else 0, N2, cols)]
    work = [(min(N1, i0 + rows) - i0) * (min(N2, j0 + cols) - j0) for _, i0, j0 in tiles]
    order = sorted(range(len(tiles)), key=lambda t: -work[t])
    return rows, cols, np.array([tiles[t] for t in order], dtype=np.int64).reshape(-1, 3)


def mirror_upper(theta: np.ndarray, rows: int) -> np.ndarray:
    """theta (E, N, N, k, k) with its upper triangle (j ≥ i) copied to the lower, in place, a block of `rows` rows
    at a time (no N × N mask): Θ[i, j] = Θ[j, i]ᵀ exactly."""
    N = theta.shape[1]
    swap = (0, 2, 1, 4, 3)
    for i0 in range(0, N, rows):
        i1 = min(N, i0 + rows)
        theta[:, i0:i1, :i0] = theta[:, :i0, i0:i1].transpose(swap)
        block = theta[:, i0:i1, i0:i1]
        upper = np.triu(np.ones((i1 - i0, i1 - i0), dtype=bool))[None, :, :, None, None]
        theta[:, i0:i1, i0:i1] = np.where(upper, block, block.transpose(swap))
    return theta


def run_in_parts(kernel, *args, parts: int) -> None:
    """Call kernel(*args, part, parts) for part = 0 … parts-1 at once on `parts` threads (the kernels release the
    GIL), and wait for all of them; a kernel's exception is raised here."""
    if parts == 1:
        kernel(*args, 0, 1)
        return
    pool = _POOLS.get(parts)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        pool = _POOLS[parts] = ThreadPoolExecutor(parts, thread_name_prefix="deepntk-numba")
    for future in [pool.submit(kernel, *args, part, parts) for part in range(parts)]:
        future.result()


# Layer kinds with fused kernels (`{kind}_forward`, `{kind}_loss_gradients`, …); others run the reference array code.
FUSED_KINDS = ("dense", "conv")


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

    _threads = staticmethod(kernel_threads)

    def _chunk(self, N: int) -> int:
        """Inputs per parallel task: enough to fill the vector units (>= 32 where N allows), few enough that
        every thread gets work, and <= 128 so a task's working set stays in cache."""
        return int(min(128, max(-(-N // self._threads()), min(N, MIN_CHUNK))))

    def _fused(self, net) -> bool:
        return net.width <= NARROW_WIDTH and net.kind in FUSED_KINDS

    # -- layouts ------------------------------------------------------------------------------------------
    @staticmethod
    def _inputs_last(X):
        """(N, n) → (n, N) or (N, n, d, d) → (n, d, d, N): the kernels' layout, inputs contiguous."""
        return np.ascontiguousarray(np.moveaxis(X, 0, -1))

    # -- forward (one network is the ensemble of one: `Backend.forward`) -------------------------------------
    def forward_ensemble(self, nets, X):
        """Every network's outputs (E, N, k) in one kernel call, in parallel over networks × chunks of inputs."""
        if not self._fused(nets):
            return super().forward_ensemble(nets, X)
        out = np.empty((nets.networks, nets.outputs, len(X)), dtype=nets.dtype)
        run_in_parts(fused_kernel(nets, f"{nets.kind}_forward"), nets.W, nets.b, self._inputs_last(X),
                     self._chunk(len(X)), out, parts=self._threads())
        return np.ascontiguousarray(out.transpose(0, 2, 1))

    # -- loss gradients -----------------------------------------------------------------------------------
    def loss_and_gradients_ensemble(self, nets, X, Y, loss):
        """One fused, checkpointed forward+backward kernel call for every network, in parallel over networks ×
        chunks of inputs; each thread sums its own gradients, added up here."""
        if not self._fused(nets):
            return super().loss_and_gradients_ensemble(nets, X, Y, loss)
        N, k = Y.shape
        E, L = nets.networks, nets.depth
        chunk = self._chunk(N)
        # No more threads than tasks: every thread's copy of the gradients is zeroed and then summed (1.3 MB each at
        # L = 10⁴, width 4). With 16 inputs, one task, the idle thread's copy took a third of the step's time.
        parts = min(self._threads(), E * -(-N // chunk))
        every = checkpoint_segment(L, nets.width * nets.size**2 * chunk * nets.dtype.itemsize)
        out = np.empty((E, k, N), dtype=nets.dtype)
        dW = np.zeros((parts,) + nets.W.shape, dtype=nets.dtype)
        db = np.zeros((parts,) + nets.b.shape, dtype=nets.dtype)
        run_in_parts(fused_kernel(nets, f"{nets.kind}_loss_gradients"), nets.W, nets.b,
                     self._inputs_last(X), np.ascontiguousarray(Y.T.astype(nets.dtype)),
                     output_gradient_coefficient(loss, N, k), chunk, every, out, dW, db, parts=parts)
        outputs = np.ascontiguousarray(out.transpose(0, 2, 1))
        values = np.array([loss_value_and_output_gradient(o, Y, loss)[0] for o in outputs])
        if parts == 1:
            return values, outputs, dW[0], db[0]
        return values, outputs, dW.sum(axis=0), db.sum(axis=0)

    # -- NTK ----------------------------------------------------------------------------------------------
    def _ntk_bytes_per_input(self, net) -> int:
        if not self._fused(net):
            return super()._ntk_bytes_per_input(net)
        # √L checkpoints and one segment of activations and Jacobians per input (for conv, beside the feature
        # block; a dense tile holds them for its own inputs only).
        segment = int(np.ceil(np.sqrt(net.depth)))
        return 2 * segment * (1 + net.outputs) * net.width * net.size**2 * net.dtype.itemsize

    def _ntk_bytes_per_pair(self, net) -> int:
        if not self._fused(net):
            return super()._ntk_bytes_per_pair(net)
        # The kernels' sums in their own layout (dense (k, k, N1, N2); conv (k·N1, k·N2)) and the Gram block in
        # the (N1, N2, k, k) layout made from them.
        return 2 * net.outputs**2 * net.dtype.itemsize

    def _gram(self, net, X1, X2=None):
        if not self._fused(net):
            return super()._gram(net, X1, X2)
        return self._gram_ensemble(net.stacked(), X1, X2)[0]

    def ntk_ensemble(self, nets, X1, X2=None):
        """Every network's NTK in one sweep (kernels over networks × chunks of inputs) where all their working
        memory fits the budget; else network by network, each blocked by `ntk`."""
        N1, N2 = len(X1), len(X1) if X2 is None else len(X2)
        working = (N1 + (0 if X2 is None else N2)) * self._ntk_bytes_per_input(nets)
        working += N1 * N2 * self._ntk_bytes_per_pair(nets)
        if not self._fused(nets) or nets.networks * working > self.memory_budget():
            return super().ntk_ensemble(nets, X1, X2)
        return self._gram_ensemble(nets, X1, X2)

    def _gram_ensemble(self, nets, X1, X2=None):
        """(E, N1, N2, k, k): `_dense_gram` or `_conv_gram`, on inputs laid out for the kernels."""
        sets = [self._inputs_last(X1)] + ([] if X2 is None else [self._inputs_last(X2)])
        return self._dense_gram(nets, sets) if nets.kind == "dense" else self._conv_gram(nets, sets)

    def _dense_gram(self, nets, sets):
        """(E, N1, N2, k, k) for dense networks: `dense_tiled_gram` (or its version written out for the width) adds
        each layer's term (ã·ã')(g·g') to a tile of Θ as its sweep reaches the layer, with no features and no BLAS
        call (docs/ntk.md#tiled-grams). A task is one network and one tile (`gram_tiles`), whose inputs it traces.
        A symmetric Gram computes the tiles on and above the diagonal and copies its upper triangle to the lower,
        so that it is exactly symmetric."""
        E, k, n, L = nets.networks, nets.outputs, nets.width, nets.depth
        symmetric = len(sets) == 1
        rows_side, columns_side = (sets[0], sets[0]) if symmetric else sorted(sets, key=lambda X: X.shape[-1])
        N1, N2 = rows_side.shape[-1], columns_side.shape[-1]
        rows, cols, tiles = gram_tiles(E, N1, N2, k, nets.dtype.itemsize, symmetric, self._threads())
        every = checkpoint_segment(L, n * (rows + cols) * nets.dtype.itemsize)
        out = np.empty((E, k, k, N1, N2), dtype=nets.dtype)
        run_in_parts(fused_kernel(nets, "dense_tiled_gram"), nets.W, nets.b, rows_side, columns_side, every, rows,
                     cols, tiles, out, parts=self._threads())
        theta = out.transpose(0, 3, 4, 1, 2)  # (E, N1, N2, k, k)
        if symmetric:
            return mirror_upper(np.ascontiguousarray(theta), rows)
        if rows_side is not sets[0]:  # X2 was the narrower side
            theta = theta.transpose(0, 2, 1, 4, 3)
        return np.ascontiguousarray(theta)

    def _conv_gram(self, nets, sets):
        """Checkpointed sweep: one forward pass keeps the input of every S-th layer; then, segment by segment
        from the top, the segment's activations are recomputed, the output Jacobians backpropagated through it,
        and each layer's per-input filter and bias gradients written as features whose inner products are that
        layer's NTK term. One BLAS SYRK (or GEMM for X1 ≠ X2) per network and segment adds them to its Gram.
        Memory per network: O((L/S + S)·channels·d²·N) plus the features of one segment (FEATURE_CHUNK_BYTES); no
        per-layer N×N pass. Returns (E, N1, N2, k, k)."""
        from scipy.linalg import blas

        kern = _kernels()
        E, k, n, L, dtype = nets.networks, nets.outputs, nets.width, nets.depth, nets.dtype
        symmetric = len(sets) == 1
        sizes = [X.shape[-1] for X in sets]
        narrow = k * min(sizes) <= NARROW_PRODUCT
        per_layer = n * n * nets.filter_size**2 + n
        spatial = (nets.size, nets.size)
        features_budget = self.memory_budget() // 2
        feature_bytes = min(CACHED_FEATURE_BYTES if narrow else FEATURE_CHUNK_BYTES, features_budget)
        layer_bytes = E * per_layer * k * sum(sizes) * dtype.itemsize
        fewest = min(MIN_SEGMENT_LAYERS, features_budget // layer_bytes)  # as far as the budget allows
        every = int(min(L, max(1, fewest, feature_bytes // layer_bytes)))
        chunks = [self._chunk(N) for N in sizes]
        parts = self._threads()
        starts = []
        for X, c in zip(sets, chunks):
            starts.append(np.empty(((L + every - 1) // every, E) + X.shape, dtype=dtype))
            run_in_parts(kern.conv_checkpoints, nets.W, nets.b, X, every, c, starts[-1], parts=parts)
        jac, g_next, phi = [], [], []
        for N in sizes:
            g = np.zeros((E, k, n) + spatial + (N,), dtype=dtype)
            g[:, np.arange(k), np.arange(k)] = 1.0 / nets.size**2  # ∂f/∂z^L through the global average pool
            jac.append(g)
            g_next.append(np.empty_like(g))
            phi.append(np.empty((E, every * per_layer, k, N), dtype=dtype))
        grams = [np.zeros((k * sizes[0], k * sizes[-1]), dtype=dtype, order="F") for _ in range(E)]
        syrk = blas.dsyrk if dtype == np.float64 else blas.ssyrk
        for s in range((L + every - 1) // every - 1, -1, -1):
            l0, l1 = s * every, min(L, (s + 1) * every)
            rows = (l1 - l0) * per_layer
            for t in range(len(sets)):
                run_in_parts(kern.conv_segment_features, nets.W, nets.b, starts[t][s], l0, l1, jac[t], phi[t],
                             g_next[t], chunks[t], parts=parts)
                jac[t], g_next[t] = g_next[t], jac[t]
            for e in range(E):
                features = [phi[t][e, :rows].reshape(rows, k * N) for t, N in enumerate(sizes)]
                if symmetric:
                    # gram += FᵀF on the upper triangle; F.T is Fortran-ordered, so BLAS reads it in place.
                    grams[e] = syrk(1.0, features[0].T, beta=1.0, c=grams[e], overwrite_c=True)
                else:
                    grams[e] += features[0].T @ features[1]
        if symmetric:  # in place: np.triu(gram) + np.triu(gram, 1).T took three more Gram-sized arrays
            for gram in grams:
                mirror_upper(gram[None, :, :, None, None], MIRROR_ROWS)
        return np.stack([gram.reshape(k, sizes[0], k, sizes[-1]).transpose(1, 3, 0, 2) for gram in grams])

    # -- closed-form kernels and Gram products -------------------------------------------------------------
    def cnn_pair_sum(self, terms, beta_sq):
        """The fused Numba kernel (`deepntk.analytic.numba_cnn_pair_sum.fused_pair_sum`, where it lives so that the
        closed forms can run it on their own): one pass per image pair over its nonzero patches, each pair of a
        symmetric Gram once, κ in its correlation form (docs/limit-kernels.md#the-correlation-form); the pairs
        with a zero patch in closed form."""
        from ..analytic.numba_cnn_pair_sum import fused_pair_sum

        return fused_pair_sum(terms, beta_sq)

    def gram_tile_products(self, block, Y_cols, Y_rows):
        """Both products in one pass over the tile (`numba_tile_kernels.tile_both_products`), which halves the
        memory traffic the solvers are bound by; BLAS's two products for more than ONE_PASS_MAX_COLUMNS
        right-hand sides or a tile that is not C-contiguous float64."""
        if block.dtype != np.float64 or not block.flags.c_contiguous or Y_cols.shape[1] > ONE_PASS_MAX_COLUMNS:
            return super().gram_tile_products(block, Y_cols, Y_rows)
        from .numba_tile_kernels import tile_both_products

        B1, B2 = block.shape
        parts = max(1, min(self._threads(), B1 // 64))
        Yc = np.ascontiguousarray(Y_cols.T)
        Yr = np.ascontiguousarray(Y_rows.T)
        rows_out = np.zeros((Yc.shape[0], B1))
        cols_out = np.zeros((parts, Yc.shape[0], B2))
        run_in_parts(tile_both_products, block, Yc, Yr, rows_out, cols_out, parts=parts)
        return rows_out.T, cols_out.sum(axis=0).T
