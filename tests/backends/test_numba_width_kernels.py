"""The GD kernels generated per width (deepntk.backends.numba_width_kernels) against the NumPy reference, their
on-disk caching, and what happens where no folder can hold their source."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import deepntk
from oracles import perturbed
from conftest import TOL, assert_close

pytest.importorskip("numba", reason="the numba extra is not installed")
from deepntk.backends import numba_backend, numba_kernels, numba_width_kernels  # noqa: E402


@pytest.mark.parametrize("d_in, k", [(1, 1), (2, 1), (2, 2), (3, 2)])  # widths 3, 4, 5, 6
def test_generated_kernels_match_numpy_on_an_ensemble_with_many_segments(monkeypatch, d_in, k):
    """Two networks, L = 23 in segments of 5 layers with a shorter last one. Forward pass and GD on 37 inputs (a
    full chunk and a partial one per thread); the NTK Gram of 5 inputs against 37, both ways round, of the 5 with
    themselves, and of the 37 in tiles of 8 × 16 (several row blocks, a partial last one). Everything against the
    NumPy backend."""
    monkeypatch.setattr(numba_backend, "GD_SEGMENT_BYTES", 1)  # segments of ceil(√L) = 5 layers
    monkeypatch.setattr(numba_backend, "TILE_ROWS", 8)
    monkeypatch.setattr(numba_backend, "TILE_COLUMNS", 16)
    spec = deepntk.MLP(d_in, k, 23, 4.0)
    for name in ("dense_forward", "dense_loss_gradients", "dense_tiled_gram"):
        assert numba_width_kernels.written_out_kernel(spec.width, name) is not None
    nets = deepntk.stack_params([perturbed(deepntk.init_params(spec, seed=s), scale=0.2) for s in (1, 2)])
    X = np.random.default_rng(3).uniform(0.1, 1, size=(37, d_in))
    Y = np.random.default_rng(4).normal(size=(37, k))
    assert_close(deepntk.forward(nets, X, backend="numba"), deepntk.forward(nets, X, backend="numpy"),
                 TOL["identity"], "outputs")
    values, outputs, grads = deepntk.loss_and_gradients(nets, X, Y, backend="numba")
    ref_values, ref_outputs, ref_grads = deepntk.loss_and_gradients(nets, X, Y, backend="numpy")
    assert_close(values, ref_values, TOL["identity"], "losses")
    assert_close(outputs, ref_outputs, TOL["identity"], "outputs")
    assert_close(grads.W, ref_grads.W, TOL["identity"], "weight gradients")
    assert_close(grads.b, ref_grads.b, TOL["identity"], "bias gradients")
    few = X[:5] * 0.7 + 0.1
    for X1, X2 in ((few, X), (X, few), (few, None), (X, None), (X, X[::-1])):
        assert_close(deepntk.scaled_ntk(nets, X1, X2, backend="numba"),
                     deepntk.scaled_ntk(nets, X1, X2, backend="numpy"), TOL["identity"], "NTK")


def test_wider_nets_take_the_generic_kernel():
    """Past MAX_WIDTH the written-out layers stop paying (1.04× at width 8) and compile for seconds longer."""
    wide = SimpleNamespace(kind="dense", width=deepntk.MLP(numba_width_kernels.MAX_WIDTH, 1, 3, 2.0).width)
    narrow = SimpleNamespace(kind="dense", width=deepntk.MLP(2, 1, 3, 2.0).width)
    assert numba_backend.fused_kernel(wide, "dense_loss_gradients") is numba_kernels.dense_loss_gradients
    assert numba_backend.fused_kernel(narrow, "dense_loss_gradients") is not numba_kernels.dense_loss_gradients


def test_the_generated_kernel_is_loaded_from_numba_s_cache(tmp_path):
    """A second process finds the generated source where the first wrote it, untouched (its time stamp is part of
    Numba's cache key), and loads the machine code instead of compiling it again."""
    script = ("import os, numpy as np, deepntk; from deepntk.backends.numba_width_kernels import "
              "written_out_kernel, kernel_folder_candidates; "
              "p = deepntk.init_params(deepntk.MLP(2, 1, 5, 3.0), seed=0); "
              "deepntk.loss_and_gradients(p, np.ones((3, 2)), np.zeros((3, 1)), backend='numba'); "
              "stats = written_out_kernel(4, 'dense_loss_gradients').stats; folder = kernel_folder_candidates()[0]; "
              "files = sorted(f for f in os.listdir(folder) if f.endswith('.py')); "
              "print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), len(files), "
              "os.stat(folder / files[0]).st_mtime_ns)")
    env = dict(os.environ, DEEPNTK_KERNEL_DIR=str(tmp_path / "sources"), NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    (hits1, misses1, files1, stamp1), (hits2, misses2, files2, stamp2) = [run.stdout.split() for run in runs]
    assert (hits1, misses1, files1) == ("0", "1", "1")
    assert (hits2, misses2, files2) == ("1", "0", "1")
    assert stamp1 == stamp2


def test_no_writable_folder_warns_and_keeps_the_generic_kernel(monkeypatch, tmp_path):
    """Every candidate folder lies under a regular file, so none can be created: a warning that names them and
    DEEPNTK_KERNEL_DIR, and the generic kernel (the backend still computes the right gradients)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(numba_width_kernels, "kernel_folder_candidates", lambda: [blocker / "x", blocker / "y"])
    numba_width_kernels._width_module.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="DEEPNTK_KERNEL_DIR"):
            assert numba_width_kernels.written_out_kernel(3, "dense_loss_gradients") is None
        params = perturbed(deepntk.init_params(deepntk.MLP(1, 1, 7, 3.0), seed=1), scale=0.2)
        X = np.random.default_rng(3).uniform(0.1, 1, size=(5, 1))
        Y = np.random.default_rng(4).normal(size=(5, 1))
        _, _, grads = deepntk.loss_and_gradients(params, X, Y, backend="numba")
        _, _, ref = deepntk.loss_and_gradients(params, X, Y, backend="numpy")
        assert_close(grads.W, ref.W, TOL["identity"], "weight gradients")
    finally:
        numba_width_kernels._width_module.cache_clear()


def test_a_damaged_source_file_is_written_again(monkeypatch, tmp_path):
    """A generated file whose text no longer matches its source (truncated, edited) is replaced before it is
    imported, so the kernel that runs is the one the digest in its name stands for."""
    monkeypatch.setenv("DEEPNTK_KERNEL_DIR", str(tmp_path))
    path = numba_width_kernels._source_file(3)
    assert path.parent == tmp_path and path.read_text() == numba_width_kernels.kernels_source(3)
    path.write_text("raise RuntimeError('damaged')\n")
    assert numba_width_kernels._source_file(3) == path
    assert path.read_text() == numba_width_kernels.kernels_source(3)


def test_generated_gd_kernel_in_float32():
    """The written-out GD step on float32 weights (its sums accumulate in float64, as the generic kernel's do)
    against the float64 NumPy reference."""
    params = perturbed(deepntk.init_params(deepntk.MLP(2, 1, 40, 4.0), seed=1), scale=0.2)
    X = np.random.default_rng(3).uniform(0.1, 1, size=(37, 2))
    Y = np.random.default_rng(4).normal(size=(37, 1))
    value, outputs, grads = deepntk.loss_and_gradients(params.astype("float32"), X, Y, backend="numba")
    ref_value, ref_outputs, ref = deepntk.loss_and_gradients(params, X, Y, backend="numpy")
    assert grads.W.dtype == np.float32
    assert_close(outputs, ref_outputs, TOL["float32"], "outputs")
    assert_close(grads.W, ref.W, TOL["float32"], "weight gradients")
    assert_close(grads.b, ref.b, TOL["float32"], "bias gradients")
