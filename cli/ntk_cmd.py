"""`deepntk ntk`: the scaled NTK Gram of saved parameters on `.npy` inputs."""

import click

from .common import backend_option, check_output_path, load_npy, overwrite_file_option, save_npy, user_errors
from ..engine.api import scaled_ntk
from ..engine.params import load_params


@click.command("ntk")
@click.argument("params_path", metavar="PARAMS", type=click.Path(dir_okay=False))
@click.option("--x1", "x1_path", required=True, help="Inputs X1 (.npy): (N1, d_in) or (N1, c, d, d).")
@click.option("--x2", "x2_path", default=None, help="Inputs X2 (.npy); default: X1.")
@backend_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the kernel (.npy).")
@overwrite_file_option
def command(params_path, x1_path, x2_path, backend, output, overwrite):
    """Write the NTK Gram of PARAMS, shape (N1, N2, k, k): the scaled NTK Θ̃(X1, X2) = ∂f(X1)∂f(X2)ᵀ/(L·C_L²) of a
    deep narrow network, the plain empirical NTK Θ = ∂f(X1)∂f(X2)ᵀ of the wide MLP."""
    check_output_path(output, overwrite=overwrite)
    X1 = load_npy(x1_path, "--x1")
    X2 = None if x2_path is None else load_npy(x2_path, "--x2")
    with user_errors():
        params = load_params(params_path)
        theta = scaled_ntk(params, X1, X2, backend=backend)
    save_npy(output, theta)
    click.echo(f"wrote {output}: {params.spec.kernel_label} with shape {theta.shape}")
