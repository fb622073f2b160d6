"""`deepntk simulate`: finite-depth scaled NTK at initialization vs the infinite-depth limit (paper Fig. 3)."""

from __future__ import annotations

import os
import time

import click

from .arch import given_fields, spec_options, with_arch
from .common import (CLRule, CommaList, CommandError, backend_option, cluster_options, format_with_interval,
                     hold_output_folder, maybe_cluster, overwrite_option, progress, quiet_option, user_errors)
from .interrupts import NOTHING_KEPT, keeps
from ..engine.architectures import ARCHITECTURES, architecture
from ..engine.results import environment, write_json
from ..engine.experiments.width_study import DEFAULT_DEPTH, DEFAULT_WIDTHS


def _study_defaults(describe, limit: str | None = None) -> str:
    """Each registered architecture's study default (those whose limit is `limit`, "depth" or "width", where
    given), as `describe(study)` gives it: "mlp: …; cnn: …"."""
    return "; ".join(f"{name}: {describe(cls.study)}" for name, cls in ARCHITECTURES.items()
                     if limit is None or cls.limit == limit)


@click.command("simulate")
@with_arch
@click.option("--depths", type=CommaList(int, 2, "depths"), default=None,
              help=f"Comma-separated depths L "
                   f"[{_study_defaults(lambda study: ','.join(map(str, study.depths)), limit='depth')}].")
@click.option("--C-L", "C_L", type=CLRule(), default="L^2", show_default=True,
              help="C_L as a rule in L (L^2, 5L, 0.5*L^1.5), a constant (5), or one value per depth (5,5e4).")
@click.option("--widths", type=CommaList(int, 1, "widths"), default=None,
              help=f"wide-mlp: comma-separated widths n of its width study "
                   f"[{','.join(map(str, DEFAULT_WIDTHS))}].")
@click.option("--depth", "width_study_depth", type=click.IntRange(min=1), default=None,
              help=f"wide-mlp: hidden layers L of its width study [{DEFAULT_DEPTH}].")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="Networks per depth.")
@click.option("--first-seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--points", type=click.IntRange(min=1), default=None,
              help=f"Inputs [{_study_defaults(lambda study: f'{study.points} {study.inputs_name}')}].")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@backend_option
@click.option("-o", "--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Results folder [deepntk-results/simulate-<hash of the settings>].")
@click.option("--resume", is_flag=True, help="Reuse the depths an earlier run of the same settings stored in --out.")
@overwrite_option
@click.option("--train", "train_too", is_flag=True,
              help="Fig. 3 complete: also train each network (full-batch GD, MSELoss, lr = 1/(4·L·C_L²)) on "
                   "y = x₁x₂ and compare the kernel before and after training.")
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True, help="GD steps with --train.")
@cluster_options
@quiet_option
def command(arch, depths, C_L, widths, width_study_depth, seeds, first_seed, points, dtype, backend, out_dir, resume, overwrite, train_too, steps,
            cluster, workers, cluster_config, quiet):
    """Scaled NTK at initialization vs its infinite-depth limit, over depths and seeds.

    With no options: the paper's Fig. 3 kernel Θ̃(x₀, x(γ)) on 200 arc points, at L = 100 … 10000 with
    C_L = L², 5 seeds per depth. Prints, per depth, the mean and max relative error against the limit
    Θ̃^∞ and against the finite-(L, C_L) expectation, then the error-vs-depth rate: the mean of the seeds' fitted
    slopes with its 95% interval (≈ −½ expected), and the slope through the table's mean errors.

    With --arch wide-mlp: its width study, the mirror of Fig. 3 (--widths at one --depth): per width, the mean
    relative error of the empirical NTK Θ against its infinite-width limit Θ^L with its 95% interval over seeds,
    and the error-vs-width rate likewise (theory: −½).
    """
    from ..backends.registry import get_backend
    from ..engine.experiments.convergence import ConvergenceConfig, load_depth

    name = arch["arch"]
    cls = architecture(name)
    given = click.get_current_context().get_parameter_source
    if cls.limit == "width":
        for flag, parameter in (("--depths", "depths"), ("--C-L", "C_L"), ("--width", "width")):
            if given(parameter) != click.core.ParameterSource.DEFAULT:
                raise CommandError(f"{flag} does not apply to the {name} width study: give --widths and --depth")
        if train_too:
            raise CommandError(f"--train runs the Fig. 3 MLP experiment; use deepntk train for the {name}")
        return _width_study(arch, cls, widths, width_study_depth, seeds, first_seed, points, dtype, backend, out_dir,
                            resume, overwrite, (cluster, workers, cluster_config), quiet)
    for flag, value in (("--widths", widths), ("--depth", width_study_depth)):
        if value is not None:
            raise CommandError(f"{flag} is the width study of an architecture with an infinite-width limit "
                               f"(--arch wide-mlp); the {name} is studied over --depths")
    if train_too:
        if name != "mlp":
            raise CommandError(f"--train runs the Fig. 3 MLP experiment; use deepntk train for the {name.upper()}")
        if resume:
            raise CommandError("--resume reuses stored depths of simulate without --train")
        return _simulate_training(tuple(depths or cls.study.depths), C_L, seeds, steps, backend, out_dir, quiet,
                                  (cluster, workers, cluster_config), overwrite)
    given = given_fields(cls, arch)
    with user_errors():
        # The fields the user set; the rest come from the architecture's study and presets.
        network = {field: value for field, value in spec_options(cls, arch).items() if field in given}
        config = ConvergenceConfig(arch=name, depths=depths and tuple(depths), C_L=C_L, seeds=seeds,
                                   first_seed=first_seed, points=points, dtype=dtype, backend=backend, network=network)
        backend_name = get_backend(backend).name
    out_dir = hold_output_folder(out_dir, "simulate", config.key(), resume=resume, overwrite=overwrite)
    keeps(lambda: kept_points(out_dir, config, config.depths, load_depth, "depths"))
    with user_errors(), maybe_cluster(cluster, workers, cluster_config) as client:
        _simulate(config, name, C_L, seeds, dtype, backend_name, out_dir, resume, quiet, client)


