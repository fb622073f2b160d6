"""The dense kernels written out for one small width: Numba source generated for a width n <= MAX_WIDTH, in which
every weight, input row and gradient sum of a layer is a named scalar (docs/backends.md#width-kernels). Three
kernels, each with the name, arguments and results of its generic version in `numba_kernels`: dense_forward,
dense_loss_gradients and dense_tiled_gram.

At the paper's widths (n = d_in + 1 + d_out, 3 to 6) a layer is n² multiply-adds per input. The generic kernels
loop over rows whose number is known only at run time, so a layer is several short passes over the inputs, each
paying its loop set-up, runtime alias checks and remainder loop. Here one pass per layer computes all n outputs of
a vector of inputs in registers: GD steps ran 1.7–2.3× faster (n = 3 to 6, N = 16 to 512). At n = 8 the gain was
gone (1.04×) and the compilation, which grows with n², took 12 s.

The source is written once per width into a cache folder (`kernel_folder_candidates`) and imported from there, so
that Numba caches its machine code as for any module: Numba's cache needs a source file, and an intact file is
never rewritten (its time stamp is part of Numba's cache key). The file name carries a digest of the source.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

MAX_WIDTH = 6
_LOCK = threading.Lock()


def kernel_folder_candidates() -> list[Path]:
    """Where generated sources may go, in order: DEEPNTK_KERNEL_DIR; NUMBA_CACHE_DIR/deepntk-kernels (beside the
    machine code a user already relocated); the user's cache folder (XDG_CACHE_HOME or ~/.cache)/deepntk/kernels;
    the temporary folder."""
    candidates = []
    if os.environ.get("DEEPNTK_KERNEL_DIR"):
        candidates.append(Path(os.environ["DEEPNTK_KERNEL_DIR"]))
    if os.environ.get("NUMBA_CACHE_DIR"):
        candidates.append(Path(os.environ["NUMBA_CACHE_DIR"]) / "deepntk-kernels")
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(Path(cache_home) / "deepntk" / "kernels")
    user = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(Path(tempfile.gettempdir()) / f"deepntk-kernels-{user}")
    return candidates


def _source_file(width: int) -> Path | None:
    """The generated source's path in the first candidate folder that has it, intact, or can take it; None if none
    can. A file whose text differs from the source (edited or damaged) is written again."""
    source = kernels_source(width)
    name = f"dense_width{width}_{hashlib.sha256(source.encode()).hexdigest()[:16]}.py"
    for folder in kernel_folder_candidates():
        path = folder / name
        try:
            if path.read_text(encoding="utf-8") == source:
                return path
        except (OSError, UnicodeDecodeError):
            pass  # absent, unreadable, or damaged: (re)written below
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=".writing-", suffix=".py")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(source)
            os.replace(temporary, path)  # atomic: a process that finds the file finds all of it
            return path
        except OSError:
            continue
    return None


@functools.cache
def _width_module(width: int):
    """The generated module of `width`, imported from its source file; None where no folder can hold it."""
    path = _source_file(width)
    if path is None:
        warnings.warn(f"deepntk: no writable folder for the width-{width} kernels (tried "
                      f"{', '.join(map(str, kernel_folder_candidates()))}); using the generic kernels, which are "
                      f"up to 2x slower. Set DEEPNTK_KERNEL_DIR to a writable folder.", RuntimeWarning, stacklevel=4)
        return None
    module_name = f"deepntk_generated_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def written_out_kernel(width: int, name: str):
    """The kernel `name` of `numba_kernels` (dense_forward, dense_loss_gradients or dense_tiled_gram) written out
    for `width`: same arguments, same results to rounding. None for widths above MAX_WIDTH, or when no folder can
    hold the source (a warning says so)."""
    if width > MAX_WIDTH:
        return None
    with _LOCK:  # two threads must not import the same module twice
        module = _width_module(width)
    return None if module is None else getattr(module, name)


# ------------------------------------------------------------------------------------------- generation --
def _weights(n: int) -> list[str]:
    return [f"w{o}_{m} = W[e, layer, {o}, {m}]" for o in range(n) for m in range(n)]


def _forward_layer(n: int, inputs: str, slot: str = "layer - l0", next_slot: str = "t + 1") -> list[str]:
    """Layer `layer` on slot t = `slot` of A into slot `next_slot` for `inputs` inputs; ReLU except after the last
    layer (lo = -inf keeps z)."""
    lines = _weights(n) + [f"b{o} = b[e, layer, {o}]" for o in range(n)]
    lines += [f"t = {slot}", f"u = {next_slot}", "lo = 0.0 if layer < L - 1 else -np.inf",
              f"for i in range({inputs}):"]
    body = [f"a{m} = A[t, {m}, i]" for m in range(n)]
    for o in range(n):
        body.append(f"v = b{o} + " + " + ".join(f"w{o}_{m} * a{m}" for m in range(n)))
        body.append(f"A[u, {o}, i] = lo if v <= lo else v")
    return lines + ["    " + line for line in body]


def _segment_sweep(n: int, inputs: str) -> list[str]:
    """The loop over segments of a checkpointed sweep, up to where the backward pass through segment s begins (the
    caller's lines that follow, one level deeper, run after the segment's last forward pass): forward through
    segments 0 … count-1, keeping each one's input in CK, then through count-2 … 0 again. One loop, so that the
    layer code is written once: Numba's compile time grows with the statements."""
    return ["for step in range(2 * count - 1):",
            "    s = step if step < count else 2 * count - 2 - step",
            "    l0 = s * every",
            "    l1 = min(L, l0 + every)",
            "    for p in range(n):",
            f"        for i in range({inputs}):",
            "            A[0, p, i] = CK[s, p, i]",
            "    for layer in range(l0, l1):",
            *["        " + line for line in _forward_layer(n, inputs)],
            "    if step < count - 1:",
            "        for p in range(n):",
            f"            for i in range({inputs}):",
            "                CK[s + 1, p, i] = A[l1 - l0, p, i]",
            "        continue"]


