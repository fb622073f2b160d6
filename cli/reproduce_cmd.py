"""`deepntk reproduce`: the paper's Fig. 3, Fig. 4, Table 1 and Fig. 5."""

from __future__ import annotations

import contextlib
import os
import time

import click
import numpy as np

from deepntk.cli.common import (CommandError, CommaList, backend_option, cluster_options, format_duration,
                                hold_output_folder, maybe_cluster, overwrite_option, progress, quiet_option,
                                solver_options, user_errors)
from deepntk.cli.interrupts import NOTHING_KEPT, keeps
from deepntk.cli.progress import Stages
from deepntk.engine.experiments import PAPER_EXPERIMENTS
from deepntk.engine.experiments.table1 import TABLE1_NETWORKS, check_networks
from deepntk.engine.results import environment, record_file, write_json, write_npz


def _summary(result) -> list[str]:
    lines = []
    if result["experiment"] == "fig3":
        from deepntk.engine.experiments.fig3 import training_summary

        for row in training_summary(result):
            lines.append(f"L = {row['depth']:>6}, C_L = {row['C_L']:g}: init vs limit {row['init_vs_limit']:.2e}, "
                         f"kernel drift {row['kernel_drift']:.2e}, fit RMSE {row['fit_rmse']:.2e}, "
                         f"{row['seconds']:.1f} s")
    elif result["experiment"] in ("fig4", "table1"):
        for run in result.get("runs", result.get("rows", [])):
            acc = run["final_test_accuracy"]
            status = "diverged" if run["diverged"] else f"test accuracy {acc:.4f}"
            if run.get("loss_growth"):
                status += f" (loss {run['loss_growth']['factor']:.2g} × its start at step {run['loss_growth']['step']})"
            line = f"{run['run']:<28} {status}  ({run['seconds']:.1f} s)"
            if "theory" in run:
                th = run["theory"]
                line += (f"; limit kernel on {th['subset'][0]}/{th['subset'][1]} images: flow to t = "
                         f"{th['flow_time']:.3g} → {th['flow_accuracy']:.3f}, regression (t = ∞) → "
                         f"{th['regression_accuracy']:.3f}; constant/next eigenvalue "
                         f"{th['top_eigenvalue_ratio']:.3g}")
            if "paper_accuracy" in run:
                line += f"; the paper: {run['paper_accuracy']:.4f}"
            if "steps_per_second" in run:
                line += (f"; {run['steps']} of the schedule's {run['schedule_steps']} steps at "
                         f"{run['steps_per_second']:.3g} steps/s: the whole schedule ≈ "
                         f"{format_duration(run['schedule_seconds_estimate'])} here")
            lines.append(line)
    else:
        values = result["carrier_minus_C"]
        lines.append(f"L = {result['depth']}: output {result['output']:.4f} (target {result['target']:.4f}); per-layer "
                     f"σ(z^l)_last − C_L from {values[0]:.3e} to {values[-1]:.3e}")
    return lines


@click.command("reproduce")
@click.argument("experiment", type=click.Choice(list(PAPER_EXPERIMENTS)))
@click.option("--scale", type=click.Choice(["small", "paper"]), default="small", show_default=True,
              help="small: minutes on 2 CPU cores (what it reduces is printed); paper: the authors' settings.")
@click.option("--data-dir", default=None, help="MNIST IDX folder [$DEEPNTK_DATA, else ~/.cache/deepntk/mnist] (fig4, table1).")
@backend_option
@click.option("-o", "--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Results folder [deepntk-results/reproduce-<experiment>-<hash of the settings>].")
@overwrite_option
@click.option("--resume", is_flag=True, help="With --predict: continue an interrupted run of the same settings in "
                                             "--out (its Gram stores are completed, not recomputed).")
@click.option("--plot/--no-plot", default=True, show_default=True, help="PNG figure when matplotlib is installed.")
@click.option("--predict", "predict_size", default=None, metavar="N|full",
              help="table1 only: instead of training, the limit kernel's flow and regression on N (or every) "
                   "MNIST training image, from Gram stores solved iteratively.")
