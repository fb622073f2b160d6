"""Fig. 4 (paper §5.2; docs/experiments.md#fig-4): the paper's initialization trains a deep narrow MLP on MNIST,
PyTorch's Kaiming-uniform initialization of the same architecture does not, for any learning rate."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..architectures import MLP
from .datasets import load_mnist
from .mnist import BATCH_SIZE, mnist_run, run_lines, stable_eta
from .protocol import SILENT, Experiment, PlotResult, check_scale, reduction_lines
from ..trainer import TrainSettings

KAIMING_LEARNING_RATES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def fig4(scale: str = "small", data_dir=None, backend=None, on_step=None, folder=None) -> dict:
    """Fig. 4: the paper's init trains a deep narrow MLP on MNIST while PyTorch's Kaiming-uniform init on the
    same architecture does not, for any learning rate of the grid (MSELoss, plain SGD, batch 512). With `folder`
    (a results folder this run holds), the results are saved there after every training run, and the runs an
    earlier, unfinished run saved there are kept and not trained again."""
    if scale == "paper":
        depth, pool, train_size, test_size, epochs, reduced = 1000, 1, None, None, 100, ""
    else:
        depth, pool, train_size, test_size, epochs = 100, 4, 5000, 1000, 20
        reduced = ("depth 100 instead of 1000; 7×7 pooled inputs (width 60) instead of 784; 5000 training and "
                   "1000 test images; 20 epochs; paper init at half the stability bound of the step (see stable_eta)")
    data = load_mnist(data_dir, pool=pool, train_size=train_size, test_size=test_size)
    d_in = data.X_train.shape[1]
    C_L = 4.0
    spec = MLP(d_in, 10, depth, C_L)
    every = 2 * -(-len(data.X_train) // BATCH_SIZE)  # evaluate every two epochs, for the accuracy curves
    out = {"experiment": "fig4", "scale": scale, "reduced": reduced, "note": data.note, "depth": depth,
           "runs": Fig4Result.unfinished_parts(folder), "complete": False}
    kept = {run["run"] for run in out["runs"]}
    plan = [("paper init", "paper", None)] + [(f"kaiming-uniform lr={lr:g}", "kaiming-uniform", lr)
                                              for lr in KAIMING_LEARNING_RATES]
    for name, init, lr in plan:
        if name in kept:
            continue
        if lr is None:  # the paper's step, from the limit kernel (a kept paper run needs none)
            lr = 1e-5 if scale == "paper" else stable_eta(spec, data.X_train, backend=backend) / (depth * C_L**2)
        settings = TrainSettings(epochs=epochs, batch_size=BATCH_SIZE, lr=lr, loss="mse", eval_every=every)
        out["runs"].append(mnist_run(name, spec, data, settings, init, backend=backend, on_step=on_step))
        if folder is not None:
            Fig4Result(out).save(folder)
    order = [name for name, _, _ in plan]
    out["runs"].sort(key=lambda run: order.index(run["run"]))
    out["complete"] = True
    return out


@dataclass(frozen=True)
class Fig4Config:
    """`deepntk reproduce fig4`; `data_dir`: the MNIST IDX folder (`load_mnist`), not part of the results' key."""

    scale: str = "small"
    data_dir: str | None = field(default=None, metadata={"key": False})

    def __post_init__(self):
        check_scale(self.scale)


class Fig4Result(PlotResult):
    """`fig4`'s result; its summary is one line per training run, its parts (what an unfinished run keeps) the
    training runs. `complete` is False in the file an unfinished run left."""

    figure_builder = "fig4_figure"
    parts_key = "runs"

    def summary(self) -> list[str]:
        return reduction_lines(self.data) + run_lines(self.data["runs"])


def run(config: Fig4Config, backend=None, client=None, progress=SILENT, folder=None) -> Fig4Result:
    """Fig. 4 at `config.scale`; each training's SGD steps through `progress.on_step`, each finished training
    saved into `folder`."""
    return Fig4Result(fig4(config.scale, config.data_dir, backend, progress.on_step, folder))


EXPERIMENT = Experiment("fig4", Fig4Config, run, Fig4Result, checkpoints=True,
                        description="the paper's init trains on MNIST, Kaiming-uniform does not (paper Fig. 4)")