def _backprop(n: int, source: str, target: str, inputs: str) -> list[str]:
    """target[m] = Σ_o W[o, m]·source[o] where layer `layer`'s input (slot t of A) is > 0, else 0, with the
    weights of `_weights` loaded; `source` and `target` are formats of a row index (e.g. "delta[{}, i]")."""
    lines = [f"for i in range({inputs}):"]
    body = [f"d{o} = {source.format(o)}" for o in range(n)]
    for m in range(n):
        body.append("v = " + " + ".join(f"w{o}_{m} * d{o}" for o in range(n)))
        # A select, not a branch: it vectorizes, and ReLU masks are too irregular to predict.
        body.append(f"{target.format(m)} = v if A[t, {m}, i] > 0 else 0.0")
    return lines + ["    " + line for line in body]


def _gradient_sums(n: int) -> list[str]:
    """Add layer `layer`'s gradient sums Σ_i delta[o, i]·A[t, m, i] to dW and Σ_i delta[o, i] to db. A few output
    rows per pass: all n(n + 1) sums at once would not fit the 16 vector registers."""
    rows_per_pass = max(1, 12 // (n + 1))
    lines = []
    for first in range(0, n, rows_per_pass):
        rows = range(first, min(n, first + rows_per_pass))
        lines += [f"s{o} = 0.0" for o in rows] + [f"g{o}_{m} = 0.0" for o in rows for m in range(n)]
        lines.append("for i in range(B):")
        body = [f"a{m} = A[t, {m}, i]" for m in range(n)] + [f"d{o} = delta[{o}, i]" for o in rows]
        body += [f"s{o} += d{o}" for o in rows] + [f"g{o}_{m} += d{o} * a{m}" for o in rows for m in range(n)]
        lines += ["    " + line for line in body]
        lines += [f"db[e, layer, {o}] += s{o}" for o in rows]
        lines += [f"dW[e, layer, {o}, {m}] += g{o}_{m}" for o in rows for m in range(n)]
    return lines


def _layer_term(n: int) -> list[str]:
    """acc[x, y, i, j] += (ã_i·ã_{R+j})·(g[x, :, i]·g[y, :, R+j]) with ã = [a, 1]: layer `layer`'s NTK term
    between the tile's R rows i and its columns j. The column index runs unsigned, so that Numba emits
    no negative-index wraparound inside the loop."""
    lines = ["for x in range(k):", "    for y in range(k):", "        for i in range(R):"]
    hoisted = [f"p{m} = A[t, {m}, i]" for m in range(n)] + [f"q{m} = g[x, {m}, i]" for m in range(n)]
    inputs = " + ".join(f"p{m} * A[t, {m}, j]" for m in range(n))
    jacobians = " + ".join(f"q{m} * g[y, {m}, j]" for m in range(n))
    lines += ["            " + line for line in hoisted]
    lines += ["            for j in range(first, last):",
              f"                acc[x, y, i, j - first] += (1.0 + {inputs}) * ({jacobians})"]
    return lines


def _indent(lines: list[str], depth: int) -> str:
    return "\n".join(" " * (4 * depth) + line for line in lines)


@functools.cache
def chunk_rule_source() -> str:
    """The source of `numba_kernels._chunk_of`, the one rule by which every kernel splits its tasks into networks
    and chunks of inputs, compiled like the generated kernels."""
    import inspect

    from . import numba_kernels

    source = inspect.getsource(numba_kernels._chunk_of.py_func)
    return "@njit(cache=True, nogil=True, fastmath=FAST)\n" + source[source.index("def "):].rstrip()


def kernels_source(width: int) -> str:
    """The Python source of the width-`width` kernel module. It calls no compiled function of another file:
    Numba's cache of a function is keyed to its own file only, so a change in a callee elsewhere would leave the
    cached machine code stale. The chunking rule, `numba_kernels._chunk_of`, is therefore written into the module
    from its source (`chunk_rule_source`), so that a change in it changes this source and so its file."""
    return f'''"""Dense kernels for width {width}, generated by deepntk.backends.numba_width_kernels (do not edit
them: a changed source is written to a new file)."""

import numpy as np
from numba import njit

FAST = {{"reassoc", "contract", "nsz", "arcp"}}


{chunk_rule_source()}


@njit(cache=True, nogil=True, fastmath=FAST)
def dense_forward(W, b, X, chunk, out, part, parts):
    """`numba_kernels.dense_forward` for width {width}: same arguments, same results to rounding."""
    E, L, n, _ = W.shape
    k = out.shape[1]
    N = X.shape[1]
    chunks = (N + chunk - 1) // chunk
    for task in range(part, E * chunks, parts):
        e, i0, B = _chunk_of(task, chunks, chunk, N)
        A = np.empty((2, n, B), dtype=W.dtype)  # a layer's input and output, alternating
        for p in range(n):
            for i in range(B):
                A[0, p, i] = X[p, i0 + i]
        for layer in range(L):
{_indent(_forward_layer(width, "B", "layer % 2", "1 - t"), 3)}
        for j in range(k):
            for i in range(B):
                out[e, j, i0 + i] = A[L % 2, j, i]


@njit(cache=True, nogil=True, fastmath=FAST)
def dense_loss_gradients(W, b, X, Y, coeff, chunk, every, out, dW_part, db_part, part, parts):
    """`numba_kernels.dense_loss_gradients` for width {width}: same arguments, same results to rounding."""
    E, L, n, _ = W.shape
    k = Y.shape[0]
    N = X.shape[1]
    chunks = (N + chunk - 1) // chunk
    count = (L + every - 1) // every
    dW = dW_part[part]
    db = db_part[part]
    for task in range(part, E * chunks, parts):
        e, i0, B = _chunk_of(task, chunks, chunk, N)
        CK = np.empty((count, n, B), dtype=W.dtype)  # the input of every segment
        A = np.empty((every + 1, n, B), dtype=W.dtype)  # one segment's inputs, then its output
        delta = np.empty((n, B), dtype=W.dtype)
        prev = np.empty((n, B), dtype=W.dtype)
        for p in range(n):
            for i in range(B):
                CK[0, p, i] = X[p, i0 + i]
{_indent(_segment_sweep(width, "B"), 2)}
            if step == count - 1:
                for o in range(n):
                    for i in range(B):
                        delta[o, i] = 0.0
                for j in range(k):
                    for i in range(B):
                        out[e, j, i0 + i] = A[l1 - l0, j, i]
                        delta[j, i] = coeff * (A[l1 - l0, j, i] - Y[j, i0 + i])
            for layer in range(l1 - 1, l0 - 1, -1):
                t = layer - l0
{_indent(_gradient_sums(width), 4)}
                if layer > 0:
{_indent(_weights(width) + _backprop(width, "delta[{}, i]", "prev[{}, i]", "B"), 5)}
                    delta, prev = prev, delta


@njit(cache=True, nogil=True, fastmath=FAST)
def dense_tiled_gram(W, b, X1, X2, every, rows, cols, tiles, out, part, parts):
    """`numba_kernels.dense_tiled_gram` for width {width}: same arguments, same results to rounding."""
    _, L, n, _ = W.shape  # the network of a task is in `tiles`
    k = out.shape[1]
    N1, N2 = X1.shape[1], X2.shape[1]
    count = (L + every - 1) // every
    for task in range(part, tiles.shape[0], parts):
        e, i0, j0 = tiles[task, 0], tiles[task, 1], tiles[task, 2]
        R = min(N1, i0 + rows) - i0
        B = min(N2, j0 + cols) - j0
        M = R + B
        first = np.uint64(R)
        last = np.uint64(M)
        CK = np.empty((count, n, M), dtype=W.dtype)
        A = np.empty((every + 1, n, M), dtype=W.dtype)
        g = np.empty((k, n, M), dtype=W.dtype)
        nxt = np.empty((k, n, M), dtype=W.dtype)
        acc = np.empty((k, k, R, B), dtype=W.dtype)
        for p in range(n):
            for i in range(R):
                CK[0, p, i] = X1[p, i0 + i]
            for j in range(B):
                CK[0, p, R + j] = X2[p, j0 + j]
        for x in range(k):  # ∂f_x/∂z^{{L-1}} = e_x
            for q in range(n):
                for i in range(M):
                    g[x, q, i] = 1.0 if q == x else 0.0
            for y in range(k):
                for i in range(R):
                    for j in range(B):
                        acc[x, y, i, j] = 0.0
{_indent(_segment_sweep(width, "M"), 2)}
            for layer in range(l1 - 1, l0 - 1, -1):
                t = layer - l0
{_indent(_layer_term(width), 4)}
                if layer > 0:
{_indent(_weights(width), 5)}
                    for x in range(k):
{_indent(_backprop(width, "g[x, {}, i]", "nxt[x, {}, i]", "M"), 6)}
                    g, nxt = nxt, g
        for x in range(k):
            for y in range(k):
                for i in range(R):
                    for j in range(B):
                        out[e, x, y, i0 + i, j0 + j] = acc[x, y, i, j]
'''
