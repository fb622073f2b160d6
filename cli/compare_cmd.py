"""`deepntk compare`: finite networks against the theory — depth convergence, trained vs predicted, spectra."""

from __future__ import annotations

import os

import click

from .common import (CLRule, CommaList, CommandError, backend_option, cluster_options, format_with_interval,
                     hold_output_folder, maybe_cluster, overwrite_option, progress, quiet_option,
                     user_errors)
from ..engine.results import environment, write_json


def _finish(out_dir, name, payload, plot, figure):
    """Write the study's results (and, with --plot, the Figure that `figure()` builds) into its run folder."""
    path = os.path.join(out_dir, f"{name}.json")
    write_json(path, {**payload, "environment": environment()})
    click.echo(f"results in {path}")
    if plot:
        from ..engine.experiments import figures

        png = os.path.join(out_dir, f"{name}.png")
        figures.save(figure(), png)
        click.echo(f"figure in {png}")


def out_option(func):
    """-o (default: one folder per subcommand and settings) and --overwrite."""
    func = overwrite_option(func)
    return click.option("-o", "--out", "out_dir", default=None, type=click.Path(file_okay=False),
                        help="Results folder [deepntk-results/compare-<subcommand>-<hash of the settings>].")(func)
plot_option = click.option("--plot", is_flag=True, help="Also write a PNG figure (needs the plot extra).")


@click.group("compare")
def command():
    """Finite-depth networks against the infinite-depth theory."""


@command.command("depth")
@click.option("--depths", type=CommaList(int, 2, "depths"), default="100,300,1000,3000", show_default=True)
@click.option("--C-L", "rules", type=CLRule(several=True), default="L^2,5", show_default=True,
              help="Comma-separated C_L rules or constants.")
@click.option("--seeds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--points", type=click.IntRange(min=1), default=50, show_default=True, help="Fig. 3 arc points.")
@backend_option
@out_option
@plot_option
@cluster_options
@quiet_option
def depth_command(depths, rules, seeds, points, backend, out_dir, overwrite, plot, cluster, workers, cluster_config,
                  quiet):
    """Error of Θ̃ against Θ̃^∞ and E Θ̃ over depths × C_L rules, with 95% CIs and the fitted rate."""
    from ..engine.experiments.compare import as_dicts, depth_study

    if len(set(depths)) < 2:
        raise CommandError(f"--depths: the study fits a rate, give at least two distinct depths, got {depths}")
    out_dir = hold_output_folder(out_dir, "compare depth", {"depths": depths, "rules": rules, "seeds": seeds,
                                                            "points": points}, overwrite=overwrite)
    with user_errors(), maybe_cluster(cluster, workers, cluster_config) as client, \
            progress(len(depths) * len(rules) * seeds, "networks", quiet) as bar:
        rows, fits = depth_study(depths, rules, seeds, points, backend, on_seed=bar.update, client=client)
    click.echo(f"{'C_L rule':<9} {'L':>7} {'C_L':>10} {'err vs Θ∞ [95% interval]':>31} "
               f"{'err vs E[Θ̃] [95% interval]':>31} {'offset (95% CI)':>20} {'E offset':>10} {'1/C_L²':>10}")
    for r in rows:
        click.echo(f"{r.rule:<9} {r.depth:>7} {r.C_L:>10.3g} {format_with_interval(r.error_limit, r.error_limit_interval)} "
                   f"{format_with_interval(r.error_expected, r.error_expected_interval)} {r.offset:>10.2e} ± "
                   f"{r.offset_ci:.1e} {r.expected_offset:>10.2e} {r.predicted_offset:>10.2e}")
    for rule, fit in fits.items():
        click.echo(f"C_L = {rule}: fitted rate of the fluctuation L^{fit['slope']:+.3f} ± {fit['slope_ci']:.3f} "
                   f"(95% over {seeds} seeds; theory −0.5); against the limit itself L^{fit['slope_vs_limit']:+.3f} "
                   f"± {fit['slope_vs_limit_ci']:.3f}")
    from ..engine.experiments import figures

    _finish(out_dir, "compare-depth", {"rows": as_dicts(rows), "fits": fits, "seeds": seeds, "points": points},
            plot, lambda: figures.depth_figure(rows, fits, seeds=seeds, points=points))


