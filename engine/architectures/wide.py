"""The standard wide ReLU MLP in the NTK parameterization (Jacot et al. 2018; docs/networks.md#the-wide-mlp): spec,
its standard normal initialization and its infinite-width NTK.

Unlike the deep narrow networks, `depth` counts the hidden ReLU layers L, as `deepntk.analytic.wide_ntk_kernel`
does, so the network has L + 1 weight layers (`weight_layers`), and the kernel deepntk reports is the plain
empirical NTK (`ntk_scale` = 1), which tends to Θ^L as the width grows.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .common import Architecture, DenseLayers, Study, check_int, check_positive_real, shown, spec_field
from ...base.errors import SpecError


def check_nonnegative_real(name: str, value) -> float:
    """`value` as a finite Python float >= 0 (NumPy reals accepted; bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0:
        raise SpecError(f"{name} must be a finite number >= 0, got {shown(value)}")
    return float(value)


@dataclass(frozen=True)
class WideMLP(DenseLayers, Architecture):
    """The wide ReLU MLP z^1 = √(σ_w²/d_in)·W^1 x + σ_b·b^1, z^l = √(σ_w²/n)·W^l relu(z^{l-1}) + σ_b·b^l, every
    W and b entry standard normal (the NTK parameterization; docs/networks.md#the-wide-mlp).

    Args:
        d_in: input dimension.
        d_out: output dimension k.
        width: hidden width n.
        depth: hidden ReLU layers L >= 1 (L + 1 weight layers), as `deepntk.analytic.wide_ntk_kernel` counts.
        sigma_w2: weight variance σ_w² > 0.
        sigma_b2: bias variance σ_b² >= 0.
    """

    d_in: int = spec_field("MLP input dimension.", preset=2)
    d_out: int = spec_field("Outputs k (the MLP's d_out).", preset=1, option="outputs", aliases=("--d-out",))
    width: int = spec_field("Wide MLP hidden width n.", preset=64)
    depth: int = 1
    sigma_w2: float = spec_field("Wide MLP weight variance σ_w².", 2.0)
    sigma_b2: float = spec_field("Wide MLP bias variance σ_b².", 0.0)

    arch = "wide-mlp"
    noun = "wide MLP"
    layer_kind = "wide-dense"
    weight_prefix = "W"
    outputs_field = "d_out"
    dataset_layout = "flat"
    # The NTK theory of the wide network holds for any real inputs.
    wants_positive_inputs = False
    # Its inputs are shaped like the deep narrow MLP's, which keeps that shape: it is chosen with --arch only.
    inferred_from_inputs = False
    limit = "width"
    # What `deepntk simulate` measures on it: the width study (engine/experiments/width_study), over widths at one
    # depth, on these random inputs; no depths, its limit being in width. The five default widths on 8 inputs take
    # about 1.5 s on two cores.
    study = Study(depths=(), points=8)
    # The plain empirical NTK (ntk_scale = 1) and its infinite-width limit at depth L.
    kernel_label = "Θ"
    limit_label = "Θ^L"

    def __post_init__(self):
        for name in ("d_in", "d_out", "width", "depth"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))
        object.__setattr__(self, "sigma_w2", check_positive_real("sigma_w2", self.sigma_w2))
        object.__setattr__(self, "sigma_b2", check_nonnegative_real("sigma_b2", self.sigma_b2))

    def check_storable(self) -> None:
        """Every layer is stored at the hidden width (deepntk.engine.packed): the input and output layers must fit
        it. The infinite-width kernels do not depend on the width, so a spec that only names them is not checked."""
        for name in ("d_in", "d_out"):
            if getattr(self, name) > self.width:
                raise SpecError(f"the wide MLP's width {self.width} is below its {name} {getattr(self, name)}: every "
                                f"layer is stored at the hidden width, so give a width >= {getattr(self, name)}")

    @property
    def weight_layers(self) -> int:
        return self.depth + 1

    @property
    def ntk_normalization(self) -> float:
        """1: the reported kernel is the empirical NTK itself, whose infinite-width limit is Θ^L."""
        return 1.0

    @property
    def carrier_scale(self) -> None:
        return None

    @property
    def layer_constants(self) -> tuple:
        """(√(σ_w²/n), σ_b): the factors of every layer's weights and bias (the first layer's √(n/d_in) is folded
        into the inputs by `prepare_inputs`)."""
        return (math.sqrt(self.sigma_w2 / self.width), math.sqrt(self.sigma_b2))

    def prepare_inputs(self, X: np.ndarray) -> np.ndarray:
        """X·√(n/d_in): the layer ops scale every layer's input by √(σ_w²/n); the first layer's fan-in is d_in."""
        return math.sqrt(self.width / self.d_in) * np.asarray(X)

    def paper_weights(self, rng: np.random.Generator):
        """Every weight and bias entry standard normal (the NTK parameterization puts the scales in the layers)."""
        layers = range(1, self.weight_layers + 1)
        weights = [rng.standard_normal(self.weight_shape(layer)) for layer in layers]
        return weights, [rng.standard_normal(self.bias_shape(layer)) for layer in layers]

    def limit_kernel(self, X1, X2=None, *, backend=None) -> np.ndarray:
        """Θ^L, the infinite-width NTK, on prepared inputs: (N1, N2), the factor of I_k."""
        from ...analytic import wide_ntk_kernel

        return self._closed_form(wide_ntk_kernel, X1, X2)

    def nngp_kernel(self, X1, X2=None, *, backend=None) -> np.ndarray:
        """Σ^L, the infinite-width NNGP (the outputs' covariance at initialization), on prepared inputs: (N1, N2),
        the factor of I_k."""
        from ...analytic import wide_nngp_kernel

        return self._closed_form(wide_nngp_kernel, X1, X2)

    def _closed_form(self, kernel, X1, X2):
        """`kernel` (wide_ntk_kernel or wide_nngp_kernel) at this spec's depth and scales. The closed forms read
        raw inputs, so the √(n/d_in) of `prepare_inputs` is undone first."""
        unfold = math.sqrt(self.d_in / self.width)
        X2 = None if X2 is None else unfold * np.asarray(X2)
        return kernel(unfold * np.asarray(X1), X2, depth=self.depth, sigma_w2=self.sigma_w2, sigma_b2=self.sigma_b2)

    def expected_kernel(self, X1, X2=None, *, backend=None) -> np.ndarray:
        """E of the empirical NTK at finite width: Θ^L too, which the closed forms give (the finite-width
        correction is O(1/n) and not in deepntk)."""
        return self.limit_kernel(X1, X2, backend=backend)

