"""`deepntk compare params`: the user's own networks (params `.npz` files) against the theory at their (L, C_L)."""

from __future__ import annotations

import click

from .common import backend_option, format_with_interval, load_npy, user_errors


@click.command("params")
@click.argument("params_paths", metavar="PARAMS...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--x1", "x1_path", required=True, help="Inputs X1 (.npy): (N1, d_in) or (N1, c, d, d).")
@click.option("--x2", "x2_path", default=None, help="Inputs X2 (.npy); default: X1 with itself (each pair once).")
@backend_option
def command(params_paths, x1_path, x2_path, backend):
    """Error of the networks' Θ̃ against Θ̃^∞ and E Θ̃ at their own depth and C_L, per k×k block.

    Several PARAMS files of one architecture (e.g. `deepntk init --seed S` for S = 0…9) are one ensemble: the
    95% intervals are over its networks, as in `compare depth`. One network has no interval.
    """
    from ..engine.experiments.compare_params import compare_with_theory
    from ..engine.params import load_params, stack_params

    X1 = load_npy(x1_path, "--x1")
    X2 = None if x2_path is None else load_npy(x2_path, "--x2")
    with user_errors():
        networks = [load_params(path) for path in params_paths]
        params = networks[0] if len(networks) == 1 else stack_params(networks)
        result = compare_with_theory(params, X1, X2, backend=backend)
    networks = (f"{result.networks} networks, 95% intervals over them" if result.networks > 1 else
                "one network, so no interval (give several params files, e.g. seeds 0-9 of deepntk init)")
    click.echo(f"{params_paths[0] if len(params_paths) == 1 else f'{len(params_paths)} networks'}: "
               f"{result.arch.upper()} L = {result.depth}, C_L = {result.C_L:.4g}, k = {result.outputs}; "
               f"{result.pairs} input pairs, relative error of each k×k block; {networks}")
    heading = "mean error [95% interval]" if result.networks > 1 else "mean error"
    click.echo(f"{'against':<14} {heading:>31} {'max':>10}")
    click.echo(f"{'limit Θ∞':<14} {format_with_interval(result.error_limit, result.error_limit_interval)} "
               f"{result.max_error_limit:>10.3e}")
    click.echo(f"{'expected E[Θ]':<14} {format_with_interval(result.error_expected, result.error_expected_interval)} "
               f"{result.max_error_expected:>10.3e}")
    offset_ci = f" ± {result.offset_ci:.1e}" if result.networks > 1 else ""
    click.echo(f"offset mean(tr Θ̃/k − Θ̃^∞) {result.offset:.3e}{offset_ci}; expected "
               f"{result.expected_offset:.3e}; 1/C_L² {result.predicted_offset:.3e}")
