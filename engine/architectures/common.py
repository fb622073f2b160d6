"""What every architecture shares: argument checks and the methods that follow from `weight_shape`.

An architecture is a frozen dataclass (its spec) that also knows everything specific to it: the paper's
initialization (`paper_weights`), how its inputs are prepared (`prepare_inputs`), which layer kind the
backends run (`layer_kind`, a key of `deepntk.backends.layers.LAYER_OPS`), its params-file keys
(`weight_prefix`) and its closed-form kernels (`limit_kernel`, `expected_kernel`, delegating to
`deepntk.analytic`, with the caller's `backend=` for any costly piece a backend computes). The rest of deepntk asks
the spec instead of branching on its name: the commands' options are its fields (`spec_field`, `option_fields`)
and `deepntk simulate`'s defaults its `study` (`Study`). Adding an architecture:
docs/networks.md#adding-an-architecture.
"""

from __future__ import annotations

import math
import numbers
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np

from ...base.errors import InputError, SpecError


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


# Fields every architecture has, which each command sets its own way (--depth, --depths, --C-L as a rule in L):
# never generated as architecture options.
COMMAND_FIELDS = ("depth", "C_L")
OPTION_TYPES = (int, float, str)


def spec_field(help: str, default=MISSING, *, preset=MISSING, option: str | None = None, aliases=(),
               choices=None):
    """A field of an architecture's spec dataclass, with what the commands need to offer it as an option.

    Args:
        help: the option's help text.
        default: the field's default; none makes the field required in the Python API.
        preset: for a required field, the value the commands and `deepntk simulate` use when the user gives none.
        option: the option's name where it is not the field's (the MLP's d_out is --outputs, like the CNN's
            outputs).
        aliases: further flags of the option ("--d-out").
        choices: the values a string field accepts (a choice option).
    """
    if default is MISSING and preset is MISSING:
        raise TypeError(f"a required spec field needs a preset, the value the commands use for it ({help!r})")
    return field(default=default, metadata={"help": help, "preset": default if preset is MISSING else preset,
                                            "option": option, "aliases": tuple(aliases),
                                            "choices": None if choices is None else tuple(choices)})


@dataclass(frozen=True)
class OptionField:
    """A spec field as the commands offer it: option `name` (its flag is --name with _ as -) sets `field`."""

    field: str
    name: str
    type: type
    preset: object
    help: str
    aliases: tuple = ()
    choices: tuple | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        return ("--" + self.name.replace("_", "-"),) + self.aliases


def option_fields(cls) -> list[OptionField]:
    """The fields of the spec class `cls` that the commands offer as options, in declaration order: every field
    but COMMAND_FIELDS, each declared with `spec_field`."""
    hints = typing.get_type_hints(cls)
    found = []
    for declared in fields(cls):
        if declared.name in COMMAND_FIELDS:
            continue
        meta = declared.metadata
        if "help" not in meta:
            raise TypeError(f"{cls.__name__}.{declared.name} is not declared with spec_field (its option needs "
                            f"a help text and a preset)")
        kind = hints[declared.name]
        if kind not in OPTION_TYPES:
            raise TypeError(f"{cls.__name__}.{declared.name} has type {kind}; an option field is one of "
                            f"{', '.join(t.__name__ for t in OPTION_TYPES)}")
        found.append(OptionField(declared.name, meta["option"] or declared.name, kind, meta["preset"],
                                 meta["help"], meta["aliases"], meta["choices"]))
    return found


def preset_fields(cls) -> dict:
    """Every option field of `cls` at its preset (its default, or the commands' value for a required field)."""
    return {option.field: option.preset for option in option_fields(cls)}


@dataclass(frozen=True)
class Study:
    """What `deepntk simulate` measures on an architecture unless told otherwise: the scaled NTK of the networks
    drawn at each of `depths`, on `points` inputs, against its limit and its finite-depth expectation
    (docs/networks.md#adding-an-architecture).

    This base study is a Gram of seeded random inputs in [0.05, 1) of the architecture's input shape; an
    architecture with another study (the MLP's Fig. 3 arc) gives its spec class a subclass.

    Attributes:
        depths: the depths L it runs by default.
        points: the number of inputs it takes by default.
        inputs_name: what the inputs are, in words ("random images").
        fixed: spec fields the study fixes, as {field: value}; `why` says why, for the error on another value.
    """

    depths: tuple = (100, 300, 1000, 3000)
    points: int = 6
    inputs_name: str = "random inputs"
    fixed: dict = field(default_factory=dict)
    why: str = ""

    def inputs(self, spec, points: int, seed: int):
        """(X1, X2, axis): the kernel's inputs, X2 None for a Gram of X1, and the x-axis of its plots."""
        rng = np.random.default_rng(seed)
        return rng.uniform(0.05, 1.0, size=(points,) + tuple(spec.input_shape)), None, np.arange(points)

    def kernel_entries(self, points: int) -> int:
        """Input pairs of the kernel of `points` inputs (for the memory check before anything is drawn)."""
        return points * points

    def describe(self, spec, points: int) -> str:
        return f"Gram of {points} {self.inputs_name}"


