"""What every architecture shares: argument checks and the methods that follow from `weight_shape`.

An architecture is a frozen dataclass (its spec) that also knows everything specific to it: the paper's
initialization (`paper_weights`), how its inputs are prepared (`prepare_inputs`), which layer kind the
backends run (`layer_kind`, a key of `deepntk.backends.layers.LAYER_OPS`), its params-file keys
(`weight_prefix`) and its closed-form kernels (`limit_kernel`, `expected_kernel`, delegating to
`deepntk.analytic`, with the caller's `backend=` for any costly piece a backend computes). The rest of deepntk asks the spec instead of branching on its name.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict

import numpy as np

from deepntk.engine.errors import SpecError


def shown(value) -> str:
    """A value as an error message shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}… ({len(text)} characters)"


def check_int(name: str, value, minimum: int = 1) -> int:
    """`value` as a Python int >= minimum (NumPy integers accepted; bools and floats refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise SpecError(f"{name} must be an integer >= {minimum}, got {shown(value)}")
    return int(value)


def check_positive_real(name: str, value) -> float:
    """`value` as a finite Python float > 0 (NumPy reals accepted; bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise SpecError(f"{name} must be a finite number > 0, got {shown(value)}")
    try:
        as_float = float(value)
    except OverflowError:
        raise SpecError(f"{name} must be a finite number > 0, got {shown(value)}") from None
    if not math.isfinite(as_float) or as_float <= 0:
        raise SpecError(f"{name} must be a finite number > 0, got {shown(value)}")
    return as_float


class Architecture:
    """Mixin of the spec dataclasses: the generic parts, written against `weight_shape(layer)`.

    A subclass sets the class attributes `arch` (its name in params files and on the command line),
    `layer_kind` and `weight_prefix`, and implements `weight_shape`, `fan_in`, `paper_weights`,
    `prepare_inputs`, `limit_kernel`, `expected_kernel` and `sizes_from_inputs`.
    """

    arch: str
    layer_kind: str
    weight_prefix: str

    def _normalize_common(self) -> None:
        """Check depth, C_L, rho and beta, and store them as plain Python numbers (frozen dataclass)."""
        depth = self.depth
        if isinstance(depth, numbers.Integral) and not isinstance(depth, (bool, np.bool_)) and depth < 2:
            raise SpecError(f"depth must be >= 2 (weight layers, paper §3.1), got {depth}")
        object.__setattr__(self, "depth", check_int("depth", depth, minimum=2))
        for name in ("C_L", "rho", "beta"):
            object.__setattr__(self, name, check_positive_real(name, getattr(self, name)))

    def bias_shape(self, layer: int) -> tuple[int, ...]:
        return (self.weight_shape(layer)[0],)

    def weight_key(self, layer: int) -> str:
        """Name of layer `layer`'s (1-based) weight array in a params file."""
        return f"{self.weight_prefix}{layer}"

    def parameter_count(self) -> int:
        """Number of trainable parameters (all weights and biases), without a loop over the depth."""
        def layer(l):
            return math.prod(self.weight_shape(l)) + self.bias_shape(l)[0]

        return layer(1) + layer(self.depth) + (self.depth - 2) * layer(2)

    def to_meta(self) -> dict:
        return {"arch": self.arch, **asdict(self)}

    @property
    def packed_tail(self) -> tuple[int, ...]:
        """Trailing weight axes after (out, in): () for dense layers, (f, f) for conv layers."""
        return ()

    @property
    def inner_size(self) -> int:
        """Image side the layers see (1 for dense layers)."""
        return 1

    @property
    def filter_side(self) -> int:
        """Filter side f of the layers (1 for dense layers)."""
        return 1
