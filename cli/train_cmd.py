"""`deepntk train`: plain SGD on saved params and .npy data, or on a built-in dataset."""

from __future__ import annotations

import os

import click

from .arch import DEPTH_HELP, check_carrier_scale, spec_from_data, with_arch
from .common import (CommandError, backend_option, check_output_path, load_npy, progress, quiet_option,
                     user_errors)
from .interrupts import NOTHING_KEPT, keeps
from ..base.losses import LOSSES
from ..engine.results import environment, write_json


@click.command("train")
@click.argument("params_path", metavar="[PARAMS]", required=False, type=click.Path(dir_okay=False))
@click.option("--x", "x_path", default=None, help="Training inputs (.npy), with PARAMS.")
@click.option("--y", "y_path", default=None, help="Training targets (.npy), with PARAMS.")
@click.option("--dataset", type=click.Choice(["mnist", "mnist-binary", "toy"]), default=None,
              help="A built-in dataset instead of PARAMS/--x/--y (a network is drawn from the arch options).")
@with_arch
@click.option("--depth", type=int, default=None, help=f"With --dataset: {DEPTH_HELP}")
@click.option("--C-L", "C_L", type=float, default=None,
              help="With --dataset: carrier scale C_L (the deep narrow networks; the wide MLP has none).")
