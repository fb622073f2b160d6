"""Architecture options shared by `init`, `limit` and `simulate`, and the spec they build."""

from __future__ import annotations

import functools

import click

from deepntk.cli.common import user_errors
from deepntk.engine.spec import CNN, MLP

_ARCH_OPTIONS = [
    click.option("--arch", type=click.Choice(["mlp", "cnn"]), default="mlp", show_default=True,
                 help="Deep narrow MLP (paper §3) or CNN (paper §4)."),
    click.option("--d-in", type=int, default=2, show_default=True, help="MLP input dimension."),
    click.option("--d-out", type=int, default=1, show_default=True, help="MLP output dimension."),
    click.option("--in-channels", type=int, default=1, show_default=True, help="CNN input channels c."),
    click.option("--size", type=int, default=5, show_default=True, help="CNN image side d (before --pool)."),
    click.option("--outputs", type=int, default=1, show_default=True, help="CNN outputs k."),
    click.option("--filter-size", type=int, default=3, show_default=True, help="CNN odd filter side f."),
    click.option("--pool", type=int, default=1, show_default=True,
                 help="CNN fixed input average pool (4 for the paper's MNIST: 28×28 → 7×7)."),
    click.option("--filter-variance", type=click.Choice(["paper", "code"]), default="paper", show_default=True,
                 help="CNN random-filter tap variance: ρ²/c (paper) or ρ²/(c·f²) (authors' code)."),
    click.option("--rho", type=float, default=1.0, show_default=True, help="ρ, std scale of the random unit's weights."),
    click.option("--beta", type=float, default=1.0, show_default=True, help="β, std scale of the random unit's bias."),
]

ARCH_KEYS = ("arch", "d_in", "d_out", "in_channels", "size", "outputs", "filter_size", "pool", "filter_variance",
             "rho", "beta")


def arch_options(func):
    for option in reversed(_ARCH_OPTIONS):
        func = option(func)
    return func


def build_spec(options: dict, depth: int, C_L: float):
    """MLP or CNN from the parsed options (one-line error on invalid values)."""
    with user_errors():
        if options["arch"] == "mlp":
            return MLP(options["d_in"], options["d_out"], depth, C_L, options["rho"], options["beta"])
        return CNN(options["in_channels"], options["size"], options["outputs"], depth, C_L, options["rho"],
                   options["beta"], options["filter_size"], options["pool"], options["filter_variance"])


def pop_arch(kwargs: dict) -> dict:
    return {key: kwargs.pop(key) for key in ARCH_KEYS}


def with_arch(func):
    """Collect the architecture options into one `arch` dict argument."""

    @arch_options
    @functools.wraps(func)
    def wrapper(**kwargs):
        arch = pop_arch(kwargs)
        return func(arch=arch, **kwargs)

    return wrapper
