"""`deepntk limit`: the closed-form infinite-depth kernel on `.npy` inputs."""

import click

from .arch import spec_from_data, with_arch
from .common import (CommandError, backend_option, check_output_path, load_npy, overwrite_file_option, save_npy,
                     user_errors)
from ..base.validate import check_input_sets


@click.command("limit")
@with_arch(arch_default=None)
@click.option("--x1", "x1_path", default=None, help="Inputs X1 (.npy): (N1, d_in) or (N1, c, d, d).")
@click.option("--x2", "x2_path", default=None, help="Inputs X2 (.npy); default: X1.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="Where to write it (.npy).")
@overwrite_file_option
@click.option("--symbolic", is_flag=True, help="Print the formula (SymPy, the symbolic extra) instead.")
@click.option("--latex", is_flag=True,
              help="With --symbolic: ASCII LaTeX instead of plain text, one equation a line, the prose as % comments.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="wide-mlp: hidden layers L of its limit Θ^L (required there; the deep narrow networks' limit "
                   "has no depth).")
@backend_option
def command(arch, x1_path, x2_path, output, overwrite, symbolic, latex, depth, backend):
    """Write the limit kernel, shape (N1, N2): the factor of I_k. Θ̃^∞(X1, X2) of the deep narrow networks
    (Theorems 1 and 4, corrected), the infinite-width NTK Θ^L at --depth of the wide MLP."""
    if symbolic or latex:
        from ..analytic.symbolic import format_formula

        try:
            click.echo(format_formula(arch["arch"] or "mlp", latex=latex, d_in=arch["d_in"]))
        except ImportError as exc:
            raise CommandError(str(exc)) from None
        return
    if x1_path is None or output is None:
        raise CommandError("give --x1 and -o (or --symbolic to print the formula)")
    check_output_path(output, overwrite=overwrite)
    X1 = load_npy(x1_path, "--x1")
    X2 = None if x2_path is None else load_npy(x2_path, "--x2")
    with user_errors():
        spec = spec_from_data(arch, X1.shape, "--x1", **({} if depth is None else {"depth": depth}))
    if spec.limit == "width" and depth is None:
        raise CommandError(f"--depth is required for --arch {spec.arch}: its limit Θ^L depends on the depth")
    if spec.limit == "depth" and depth is not None:
        raise CommandError(f"--depth: the {spec.arch} limit kernel is the infinite-depth limit; it takes no depth")
    with user_errors():
        A1, A2 = check_input_sets({"--x1": X1, "--x2": X2}, spec)
        K = spec.limit_kernel(A1, A2, backend=backend)
    save_npy(output, K)
    click.echo(f"wrote {output}: {spec.limit_label} with shape {K.shape}")
