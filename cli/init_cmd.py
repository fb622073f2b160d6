"""`deepntk init`: draw a network's parameters and save them as `.npz`."""

import click

from .arch import DEPTH_HELP, build_spec, with_arch
from .common import check_output_path, overwrite_file_option, user_errors
from ..engine.params import INITS, init_params


@click.command("init")
@with_arch
@click.option("--depth", type=int, required=True,
              help=DEPTH_HELP)
@click.option("--C-L", "C_L", type=float, default=None,
              help="Carrier scale C_L > 0 (required by the architectures that have it: mlp, cnn).")
@click.option("--init", "init", type=click.Choice(INITS), default="paper", show_default=True,
              help="The paper's initialization or PyTorch's default Kaiming-uniform.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Integer seed of the draw.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write params (.npz).")
@overwrite_file_option
def command(arch, depth, C_L, init, seed, dtype, output, overwrite):
    """Draw parameters (paper init or Kaiming-uniform) and save them in the .npz format."""
    spec = build_spec(arch, depth, C_L)
    check_output_path(output, overwrite=overwrite)
    with user_errors():
        params = init_params(spec, init=init, seed=seed, dtype=dtype)
        params.save(output)
    click.echo(f"wrote {output}: {spec.arch.upper()} depth {depth}, width {spec.width}, {spec.parameter_count()} "
               f"parameters, init {init}, seed {seed}, {dtype}")
