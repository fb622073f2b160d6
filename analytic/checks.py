"""Argument checks shared by the closed forms (they raise ValueError naming the argument and the bad value)."""

from __future__ import annotations

import numbers

import numpy as np


def check_scales(**values):
    for name, value in values.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
                or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_depth(depth) -> int:
    """The depth as an int >= 2 (a whole number of weight layers)."""
    if isinstance(depth, (bool, np.bool_)) or not isinstance(depth, numbers.Integral) or depth < 2:
        raise ValueError(f"depth must be an integer >= 2 (weight layers), got {depth!r}")
    return int(depth)


def check_hidden_layers(depth) -> int:
    """The wide network's depth as an int >= 1 (hidden ReLU layers; docs/limit-kernels.md#the-infinite-width-kernels)."""
    if isinstance(depth, (bool, np.bool_)) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1 (hidden layers), got {depth!r}")
    return int(depth)


def check_nonnegative(**values):
    for name, value in values.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
                or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_points(X, name: str) -> np.ndarray:
    """Inputs as a float64 (N, d_in) array (one point of shape (d_in,) is N = 1); ValueError naming `name` for
    another shape, no points, or values that are not finite."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[None]
    if X.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d_in), got {X.shape}")
    return check_filled(X, name, "points")


def check_images(X, name: str) -> np.ndarray:
    """Images as a float64 (N, c, d, d) array (one image of shape (c, d, d) is N = 1); ValueError naming `name`
    for another shape, non-square images, no images, or values that are not finite."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 3:
        X = X[None]
    if X.ndim != 4 or X.shape[2] != X.shape[3]:
        raise ValueError(f"{name} must have shape (N, c, d, d) with square images, got {X.shape}")
    return check_filled(X, name, "images")


def check_filled(X: np.ndarray, name: str, items: str) -> np.ndarray:
    """`X` unless it holds no `items` or values that are not finite (ValueError naming `name`)."""
    if X.size == 0:
        raise ValueError(f"{name} holds no {items} (shape {X.shape})")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return X
