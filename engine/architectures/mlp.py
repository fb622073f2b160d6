"""The deep narrow ReLU MLP (paper §3.1; docs/networks.md#the-mlp): spec, the paper's initialization and
its closed-form kernels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .common import Architecture, DenseLayers, Study, check_int, spec_field

# Fig. 3's network reads points (cos γ, sin γ) of the unit arc.
FIG3_INPUT_DIMENSION = 2


@dataclass(frozen=True)
class ArcStudy(Study):
    """Fig. 3 at initialization (docs/experiments.md#fig-3): Θ̃(x₀, x(γ)) of x₀ = (1/√2, 1/√2) against the arc
    points, γ the x-axis; the network reads 2 inputs."""

    depths: tuple = (100, 300, 1000, 3000, 10000)
    points: int = 200
    inputs_name: str = "arc points of Fig. 3"
    fixed: dict = field(default_factory=lambda: {"d_in": FIG3_INPUT_DIMENSION})
    why: str = "the Fig. 3 network on the unit arc"

    def inputs(self, spec, points: int, seed: int):
        from ...analytic import fig3_inputs

        return fig3_inputs(points)

    def kernel_entries(self, points: int) -> int:
        return points  # one row: x₀ against the arc

    def describe(self, spec, points: int) -> str:
        return "Θ̃(x₀, x(γ)) on the Fig. 3 arc"


@dataclass(frozen=True)
class MLP(DenseLayers, Architecture):
    """The deep narrow ReLU MLP of width d_in + 1 + d_out (paper §3.1).

    Args:
        d_in: input dimension.
        d_out: output dimension k.
        depth: number of weight layers L >= 2.
        C_L: the carrier scale C_L > 0 of the paper's initialization.
        rho: standard deviation scale of the random unit's weights (entries ~ N(0, rho²/d_in)).
        beta: standard deviation scale of the random unit's bias (entries ~ N(0, C_L² beta²)).
    """

    d_in: int = spec_field("MLP input dimension.", preset=2)
    d_out: int = spec_field("Outputs k (the MLP's d_out).", preset=1, option="outputs", aliases=("--d-out",))
    depth: int
    C_L: float
    rho: float = spec_field("ρ, std scale of the random unit's weights.", 1.0)
    beta: float = spec_field("β, std scale of the random unit's bias.", 1.0)

    arch = "mlp"
    layer_kind = "dense"
    weight_prefix = "W"
    outputs_field = "d_out"
    dataset_layout = "flat"
    study = ArcStudy()

    def __post_init__(self):
        object.__setattr__(self, "d_in", check_int("d_in", self.d_in))
        object.__setattr__(self, "d_out", check_int("d_out", self.d_out))
        self._normalize_common()

    @property
    def width(self) -> int:
        return self.d_in + 1 + self.d_out

    def prepare_inputs(self, X: np.ndarray) -> np.ndarray:
        """Inputs as the first layer sees them: unchanged for the MLP."""
        return X

    def paper_weights(self, rng: np.random.Generator):
        """docs/networks.md#the-mlp: carriers pass x and C_L·1 through, one random unit per layer reads the
        input carriers. Returns (weights, biases) as float64 lists."""
        d_in, k, n, L, C = self.d_in, self.d_out, self.width, self.depth, self.C_L
        random_unit = d_in
        u_std = self.rho / np.sqrt(d_in)
        v_std = C * self.beta
        weights, biases = [], []

        first_w = np.zeros((n, d_in))
        first_w[:d_in] = C * np.eye(d_in)
        first_w[random_unit] = rng.normal(0.0, u_std, size=d_in)
        first_b = np.zeros(n)
        first_b[random_unit] = rng.normal(0.0, v_std)
        first_b[d_in + 1:] = C
        weights.append(first_w)
        biases.append(first_b)

        for _ in range(2, L):
            w = np.zeros((n, n))
            w[:d_in, :d_in] = np.eye(d_in)
            w[random_unit, :d_in] = rng.normal(0.0, u_std, size=d_in)
            w[d_in + 1:, d_in + 1:] = np.eye(k)
            b = np.zeros(n)
            b[random_unit] = rng.normal(0.0, v_std)
            weights.append(w)
            biases.append(b)

        last_w = np.zeros((k, n))
        last_w[:, d_in + 1:] = np.eye(k)
        weights.append(last_w)
        biases.append(np.full(k, -C))
        return weights, biases

    def limit_kernel(self, X1, X2=None, *, backend=None) -> np.ndarray:
        """Θ̃^∞ (Theorem 1, corrected) on prepared inputs: (N1, N2), the factor of I_k. A closed form of N1·N2
        arc-cosines in NumPy: no backend method, so `backend` (taken by every architecture) goes unused."""
        from ...analytic import mlp_limit_kernel

        return mlp_limit_kernel(X1, X2, d_out=self.d_out, rho=self.rho, beta=self.beta)

    def expected_kernel(self, X1, X2=None, *, backend=None) -> np.ndarray:
        """E Θ̃ at this spec's finite (L, C_L) on prepared inputs: (N1, N2), the factor of I_k (a closed form, like
        `limit_kernel`)."""
        from ...analytic import mlp_expected_kernel

        return mlp_expected_kernel(X1, X2, depth=self.depth, C_L=self.C_L, d_out=self.d_out, rho=self.rho,
                                   beta=self.beta)
