"""`deepntk limit`: the closed-form infinite-depth kernel on `.npy` inputs."""

import click

from deepntk.cli.arch import build_spec, with_arch
from deepntk.cli.common import CommandError, load_npy, save_npy, user_errors
from deepntk.engine.validate import check_inputs


def spec_for_inputs(arch: dict, X):
    """A spec whose input sizes come from the data and everything else from the options (depth is unused)."""
    if arch["arch"] == "mlp":
        if X.ndim != 2:
            raise CommandError(f"--x1 must have shape (N, d_in) for --arch mlp, got {X.shape}")
        sizes = {"d_in": X.shape[1]}
    else:
        if X.ndim != 4:
            raise CommandError(f"--x1 must have shape (N, c, d, d) for --arch cnn, got {X.shape}")
        sizes = {"in_channels": X.shape[1], "size": X.shape[2]}
    return build_spec({**arch, **sizes}, depth=2, C_L=1.0)


@click.command("limit")
@with_arch
@click.option("--x1", "x1_path", default=None, help="Inputs X1 (.npy): (N1, d_in) or (N1, c, d, d).")
@click.option("--x2", "x2_path", default=None, help="Inputs X2 (.npy); default: X1.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="Where to write it (.npy).")
@click.option("--symbolic", is_flag=True, help="Print the formula (SymPy, the symbolic extra) instead.")
@click.option("--latex", is_flag=True, help="With --symbolic: LaTeX instead of plain text.")
def command(arch, x1_path, x2_path, output, symbolic, latex):
    """Write Θ̃^∞(X1, X2), shape (N1, N2): the factor of I_k (Theorems 1 and 4, corrected)."""
    from deepntk.analytic import cnn_limit_kernel, mlp_limit_kernel

    if symbolic or latex:
        from deepntk.analytic.symbolic import format_formula

        try:
            click.echo(format_formula(arch["arch"], latex=latex, d_in=arch["d_in"]))
        except ImportError as exc:
            raise CommandError(str(exc)) from None
        return
    if x1_path is None or output is None:
        raise CommandError("give --x1 and -o (or --symbolic to print the formula)")
    X1 = load_npy(x1_path, "--x1")
    X2 = None if x2_path is None else load_npy(x2_path, "--x2")
    spec = spec_for_inputs(arch, X1)
    with user_errors():
        A1 = check_inputs(X1, spec, "--x1")
        A2 = None if X2 is None else check_inputs(X2, spec, "--x2")
        if spec.arch == "mlp":
            K = mlp_limit_kernel(A1, A2, d_out=spec.d_out, rho=spec.rho, beta=spec.beta)
        else:
            K = cnn_limit_kernel(A1, A2, outputs=spec.outputs, rho=spec.rho, beta=spec.beta,
                                 filter_size=spec.filter_size, filter_variance=spec.filter_variance)
    save_npy(output, K)
    click.echo(f"wrote {output}: Θ̃^∞ with shape {K.shape}")
