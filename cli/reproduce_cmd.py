"""`deepntk reproduce`: the paper's Fig. 3, Fig. 4, Table 1 and Fig. 5, and any experiment of the registry
(deepntk.engine.experiments.registry), run through their one protocol (docs/experiments.md#adding-an-experiment)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import click
from click.core import ParameterSource

from .common import (CommandError, CommaList, backend_option, cluster_options, hold_output_folder,
                     maybe_cluster, overwrite_option, quiet_option, solver_options, user_errors)
from .interrupts import NOTHING_KEPT, keeps
from .progress import Stages
from ..engine.experiments.table1 import TABLE1_NETWORKS, check_networks
from ..engine.results import environment, record_file, write_json

# The options an experiment takes as the config field of the same name (docs/experiments.md#adding-an-experiment).
CONFIG_OPTIONS = ("scale", "data_dir", "networks", "max_steps", "kernels", "depths")
# The experiment whose limit-kernel variant `--predict` runs (outside the protocol: it streams its rows).
PREDICT_VARIANT = "table1"


class ExperimentName(click.Choice):
    """An experiment of the registry (deepntk.engine.experiments.registry), read when the command line is parsed,
    so one registered after this module was imported is a choice too; listing them imports none."""

    def __init__(self):
        super().__init__(())

    @property
    def choices(self):
        from ..engine.experiments.registry import experiment_names

        return tuple(experiment_names())

    @choices.setter
    def choices(self, value):
        pass  # the registry decides


class ReproduceCommand(click.Command):
    """`reproduce`, whose help lists the experiments of the registry (read when the help is shown)."""

    def format_help_text(self, ctx, formatter):
        from ..engine.experiments.registry import experiment_names

        super().format_help_text(ctx, formatter)
        with formatter.section("Experiments"):
            formatter.write_text(", ".join(experiment_names()))


@click.command("reproduce", cls=ReproduceCommand)
@click.argument("experiment", type=ExperimentName(), metavar="EXPERIMENT")
@click.option("--scale", default="small",
              help="The paper's experiments: small (minutes on 2 CPU cores, what it reduces is printed) or paper "
                   "(the authors' settings) [small]; depth: quick, <N>k (N thousand training images) or full "
                   "[quick].")
@click.option("--data-dir", default=None, help="MNIST IDX folder [$DEEPNTK_DATA, else ~/.cache/deepntk/mnist] (fig4, table1, depth).")
@backend_option
@click.option("-o", "--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Results folder [deepntk-results/reproduce-<experiment>-<hash of the settings>].")
@overwrite_option
@click.option("--resume", is_flag=True, help="Reuse the results of the same settings in --out (printed and drawn "
                                             "again) instead of computing them; with --predict: continue an "
                                             "interrupted run (its Gram stores are completed, not recomputed); "
                                             "depth: continue an interrupted run from the rows it saved.")
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
@click.option("--kernels", type=CommaList(str, what="kernels"), default=None,
              help="depth only: the kernels, of wide-ntk,wide-nngp,narrow-expected,narrow-limit [all].")
@click.option("--depths", type=CommaList(int, minimum=1, what="depths"), default=None,
              help="depth only: the depths L [the scale's: 1,3,10,…,10000; full: 10,1000].")
@click.option("--max-steps", type=click.IntRange(min=2), default=None,
              help="table1 only: stop each network after this many SGD steps, and report its rate and what the "
                   "whole schedule would take at that rate (a bounded run of --scale paper).")
@solver_options("--predict")
@cluster_options
@quiet_option
def command(experiment, scale, data_dir, backend, out_dir, overwrite, resume, plot, predict_size, test_size, store_dir,
            networks, kernels, depths, max_steps, max_iterations, nystrom_rank, cluster, workers, cluster_config, quiet):
    """Run EXPERIMENT, one of the paper's or a registered one (listed below), and write its results.

    The results folder holds the results (JSON + .npz), a manifest and a figure."""
    if predict_size is not None:
        if experiment != PREDICT_VARIANT:
            raise CommandError(f"--predict goes with {PREDICT_VARIANT}")
        if max_steps is not None:
            raise CommandError("--max-steps bounds training; --predict trains nothing")
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
        if resume and _kept_grams(store_dir) != NOTHING_KEPT:
            click.echo(f"resuming: the Gram stores in {store_dir} are completed, not recomputed")
        return _table1_predict(train_size, test_size, data_dir, store_dir, out_dir, plot,
                               (cluster or "local", workers, cluster_config), options, quiet, backend)
    from ..engine.experiments.protocol import config_key
    from ..engine.experiments.registry import get_experiment

    with user_errors():
        spec = get_experiment(experiment)
    if click.get_current_context().get_parameter_source("scale") is ParameterSource.DEFAULT:
        scale = None  # the config's own default, and no refusal where it has no scale
    given = {name: value for name, value in zip(CONFIG_OPTIONS, (scale, data_dir, networks, max_steps, kernels, depths))
             if value is not None}
    taken = {field.name for field in dataclasses.fields(spec.config)}
    for name in given:
        if name not in taken:
            raise CommandError(f"--{name.replace('_', '-')} goes with {_experiments_taking(name)}")
    if cluster is not None and not spec.uses_client:
        raise CommandError(f"--cluster goes with {_experiments_taking(None)}, {PREDICT_VARIANT} --predict")
    with user_errors():
        config = spec.config(**given)  # its checks, before any output
    key = config_key(config)
    out_dir = hold_output_folder(out_dir, f"reproduce {experiment}", key, resume=resume, overwrite=overwrite)
    with user_errors():
        result = spec.result.load(out_dir) if resume else None
    if result is not None and result.complete:
        click.echo(f"reusing the results in {out_dir} (--resume)")
    else:
        if result is not None:
            click.echo(f"resuming: the {len(result.parts)} finished parts in {out_dir} are kept")
        checkpoint = {"folder": out_dir} if spec.checkpoints else {}
        if spec.checkpoints:
            keeps(lambda: _kept_parts(spec, out_dir))
        start = time.perf_counter()
        with user_errors(), maybe_cluster(cluster, workers, cluster_config) as client, Stages(quiet) as stages:
            result = spec.run(config, backend=backend, client=client, progress=stages, **checkpoint)
    for line in result.summary():
        click.echo(line)
    if not result.loaded:
        result.save(out_dir)
        write_json(os.path.join(out_dir, "manifest.json"),
                   {"command": f"reproduce {experiment}", **key, "backend": backend,
                    "seconds": time.perf_counter() - start, "environment": environment()})
    click.echo(f"results in {out_dir}")
    if plot:
        _draw(result, os.path.join(out_dir, f"{experiment}.png"))


def _kept_parts(spec, out_dir: str) -> str:
    """What an interrupted run of a checkpointing experiment keeps: the parts it saved in its results folder."""
    saved = spec.result.load(out_dir) if os.path.isdir(out_dir) else None
    if saved is None or not saved.parts:
        return NOTHING_KEPT
    return (f"the {len(saved.parts)} finished parts are kept in {out_dir}; rerun the same command with "
            f"--resume to continue")


def _experiments_taking(option: str | None) -> str:
    """The experiments whose config has a field `option` (None: those that use a Dask client), for an error."""
    from ..engine.experiments.registry import experiment_names, get_experiment

    names = []
    for name in experiment_names():
        with contextlib.suppress(Exception):  # a broken plugin is not named
            spec = get_experiment(name)
            if spec.uses_client if option is None else option in {f.name for f in dataclasses.fields(spec.config)}:
                names.append(name)
    return ", ".join(names) or "no experiment"


def _draw(result, path: str) -> None:
    """Draw `result`'s figure into `path`; where matplotlib is missing, one line on stderr says so."""
    from ..base.errors import MissingExtraError
    from ..engine.experiments import figures

    try:
        figure = result.figure()
    except MissingExtraError as exc:
        click.echo(f"no figure: {exc}", err=True)
        return
    except ImportError:
        click.echo(f"no figure: {figures.NEEDS_MATPLOTLIB}", err=True)
        return
    if figure is not None:
        figures.save(figure, path)
        click.echo(f"figure in {path}")


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


