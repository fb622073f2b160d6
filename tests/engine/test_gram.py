"""Grams tiled into a Zarr store by a real `distributed.LocalCluster` with two worker processes: tiles equal the
one-process result bit for bit, a killed worker or client costs only its tiles, a damaged chunk is found and
recomputed, a store of another configuration is refused, and cluster mistakes are one clear error."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
pytest.importorskip("zarr", reason="the distributed extra (Zarr) is not installed")

import deepntk  # noqa: E402
from deepntk.engine.clusters import SINGLE_THREADED, dask_client, job_script  # noqa: E402
from deepntk.base.errors import ClusterError, DiskSpaceError  # noqa: E402
from deepntk.engine.gram import GramKernel, GramStoreError, gram, open_store, tile_slices  # noqa: E402
from conftest import wait_for  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env=dict(SINGLE_THREADED)) as cluster, distributed.Client(cluster) as active:
        yield active


def one_process(kernel, X1, X2, tile):
    """The same tiles computed here, one after another, assembled into the full Gram."""
    n2 = len(X1) if X2 is None else len(X2)
    out = np.empty((len(X1), n2) + kernel.value_shape)
    for i, rows in enumerate(tile_slices(len(X1), tile)):
        for j, cols in enumerate(tile_slices(n2, tile)):
            if X2 is None and j < i:
                continue
            block = kernel.block(X1[rows], None if X2 is None and i == j else (X1 if X2 is None else X2)[cols])
            out[rows, cols] = block
            if X2 is None and i != j:  # Θ(x', x) = Θ(x, x')ᵀ, also in the k×k blocks
                mirrored = np.swapaxes(block, 0, 1)
                out[cols, rows] = mirrored.transpose(0, 1, 3, 2) if block.ndim == 4 else mirrored
    return out


def points(n, seed):
    return np.random.default_rng(seed).uniform(0.1, 1, size=(n, 2))


def cases(tmp_path):
    mlp = deepntk.MLP(2, 1, 50, 7.0, rho=0.9)
    params = deepntk.init_params(deepntk.MLP(2, 2, 12, 3.0), seed=1)
    params.save(tmp_path / "p.npz")
    images = np.random.default_rng(4).uniform(0.1, 1, size=(14, 1, 4, 4))
    return [
        (GramKernel.for_spec("limit", mlp), points(70, 1), None, 16),
        (GramKernel.for_spec("expected", mlp), points(33, 2), points(21, 3), 8),
        (GramKernel.for_spec("limit", deepntk.CNN(1, 4, 2, 2, 1.0, filter_variance="code")), images, None, 5),
        (GramKernel.for_spec("ntk", None, params_path=str(tmp_path / "p.npz"), backend="numpy"), points(23, 5),
         None, 7),
    ]


def test_tiles_equal_the_one_process_result_bitwise(client, tmp_path):
    for number, (kernel, X1, X2, tile) in enumerate(cases(tmp_path)):
        report = gram(kernel, X1, X2, store=tmp_path / f"K{number}.zarr", tile=tile, client=client)
        expected = one_process(kernel, X1, X2, tile)
        got = report.store.read()
        assert report.computed == report.tiles == len(report.store.tiles())
        assert np.array_equal(got, expected), kernel.kind
        if X2 is None:  # upper tiles only: n(n+1)/2 of them
            count = -(-len(X1) // tile)
            assert report.tiles == count * (count + 1) // 2
        assert np.array_equal(report.store.read(slice(3, 17), slice(0, 9)), expected[3:17, 0:9])
        # Tile by tile, as the solvers and the depth study read (stored tiles directly, lower ones by mirror), and
        # a block spanning two stored tiles of a row.
        rows, cols = tile_slices(len(X1), tile), tile_slices(expected.shape[1], tile)
        for i, j in [(i, j) for i in range(len(rows)) for j in range(len(cols))]:
            assert np.array_equal(report.store.read(rows[i], cols[j]), expected[rows[i], cols[j]]), (i, j)
        assert np.array_equal(report.store.read(slice(1, tile), slice(tile, 3 * tile)),
                              expected[1:tile, tile:3 * tile])


def test_a_damaged_chunk_is_found_and_recomputed(client, tmp_path):
    kernel, X1, _, tile = cases(tmp_path)[0]
    store = tmp_path / "K.zarr"
    first = gram(kernel, X1, store=store, tile=tile, client=client)
    chunk = sorted(glob.glob(str(store / "gram" / "c" / "*" / "*")))[-1]
    with open(chunk, "r+b") as handle:
        handle.seek(0)
        handle.write(b"\xff" * 16)
    reports = []
    again = gram(kernel, X1, store=store, tile=tile, client=client, resume=True,
                 on_tile=lambda done, total: reports.append((done, total)))
    assert (again.computed, again.reused) == (1, first.tiles - 1)
    # The first report states where the run starts (the reused tiles), before any tile is computed.
    assert reports == [(first.tiles - 1, first.tiles), (first.tiles, first.tiles)]
    assert np.array_equal(again.store.read(), one_process(kernel, X1, None, tile))


def test_a_store_larger_than_the_free_disk_is_refused_before_it_exists(client, tmp_path):
    kernel = GramKernel.for_spec("limit", deepntk.MLP(2, 1, 50, 7.0))
    free = shutil.disk_usage(tmp_path).free
    # N² / 2 float64 entries, even without the padding of the edge tiles, are 4× the free space.
    N = int(np.sqrt(free)) + 1
    with pytest.raises(DiskSpaceError, match=r"needs about [0-9.]+ [GT]iB of disk, but .* has only [0-9.]+ \w+ free"):
        gram(kernel, points(N, 9), store=tmp_path / "K.zarr", client=client)
    assert not os.listdir(tmp_path)


def test_a_store_of_another_configuration_is_refused(client, tmp_path):
    kernel, X1, _, tile = cases(tmp_path)[0]
    store = tmp_path / "K.zarr"
    gram(kernel, X1, store=store, tile=tile, client=client)
    with pytest.raises(GramStoreError, match="already exists"):
        gram(kernel, X1, store=store, tile=tile, client=client)
    # Before, a nested difference was named by its top key alone ("differs in: kernel"); now by its dotted key with
    # both values, which are left out where long (x1 is the inputs' SHA-256).
    other = GramKernel.for_spec("limit", deepntk.MLP(2, 1, 50, 7.0, rho=0.8))
    for call, differs in (
            (lambda: gram(other, X1, store=store, tile=tile, client=client, resume=True),
             "kernel.spec.rho (stored 0.9, requested 0.8)"),
            (lambda: gram(kernel, X1, store=store, tile=8, client=client, resume=True),
             f"tile (stored {tile}, requested 8)"),
            (lambda: gram(kernel, X1 * 1.01, store=store, tile=tile, client=client, resume=True), "x1")):
        with pytest.raises(GramStoreError) as raised:
            call()
        assert str(raised.value) == (f"Gram store {str(store)!r} was made for another configuration (differs in: "
                                     f"{differs}); choose another path"), raised.value


def test_a_killed_worker_costs_only_its_tiles(client, tmp_path):
    params = deepntk.init_params(deepntk.MLP(2, 1, 3000, 50.0), seed=2)
    params.save(tmp_path / "deep.npz")
    kernel = GramKernel.for_spec("ntk", None, params_path=str(tmp_path / "deep.npz"), backend="numpy")
    X = points(96, 6)
    progress = []
    result = {}
    runner = threading.Thread(target=lambda: result.update(report=gram(
        kernel, X, store=tmp_path / "K.zarr", tile=12, client=client, on_tile=lambda done, total: progress.append(done))))
    runner.start()
    assert wait_for(lambda: len(progress) >= 4)  # the start (0 tiles) and 3 tiles done
    victim = list(client.run(os.getpid).values())[0]
    os.kill(victim, signal.SIGKILL)
    runner.join(timeout=300)
    report = result["report"]
    assert report.store.complete and victim not in client.run(os.getpid).values()
    assert np.array_equal(report.store.read(), one_process(kernel, X, None, 12))


def recorded_tiles(store) -> int:
    try:
        return int((open_store(store).recorded() >= 0).sum())
    except GramStoreError:  # not created yet
        return 0


def test_a_killed_client_resumes_with_only_the_missing_tiles(tmp_path):
    params = deepntk.init_params(deepntk.MLP(2, 1, 1000, 50.0), seed=3)
    params.save(tmp_path / "deep.npz")
    X = points(100, 7)
    np.save(tmp_path / "x.npy", X)
    store = tmp_path / "K.zarr"
    argv = [sys.executable, "-m", "deepntk.cli.main", "gram", "--kernel", "ntk", "--params", str(tmp_path / "deep.npz"),
            "--backend", "numpy", "--x1", str(tmp_path / "x.npy"), "--store", str(store), "--tile", "10",
            "--workers", "2", "--quiet"]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(lambda: recorded_tiles(store) >= 5 or first.poll() is not None)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    left = open_store(store)
    done_before = int((left.recorded() >= 0).sum())
    assert 5 <= done_before < len(left.tiles()), done_before
    resumed = subprocess.run(argv + ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({len(left.tiles()) - done_before} computed, {done_before} already complete)" in resumed.stdout
    kernel = GramKernel.for_spec("ntk", None, params_path=str(tmp_path / "deep.npz"), backend="numpy")
    assert np.array_equal(open_store(store).read(), one_process(kernel, X, None, 10))


def test_cluster_mistakes_are_one_clear_error_within_the_timeout():
    started = time.perf_counter()
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:1 within 1 s"):
        with dask_client(cluster="tcp://127.0.0.1:1", timeout=1.0):
            pass
    assert time.perf_counter() - started < 10
    for cluster, message in (("tcp://nohost", "malformed scheduler address"), ("kubernetes", "unknown cluster"),
                             ("slurm", "needs --cluster-config")):
        with pytest.raises(ClusterError, match=message):
            with dask_client(cluster=cluster):
                pass


def test_slurm_and_pbs_job_scripts_without_a_batch_system(tmp_path):
    pytest.importorskip("dask_jobqueue", reason="the slurm extra (dask-jobqueue) is not installed")
    config = tmp_path / "jobs.yaml"
    config.write_text("cores: 4\nmemory: 8GB\nwalltime: '02:00:00'\nqueue: short\njobs: 3\n")
    slurm = job_script("slurm", str(config))
    assert "#SBATCH" in slurm and "--cpus-per-task=4" in slurm and "#SBATCH -p short" in slurm
    assert "export NUMBA_NUM_THREADS=1" in slurm
    assert "#PBS" in job_script("pbs", str(config))
    config.write_text("cores: 4\nmemory: 8GB\ngpus: 2\n")
    with pytest.raises(ClusterError, match="unknown settings gpus"):
        job_script("slurm", str(config))