def _simulate(config, name, C_L, seeds, dtype, backend_name, out_dir, resume, quiet, client):
    from ..engine.experiments.convergence import describe_inputs, run_convergence

    click.echo(f"deepntk simulate: {name.upper()} {describe_inputs(config)}; C_L = {C_L}; {seeds} seeds; "
               f"backend {backend_name}; {dtype}")
    header = (f"{'L':>7} {'C_L':>10} {'seeds':>5} {'err vs limit':>13} {'max':>9} "
              f"{'err vs E[Θ̃]':>13} {'max':>9} {'time s':>7}")
    click.echo(header)
    reused = []

    def on_depth(r):
        reused.append(r.reused)
        if r.reused:
            bar.reuse(len(r.seeds))
        bar.clear()
        click.echo(f"{r.depth:>7} {r.C_L:>10.4g} {len(r.seeds):>5} {r.mean_error_limit:>13.3e} "
                   f"{r.max_error_limit:>9.2e} {r.mean_error_expected:>13.3e} {r.max_error_expected:>9.2e} "
                   f"{r.seconds:>7.2f}")

    started = time.perf_counter()
    with user_errors(), progress(len(config.depths) * seeds, "networks", quiet) as bar:
        results, fit = run_convergence(config, out_dir, resume, on_seed=bar.update, on_depth=on_depth,
                                       client=client)
    if resume:
        click.echo(f"{sum(reused)} {'depth' if sum(reused) == 1 else 'depths'} reused, {len(reused) - sum(reused)} "
                   f"computed")
    if fit is not None:
        click.echo(f"rate of the error vs limit against L: {fit.describe()}  (theory: −0.5 while the "
                   f"1/C_L² bias is negligible)")
    write_json(os.path.join(out_dir, "manifest.json"),
               {"command": "simulate", "config": config.key(), "backend": backend_name,
                "seconds": time.perf_counter() - started, "per_depth_seconds": {r.depth: r.seconds for r in results},
                "environment": environment(), "files": ["results.json", "arrays.npz", "manifest.json"] +
                [f"depth-{r.depth}.npz" for r in results]})
    click.echo(f"results in {out_dir}")


def _width_study(arch, cls, widths, depth, seeds, first_seed, points, dtype, backend, out_dir, resume, overwrite,
                 cluster, quiet):
    from ..backends.registry import get_backend
    from ..engine.experiments.width_study import WidthStudyConfig, load_width

    given = given_fields(cls, arch)
    with user_errors():
        network = {field: value for field, value in spec_options(cls, arch).items() if field in given}
        config = WidthStudyConfig(arch=cls.arch, widths=widths and tuple(widths), depth=depth or DEFAULT_DEPTH,
                                  seeds=seeds, first_seed=first_seed, points=points, dtype=dtype, backend=backend,
                                  network=network)
        backend_name = get_backend(backend).name
    out_dir = hold_output_folder(out_dir, "simulate", config.key(), resume=resume, overwrite=overwrite)
    keeps(lambda: kept_points(out_dir, config, config.widths, load_width, "widths"))
    with user_errors(), maybe_cluster(*cluster) as client:
        _run_width_study(config, cls, backend_name, out_dir, resume, quiet, client)


