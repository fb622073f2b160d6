"""What network: the deep narrow MLP (paper §3.1) and CNN (paper §4.1) as immutable, validated specs.

Depth L counts weight layers (the paper's convention, see SPEC §Conventions). Every hidden layer of the MLP
has width n = d_in + 1 + d_out; every hidden layer of the CNN has n = c + 1 + k channels, ordered
(input carriers | random unit | output carriers).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields

from deepntk.engine.errors import SpecError

FILTER_VARIANCES = ("paper", "code")


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive_real(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SpecError(f"{name} must be a finite number > 0, got {value!r}")


def _check_common(depth, C_L, rho, beta) -> None:
    if isinstance(depth, int) and not isinstance(depth, bool) and depth < 2:
        raise SpecError(f"depth must be >= 2 (weight layers, paper §3.1), got {depth}")
    _check_positive_int("depth", depth, minimum=2)
    _check_positive_real("C_L", C_L)
    _check_positive_real("rho", rho)
    _check_positive_real("beta", beta)


@dataclass(frozen=True)
class MLP:
    """The deep narrow ReLU MLP of width d_in + 1 + d_out (paper §3.1).

    Args:
        d_in: input dimension.
        d_out: output dimension k.
        depth: number of weight layers L >= 2.
        C_L: the carrier scale C_L > 0 of the paper's initialization.
        rho: standard deviation scale of the random unit's weights (entries ~ N(0, rho²/d_in)).
        beta: standard deviation scale of the random unit's bias (entries ~ N(0, C_L² beta²)).
    """

    d_in: int
    d_out: int
    depth: int
    C_L: float
    rho: float = 1.0
    beta: float = 1.0

    arch = "mlp"

    def __post_init__(self):
        _check_positive_int("d_in", self.d_in)
        _check_positive_int("d_out", self.d_out)
        _check_common(self.depth, self.C_L, self.rho, self.beta)

    @property
    def width(self) -> int:
        return self.d_in + 1 + self.d_out

    @property
    def outputs(self) -> int:
        return self.d_out

    @property
    def in_features(self) -> int:
        """Channels (here: features) of the network input."""
        return self.d_in

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.d_in,)

    def weight_shape(self, layer: int) -> tuple[int, ...]:
        """Shape (out, in) of W^layer, 1-based, in PyTorch's `nn.Linear` layout."""
        fan_in = self.d_in if layer == 1 else self.width
        fan_out = self.d_out if layer == self.depth else self.width
        return (fan_out, fan_in)

    def bias_shape(self, layer: int) -> tuple[int, ...]:
        return (self.weight_shape(layer)[0],)

    def fan_in(self, layer: int) -> int:
        return self.weight_shape(layer)[1]

    def to_meta(self) -> dict:
        return {"arch": self.arch, **asdict(self)}


@dataclass(frozen=True)
class CNN:
    """The deep narrow ReLU CNN with c + 1 + k channels and global average pool output (paper §4.1).

    Args:
        in_channels: input channels c.
        size: side d of the square input images as the user gives them (before `pool`).
        outputs: number of outputs k.
        depth: number of conv layers L >= 2.
        C_L: the carrier scale C_L > 0.
        rho, beta: as for the MLP; filter taps of the random channel ~ N(0, rho²/c) (or rho²/(c f²), see
            `filter_variance`).
        filter_size: odd square filter side f; zero padding (f - 1)/2 keeps the image size.
        pool: side of a fixed, non-trainable average pool applied to the input first (the paper's 4 for
            MNIST: 28×28 → 7×7). Must divide `size`.
        filter_variance: "paper" draws taps with variance rho²/c (paper §4.1); "code" uses the authors'
            public code's rho²/(c·f²).
    """

    in_channels: int
    size: int
    outputs: int
    depth: int
    C_L: float
    rho: float = 1.0
    beta: float = 1.0
    filter_size: int = 3
    pool: int = 1
    filter_variance: str = "paper"

    arch = "cnn"

    def __post_init__(self):
        _check_positive_int("in_channels", self.in_channels)
        _check_positive_int("size", self.size)
        _check_positive_int("outputs", self.outputs)
        _check_positive_int("filter_size", self.filter_size)
        _check_positive_int("pool", self.pool)
        _check_common(self.depth, self.C_L, self.rho, self.beta)
        if self.filter_size % 2 == 0:
            raise SpecError(f"filter_size must be odd (zero padding (f-1)/2 keeps the image size), got {self.filter_size}")
        if self.size % self.pool:
            raise SpecError(f"pool ({self.pool}) must divide the image size ({self.size})")
        if self.filter_size > 2 * self.inner_size - 1:
            raise SpecError(
                f"filter_size {self.filter_size} is larger than 2·d-1 = {2 * self.inner_size - 1} for "
                f"{self.inner_size}×{self.inner_size} images: its outer taps would only ever see padding"
            )
        if self.filter_variance not in FILTER_VARIANCES:
            raise SpecError(f"filter_variance must be one of {FILTER_VARIANCES}, got {self.filter_variance!r}")

    @property
    def inner_size(self) -> int:
        """Image side d seen by the conv layers (after the fixed input pool)."""
        return self.size // self.pool

    @property
    def width(self) -> int:
        return self.in_channels + 1 + self.outputs

    @property
    def in_features(self) -> int:
        return self.in_channels

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.size, self.size)

    @property
    def tap_variance(self) -> float:
        """Variance of each random-channel filter tap, divided by rho²."""
        if self.filter_variance == "paper":
            return 1.0 / self.in_channels
        return 1.0 / (self.in_channels * self.filter_size**2)

    def weight_shape(self, layer: int) -> tuple[int, ...]:
        """Shape (out_ch, in_ch, f, f) of w^layer, 1-based, in PyTorch's `Conv2d` layout."""
        fan_in = self.in_channels if layer == 1 else self.width
        fan_out = self.outputs if layer == self.depth else self.width
        return (fan_out, fan_in, self.filter_size, self.filter_size)

    def bias_shape(self, layer: int) -> tuple[int, ...]:
        return (self.weight_shape(layer)[0],)

    def fan_in(self, layer: int) -> int:
        _, n_in, f, _ = self.weight_shape(layer)
        return n_in * f * f

    def to_meta(self) -> dict:
        return {"arch": self.arch, **asdict(self)}


def spec_from_meta(meta: dict):
    """Rebuild an MLP or CNN spec from the dict written by `to_meta` (params files)."""
    meta_fields = dict(meta)
    arch = meta_fields.pop("arch", None)
    if arch == "mlp":
        cls = MLP
    elif arch == "cnn":
        cls = CNN
    else:
        raise SpecError(f"unknown architecture {arch!r} (expected 'mlp' or 'cnn')")
    missing = [f.name for f in fields(cls) if f.name not in meta_fields and f.default is MISSING]
    if missing:
        raise SpecError(f"{arch} spec is missing {', '.join(missing)}")
    return cls(**{f.name: meta_fields[f.name] for f in fields(cls) if f.name in meta_fields})