@click.option("--init", "init", type=click.Choice(["paper", "kaiming-uniform"]), default="paper", show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option("--steps", type=click.IntRange(min=0), default=None, help="SGD updates.")
@click.option("--epochs", type=click.IntRange(min=0), default=None, help="Passes over the data (instead of --steps).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Mini-batch size [full batch].")
@click.option("--eta", type=float, default=None,
              help="Scaled step η: raw lr = η/(L·C_L²) (η itself for the wide MLP, whose NTK is not scaled).")
@click.option("--lr", type=float, default=None, help="Raw learning rate (as in the paper's Table 1).")
@click.option("--loss", type=click.Choice(LOSSES), default="paper", show_default=True,
              help="paper: (1/2N)Σ‖f−y‖²; mse: PyTorch's MSELoss.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Init and shuffling seed.")
@click.option("--data-dir", default=None, help="Folder with MNIST IDX files [$DEEPNTK_DATA, else ~/.cache/deepntk/mnist].")
@click.option("--train-size", type=click.IntRange(min=1), default=None)
@click.option("--test-size", type=click.IntRange(min=1), default=None)
@click.option("--eval-every", type=click.IntRange(min=0), default=0, help="Evaluate every K steps (0: at the end).")
@click.option("--probe-every", type=click.IntRange(min=0), default=0,
              help="Every K steps, the relative change of Θ̃ on a probe of up to 16 training points (Theorem 2).")
@click.option("--checkpoint-dir", default=None, help="Folder for atomic checkpoints.")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --checkpoint-dir.")
@click.option("--overwrite", is_flag=True,
              help="Replace the -o file and its .metrics.json if they exist, and the checkpoint an earlier run left "
                   "in --checkpoint-dir.")
@backend_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Trained params (.npz).")
@quiet_option
def command(params_path, x_path, y_path, dataset, arch, depth, C_L, init, dtype, steps, epochs, batch_size, eta, lr,
            loss, seed, data_dir, train_size, test_size, eval_every, probe_every, checkpoint_dir, checkpoint_every, resume,
            overwrite, backend, output, quiet):
    """Train with plain SGD (the paper's §3.2/§5), writing the trained params and a metrics JSON beside them."""
    from ..engine.architectures import architecture
    from ..engine.experiments.datasets import load_dataset
    from ..engine.params import init_params, load_params
    from ..engine.trainer import TrainSettings, train

    if (eta is None) == (lr is None):
        raise CommandError("give exactly one of --eta (scaled step) or --lr (raw learning rate)")
    if (steps is None) == (epochs is None):
        raise CommandError("give exactly one of --steps or --epochs")
    check_output_path(output, overwrite=overwrite, beside=[metrics_path(output)])
    X_test = Y_test = None
    with user_errors():
        if dataset is None:
            if params_path is None or x_path is None or y_path is None:
                raise CommandError("give PARAMS with --x and --y, or --dataset")
            params = load_params(params_path)
            X, Y = load_npy(x_path, "--x"), load_npy(y_path, "--y")
            if len(X) != len(Y):
                raise CommandError(f"--x has {len(X)} points but --y has {len(Y)}")
        else:
            cls = architecture(arch["arch"])
            if depth is None:
                raise CommandError("--dataset needs --depth (weight layers; for wide-mlp, hidden layers)")
            check_carrier_scale(cls, C_L)
            data = load_dataset(dataset, cls, pool=arch["pool"], data_dir=data_dir, train_size=train_size,
                                test_size=test_size, split_seed=seed)
            if data.note:
                click.echo(f"data: {data.note}", err=True)
            X, Y, X_test, Y_test = data.X_train, data.Y_train, data.X_test, data.Y_test
            spec = spec_from_data(arch, X.shape, "the dataset", outputs=Y.shape[1], depth=depth, C_L=C_L)
            params = init_params(spec, init, seed, dtype)
        settings = TrainSettings(steps=steps, epochs=epochs, batch_size=batch_size, eta=eta, lr=lr, loss=loss,
                                 seed=seed, eval_every=eval_every, probe_every=probe_every,
                                 checkpoint_every=checkpoint_every)
        keeps(lambda: kept_checkpoint(checkpoint_dir))

        def on_step(step, total, value):
            bar.note(f"batch loss {value:.3e}")
            bar.set(step, total)

        try:
            with progress(None, "SGD steps", quiet) as bar:
                result = train(params, X, Y, settings, backend=backend, X_test=X_test, Y_test=Y_test,
                               probe=X[:16] if probe_every else None, checkpoint_dir=checkpoint_dir, resume=resume,
                               overwrite=overwrite, on_step=on_step)
        except FloatingPointError as exc:
            raise CommandError(str(exc)) from None
        result.params.save(output)
    h = result.history
    if resume:
        click.echo(f"resumed from step {result.resumed_from} of {result.steps}")
    line = f"trained {result.steps} steps in {result.seconds:.1f} s: train loss {h['train_loss'][-1]:.4e}"
    if h["train_accuracy"] and h["train_accuracy"][-1] == h["train_accuracy"][-1]:
        line += f", train accuracy {h['train_accuracy'][-1]:.4f}"
    if h["test_accuracy"]:
        line += f", test loss {h['test_loss'][-1]:.4e}, test accuracy {h['test_accuracy'][-1]:.4f}"
    if h["kernel_change"]:
        line += f", kernel change {h['kernel_change'][-1]:.3e}"
    click.echo(line)
    metrics = metrics_path(output)
    write_json(metrics, {"history": h, "steps": result.steps, "seconds": result.seconds,
                         "resumed_from": result.resumed_from, "environment": environment()})
    click.echo(f"wrote {output} and {metrics}")


def metrics_path(output: str) -> str:
    """The metrics JSON written beside the trained params `output`."""
    return os.path.splitext(output)[0] + ".metrics.json"


def kept_checkpoint(checkpoint_dir: str | None) -> str:
    """What an interrupted run keeps: the step of the checkpoint in `checkpoint_dir`, if there is one."""
    from ..engine.trainer import checkpoint_step

    step = None if checkpoint_dir is None else checkpoint_step(checkpoint_dir)
    if step is None:
        hint = "" if checkpoint_dir else " (--checkpoint-dir and --checkpoint-every keep a run's progress)"
        return NOTHING_KEPT + hint
    return (f"the checkpoint of step {step} is kept in {checkpoint_dir}; rerun with --resume to continue from "
            f"there")
