"""Architecture options shared by every command that takes them (init, limit, simulate, train, predict), and
the spec they build through the architecture registry."""

from __future__ import annotations

import functools

import click

from deepntk.cli.common import user_errors
from deepntk.engine.architectures import (ARCHITECTURES, architecture, architecture_for_inputs, spec_field_names,
                                          spec_for_data)

ARCH_DEFAULT = "mlp"

_ARCH_OPTIONS = [
    click.option("--d-in", type=int, default=2, show_default=True, help="MLP input dimension."),
    click.option("--outputs", "--d-out", "outputs", type=int, default=1, show_default=True,
                 help="Outputs k (the MLP's d_out)."),
    click.option("--in-channels", type=int, default=1, show_default=True, help="CNN input channels c."),
    click.option("--size", type=int, default=5, show_default=True, help="CNN image side d (before --pool)."),
    click.option("--filter-size", type=int, default=3, show_default=True, help="CNN odd filter side f."),
    click.option("--pool", type=int, default=1, show_default=True,
                 help="Fixed input average pool (4 for the paper's MNIST: 28×28 → 7×7)."),
    click.option("--filter-variance", type=click.Choice(["paper", "code"]), default="paper", show_default=True,
                 help="CNN random-filter tap variance: ρ²/c (paper) or ρ²/(c·f²) (authors' code)."),
    click.option("--rho", type=float, default=1.0, show_default=True, help="ρ, std scale of the random unit's weights."),
    click.option("--beta", type=float, default=1.0, show_default=True, help="β, std scale of the random unit's bias."),
]

ARCH_KEYS = ("arch", "d_in", "outputs", "in_channels", "size", "filter_size", "pool", "filter_variance", "rho",
             "beta")


def spec_options(cls, options: dict) -> dict:
    """The parsed options as `cls`'s field names (`--outputs` is the MLP's d_out)."""
    return {**options, cls.outputs_field: options["outputs"]}


def given_fields(cls, options: dict) -> set:
    """The spec fields the user set on the command line (not defaults)."""
    return {cls.outputs_field if key == "outputs" else key for key in options.get("given", ())}


def spec_from_data(options: dict, input_shape: tuple, name: str, outputs: int | None = None, depth: int = 2,
                   C_L: float = 1.0):
    """The spec whose input sizes (and outputs, if given) come from the data, the architecture too unless
    --arch is given, and every other field from the options. depth and C_L default to values that do not
    enter the closed forms."""
    cls = architecture(options["arch"]) if options["arch"] else architecture_for_inputs(input_shape, name)
    return spec_for_data(cls, spec_options(cls, options), input_shape, outputs=outputs,
                         given=given_fields(cls, options), name=name, depth=depth, C_L=C_L)


def build_spec(options: dict, depth: int, C_L: float):
    """The spec of `options["arch"]` from the parsed options (one-line error on invalid values)."""
    with user_errors():
        cls = architecture(options["arch"])
        fields = {**spec_options(cls, options), "depth": depth, "C_L": C_L}
        return cls(**{name: fields[name] for name in spec_field_names(cls)})


def with_arch(func=None, *, arch_default: str | None = ARCH_DEFAULT):
    """Collect the architecture options into one `arch` dict argument; `arch["given"]` names those set on the
    command line. With arch_default None, `--arch` is inferred from the data when not given."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(**kwargs):
            ctx = click.get_current_context()
            arch = {key: kwargs.pop(key) for key in ARCH_KEYS}
            arch["given"] = frozenset(key for key in ARCH_KEYS
                                      if ctx.get_parameter_source(key) != click.core.ParameterSource.DEFAULT)
            return func(arch=arch, **kwargs)

        for option in reversed(_ARCH_OPTIONS):
            wrapper = option(wrapper)
        help_default = f" [{arch_default}]" if arch_default else " [from the data]"
        return click.option("--arch", type=click.Choice(list(ARCHITECTURES)), default=arch_default,
                            help=f"Deep narrow MLP (paper §3) or CNN (paper §4){help_default}.")(wrapper)

    return decorate(func) if func is not None else decorate
