"""A third architecture defined outside deepntk, through the places docs/networks.md#adding-an-architecture names
and no others: a spec class registered in `ARCHITECTURES` and a layer-ops class registered in `LAYER_OPS`.

The toy is a deep narrow MLP whose layers have their own kind, "scaled-dense": z = γ(W a + b) with a fixed gain
γ = GAIN (the NTK parametrization's layer, a carrier-compatible ReLU layer), and a new field, `input_scale`, a
fixed factor on the inputs (as the CNN's `pool` is a fixed input pool). Its paper initialization is the MLP's
divided by γ, so that a toy network computes what the MLP of the same draw computes on input_scale·x, while
every parameter's gradient is γ times the MLP's: Θ_toy(x, x') = γ²·Θ_MLP(s·x, s·x') for every network, and so
for its limit and expectation too.

`register()` adds both to the registries (undo with `unregister()`); the commands' options are generated when
deepntk.cli builds them, so a process that runs the CLI on the toy registers it first (`run_cli`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from deepntk.backends.layers import LAYER_OPS, DenseOps
from deepntk.engine.architectures import ARCHITECTURES, MLP, Architecture, Study, spec_field
from deepntk.engine.architectures.common import DenseLayers, check_int, check_positive_real

GAIN = 2.0
KIND = "scaled-dense"


class ScaledDenseOps(DenseOps):
    """z = γ(W a + b): every derivative of the dense layer's times γ, its NTK term times γ²."""

    def apply(self, W, b, a):
        return GAIN * (a @ W.T + b)

    def backprop(self, W, G):
        return GAIN * (G @ W)

    def summed_gradients(self, delta, a):
        dW, db = super().summed_gradients(delta, a)
        return GAIN * dW, GAIN * db

    def ntk_term(self, a1, G1, a2, G2):
        term = super().ntk_term(a1, G1, a2, G2)
        term *= GAIN**2
        return term


@dataclass(frozen=True)
class Toy(DenseLayers, Architecture):
    """The toy deep narrow MLP of width d_in + 1 + d_out with scaled-dense layers (module docstring)."""

    d_in: int = spec_field("MLP input dimension.", preset=2)
    d_out: int = spec_field("Outputs k (the MLP's d_out).", preset=1, option="outputs", aliases=("--d-out",))
    depth: int
    C_L: float
    rho: float = spec_field("ρ, std scale of the random unit's weights.", 1.0)
    beta: float = spec_field("β, std scale of the random unit's bias.", 1.0)
    input_scale: float = spec_field("Toy: fixed factor on the inputs before the first layer.", 1.0)

    arch = "toy"
    noun = "toy"
    layer_kind = KIND
    weight_prefix = "W"
    outputs_field = "d_out"
    dataset_layout = "flat"
    study = Study(depths=(20, 40, 80), points=4, inputs_name="random inputs")

    def __post_init__(self):
        object.__setattr__(self, "d_in", check_int("d_in", self.d_in))
        object.__setattr__(self, "d_out", check_int("d_out", self.d_out))
        object.__setattr__(self, "input_scale", check_positive_real("input_scale", self.input_scale))
        self._normalize_common()

    @property
    def mlp(self) -> MLP:
        """The MLP of the same sizes and scales (whose draws the toy's are, divided by γ)."""
        return MLP(self.d_in, self.d_out, self.depth, self.C_L, self.rho, self.beta)

    @property
    def width(self) -> int:
        return self.d_in + 1 + self.d_out

    def prepare_inputs(self, X):
        return self.input_scale * np.asarray(X)

    def paper_weights(self, rng):
        weights, biases = self.mlp.paper_weights(rng)
        return [w / GAIN for w in weights], [b / GAIN for b in biases]

    def limit_kernel(self, X1, X2=None, *, backend=None):
        return GAIN**2 * self.mlp.limit_kernel(X1, X2)

    def expected_kernel(self, X1, X2=None, *, backend=None):
        return GAIN**2 * self.mlp.expected_kernel(X1, X2)


def register() -> None:
    ARCHITECTURES[Toy.arch] = Toy
    LAYER_OPS[KIND] = ScaledDenseOps


def unregister() -> None:
    ARCHITECTURES.pop(Toy.arch, None)
    LAYER_OPS.pop(KIND, None)


def run_cli(argv: list[str], cwd) -> subprocess.CompletedProcess:
    """`deepntk *argv` in a fresh process that registers the toy before the CLI builds its commands."""
    program = ("import sys, toy_architecture; toy_architecture.register(); from deepntk.cli.main import main; "
               "sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.abspath(__file__)),
                                                         os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", program, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
