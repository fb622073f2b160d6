"""Architecture options shared by every command that takes them (init, limit, simulate, train, predict, gram), and
the spec they build through the architecture registry.

The options are generated from the registered spec classes' fields (`option_fields`: name, type, preset, help
and choices from each field's `spec_field`), one option per name over all architectures (the MLP's d_out and
the CNN's outputs are both --outputs), so that a new architecture brings its options with it
(docs/networks.md#adding-an-architecture). They are built when a command module is imported: an architecture
registered later has no options of its own on that command.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import click

from .common import CommandError, user_errors
from ..engine.architectures import (ARCHITECTURES, architecture, architecture_for_inputs, option_fields,
                                    spec_field_names, spec_for_data)

ARCH_DEFAULT = "mlp"
# What --depth counts: the deep narrow networks' L is their weight layers, the wide MLP's its hidden layers (as
# its closed form Θ^L counts them; docs/networks.md#the-wide-mlp).
DEPTH_HELP = "Number of weight layers L (>= 2); for wide-mlp, hidden layers L (>= 1)."


def merged_options() -> dict:
    """{option name: OptionField} over every registered architecture, in registry then declaration order. An
    option that several architectures declare must agree in type, preset and choices (its help and flags are
    the first declaration's, with every architecture's aliases).

    Raises:
        TypeError: two architectures declare one option differently (a programming error of the second).
    """
    merged = {}
    for cls in ARCHITECTURES.values():
        for option in option_fields(cls):
            first = merged.get(option.name)
            if first is None:
                merged[option.name] = option
                continue
            if (first.type, first.preset, first.choices) != (option.type, option.preset, option.choices):
                raise TypeError(f"{cls.arch}'s {option.flags[0]} ({option.type.__name__}, preset {option.preset!r}) "
                                f"differs from another architecture's ({first.type.__name__}, preset "
                                f"{first.preset!r})")
            aliases = first.aliases + tuple(a for a in option.aliases if a not in first.aliases)
            merged[option.name] = replace(first, aliases=aliases)
    return merged


def _click_option(option):
    kind = click.Choice(list(option.choices)) if option.choices else option.type
    return click.option(*option.flags, option.name, type=kind, default=option.preset, show_default=True,
                        help=option.help)


def _names(cls) -> dict:
    """{option name: field name} of `cls`'s option fields."""
    return {option.name: option.field for option in option_fields(cls)}


def spec_options(cls, options: dict) -> dict:
    """The parsed options that are `cls`'s fields, under the field names (`--outputs` is the MLP's d_out)."""
    return {field: options[name] for name, field in _names(cls).items()}


def given_fields(cls, options: dict) -> set:
    """The spec fields the user set on the command line (not defaults)."""
    names = _names(cls)
    return {names[name] for name in options.get("given", ()) if name in names}


def spec_from_data(options: dict, input_shape: tuple, name: str, outputs: int | None = None, depth: int = 2,
                   C_L: float = 1.0):
    """The spec whose input sizes (and outputs, if given) come from the data, the architecture too unless
    --arch is given, and every other field from the options. depth and C_L default to values that do not
    enter the closed forms."""
    cls = architecture(options["arch"]) if options["arch"] else architecture_for_inputs(input_shape, name)
    return spec_for_data(cls, spec_options(cls, options), input_shape, outputs=outputs,
                         given=given_fields(cls, options), name=name, **command_fields(cls, depth, C_L))


# The closed-form kernels that are the wide MLP's alone (`deepntk.engine.gram.WIDE_KERNELS`; not imported from
# there, which would load the engine's Gram module with every command).
WIDE_KERNELS = ("wide-ntk", "wide-nngp")


def closed_form_options(kind: str, options: dict, depth: int | None) -> dict:
    """The architecture options of closed-form kernel `kind` (gram's and predict's --kernel): the wide kernels set
    --arch wide-mlp, and the wide MLP's kernels (its limit is Θ^L too) need --depth, its hidden layers L, which
    they depend on at every depth (one-line usage errors otherwise).

    Raises:
        CommandError: a wide kernel with another --arch, or the wide MLP's kernel without --depth.
    """
    if kind in WIDE_KERNELS:
        if options["arch"] not in (None, "wide-mlp"):
            raise CommandError(f"--kernel {kind} is the wide MLP's kernel; drop --arch {options['arch']}")
        options = {**options, "arch": "wide-mlp"}
    if options["arch"] == "wide-mlp" and depth is None:
        which = f"--kernel {kind}" if kind in WIDE_KERNELS else f"--kernel {kind} of --arch wide-mlp"
        raise CommandError(f"{which} needs --depth (the wide MLP's hidden layers L)")
    return options


def command_fields(cls, depth: int, C_L: float | None) -> dict:
    """depth, and C_L where `cls` has that field (the wide MLP has none: its C_L is neither needed nor read)."""
    if "C_L" not in spec_field_names(cls):
        return {"depth": depth}
    if C_L is None:
        raise click.UsageError(f"Missing option '--C-L' (required for --arch {cls.arch}).")
    return {"depth": depth, "C_L": C_L}


def check_carrier_scale(cls, C_L: float | None) -> None:
    """A usage error, before any work, where --C-L is missing for an architecture with a carrier scale or given to
    one without (the wide MLP's NTK is not scaled: a C_L there would be silently ignored)."""
    if "C_L" in spec_field_names(cls) and C_L is None:
        raise click.UsageError(f"Missing option '--C-L' (required for --arch {cls.arch}).")
    if "C_L" not in spec_field_names(cls) and C_L is not None:
        raise click.UsageError(f"--C-L: the {getattr(cls, 'noun', cls.arch)} has no carrier scale C_L (its NTK is not scaled); leave it out")


def build_spec(options: dict, depth: int, C_L: float | None):
    """The spec of `options["arch"]` from the parsed options (one-line error on invalid values); C_L None is
    allowed for an architecture without that field."""
    with user_errors():
        cls = architecture(options["arch"])
    fixed = command_fields(cls, depth, C_L)
    with user_errors():
        return cls(**spec_options(cls, options), **fixed)


def with_arch(func=None, *, arch_default: str | None = ARCH_DEFAULT):
    """Collect the architecture options into one `arch` dict argument (keyed by option name, with "arch");
    `arch["given"]` names those set on the command line. With arch_default None, `--arch` is inferred from the
    data when not given."""

    def decorate(func):
        options = merged_options()
        keys = ("arch",) + tuple(options)

        @functools.wraps(func)
        def wrapper(**kwargs):
            ctx = click.get_current_context()
            arch = {key: kwargs.pop(key) for key in keys}
            arch["given"] = frozenset(key for key in keys
                                      if ctx.get_parameter_source(key) != click.core.ParameterSource.DEFAULT)
            return func(arch=arch, **kwargs)

        for option in reversed(list(options.values())):
            wrapper = _click_option(option)(wrapper)
        help_default = f" [{arch_default}]" if arch_default else " [from the data]"
        return click.option("--arch", type=click.Choice(list(ARCHITECTURES)), default=arch_default,
                            help=f"Network architecture{help_default}.")(wrapper)

    return decorate(func) if func is not None else decorate
