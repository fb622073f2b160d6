"""`deepntk predict`: kernel-regression and kernel-flow predictions on a dataset (Theorems 3 and 6)."""

from __future__ import annotations

import click
import numpy as np

from .arch import WIDE_KERNELS, closed_form_options, spec_from_data, with_arch
from .common import (CommaList, CommandError, backend_option, check_output_path, load_npy, overwrite_file_option,
                     quiet_option, save_npy, solver_options, user_errors)
from .progress import Stages


@click.command("predict")
@click.option("--x-train", default=None, help="Training inputs (.npy), (N, d_in) or (N, c, d, d).")
@click.option("--y-train", default=None, help="Training targets (.npy), (N, k) or (N,).")
@click.option("--x-test", default=None, help="Test inputs (.npy).")
@click.option("--y-test", default=None, help="Test targets (.npy), to report the error.")
@click.option("--kernel", "kernel_kind", type=click.Choice(["limit", "empirical", *WIDE_KERNELS]), default="limit",
              show_default=True, help="The architecture's limit kernel (the wide MLP's: Θ^L), the empirical Θ̃₀ of "
              "--params, or the wide MLP's infinite-width NTK Θ^L / NNGP Σ^L at --depth (wide-ntk, wide-nngp).")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="With the wide MLP's kernels (--kernel wide-ntk, wide-nngp, or --arch wide-mlp): its hidden "
              "layers L.")
@click.option("--params", "params_path", default=None, help="Params (.npz) for --kernel empirical.")
@click.option("--times", type=CommaList(float, 0, "flow times"), default="1,10,100,inf", show_default=True,
              help="Flow times t (inf: kernel regression).")
@click.option("--gram", "gram_path", default=None,
              help="A Gram store of the training set (deepntk gram) instead of --x-train: solved iteratively.")
@click.option("--gram-test", "gram_test_path", default=None, help="With --gram: the test × training Gram store.")
@click.option("--dataset", type=click.Choice(["mnist", "mnist-binary"]), default=None,
              help="With --gram: the targets of the built-in dataset's images the stores hold (deepntk gram "
              "--dataset), instead of --y-train and --y-test.")
@click.option("--data-dir", default=None, help="With --dataset: the MNIST IDX folder [$DEEPNTK_DATA, else "
              "~/.cache/deepntk/mnist].")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=1e-6, show_default=True,
              help="With --gram: relative residual (CG) or change (Lanczos) at which the solvers stop.")
@solver_options("--gram")
@with_arch(arch_default=None)
@backend_option
@click.option("-o", "--output", default=None, help="Write predictions (.npy, shape (times, M, k)).")
@overwrite_file_option
@quiet_option
def command(x_train, y_train, x_test, y_test, kernel_kind, depth, params_path, times, gram_path, gram_test_path,
            dataset, data_dir, tol, max_iterations, nystrom_rank, arch, backend, output, overwrite, quiet):
    """Fit with kernel gradient flow from f₀ = 0 and report test predictions (and error) at each time t."""
    from ..engine.predict import predict

    check_output_path(output, overwrite=overwrite)
    if dataset is not None and gram_path is None:
        raise CommandError("--dataset gives the targets of the images in --gram stores; with --x-train, give "
                           "--y-train")
    if dataset is not None and (y_train is not None or y_test is not None):
        raise CommandError(f"--dataset {dataset} gives the targets; drop --y-train and --y-test")
    if y_train is None and dataset is None:
        raise CommandError("give --y-train" + (" (or --dataset, for stores of deepntk gram --dataset)"
                                               if gram_path is not None else ""))
    if gram_path is not None:
        return _predict_from_stores(gram_path, gram_test_path, y_train, y_test, dataset, data_dir, times, output,
                                    dict(tol=tol, max_iterations=max_iterations, rank=nystrom_rank, backend=backend),
                                    quiet)
    if x_train is None or x_test is None:
        raise CommandError("give --x-train and --x-test, or --gram and --gram-test")
    if kernel_kind == "empirical" and params_path is None:
        raise CommandError("--kernel empirical needs --params")
    if kernel_kind != "empirical":
        arch = closed_form_options(kernel_kind, arch, depth)
    X, Xt = load_npy(x_train, "--x-train"), load_npy(x_test, "--x-test")
    Y = load_npy(y_train, "--y-train")
    Yt = None if y_test is None else load_npy(y_test, "--y-test")
    k = 1 if Y.ndim == 1 else Y.shape[-1]
    with user_errors():
        if kernel_kind == "empirical":
            from ..engine.params import load_params

            params = load_params(params_path)
            result = predict(X, Y, Xt, times, Y_test=Yt, params=params, backend=backend)
        else:
            spec = spec_from_data(arch, X.shape, "--x-train", outputs=k, **({} if depth is None else {"depth": depth}))
            result = predict(X, Y, Xt, times, Y_test=Yt, spec=spec, backend=backend, kernel=kernel_kind)
    _report(result, output)


def _report(result, output, solves=None):
    columns = f"{'t':>10} {'train MSE':>12}" + (f" {'test MSE':>12}" if result.test_mse is not None else "")
    columns += f" {'test acc':>9}" if result.test_accuracy is not None else ""
    click.echo(columns + (f" {'iterations':>10} {'residual':>9}" if solves else ""))
    for i, t in enumerate(result.times):
        line = f"{t:>10g} {result.train_mse[i]:>12.4e}"
        if result.test_mse is not None:
            line += f" {result.test_mse[i]:>12.4e}"
        if result.test_accuracy is not None:
            line += f" {result.test_accuracy[i]:>9.4f}"
        if solves:
            line += f" {solves[i].iterations:>10} {solves[i].residual:>9.1e}"
        click.echo(line)
    if output:
        save_npy(output, np.asarray(result.test))
        click.echo(f"wrote {output}")


def _predict_from_stores(gram_path, gram_test_path, y_train, y_test, dataset, data_dir, times, output, options,
                         quiet):
    """Kernel flow and regression with Gram stores too large for memory (conjugate gradients, Lanczos); the targets
    from .npy files or, with `dataset`, those of the images the stores hold (checked by their digests)."""
    from ..engine.gram import open_store
    from ..engine.solvers import check_cross_store, predict_from_stores

    if gram_test_path is None:
        raise CommandError("--gram needs --gram-test, the test × training Gram store")
    with user_errors():
        train_store, test_store = open_store(gram_path), open_store(gram_test_path)
        check_cross_store(test_store, train_store)
        if dataset is not None:
            from ..engine.experiments.datasets import store_targets

            Y, note = store_targets(train_store, dataset, "train", data_dir)
            Yt, _ = store_targets(test_store, dataset, "test", data_dir)
            if note:
                click.echo(f"data: {note}", err=True)
    if dataset is None:
        Y = load_npy(y_train, "--y-train")
        Yt = None if y_test is None else load_npy(y_test, "--y-test")
    with user_errors(), Stages(quiet) as stages:
        result, solves = predict_from_stores(train_store, test_store, Y, times, Y_test=Yt,
                                             on_iteration=lambda solver, j: stages.show(
                                                 f"{solver}: iterations", j, options["max_iterations"]),
                                             **options)
    _report(result, output, solves)
    for t, solve in zip(result.times, solves):
        if not solve.converged:
            click.echo(f"Warning: t = {t:g}: {solve.describe()}", err=True)
