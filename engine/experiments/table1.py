"""Table 1 (paper §5.2; docs/experiments.md#table-1): MNIST test accuracy of the deep narrow MLP, the 10-class
CNN and the binary 0-vs-1 CNN, each beside the limit kernel's prediction at the same flow time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..architectures import CNN, MLP
from ...base.errors import InputError
from ..solvers import MAX_ITERATIONS, NYSTROM_RANK
from .datasets import load_mnist
from .mnist import BATCH_SIZE, limit_kernel_reference, mnist_run, run_lines, stable_eta
from .protocol import (SILENT, Experiment, PlotResult, Result, check_scale,
                       reduction_lines)
from ..trainer import TrainSettings

# The training and test images a bounded run (`max_steps`) evaluates: all 70,000 through the 10-class CNN took
# more than 4 minutes after its 3 steps (≈ 90 s) on 2 cores.
BOUNDED_EVAL_IMAGES = 1000
# The paper's accuracies, for the report.
PAPER_ACCURACY = {"MLP": 0.9748, "CNN": 0.9402, "CNN binary": 0.9887}


def table1_rows(scale: str):
    """(name, dataset layout, spec, raw lr or None for stable_eta, epochs, dtype, task) per row, and what
    `scale` reduced."""
    if scale == "paper":
        rows = [("MLP", dict(pool=1), MLP(784, 10, 4000, 4.0), 1e-5, 1500, "float32", "digits"),
                ("CNN", dict(layout="image"), CNN(1, 28, 10, 4000, 4.0, 1.0 / 3, pool=4, filter_variance="code"),
                 1e-5, 2000, "float32", "digits"),
                ("CNN binary", dict(layout="image"), CNN(1, 28, 1, 20000, 20.0, 1.0 / 3, pool=4,
                                                         filter_variance="code"), 1e-8, 1000, "float64", "binary")]
        return rows, dict(), ""
    rows = [("MLP", dict(pool=4), MLP(49, 10, 200, 4.0), None, 10, "float64", "digits"),
            ("CNN", dict(layout="image"), CNN(1, 28, 10, 30, 4.0, 1.0 / 3, pool=4, filter_variance="code"),
             None, 10, "float64", "digits"),
            ("CNN binary", dict(layout="image"), CNN(1, 28, 1, 200, 20.0, 1.0 / 3, pool=4, filter_variance="code"),
             None, 5, "float64", "binary")]
    reduced = ("depths 200/30/200 instead of 4000/4000/20000; the MLP on 7×7 pooled inputs; 3000 training and "
               "1000 test images; 10/10/5 epochs; the step at half its stability bound (stable_eta) instead of the "
               "paper's raw lr; float64")
    return rows, dict(train_size=3000, test_size=1000), reduced


def table1(scale: str = "small", data_dir=None, backend=None, on_step=None, max_steps: int | None = None,
           networks=None, folder=None) -> dict:
    """Table 1: test accuracy of the deep narrow MLP and CNN on MNIST (10 classes) and the CNN on 0 vs 1.

    `networks`: the rows to train, by slug (`TABLE1_NETWORKS`; None: all). `max_steps`: stop each network after
    that many SGD steps, as a bounded run of the schedule; each row then reports its steady rate (steps per second
    between the first and the last step, after compilation, before the final evaluation) and what its whole
    schedule would take at that rate, and its accuracies are those on the first BOUNDED_EVAL_IMAGES training and
    test images. The limit kernel's flow is compared at the flow time actually trained.

    With `folder` (a results folder this run holds), the results are saved there after every network, and the
    rows an earlier, unfinished run saved there are kept and not trained again: each row depends on its own
    network only, so the table is the one an uninterrupted run makes (its timings aside)."""
    rows, sizes, reduced = table1_rows(scale)
    wanted = check_networks(networks)
    check_max_steps(max_steps)
    out = {"experiment": "table1", "scale": scale, "reduced": reduced, "rows": Table1Result.unfinished_parts(folder),
           "complete": False}
    kept = {row["run"] for row in out["rows"]}
    for name, layout, spec, lr, epochs, dtype, task in rows:
        if network_slug(name) not in wanted or name in kept:
            continue
        data = load_mnist(data_dir, task=task, **layout, **sizes)
        if lr is None:
            lr = stable_eta(spec, data.X_train, backend=backend) / (spec.depth * spec.C_L**2)
        schedule = schedule_steps(epochs, len(data.X_train))
        steps = schedule if max_steps is None else min(max_steps, schedule)
        settings = TrainSettings(steps=steps, batch_size=BATCH_SIZE, lr=lr, loss="mse",
                                 eval_points=None if max_steps is None else BOUNDED_EVAL_IMAGES)
        clock = StepClock(on_step)
        run = mnist_run(name, spec, data, settings, backend=backend, dtype=dtype, on_step=clock)
        run["theory"] = limit_kernel_reference(spec, data, flow_time(spec, lr, steps), backend=backend)
        run.update({"task": task, "depth": spec.depth, "C_L": spec.C_L, "epochs": epochs, "note": data.note,
                    "chance": 0.5 if task == "binary" else 0.1, "paper_accuracy": PAPER_ACCURACY[name],
                    "steps": steps, "schedule_steps": schedule, "evaluated_images": settings.eval_points})
        rate = clock.rate()
        if max_steps is not None and rate:
            run.update({"steps_per_second": rate, "schedule_seconds_estimate": schedule / rate})
        out["rows"].append(run)
        if folder is not None:
            Table1Result(out).save(folder)
    order = [name for name, *_ in rows]
    out["rows"].sort(key=lambda row: order.index(row["run"]))
    out["complete"] = True
    return out


def check_max_steps(max_steps):
    """`max_steps` if it is None or an integer of at least 2 (a rate needs two steps), else InputError."""
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 2):
        raise InputError(f"max_steps must be an integer of at least 2 (a rate needs two steps), got {max_steps!r}")
    return max_steps


@dataclass(frozen=True)
class Table1Config:
    """`deepntk reproduce table1`: `networks` picks rows by slug (TABLE1_NETWORKS; None: all), `max_steps` bounds
    each training (see `table1`); `data_dir`: the MNIST IDX folder, not part of the results' key."""

    scale: str = "small"
    networks: list | None = None
    max_steps: int | None = None
    data_dir: str | None = field(default=None, metadata={"key": False})

    def __post_init__(self):
        check_scale(self.scale)
        check_networks(self.networks)
        check_max_steps(self.max_steps)