def _table1_predict(train_size, test_size, data_dir, store_dir, out_dir, plot, cluster, options, quiet, backend):
    """Table 1 from the limit kernels: flow to the paper's flow time and regression, beside the paper."""
    from ..engine.experiments.table1 import Table1PredictResult, table1_predict
    from ..engine.solvers import unconverged_solves

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
        Table1PredictResult({"experiment": "table1-predict", "rows": finished, "complete": False},
                            arrays).save(out_dir)
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
        for line in unconverged_solves(row, row["flow_times"], row["run"]):
            click.echo(f"Warning: {line}", err=True)
    arrays = result.pop("arrays")
    final = Table1PredictResult({**result, "complete": True}, arrays)
    final.save(out_dir)
    write_json(os.path.join(out_dir, "manifest.json"),
               {"command": "reproduce table1 --predict", "train_size": train_size, "test_size": test_size,
                "backend": backend, **options, "seconds": time.perf_counter() - start,
                "environment": environment()})
    click.echo(f"results in {out_dir}")
    if plot:
        _draw(final, os.path.join(out_dir, "table1-predict.png"))


def _kept_grams(store_dir: str) -> str:
    """What an interrupted `reproduce table1 --predict` keeps: the Gram stores, each with its finished tiles."""
    stores = [name for name in os.listdir(store_dir) if name.endswith(".zarr")] if os.path.isdir(store_dir) else []
    if not stores:
        return NOTHING_KEPT
    return (f"the finished tiles of {len(stores)} Gram stores are kept in {store_dir}; rerun the same command to "
            f"reuse them")