class Architecture:
    """Mixin of the spec dataclasses: the generic parts, written against `weight_shape(layer)`.

    A subclass declares its fields with `spec_field` (depth and C_L too: they are COMMAND_FIELDS), sets the
    class attributes `arch` (its name in params files and on the command line), `layer_kind`, `weight_prefix`,
    `outputs_field` and `dataset_layout` (and `study` where the base `Study` does not fit it), and implements
    `weight_shape`, `fan_in`, `paper_weights`, `prepare_inputs`, `limit_kernel`, `expected_kernel`,
    `sizes_from_inputs` and `sizes_from_images`.
    """

    arch: str
    layer_kind: str
    weight_prefix: str
    outputs_field: str
    dataset_layout: str
    study: Study = Study()
    # Whether the theory behind this architecture assumes inputs x > 0 (check_inputs warns otherwise).
    wants_positive_inputs = True
    # Whether commands may pick this architecture from the inputs' shape alone (false for one whose inputs
    # look like another's).
    inferred_from_inputs = True
    # The limit its `limit_kernel` takes: "depth" (the deep narrow networks, L → ∞ at fixed width) or "width"
    # (n → ∞ at fixed depth); `deepntk simulate` studies the kernel's convergence along it.
    limit = "depth"
    # What the kernel deepntk reports (`ntk_scale` × the NTK) and its limit are called in the commands' output.
    kernel_label = "Θ̃"
    limit_label = "Θ̃^∞"

    @property
    def weight_layers(self) -> int:
        """Number of weight layers the engine stores and loops over (the paper's L for the deep narrow networks)."""
        return self.depth

    @property
    def ntk_normalization(self) -> float:
        """L·C_L² for the deep narrow networks: the NTK over it is the kernel deepntk reports (their scaled NTK Θ̃,
        docs/ntk.md), and a scaled step η is the raw step η over it."""
        return self.depth * float(self.C_L) ** 2

    @property
    def ntk_scale(self) -> float:
        """The factor that turns the NTK into the kernel deepntk reports: 1/`ntk_normalization`."""
        return 1.0 / self.ntk_normalization

    @property
    def carrier_scale(self) -> float | None:
        """The output's carrier scale C_L (float32 resolves the output only to about C_L·ε), None where the output
        carries no such offset."""
        return self.C_L

    @property
    def layer_constants(self) -> tuple:
        """Constants the layer ops read from a packed network (`PackedNet.layer_constants`); none by default."""
        return ()

    def _normalize_common(self) -> None:
        """Check depth, C_L, rho and beta, and store them as plain Python numbers (frozen dataclass)."""
        depth = self.depth
        if isinstance(depth, numbers.Integral) and not isinstance(depth, (bool, np.bool_)) and depth < 2:
            raise SpecError(f"depth must be >= 2 (weight layers, paper §3.1), got {depth}")
        object.__setattr__(self, "depth", check_int("depth", depth, minimum=2))
        for name in ("C_L", "rho", "beta"):
            object.__setattr__(self, name, check_positive_real(name, getattr(self, name)))

    def check_storable(self) -> None:
        """Raise SpecError where deepntk cannot hold this network's parameters in its packed layout
        (deepntk.engine.packed); checked wherever parameters are made or read, not for a spec that only names a
        closed-form kernel. Every layer fits by default."""

    def bias_shape(self, layer: int) -> tuple[int, ...]:
        return (self.weight_shape(layer)[0],)

    def weight_key(self, layer: int) -> str:
        """Name of layer `layer`'s (1-based) weight array in a params file."""
        return f"{self.weight_prefix}{layer}"

    def parameter_count(self) -> int:
        """Number of trainable parameters (all weights and biases), without a loop over the depth."""
        def layer(l):
            return math.prod(self.weight_shape(l)) + self.bias_shape(l)[0]

        layers = self.weight_layers
        return layer(1) + layer(layers) + (layers - 2) * layer(2)

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


class DenseLayers:
    """The shapes of a network of dense layers d_in → width → … → width → d_out, in PyTorch's `nn.Linear` layout:
    what the MLP and the wide MLP share (a mixin before `Architecture`; it reads d_in, d_out, width and
    weight_layers). `noun` names the network in errors."""

    noun = "MLP"

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
        """Shape (out, in) of W^layer, 1-based; the last weight layer is the read-out."""
        fan_in = self.d_in if layer == 1 else self.width
        fan_out = self.d_out if layer == self.weight_layers else self.width
        return (fan_out, fan_in)

    def fan_in(self, layer: int) -> int:
        return self.weight_shape(layer)[1]

    @classmethod
    def sizes_from_inputs(cls, shape: tuple[int, ...], name: str = "X") -> dict:
        """The spec fields fixed by an input array's shape (N, d_in)."""
        if len(shape) != 2:
            raise InputError(f"{name} must have shape (N, d_in) for the {cls.noun}, got {shape}")
        return {"d_in": shape[1]}

    @staticmethod
    def sizes_from_images(side: int, outputs: int) -> dict:
        """Spec fields for a dataset of side×side single-channel images, flattened."""
        return {"d_in": side * side, "d_out": outputs}