class Table1Result(Result):
    """`table1`'s result (no figure); its summary is one line per network, its parts (what an unfinished run
    keeps) the network rows. `complete` is False in the file an unfinished run left."""

    def summary(self) -> list[str]:
        return reduction_lines(self.data) + run_lines(self.data["rows"])


def run(config: Table1Config, backend=None, client=None, progress=SILENT, folder=None) -> Table1Result:
    """Table 1 at `config.scale`; each training's SGD steps through `progress.on_step`, each finished network's
    row saved into `folder`."""
    return Table1Result(table1(config.scale, config.data_dir, backend, progress.on_step, config.max_steps,
                               config.networks, folder))


EXPERIMENT = Experiment("table1", Table1Config, run, Table1Result, checkpoints=True,
                        description="MNIST accuracies beside the limit kernel's prediction (paper Table 1)")


class StepClock:
    """An `on_step(step, total, loss)` callback (passed on to `then`) that notes when each step ended."""

    def __init__(self, then=None):
        self.then = then
        self.first = self.last = None  # (step, time) of the first and the latest step's end

    def __call__(self, step, total, value):
        self.last = (step, time.perf_counter())
        self.first = self.first or self.last
        if self.then:
            self.then(step, total, value)

    def rate(self) -> float | None:
        """Steps per second from the first step's end to the last's (None before two steps)."""
        if self.first is None or self.last[0] == self.first[0]:
            return None
        (first, began), (last, ended) = self.first, self.last
        return (last - first) / (ended - began) if ended > began else None


