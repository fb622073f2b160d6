"""The deep narrow ReLU CNN (paper §4.1; docs/networks.md#the-cnn): spec, the paper's initialization, the
fixed input pool and its closed-form kernels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .common import Architecture, Study, check_int, spec_field
from ...base.errors import InputError, SpecError

FILTER_VARIANCES = ("paper", "code")


def average_pool(X: np.ndarray, pool: int) -> np.ndarray:
    """Non-overlapping pool×pool average over the last two axes (…, d, d) → (…, d/pool, d/pool): the paper's
    fixed 4×4 MNIST pool. Rows and columns beyond the last whole pool are dropped; pool 1 returns X itself."""
    if pool == 1:
        return X
    side = X.shape[-1] // pool
    X = X[..., : side * pool, : side * pool]
    return X.reshape(X.shape[:-2] + (side, pool, side, pool)).mean(axis=(-3, -1))


@dataclass(frozen=True)
class CNN(Architecture):
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

    in_channels: int = spec_field("CNN input channels c.", preset=1)
    size: int = spec_field("CNN image side d (before --pool).", preset=5)
    outputs: int = spec_field("Outputs k.", preset=1)
    depth: int
    C_L: float
    rho: float = spec_field("ρ, std scale of the random unit's weights.", 1.0)
    beta: float = spec_field("β, std scale of the random unit's bias.", 1.0)
    filter_size: int = spec_field("CNN odd filter side f.", 3)
    pool: int = spec_field("Fixed input average pool (4 for the paper's MNIST: 28×28 → 7×7).", 1)
    filter_variance: str = spec_field("CNN random-filter tap variance: ρ²/c (paper) or ρ²/(c·f²) (authors' code).",
                                      "paper", choices=FILTER_VARIANCES)

    arch = "cnn"
    layer_kind = "conv"
    weight_prefix = "w"
    outputs_field = "outputs"
    dataset_layout = "image"
    # Deep CNNs cost d² more per layer than the MLP: fewer depths and inputs by default.
    study = Study(depths=(100, 300, 1000, 3000), points=6, inputs_name="random images")

    def __post_init__(self):
        for name in ("in_channels", "size", "outputs", "filter_size", "pool"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))
        self._normalize_common()
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
    def filter_side(self) -> int:
        return self.filter_size

    @property
    def packed_tail(self) -> tuple[int, ...]:
        return (self.filter_size, self.filter_size)

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

    def fan_in(self, layer: int) -> int:
        _, n_in, f, _ = self.weight_shape(layer)
        return n_in * f * f

    @staticmethod
    def sizes_from_inputs(shape: tuple[int, ...], name: str = "X") -> dict:
        """The spec fields fixed by an input array's shape (N, c, d, d)."""
        if len(shape) != 4 or shape[2] != shape[3]:
            raise InputError(f"{name} must have shape (N, c, d, d) with square images for the CNN, got {shape}")
        return {"in_channels": shape[1], "size": shape[2]}

    @staticmethod
    def sizes_from_images(side: int, outputs: int) -> dict:
        """Spec fields for a dataset of side×side single-channel images."""
        return {"in_channels": 1, "size": side, "outputs": outputs}

    def prepare_inputs(self, X: np.ndarray) -> np.ndarray:
        """Inputs as the first conv layer sees them: after the fixed input average pool."""
        return average_pool(X, self.pool)

    def paper_weights(self, rng: np.random.Generator):
        """docs/networks.md#the-cnn: identity filters ι on the carriers, a random filter from the input
        carriers. Returns (weights, biases) as float64 lists."""
        c, k, n, L, f, C = self.in_channels, self.outputs, self.width, self.depth, self.filter_size, self.C_L
        random_channel = c
        centre = f // 2
        u_std = self.rho * np.sqrt(self.tap_variance)
        v_std = C * self.beta
        weights, biases = [], []

        first_w = np.zeros((n, c, f, f))
        first_w[np.arange(c), np.arange(c), centre, centre] = C
        first_w[random_channel] = rng.normal(0.0, u_std, size=(c, f, f))
        first_b = np.zeros(n)
        first_b[random_channel] = rng.normal(0.0, v_std)
        first_b[c + 1:] = C
        weights.append(first_w)
        biases.append(first_b)

        carriers = np.r_[np.arange(c), np.arange(c + 1, n)]
        for _ in range(2, L):
            w = np.zeros((n, n, f, f))
            w[carriers, carriers, centre, centre] = 1.0
            w[random_channel, :c] = rng.normal(0.0, u_std, size=(c, f, f))
            b = np.zeros(n)
            b[random_channel] = rng.normal(0.0, v_std)
            weights.append(w)
            biases.append(b)

        last_w = np.zeros((k, n, f, f))
        last_w[np.arange(k), c + 1 + np.arange(k), centre, centre] = 1.0
        weights.append(last_w)
        biases.append(np.full(k, -C))
        return weights, biases

    def _kernel_options(self, backend) -> dict:
        from ...backends.registry import get_backend

        return dict(outputs=self.outputs, rho=self.rho, beta=self.beta, filter_size=self.filter_size,
                    filter_variance=self.filter_variance, pair_sum=get_backend(backend).cnn_pair_sum)

    def limit_kernel(self, X1, X2=None, *, backend=None) -> np.ndarray:
        """Θ̃^∞ (Theorem 4, corrected) on prepared (pooled) inputs: (N1, N2), the factor of I_k. Its pixel-pair sum
        is `backend`'s `cnn_pair_sum` (a name, an instance, or None for the best installed; docs/backends.md)."""
        from ...analytic import cnn_limit_kernel

        return cnn_limit_kernel(X1, X2, **self._kernel_options(backend))

    def expected_kernel(self, X1, X2=None, *, backend=None) -> np.ndarray:
        """E Θ̃ at this spec's finite (L, C_L) on prepared (pooled) inputs: (N1, N2), the factor of I_k; its
        pixel-pair sums are `backend`'s, as for `limit_kernel`."""
        from ...analytic import cnn_expected_kernel

        return cnn_expected_kernel(X1, X2, depth=self.depth, C_L=self.C_L, **self._kernel_options(backend))
