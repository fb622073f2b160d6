"""The dense GD kernel written out for one small width: Numba source generated for a width n <= MAX_WIDTH, in which
every weight, input row and gradient sum of a layer is a named scalar (docs/backends.md#width-kernels).

At the paper's widths (n = d_in + 1 + d_out, 3 to 6) a layer is n² multiply-adds per input. The generic kernel of
`numba_kernels` loops over rows whose number is known only at run time, so a layer is several short passes over
the inputs, each paying its loop set-up, runtime alias checks and remainder loop. Here one pass per layer computes
all n outputs of a vector of inputs in registers: GD steps ran 1.7–2.3× faster (n = 3 to 6, N = 16 to 512). At
n = 8 the gain was gone (1.04×) and the compilation, which grows with n², took 12 s.

The source is written once per width into a cache folder (`kernel_folder`) and imported from there, so that
Numba caches its machine code as for any module: Numba's cache needs a source file, and no file is rewritten
once it exists (its time stamp is part of Numba's cache key). The file name carries a digest of the source.
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
    """The generated source's path in the first candidate folder that has it or can take it; None if none can."""
    source = loss_gradients_source(width)
    name = f"dense_width{width}_{hashlib.sha256(source.encode()).hexdigest()[:16]}.py"
    for folder in kernel_folder_candidates():
        path = folder / name
        if path.is_file():
            return path
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
def _loss_gradients_kernel(width: int):
    path = _source_file(width)
    if path is None:
        warnings.warn(f"deepntk: no writable folder for the width-{width} GD kernel (tried "
                      f"{', '.join(map(str, kernel_folder_candidates()))}); using the generic kernel, which is "
                      f"about 2x slower. Set DEEPNTK_KERNEL_DIR to a writable folder.", RuntimeWarning, stacklevel=3)
        return None
    module_name = f"deepntk_generated_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module.loss_gradients


def loss_gradients_kernel(width: int):
    """The width-specialized `dense_loss_gradients` (same arguments, same results to rounding) for
    2 <= width <= MAX_WIDTH; None for other widths, or when no folder can hold its source (a warning says so)."""
    if not 2 <= width <= MAX_WIDTH:
        return None
    with _LOCK:  # two threads must not import the same module twice
        return _loss_gradients_kernel(width)


# ------------------------------------------------------------------------------------------- generation --
def _weights(n: int) -> list[str]:
    return [f"w{o}_{m} = W[e, layer, {o}, {m}]" for o in range(n) for m in range(n)]


def _forward_layer(n: int) -> list[str]:
    """Layer `layer` on slot t of A into slot t + 1; ReLU except after the last layer (lo = -inf keeps z)."""
    lines = _weights(n) + [f"b{o} = b[e, layer, {o}]" for o in range(n)]
    lines += ["t = layer - l0", "lo = 0.0 if layer < L - 1 else -np.inf", "for i in range(B):"]
    body = [f"a{m} = A[t, {m}, i]" for m in range(n)]
    for o in range(n):
        body.append(f"v = b{o} + " + " + ".join(f"w{o}_{m} * a{m}" for m in range(n)))
        body.append(f"A[t + 1, {o}, i] = lo if v <= lo else v")
    return lines + ["    " + line for line in body]


def _backward_layer(n: int) -> list[str]:
    """Add layer `layer`'s gradient sums to dW, db and backpropagate delta into prev (masked by the layer's input
    being > 0), then swap them. The sums take a few output rows per pass: all n(n + 1) of them at once would not
    fit the 16 vector registers."""
    rows_per_pass = max(1, 12 // (n + 1))
    lines = ["t = layer - l0"]
    for first in range(0, n, rows_per_pass):
        rows = range(first, min(n, first + rows_per_pass))
        lines += [f"s{o} = 0.0" for o in rows] + [f"g{o}_{m} = 0.0" for o in rows for m in range(n)]
        lines.append("for i in range(B):")
        body = [f"a{m} = A[t, {m}, i]" for m in range(n)] + [f"d{o} = delta[{o}, i]" for o in rows]
        body += [f"s{o} += d{o}" for o in rows] + [f"g{o}_{m} += d{o} * a{m}" for o in rows for m in range(n)]
        lines += ["    " + line for line in body]
        lines += [f"db[e, layer, {o}] += s{o}" for o in rows]
        lines += [f"dW[e, layer, {o}, {m}] += g{o}_{m}" for o in rows for m in range(n)]
    lines.append("if layer > 0:")
    backprop = _weights(n) + ["for i in range(B):"]
    body = [f"d{o} = delta[{o}, i]" for o in range(n)]
    for m in range(n):
        body.append("v = " + " + ".join(f"w{o}_{m} * d{o}" for o in range(n)))
        # A select, not a branch: it vectorizes, and ReLU masks are too irregular to predict.
        body.append(f"prev[{m}, i] = v if A[t, {m}, i] > 0 else 0.0")
    backprop += ["    " + line for line in body] + ["delta, prev = prev, delta"]
    return lines + ["    " + line for line in backprop]


def _indent(lines: list[str], depth: int) -> str:
    return "\n".join(" " * (4 * depth) + line for line in lines)


def loss_gradients_source(width: int) -> str:
    """The Python source of the width-`width` kernel module."""
    return f'''"""The dense GD kernel for width {width}, generated by deepntk.backends.numba_width_kernels (do not edit
it: a changed source is written to a new file)."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath={{"reassoc", "contract", "nsz", "arcp"}})
def loss_gradients(W, b, X, Y, coeff, chunk, every, out, dW_part, db_part, part, parts):
    """`numba_kernels.dense_loss_gradients` for width {width}: same arguments, same results to rounding."""
    E, L, n, _ = W.shape
    k = Y.shape[0]
    N = X.shape[1]
    chunks = (N + chunk - 1) // chunk
    count = (L + every - 1) // every
    dW = dW_part[part]
    db = db_part[part]
    for task in range(part, E * chunks, parts):
        e = task // chunks
        i0 = (task % chunks) * chunk
        B = min(N, i0 + chunk) - i0
        CK = np.empty((count, n, B), dtype=W.dtype)  # the input of every segment
        A = np.empty((every + 1, n, B), dtype=W.dtype)  # one segment's inputs, then its output
        delta = np.empty((n, B), dtype=W.dtype)
        prev = np.empty((n, B), dtype=W.dtype)
        for p in range(n):
            for i in range(B):
                CK[0, p, i] = X[p, i0 + i]
        # Forward through segments 0 … count-1, keeping each one's input, then through count-2 … 0 again; the
        # backward pass through a segment follows its last forward pass. One loop, so that the layer code is
        # written once: Numba's compile time grows with the statements.
        for step in range(2 * count - 1):
            s = step if step < count else 2 * count - 2 - step
            l0 = s * every
            l1 = min(L, l0 + every)
            for p in range(n):
                for i in range(B):
                    A[0, p, i] = CK[s, p, i]
            for layer in range(l0, l1):
{_indent(_forward_layer(width), 4)}
            if step < count - 1:
                for p in range(n):
                    for i in range(B):
                        CK[s + 1, p, i] = A[l1 - l0, p, i]
                continue
            if step == count - 1:
                for o in range(n):
                    for i in range(B):
                        delta[o, i] = 0.0
                for j in range(k):
                    for i in range(B):
                        out[e, j, i0 + i] = A[l1 - l0, j, i]
                        delta[j, i] = coeff * (A[l1 - l0, j, i] - Y[j, i0 + i])
            for layer in range(l1 - 1, l0 - 1, -1):
{_indent(_backward_layer(width), 4)}
'''