def schedule_steps(epochs: int, train_images: int) -> int:
    """SGD steps of `epochs` epochs with one step per batch of BATCH_SIZE (the last one short)."""
    return epochs * -(-train_images // BATCH_SIZE)


def flow_time(spec, lr: float, steps: int) -> float:
    """The kernel-flow time of `steps` SGD steps: steps × raw lr × L·C_L², × 2/k for MSELoss
    (docs/training.md#step-sizes)."""
    return steps * lr * spec.depth * spec.C_L**2 * 2.0 / spec.outputs


def paper_flow_time(spec, lr: float, epochs: int, train_images: int) -> float:
    """The kernel-flow time of the paper's schedule of `epochs` epochs over `train_images` images."""
    return flow_time(spec, lr, schedule_steps(epochs, train_images))


def network_slug(name: str) -> str:
    """A Table 1 row's name as a file and option name: "CNN binary" → "cnn-binary"."""
    return name.lower().replace(" ", "-")


TABLE1_NETWORKS = tuple(network_slug(name) for name in PAPER_ACCURACY)


def check_networks(networks) -> list[str]:
    """The Table 1 rows named by slug (None: all of them), or InputError naming the unknown ones."""
    networks = list(TABLE1_NETWORKS if networks is None else networks)
    unknown = sorted(set(networks) - set(TABLE1_NETWORKS))
    if unknown:
        raise InputError(f"unknown {', '.join(unknown)}: Table 1's networks are {', '.join(TABLE1_NETWORKS)}")
    return networks


class Table1PredictResult(PlotResult):
    """`table1_predict`'s result as `reproduce table1 --predict` saves it (rows, arrays of test outputs and
    labels, "complete" once every row is done), drawn as flow accuracy against flow time."""

    figure_builder = "table1_predict_figure"


def table1_predict(train_size: int | None = None, test_size: int | None = None, data_dir=None, store_dir=None,
                   client=None, tol: float = 1e-6, times_per_row: int = 4, on_row=None, networks=None,
                   max_iterations: int = MAX_ITERATIONS, rank: int = NYSTROM_RANK, on_progress=None,
                   backend=None) -> dict:
    """Table 1 as the infinite-depth theory predicts it (Theorems 3 and 6): for each of the paper's networks,
    kernel flow with its limit kernel to the flow time of the paper's schedule, and kernel regression (t = ∞),
    on MNIST (`train_size` None: every training image). The Grams go into Zarr stores (`deepntk gram`, resumed
    when present) and are solved iteratively (`deepntk.engine.solvers`), so N is limited by disk, not memory.
    `networks` picks rows by slug (TABLE1_NETWORKS; default all); `max_iterations` bounds each solve (the Lanczos
    run shared by the finite times, and conjugate gradients); `rank` is the Nyström preconditioner's; `backend`
    computes the limit kernels' pixel-pair sums and the solvers' tile products.
    `on_progress(network, stage, done, total)` reports
    the Gram tiles ("train Gram", "test Gram") and the solvers' iterations ("flow", "regression"); `on_row(row,
    arrays)` each finished row. "arrays" holds each row's test outputs (times, images, k) and labels."""
    import os
    import tempfile
    import time

    import numpy as np

    from ..gram import GramKernel, gram
    from ..solvers import predict_from_stores, solve_fields
    from ..trainer import accuracy, classification_kind

    store_dir = store_dir or tempfile.mkdtemp(prefix="deepntk-table1-")
    rows, _, _ = table1_rows("paper")
    networks = check_networks(networks)
    out = {"experiment": "table1-predict", "train_size": train_size, "test_size": test_size, "tolerance": tol,
           "max_iterations": max_iterations, "nystrom_rank": rank, "store_dir": store_dir,
           "rows": [], "arrays": {}}
    for name, layout, spec, lr, epochs, _, task in rows:
        if network_slug(name) not in networks:
            continue
        started = time.perf_counter()
        data = load_mnist(data_dir, task=task, **layout, train_size=train_size, test_size=test_size)
        kernel = GramKernel.for_spec("limit", spec, backend=backend)
        stem = os.path.join(store_dir, network_slug(name))

        def tiles(stage, network=name):
            return None if on_progress is None else lambda done, total: on_progress(network, stage, done, total)

        train_store = gram(kernel, data.X_train, store=f"{stem}-train.zarr", client=client, resume=True,
                           on_tile=tiles("train Gram")).store
        test_store = gram(kernel, data.X_test, data.X_train, store=f"{stem}-test.zarr", client=client,
                          resume=True, on_tile=tiles("test Gram")).store
        gram_seconds = time.perf_counter() - started
        t_paper = paper_flow_time(spec, lr, epochs, 60000 if task == "digits" else 12665)
        times = [t_paper * 10.0**e for e in range(-(times_per_row - 2), 1)] + [np.inf]
        solve_started = time.perf_counter()
        prediction, solves = predict_from_stores(train_store, test_store, data.Y_train, times, Y_test=data.Y_test,
                                                 tol=tol, max_iterations=max_iterations, rank=rank, backend=backend,
                                                 on_iteration=None if on_progress is None else
                                                 lambda solver, j, network=name: on_progress(
                                                     network, f"{solver} iterations (stops when it converges)", j,
                                                     max_iterations))
        solve_seconds = time.perf_counter() - solve_started
        kind = classification_kind(data.Y_train)
        accuracies = [accuracy(f, data.Y_test, kind) for f in prediction.test]
        row = {"run": name, "task": task, "train_images": len(data.X_train), "test_images": len(data.X_test),
               "note": data.note, "flow_times": times, "test_accuracy": accuracies,
               "flow_accuracy": accuracies[-2], "regression_accuracy": accuracies[-1],
               "paper_flow_time": t_paper, "paper_accuracy": PAPER_ACCURACY[name],
               **solve_fields(solves), "gram_seconds": gram_seconds,
               "solve_seconds": solve_seconds, "seconds": time.perf_counter() - started}
        out["rows"].append(row)
        out["arrays"][f"{network_slug(name)}_test_outputs"] = np.asarray(prediction.test)
        out["arrays"][f"{network_slug(name)}_test_labels"] = data.labels_test
        if on_row:
            on_row(row, out["arrays"])
    return out