@click.option("--test-size", type=click.IntRange(min=1), default=None, help="With --predict: test images [all].")
@click.option("--store-dir", default=None, type=click.Path(file_okay=False),
              help="With --predict: where the Gram stores go (reused when present) [<out>/grams].")
@click.option("--networks", type=CommaList(str, what="networks"), default=None,
              help=f"table1 only: the rows to train (or, with --predict, to compute), of {','.join(TABLE1_NETWORKS)} "
                   "[all].")
@click.option("--max-steps", type=click.IntRange(min=2), default=None,
              help="table1 only: stop each network after this many SGD steps, and report its rate and what the "
                   "whole schedule would take at that rate (a bounded run of --scale paper).")
@solver_options("--predict")
@cluster_options
@quiet_option
def command(experiment, scale, data_dir, backend, out_dir, overwrite, resume, plot, predict_size, test_size, store_dir,
            networks, max_steps, max_iterations, nystrom_rank, cluster, workers, cluster_config, quiet):
    """Run one of the paper's experiments and write results (JSON + .npz), a manifest and a figure."""
    from deepntk.engine.experiments import run_experiment

    if experiment != "table1" and (networks is not None or max_steps is not None):
        raise CommandError(f"{'--networks' if networks is not None else '--max-steps'} goes with table1")
    if predict_size is not None and max_steps is not None:
        raise CommandError("--max-steps bounds training; --predict trains nothing")
    if resume and predict_size is None:
        raise CommandError("--resume goes with table1 --predict")
    if predict_size is not None:
        if experiment != "table1":
            raise CommandError("--predict goes with table1")
        train_size = _predict_size(predict_size)
        with user_errors():
            check_networks(networks)  # before any output
        options = dict(networks=networks, max_iterations=max_iterations, rank=nystrom_rank)
        out_dir = hold_output_folder(out_dir, "reproduce table1 --predict",
                                     {"train_size": train_size, "test_size": test_size, **options}, resume=resume,
                                     overwrite=overwrite)
        if store_dir is None:  # inside the results folder, so the folder's record lists it (--overwrite removes it)
            store_dir = os.path.join(out_dir, "grams")
            record_file(store_dir)
        if resume:
            click.echo(f"resuming: the Gram stores in {store_dir} are completed, not recomputed")
        return _table1_predict(train_size, test_size, data_dir, store_dir, out_dir, plot,
                               (cluster or "local", workers, cluster_config), options, quiet, backend)
    options = {}
    if experiment == "table1":
        with user_errors():
            check_networks(networks)  # before any output
        options = dict(networks=networks, max_steps=max_steps)
    out_dir = hold_output_folder(out_dir, f"reproduce {experiment}", {"scale": scale, **options}, overwrite=overwrite)
    start = time.perf_counter()
    with user_errors(), _experiment_progress(experiment, scale, quiet) as callbacks:
        result = run_experiment(experiment, scale, data_dir=data_dir, backend=backend, **options, **callbacks)
    if result.get("reduced"):
        click.echo(f"{experiment} ({scale}): reduced from the paper's settings: {result['reduced']}")
    for line in _summary(result):
        click.echo(line)
    write_json(os.path.join(out_dir, "results.json"), result)
    arrays = {k: np.asarray(v) for k, v in result.items() if isinstance(v, list) and v and not isinstance(v[0], dict)}
    if arrays:
        write_npz(os.path.join(out_dir, "arrays.npz"), **arrays)
    write_json(os.path.join(out_dir, "manifest.json"),
               {"command": f"reproduce {experiment}", "scale": scale, "backend": backend, **options,
                "seconds": time.perf_counter() - start, "environment": environment()})
    click.echo(f"results in {out_dir}")
    plotters = {"fig3": "fig3_plot", "fig4": "fig4_plot", "fig5": "fig5_plot"}
    if plot and experiment in plotters:
        from deepntk.cli import plots

        try:
            getattr(plots, plotters[experiment])(result, os.path.join(out_dir, f"{experiment}.png"))
            click.echo(f"figure in {os.path.join(out_dir, experiment + '.png')}")
        except CommandError as exc:
            click.echo(f"no figure: {exc.format_message()}", err=True)


