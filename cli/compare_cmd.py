"""`deepntk compare`: finite networks against the theory — depth convergence, trained vs predicted, spectra."""

from __future__ import annotations

import os

import click

from deepntk.cli.common import (CLRule, CommaList, CommandError, backend_option, cluster_options, hold_output_folder,
                                maybe_cluster, progress, quiet_option, user_errors)
from deepntk.engine.results import environment, write_json


def _finish(out_dir, name, payload, plot, plotter):
    path = os.path.join(out_dir, f"{name}.json")
    write_json(path, {**payload, "environment": environment()})
    click.echo(f"results in {path}")
    if plot:
        png = os.path.join(out_dir, f"{name}.png")
        plotter(png)
        click.echo(f"figure in {png}")


out_option = click.option("-o", "--out", "out_dir", default="deepntk-results/compare", show_default=True,
                          type=click.Path(file_okay=False), help="Results folder.")
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
def depth_command(depths, rules, seeds, points, backend, out_dir, plot, cluster, workers, cluster_config, quiet):
    """Error of Θ̃ against Θ̃^∞ and E Θ̃ over depths × C_L rules, with 95% CIs and the fitted rate."""
    from deepntk.engine.experiments.compare import as_dicts, depth_study

    hold_output_folder(out_dir)
    with user_errors(), maybe_cluster(cluster, workers, cluster_config) as client:
        bar = progress(len(depths) * len(rules) * seeds, "networks", quiet)
        rows, fits = depth_study(depths, rules, seeds, points, backend, on_seed=bar.update, client=client)
        bar.close()
    click.echo(f"{'C_L rule':<9} {'L':>7} {'C_L':>10} {'err vs Θ∞ (95% CI)':>22} {'err vs E[Θ̃] (95% CI)':>24} "
               f"{'offset (95% CI)':>20} {'E offset':>10} {'1/C_L²':>10}")
    for r in rows:
        click.echo(f"{r.rule:<9} {r.depth:>7} {r.C_L:>10.3g} {r.error_limit:>12.3e} ± {r.error_limit_ci:.1e} "
                   f"{r.error_expected:>14.3e} ± {r.error_expected_ci:.1e} {r.offset:>10.2e} ± {r.offset_ci:.1e} "
                   f"{r.expected_offset:>10.2e} {r.predicted_offset:>10.2e}")
    for rule, fit in fits.items():
        click.echo(f"C_L = {rule}: fitted rate of the fluctuation L^{fit['slope']:+.3f} ± {fit['slope_ci']:.3f} "
                   f"(95%; theory −0.5); against the limit itself L^{fit['slope_vs_limit']:+.3f}")
    from deepntk.cli import plots

    _finish(out_dir, "compare-depth", {"rows": as_dicts(rows), "fits": fits, "seeds": seeds, "points": points},
            plot, lambda path: plots.depth_plot(rows, fits, path))


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
def trained_command(depths, rule, steps, eta, train_points, seed, backend, out_dir, plot):
    """Trained network outputs vs the kernel-flow prediction from Θ̃^∞ and from the initial Θ̃₀."""
    from deepntk.engine.experiments.compare import as_dicts, trained_study

    if not 0 < eta < float("inf"):
        raise CommandError(f"--eta must be a finite number > 0, got {eta}")
    hold_output_folder(out_dir)
    with user_errors():
        rows = trained_study(depths, rule, steps, eta, train_points, seed=seed, backend=backend)
    click.echo(f"{'L':>7} {'C_L':>10} {'t':>7} {'train loss':>11} {'gap vs Θ∞ flow':>15} {'gap vs Θ̃₀ flow':>16} "
               f"{'kernel drift':>13}")
    for r in rows:
        click.echo(f"{r.depth:>7} {r.C_L:>10.3g} {r.t:>7.3g} {r.train_loss:>11.3e} {r.gap_limit:>15.3e} "
                   f"{r.gap_empirical:>16.3e} {r.kernel_drift:>13.3e}")
    from deepntk.cli import plots

    _finish(out_dir, "compare-trained", {"rows": as_dicts(rows)}, plot, lambda path: plots.trained_plot(rows, path))


@command.command("spectrum")
@click.option("--depths", type=CommaList(int, 2, "depths"), default="100,1000,10000", show_default=True)
@click.option("--C-L", "rule", type=CLRule(), default="L^2", show_default=True)
@click.option("--points", type=click.IntRange(min=2), default=40, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@backend_option
@out_option
@plot_option
def spectrum_command(depths, rule, points, seed, backend, out_dir, plot):
    """Eigenvalues and condition number of the Gram on the Fig. 3 arc: limit vs finite depth."""
    from deepntk.engine.experiments.compare import as_dicts, spectrum_study

    hold_output_folder(out_dir)
    with user_errors():
        rows = spectrum_study(depths, rule, points, seed, backend)
    click.echo(f"{'kernel':>10} {'λ1':>10} {'λ2':>10} {'λ3':>10} {'λmin':>10} {'condition':>10} {'spectrum err':>13}")
    for r in rows:
        name = "limit" if r.depth is None else f"L={r.depth}"
        e = r.eigenvalues
        click.echo(f"{name:>10} {e[0]:>10.4g} {e[1]:>10.4g} {e[2]:>10.4g} {e[-1]:>10.3g} {r.condition:>10.3g} "
                   f"{r.eig_rel_error:>13.3e}")
    from deepntk.cli import plots

    _finish(out_dir, "compare-spectrum", {"rows": as_dicts(rows)}, plot, lambda path: plots.spectrum_plot(rows, path))


from deepntk.cli.compare_params_cmd import command as params_command  # noqa: E402  (its own module)

command.add_command(params_command)
