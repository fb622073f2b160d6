"""Checks at the boundary: inputs, targets and numerical resolution, before any backend runs."""

from __future__ import annotations

import contextvars
import functools
import os
import sys
import warnings
import weakref

import numpy as np

from .errors import InputError

# Output resolution (docs/numerical-traps.md) above which float32 cannot resolve the network output.
FLOAT32_RESOLUTION_LIMIT = 1e-3


class DeepNTKWarning(UserWarning):
    """Base of deepntk's warnings. `cause` names what a warning is about, whatever its numbers: the CLI shows
    one line per category and cause (`deepntk.cli.common.show_warnings_briefly`)."""

    cause = "deepntk"


class TheoryAssumptionWarning(DeepNTKWarning):
    """Inputs outside what the theory assumes (x > 0); the computation still runs."""

    cause = "inputs <= 0"


class PrecisionWarning(DeepNTKWarning):
    """The chosen dtype cannot resolve the network output at this C_L."""

    cause = "unresolved output"


# deepntk's own modules (the repository root is the package): a warning points past their frames, at the user's line.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN_FILES = tuple(os.path.join(_PACKAGE_ROOT, part) for part in
                   ("__init__.py", *(name + os.sep for name in ("analytic", "backends", "base", "cli", "engine"))))
# The causes warned about so far in the current call of a public function (`warns_once_per_cause`); None outside.
_WARNED = contextvars.ContextVar("deepntk_warned", default=None)


def _caller_stacklevel() -> int:
    """The `stacklevel` for `warnings.warn`, called from `warn`, of the first frame outside deepntk's modules."""
    frame, level = sys._getframe(2), 2  # the frame of warn's caller is stacklevel 2 of warn's warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(_OWN_FILES):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str, category: type) -> None:
    """Issue a deepntk warning at the line of the user's code that called deepntk (not at deepntk's own line, which
    tells the user nothing), and, inside a public function (`warns_once_per_cause`), once per call and cause."""
    warned = _WARNED.get()
    if warned is not None:
        if (category, category.cause) in warned:
            return
        warned.add((category, category.cause))
    warnings.warn(message, category, stacklevel=_caller_stacklevel())


def warns_once_per_cause(func):
    """Decorate a public function: each cause of a deepntk warning is warned about once per call, however often
    it and the public functions it calls meet it (scaled_ntk's X1 and X2, predict's kernels)."""

    @functools.wraps(func)
    def call(*args, **kwargs):
        if _WARNED.get() is not None:  # called by another public function: its call is the one that counts
            return func(*args, **kwargs)
        token = _WARNED.set(set())
        try:
            return func(*args, **kwargs)
        finally:
            _WARNED.reset(token)

    return call


# The arrays deepntk's own loaders made (by identity of the array owning the data; weak, so they can be freed).
_PACKAGE_INPUTS = weakref.WeakValueDictionary()


def _owner(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def mark_package_inputs(array: np.ndarray) -> np.ndarray:
    """Mark inputs that deepntk's own loaders made (MNIST, whose zero pixels are the paper's setting), and every
    view of them: `check_inputs` does not warn about zeros the user did not choose
    (docs/numerical-traps.md#zero-inputs). Returns `array`."""
    owner = _owner(array)
    _PACKAGE_INPUTS[id(owner)] = owner
    return array


def is_package_inputs(X) -> bool:
    """Whether X is (a view of) an array marked by `mark_package_inputs`."""
    if not isinstance(X, np.ndarray):
        return False
    owner = _owner(X)
    return _PACKAGE_INPUTS.get(id(owner)) is owner


def output_resolution(C_L: float, dtype) -> float:
    """Spacing of representable numbers at C_L: the output is (carrier ≈ C_L) − C_L (docs/numerical-traps.md)."""
    return float(np.spacing(np.asarray(C_L, dtype=dtype)))


def warn_if_unresolved(C_L: float | None, dtype) -> None:
    if C_L is None:  # an output with no carrier offset to resolve
        return
    resolution = output_resolution(C_L, dtype)
    if resolution > FLOAT32_RESOLUTION_LIMIT:
        warn(f"{np.dtype(dtype).name} resolves the output only to {resolution:.1e} at C_L = {C_L:g} "
             f"(the output is a carrier ≈ C_L minus C_L); use float64", PrecisionWarning)


def check_inputs(X, spec, name: str = "X", pool: bool = True) -> np.ndarray:
    """Validate inputs for `spec` and return them as a float64 array of shape (N,) + spec.input_shape.

    A single point of shape `spec.input_shape` is accepted as N = 1. With `pool`, the inputs are prepared as
    the first layer sees them (`spec.prepare_inputs`: the CNN's fixed input average pool, giving
    (N, c, d, d) with d = spec.inner_size). Entries <= 0 in the user's inputs raise a TheoryAssumptionWarning
    (not in deepntk's own datasets, `mark_package_inputs`: docs/numerical-traps.md#zero-inputs).
    """
    return check_input_sets({name: X}, spec, pool)[0]


def check_input_sets(named: dict, spec, pool: bool = True) -> list:
    """`check_inputs` of each array of `named` (name → inputs; None stays None), in order, with one
    TheoryAssumptionWarning that names every array with entries <= 0 (X1 and X2 of one Gram: one warning)."""
    checked, counts = [], {}
    for name, X in named.items():
        if X is None:
            checked.append(None)
            continue
        array, nonpositive = _checked_inputs(X, spec, name)
        checked.append(spec.prepare_inputs(array) if pool else array)
        if nonpositive:
            counts[name] = nonpositive
    if counts:
        offending = " and ".join(f"{name} has {count} entries <= 0" for name, count in counts.items())
        warn(f"{offending}; the theory assumes inputs x > 0 (zeros are harmless at initialization, not once "
             f"training moves the weights; shift them by a small ε to be safe)", TheoryAssumptionWarning)
    return checked


def _checked_inputs(X, spec, name: str) -> tuple:
    """X as a float64 (N,) + spec.input_shape array (or InputError), and its count of entries <= 0 where the
    theory's x > 0 applies to it (0 for deepntk's own datasets)."""
    own = is_package_inputs(X)
    try:
        array = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} is not a numeric array: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise InputError(f"{name} must hold real numbers, got dtype {array.dtype}")
    expected = tuple(spec.input_shape)
    if array.shape == expected:
        array = array[None]
    if array.ndim != len(expected) + 1 or array.shape[1:] != expected:
        raise InputError(f"{name} has shape {array.shape}; this {spec.arch.upper()} expects (N, "
                         f"{', '.join(map(str, expected))})")
    if array.shape[0] == 0:
        raise InputError(f"{name} holds no points (N = 0)")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite values")
    nonpositive = int(np.sum(array <= 0)) if not own and spec.wants_positive_inputs else 0
    return array, nonpositive


def check_targets(Y, n_points: int, outputs: int, name: str = "Y") -> np.ndarray:
    """Targets as (N, k) float64; a 1-D vector is accepted for k = 1."""
    try:
        array = np.asarray(Y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} is not a numeric array: {exc}") from None
    if array.ndim == 1 and outputs == 1:
        array = array[:, None]
    if array.shape != (n_points, outputs):
        raise InputError(f"{name} has shape {array.shape}, expected ({n_points}, {outputs})")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite values")
    return array
