"""Checks at the boundary: inputs, targets and numerical resolution, before any backend runs."""

from __future__ import annotations

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
        warnings.warn(
            f"{np.dtype(dtype).name} resolves the output only to {resolution:.1e} at C_L = {C_L:g} "
            f"(the output is a carrier ≈ C_L minus C_L); use float64",
            PrecisionWarning,
            stacklevel=3,
        )


def check_inputs(X, spec, name: str = "X", pool: bool = True) -> np.ndarray:
    """Validate inputs for `spec` and return them as a float64 array of shape (N,) + spec.input_shape.

    A single point of shape `spec.input_shape` is accepted as N = 1. With `pool`, the inputs are prepared as
    the first layer sees them (`spec.prepare_inputs`: the CNN's fixed input average pool, giving
    (N, c, d, d) with d = spec.inner_size). Entries <= 0 in the user's inputs raise a TheoryAssumptionWarning
    (not in deepntk's own datasets, `mark_package_inputs`: docs/numerical-traps.md#zero-inputs).
    """
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
    if not own and spec.wants_positive_inputs and np.any(array <= 0):
        warnings.warn(
            f"{name} has {int(np.sum(array <= 0))} entries <= 0; the theory assumes inputs x > 0 (zeros are "
            f"harmless at initialization, not once training moves the weights; shift them by a small ε to be safe)",
            TheoryAssumptionWarning,
            stacklevel=3,
        )
    return spec.prepare_inputs(array) if pool else array


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