def _run_width_study(config, cls, backend_name, out_dir, resume, quiet, client):
    from ..engine.experiments.width_study import THEORY_RATE, describe_study, run_width_study

    kernel, limit = cls.kernel_label, cls.limit_label
    click.echo(f"deepntk simulate: {describe_study(config)}; {config.seeds} seeds; backend {backend_name}; "
               f"{config.dtype}")
    click.echo(f"{'n':>7} {'seeds':>5} {f'err of {kernel} vs {limit} [95% interval]':>31} {'max':>9} {'time s':>7}")
    started = time.perf_counter()
    def on_width(r):
        if r.reused:
            bar.reuse(len(r.seeds))

    with progress(len(config.widths) * config.seeds, "networks", quiet) as bar:
        study = run_width_study(config, out_dir, resume, on_seed=bar.update, on_width=on_width, client=client)
    # One table at the end: every width's interval comes from the errors' shape pooled over all widths
    # (stats.error_means_and_intervals), as results.json stores it.
    for r, mean, low, high in zip(study.results, study.means, study.lows, study.highs):
        click.echo(f"{r.width:>7} {len(r.seeds):>5} {format_with_interval(mean, (low, high))} {r.max_error:>9.2e} "
                   f"{r.seconds:>7.2f}")
    if resume:
        reused = sum(r.reused for r in study.results)
        click.echo(f"{reused} {'width' if reused == 1 else 'widths'} reused, {len(study.results) - reused} computed")
    if study.fit is not None:
        inside = {True: "inside the interval", False: "OUTSIDE the interval",
                  None: "no interval to judge it by"}[study.theory_inside]
        click.echo(f"rate of the error vs {limit} against n: {study.fit.describe()}  (theory: "
                   f"{THEORY_RATE:+.1f}, {inside})")
    write_json(os.path.join(out_dir, "manifest.json"),
               {"command": "simulate", "config": config.key(), "backend": backend_name,
                "seconds": time.perf_counter() - started,
                "per_width_seconds": {r.width: r.seconds for r in study.results}, "environment": environment(),
                "files": ["results.json", "arrays.npz", "manifest.json"] +
                [f"width-{r.width}.npz" for r in study.results]})
    click.echo(f"results in {out_dir}")


def _simulate_training(depths, C_L, seeds, steps, backend, out_dir, quiet, cluster, overwrite):
    """Fig. 3 complete: kernel at init and after training, kernel drift and fit, per depth over seeds."""
    from ..engine.rules import C_L_values

    with user_errors():
        pairs = list(zip(depths, C_L_values(C_L, depths)))
    out_dir = hold_output_folder(out_dir, "simulate --train",
                                 {"depths": list(depths), "C_L": C_L, "seeds": seeds, "steps": steps},
                                 overwrite=overwrite)
    with user_errors(), maybe_cluster(*cluster) as client:
        _simulate_training_in(out_dir, pairs, C_L, seeds, steps, backend, quiet, client)


def _simulate_training_in(out_dir, pairs, C_L, seeds, steps, backend, quiet, client):
    from ..engine.experiments.fig3 import fig3_training, training_summary

    with user_errors(), progress(len(pairs) * seeds, "networks", quiet) as bar:
        result = fig3_training(pairs, seeds, steps, backend, on_seed=bar.update, client=client)
    click.echo(f"Fig. 3 with training: {steps} GD steps (MSELoss, lr = 1/(4·L·C_L²)), {seeds} seeds")
    click.echo(f"{'L':>7} {'C_L':>10} {'init vs limit':>14} {'trained vs limit':>17} {'kernel drift':>13} "
               f"{'fit RMSE':>10} {'time s':>7}")
    for row in training_summary(result):
        click.echo(f"{row['depth']:>7} {row['C_L']:>10.4g} {row['init_vs_limit']:>14.3e} "
                   f"{row['trained_vs_limit']:>17.3e} {row['kernel_drift']:>13.3e} {row['fit_rmse']:>10.3e} "
                   f"{row['seconds']:>7.1f}")
    write_json(os.path.join(out_dir, "results.json"), {"experiment": "fig3-training", **result})
    write_json(os.path.join(out_dir, "manifest.json"), {"command": "simulate --train", "C_L": C_L, "seeds": seeds,
                                                        "steps": steps, "backend": backend,
                                                        "environment": environment()})
    click.echo(f"results in {out_dir}")


def kept_points(out_dir: str, config, values, load, noun: str) -> str:
    """What an interrupted study leaves in `out_dir`: its depths or widths (`noun`) that `load(out_dir, config,
    value)` finds stored there with this configuration."""
    kept = [value for value in values if load(out_dir, config, value) is not None]
    if not kept:
        return NOTHING_KEPT
    return f"{len(kept)} of {len(values)} {noun} kept in {out_dir}; rerun with -o {out_dir} --resume"
