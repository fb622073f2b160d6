"""The scale-out benchmark (`deepntk bench --workloads scale`): Dask workers on this machine for tiled Grams.

Measures, in one run: the speed-up of 2 worker processes over 1 on a compute-bound Gram (the CNN limit
kernel, d⁴ arc-cosine evaluations per pair), the scheduling overhead per task with large tiles (the share
of the workers' wall time not spent inside tasks), and, on request, the MLP limit Gram of N MNIST-sized
inputs written to a Zarr store (upper tiles only).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np

from ..architectures import CNN, MLP


def _timed_gram(kernel, X, tile, workers, folder, name):
    from ..clusters import dask_client
    from ..gram import gram

    with dask_client(cluster="local", workers=workers) as client:
        client.run(_warm_up)  # workers up and their imports done before the clock starts
        started = time.perf_counter()
        report = gram(kernel, X, store=os.path.join(folder, name), tile=tile, client=client)
        seconds = time.perf_counter() - started
        return seconds, report, max(client.run(peak_resident_bytes).values())


def _warm_up() -> None:
    from ... import analytic  # noqa: F401
    from .. import gram  # noqa: F401
    import zarr  # noqa: F401


def peak_resident_bytes() -> int:
    """This process's peak resident memory (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_speedup(folder: str, images: int = 320, tile: int = 40) -> dict:
    """Wall time of the 7×7 CNN limit Gram with 1 and with 2 worker processes."""
    from ..gram import GramKernel

    kernel = GramKernel.for_spec("limit", CNN(1, 7, 1, 2, 1.0))
    X = np.random.default_rng(0).uniform(0.05, 1, size=(images, 1, 7, 7))
    one, report, _ = _timed_gram(kernel, X, tile, 1, folder, "one.zarr")
    two, _, _ = _timed_gram(kernel, X, tile, 2, folder, "two.zarr")
    return {"workload": f"CNN 7×7 limit Gram {images}×{images}, tile {tile}, {report.tiles} tasks",
            "seconds_1_worker": one, "seconds_2_workers": two, "speedup": one / two}


def task_overhead(folder: str, points: int = 6144, tile: int = 1024, workers: int = 2) -> dict:
    """Dask's cost per task for MLP limit tiles of tile² entries (784 inputs): the share of each worker's busy
    span spent between its tasks, and the share of all workers' wall time outside tasks (which also counts the
    idle tail of an uneven last round)."""
    from ..gram import GramKernel

    kernel = GramKernel.for_spec("limit", MLP(784, 10, 2, 1.0))
    X = np.random.default_rng(1).uniform(0, 1, size=(points, 784))
    wall, report, _ = _timed_gram(kernel, X, tile, workers, folder, "overhead.zarr")
    # Task time is measured inside each task (read, compute, write); the rest of the workers' time is Dask's.
    return {"workload": f"MLP limit Gram {points}², tile {tile}², {report.tiles} tasks, {workers} workers",
            "seconds": wall, "seconds_per_task": report.task_seconds / report.tiles,
            "overhead": report.scheduling_overhead(),
            "outside_tasks": max(0.0, 1 - report.task_seconds / (wall * workers))}


def mnist_limit_gram(folder: str, X: np.ndarray, tile: int = 2048, workers: int | None = None) -> dict:
    """The MLP limit Gram of the N inputs X (N × 784) into a Zarr store, upper tiles only."""
    from ..gram import GramKernel

    kernel = GramKernel.for_spec("limit", MLP(X.shape[1], 10, 2, 1.0))
    wall, report, peak = _timed_gram(kernel, X, tile, workers, folder, "mnist.zarr")
    size = sum(os.path.getsize(os.path.join(base, name)) for base, _, names in os.walk(os.path.join(folder, "mnist.zarr"))
               for name in names)
    return {"workload": f"MLP limit Gram {len(X)}², tile {tile}, {report.tiles} tasks", "seconds": wall,
            "gflops": report.gflops, "bytes_written": report.bytes_written, "bytes_on_disk": size,
            "peak_worker_bytes": peak}


def scale_benchmark(mnist: np.ndarray | None = None, folder: str | None = None, keep: bool = False,
                    on_step=None) -> dict:
    """Every measurement above in one run, in a temporary folder (removed unless `keep`); `on_step(done, total)`
    reports each measurement."""
    folder = folder or tempfile.mkdtemp(prefix="deepntk-scale-")
    total = 2 if mnist is None else 3
    report = on_step or (lambda done, total: None)
    try:
        out = {"cpus": os.cpu_count(), "speedup": worker_speedup(folder)}
        report(1, total)
        out["overhead"] = task_overhead(folder)
        report(2, total)
        if mnist is not None:
            out["mnist"] = mnist_limit_gram(folder, mnist)
            report(3, total)
        return out
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
