"""`deepntk compare params`: the user's own network (a params `.npz`) against the theory at its (L, C_L)."""

from __future__ import annotations

import click

from deepntk.cli.common import backend_option, load_npy, user_errors


@click.command("params")
@click.argument("params_path", metavar="PARAMS", type=click.Path(dir_okay=False))
@click.option("--x1", "x1_path", required=True, help="Inputs X1 (.npy): (N1, d_in) or (N1, c, d, d).")
@click.option("--x2", "x2_path", default=None, help="Inputs X2 (.npy); default: X1 with itself (each pair once).")
@backend_option
def command(params_path, x1_path, x2_path, backend):
    """Error of the network's Θ̃ against Θ̃^∞ and E Θ̃ at its own depth and C_L, per k×k block, with 95% CIs."""
    from deepntk.engine.experiments.compare_params import compare_with_theory
    from deepntk.engine.params import load_params

    X1 = load_npy(x1_path, "--x1")
    X2 = None if x2_path is None else load_npy(x2_path, "--x2")
    with user_errors():
        params = load_params(params_path)
        result = compare_with_theory(params, X1, X2, backend=backend)
    click.echo(f"{params_path}: {result.arch.upper()} L = {result.depth}, C_L = {result.C_L:.4g}, k = {result.outputs}; "
               f"{result.pairs} input pairs, relative error of each k×k block (95% CI over the {result.interval_over})")
    click.echo(f"{'against':<14} {'mean error (95% CI)':>22} {'max':>10}")
    click.echo(f"{'limit Θ∞':<14} {result.error_limit:>12.3e} ± {result.error_limit_ci:.1e} "
               f"{result.max_error_limit:>10.3e}")
    click.echo(f"{'expected E[Θ]':<14} {result.error_expected:>12.3e} ± {result.error_expected_ci:.1e} "
               f"{result.max_error_expected:>10.3e}")
    click.echo(f"offset mean(tr Θ̃/k − Θ̃^∞) {result.offset:.3e} ± {result.offset_ci:.1e}; expected "
               f"{result.expected_offset:.3e}; 1/C_L² {result.predicted_offset:.3e}")
