"""`deepntk gram`: a kernel's Gram, tiled into a Zarr store by Dask workers, resumable."""

from __future__ import annotations

import os

import click

from .arch import WIDE_KERNELS, closed_form_options, spec_from_data, with_arch
from .common import (ClusterType, CommandError, backend_option, check_output_path, load_npy, progress,
                     quiet_option, user_errors)
from .interrupts import NOTHING_KEPT, keeps


@click.command("gram")
@click.option("--kernel", "kind", type=click.Choice(["limit", "expected", "ntk", *WIDE_KERNELS]), default="limit",
              show_default=True, help="Θ̃^∞ (limit), E Θ̃ at --depth and --C-L (expected), the scaled NTK of --params "
              "(ntk), or the wide MLP's infinite-width NTK Θ^L / NNGP Σ^L at --depth (wide-ntk, wide-nngp).")
@with_arch(arch_default=None)
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="With --kernel expected: the depth L; with the wide MLP's kernels: its hidden layers L.")
@click.option("--C-L", "C_L", type=float, default=None, help="With --kernel expected: the carrier scale C_L.")
@click.option("--x1", "x1_path", default=None, help="Inputs X1 (.npy).")
@click.option("--x2", "x2_path", default=None, help="Inputs X2 (.npy); default: the Gram of X1 with itself.")
@click.option("--dataset", type=click.Choice(["mnist", "mnist-binary"]), default=None,
              help="The inputs of a built-in dataset instead of --x1.")
@click.option("--split", type=click.Choice(["train", "test", "test-train"]), default="train", show_default=True,
              help="With --dataset: the Gram of the training or the test images with themselves, or of the test "
              "images against the training images (test-train: the --gram-test store of deepntk predict).")
@click.option("--subset", type=click.IntRange(min=1), default=None,
              help="With --dataset: the first N images of the split (of each, with test-train), after a seeded "
              "shuffle [all].")
@click.option("--data-dir", default=None, help="MNIST IDX folder [$DEEPNTK_DATA, else ~/.cache/deepntk/mnist].")
@click.option("--params", "params_path", default=None, help="With --kernel ntk: the network (.npz).")
@backend_option
@click.option("--store", required=True, type=click.Path(file_okay=False), help="The Zarr store (a folder, K.zarr).")
@click.option("--tile", type=click.IntRange(min=1), default=None, help="Tile side [chosen: ≲ 10⁴ tasks].")
@click.option("--cluster", type=ClusterType(), default="local", show_default=True,
              help="local, tcp://host:port, slurm, pbs or local-cuda.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="With --cluster local: worker processes "
              "[one per core].")
@click.option("--cluster-config", default=None, help="With slurm/pbs: cores, memory, walltime, queue, jobs (YAML/JSON).")
@click.option("--dry-run", is_flag=True, help="With slurm/pbs: print the job script and submit nothing.")
@click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds to wait for a scheduler (tcp://…) before giving up.")
@click.option("--resume", is_flag=True, help="Complete an existing store made with the same configuration.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="On --resume, re-read every recorded tile and recompute those that do not match their CRC.")
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False),
              help="Also write what the run did (tiles, seconds, pairs/s, bytes, machine, versions) as JSON.")
@quiet_option
def command(kind, arch, depth, C_L, x1_path, x2_path, dataset, split, subset, data_dir, params_path, backend, store, tile,
            cluster, workers, cluster_config, dry_run, connect_timeout, resume, verify, report_path, quiet):
    """Compute a Gram larger than memory into a Zarr store, one Dask task per tile.

    Only the upper tiles of a symmetric Gram are computed; a killed run continues with --resume and recomputes only
    the missing or damaged tiles."""
    from ..engine.architectures import architecture
    from ..engine.clusters import dask_client, job_script
    from ..engine.gram import GramKernel, gram

    if dry_run:
        if cluster not in ("slurm", "pbs"):
            raise CommandError("--dry-run shows the job script of a slurm or pbs cluster")
        with user_errors():
            click.echo(job_script(cluster, cluster_config))
        return
    if (x1_path is None) == (dataset is None):
        raise CommandError("give --x1 (and optionally --x2) or --dataset")
    if subset is not None and dataset is None:
        raise CommandError("--subset takes the first N images of --dataset; with --x1, pass the rows you want")
    if (kind == "ntk") != (params_path is not None):
        raise CommandError("--kernel ntk needs --params, and only it takes one")
    if kind == "expected" and (depth is None or C_L is None):
        raise CommandError("--kernel expected needs --depth and --C-L")
    if kind != "ntk":
        arch = closed_form_options(kind, arch, depth)
    check_output_path(report_path, "--report", overwrite=True)  # the record of the store's latest run, rewritten
    if os.path.exists(store) and not resume:  # before any cluster starts
        raise CommandError(f"Gram store {store!r} already exists; pass --resume to complete it, or choose another path")
    with user_errors():
        if dataset is not None:
            from ..engine.experiments.datasets import load_dataset

            cls = architecture(arch["arch"] or "mlp")
            sizes = {f"{part}_size": subset for part in split.split("-")}
            data = load_dataset(dataset, cls, pool=arch["pool"], data_dir=data_dir, **sizes)
            if data.note:
                click.echo(f"data: {data.note}", err=True)
            X1 = data.X_train if split == "train" else data.X_test
            X2 = data.X_train if split == "test-train" else None
        else:
            X1 = load_npy(x1_path, "--x1")
            X2 = None if x2_path is None else load_npy(x2_path, "--x2")
        if kind == "ntk":
            gram_kernel = GramKernel.for_spec("ntk", None, params_path=params_path, backend=backend)
        else:
            sizes = {"depth": depth, "C_L": C_L} if kind == "expected" else {} if depth is None else {"depth": depth}
            spec = spec_from_data(arch, X1.shape, "--x1", **sizes)
            gram_kernel = GramKernel.for_spec(kind, spec, backend=backend)
        keeps(lambda: kept_tiles(store))
        with dask_client(None, cluster, workers, cluster_config, timeout=connect_timeout) as client, \
                progress(None, "tiles", quiet) as bar:
            report = gram(gram_kernel, X1, X2, store=store, tile=tile, client=client, resume=resume, verify=verify,
                          on_tile=bar.set)
    if report_path is not None:
        write_report(report_path, report, cluster, workers)
    shape = "×".join(map(str, report.store.shape))
    click.echo(f"{kind} Gram {shape} in {store}: {report.tiles} tiles of {report.store.tile} "
               f"({report.computed} computed, {report.reused} already complete), {report.seconds:.1f} s, "
               f"{report.gflops:.2f} GFLOP/s, {report.bytes_written / 2**20:.1f} MiB written")


def write_report(path: str, report, cluster: str, workers: int | None) -> None:
    """The run's `GramReport.summary()` with the cluster, the machine and the library versions, written atomically
    (docs/files.md#gram-stores-deepntk-gram)."""
    from ..engine.experiments.benchmark import machine
    from ..engine.results import environment, write_json

    write_json(path, {"command": "gram", **report.summary(), "cluster": cluster, "workers": workers,
                      "machine": machine(), "environment": environment()})


def kept_tiles(store: str) -> str:
    """What an interrupted run leaves in `store`, read from the store itself."""
    if not os.path.isdir(store):  # interrupted before the store was made (perhaps while Zarr was imported)
        return NOTHING_KEPT
    from ..engine.gram import open_store

    gram_store = open_store(store)
    kept = int(sum(gram_store.recorded()[i, j] >= 0 for i, j in gram_store.tiles()))
    return f"{kept} of {len(gram_store.tiles())} tiles kept in {store}; rerun with --resume"
