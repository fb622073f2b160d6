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