@command.command("trained")
@click.option("--depths", type=CommaList(int, 2, "depths"), default="100,1000,3000", show_default=True)
@click.option("--C-L", "rule", type=CLRule(), default="L^2", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--eta", type=float, default=0.05, show_default=True, help="Scaled step η (flow time t = steps·η).")
@click.option("--train-points", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@backend_option
@out_option
@plot_option
@quiet_option
def trained_command(depths, rule, steps, eta, train_points, seed, backend, out_dir, overwrite, plot, quiet):
    """Trained network outputs vs the kernel-flow prediction from Θ̃^∞ and from the initial Θ̃₀."""
    from ..engine.experiments.compare import as_dicts, trained_study

    if not 0 < eta < float("inf"):
        raise CommandError(f"--eta must be a finite number > 0, got {eta}")
    out_dir = hold_output_folder(out_dir, "compare trained", {"depths": depths, "rule": rule, "steps": steps, "eta": eta,
                                                              "train_points": train_points, "seed": seed},
                                 overwrite=overwrite)
    with user_errors(), progress(len(depths), "depths", quiet) as bar:
        rows = trained_study(depths, rule, steps, eta, train_points, seed=seed, backend=backend,
                             on_depth=bar.update)
    click.echo(f"{'L':>7} {'C_L':>10} {'t':>7} {'train loss':>11} {'gap vs Θ∞ flow':>15} {'gap vs Θ̃₀ flow':>16} "
               f"{'kernel drift':>13}")
    for r in rows:
        click.echo(f"{r.depth:>7} {r.C_L:>10.3g} {r.t:>7.3g} {r.train_loss:>11.3e} {r.gap_limit:>15.3e} "
                   f"{r.gap_empirical:>16.3e} {r.kernel_drift:>13.3e}")
    from ..engine.experiments import figures

    _finish(out_dir, "compare-trained", {"rows": as_dicts(rows)}, plot,
            lambda: figures.trained_figure(rows, rule=rule, seed=seed))


@command.command("spectrum")
@click.option("--depths", type=CommaList(int, 2, "depths"), default="100,1000,10000", show_default=True)
@click.option("--C-L", "rule", type=CLRule(), default="L^2", show_default=True)
@click.option("--points", type=click.IntRange(min=2), default=40, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@backend_option
@out_option
@plot_option
@quiet_option
def spectrum_command(depths, rule, points, seed, backend, out_dir, overwrite, plot, quiet):
    """Eigenvalues and condition number of the Gram on the Fig. 3 arc: limit vs finite depth."""
    from ..engine.experiments.compare import as_dicts, spectrum_study
    from ..engine.spectrum import format_condition

    out_dir = hold_output_folder(out_dir, "compare spectrum", {"depths": depths, "rule": rule, "points": points,
                                                               "seed": seed}, overwrite=overwrite)
    with user_errors(), progress(len(depths), "depths", quiet) as bar:
        rows = spectrum_study(depths, rule, points, seed, backend, on_depth=bar.update)
    click.echo(f"{'kernel':>10} {'λ1':>10} {'λ2':>10} {'λ3':>10} {'λ resolved':>10} {'float64 floor':>13} "
               f"{'resolved':>8} {'condition':>11} {'spectrum err':>13}")
    for r in rows:
        name = "limit" if r.depth is None else f"L={r.depth}"
        e = r.eigenvalues
        smallest = f"{e[r.resolved - 1]:.3g}" if r.resolved else "none"
        click.echo(f"{name:>10} {e[0]:>10.4g} {e[1]:>10.4g} {e[2]:>10.4g} {smallest:>10} {r.floor:>13.2e} "
                   f"{f'{r.resolved}/{len(e)}':>8} {format_condition(r.condition, r.condition_is_lower_bound):>11} "
                   f"{r.eig_rel_error:>13.3e}")
    click.echo("λ resolved: the smallest eigenvalue above the float64 floor n·ε·λ_max. Eigenvalues below the floor "
               "are round-off; where λ_min is one of them, the condition is the lower bound λ_max/floor.")
    from ..engine.experiments import figures

    _finish(out_dir, "compare-spectrum", {"rows": as_dicts(rows)}, plot,
            lambda: figures.spectrum_figure(rows, rule=rule, points=points, seed=seed))


from .compare_params_cmd import command as params_command  # noqa: E402  (its own module)

command.add_command(params_command)