def _predict_size(text: str) -> int | None:
    if text == "full":
        return None
    try:
        size = int(text)
    except ValueError:
        raise CommandError(f"--predict takes a number of training images or 'full', got {text!r}") from None
    if size < 2:
        raise CommandError(f"--predict needs at least 2 training images, got {size}")
    return size


@contextlib.contextmanager
def _experiment_progress(experiment, scale, quiet):
    """The progress callbacks of an experiment's long loops: the networks of Fig. 3, the SGD steps of each
    training of Fig. 4, Table 1 and Fig. 5."""
    if experiment == "fig3":
        from deepntk.engine.experiments.fig3 import fig3_scale

        depths, seeds, _ = fig3_scale(scale)
        with progress(len(depths) * seeds, "networks", quiet) as bar:
            yield {"on_seed": bar.update}
    else:
        with Stages(quiet) as stages:
            yield {"on_step": stages.on_step}


def _table1_predict(train_size, test_size, data_dir, store_dir, out_dir, plot, cluster, options, quiet, backend):
    """Table 1 from the limit kernels: flow to the paper's flow time and regression, beside the paper."""
    from deepntk.engine.experiments.table1 import table1_predict

    os.makedirs(store_dir, exist_ok=True)
    start = time.perf_counter()
    click.echo(f"{'network':<11} {'train':>6} {'test':>6} {'flow time':>10} {'flow acc':>9} {'regression':>11} "
               f"{'paper':>7} {'CG its':>7} {'residual':>9} {'time s':>7}")

    stages = Stages(quiet)

    def on_progress(network, stage, done, total):
        stages.show(f"{network}: {stage}", done, total)

    finished = []

    def on_row(row, arrays):
        stages.close()
        finished.append(row)  # written as each row ends: a killed run keeps its finished rows (and the Grams)
        write_json(os.path.join(out_dir, "results.json"), {"experiment": "table1-predict", "rows": finished,
                                                           "complete": False})
        write_npz(os.path.join(out_dir, "arrays.npz"), **arrays)
        click.echo(f"{row['run']:<11} {row['train_images']:>6} {row['test_images']:>6} {row['paper_flow_time']:>10.3g} "
                   f"{row['flow_accuracy']:>9.4f} {row['regression_accuracy']:>11.4f} {row['paper_accuracy']:>7.4f} "
                   f"{row['iterations'][-1]:>7} {max(row['residuals']):>9.1e} {row['seconds']:>7.1f}")

    keeps(lambda: _kept_grams(store_dir))
    with user_errors(), maybe_cluster(*cluster) as client, stages:
        result = table1_predict(train_size, test_size, data_dir, store_dir, client, on_row=on_row,
                                on_progress=on_progress, backend=backend, **options)
    for row in result["rows"]:
        if row["note"]:
            click.echo(f"{row['run']}: {row['note']}", err=True)
        if not all(row["converged"]):
            click.echo(f"Warning: {row['run']}: a solver stopped above its tolerance", err=True)
    result.pop("arrays")
    write_json(os.path.join(out_dir, "results.json"), {**result, "complete": True})
    write_json(os.path.join(out_dir, "manifest.json"),
               {"command": "reproduce table1 --predict", "train_size": train_size, "test_size": test_size,
                "backend": backend, **options, "seconds": time.perf_counter() - start,
                "environment": environment()})
    click.echo(f"results in {out_dir}")
    if plot:
        from deepntk.cli import plots

        try:
            plots.table1_predict_plot(result, os.path.join(out_dir, "table1-predict.png"))
            click.echo(f"figure in {os.path.join(out_dir, 'table1-predict.png')}")
        except CommandError as exc:
            click.echo(f"no figure: {exc.format_message()}", err=True)


def _kept_grams(store_dir: str) -> str:
    """What an interrupted `reproduce table1 --predict` keeps: the Gram stores, each with its finished tiles."""
    stores = [name for name in os.listdir(store_dir) if name.endswith(".zarr")] if os.path.isdir(store_dir) else []
    if not stores:
        return NOTHING_KEPT
    return (f"the finished tiles of {len(stores)} Gram stores are kept in {store_dir}; rerun the same command to "
            f"reuse them")
