"""The backend decides: every kernel evaluation of a run goes through the backend the caller chose.

A spy backend (the NumPy backend counting its calls), registered as a third-party plugin through the entry-point
group, runs a CNN `simulate` (the NTKs of an ensemble, the limit and expected kernels), a gradient descent, the
limit kernel's Gram into Zarr stores on a real `distributed.LocalCluster`, the iterative solvers on those stores
(through the API and `deepntk predict --gram`), `deepntk limit`, and `predict` with the limit and the empirical
kernel. Meanwhile every other backend cannot start, their methods
and the compiled pair sums' drivers raise (`deepntk.analytic` holds the CPU's, which `cnn_limit_kernel` runs by
default when no backend passes its own): an evaluation that picks its own implementation fails the test. Then the
backends' own `cnn_pair_sum` and `gram_tile_products` against independent oracles and against each other.
"""

from __future__ import annotations

import importlib.util

import inspect
import textwrap

import numpy as np
import pytest

import deepntk
from deepntk.analytic import arccos_kernel
from deepntk.analytic.cnn import CNNTerms
from deepntk.analytic import cnn_pair_sum
from deepntk.backends import registry
from deepntk.backends.base import Backend
from deepntk.backends.cupy_backend import CupyBackend
from deepntk.backends.numba_backend import NumbaBackend
from deepntk.backends.numpy_backend import NumpyBackend
from conftest import TOL, assert_close
from oracles import window_count_weights

# Public methods of the protocol that describe a backend or move arrays, not evaluate a kernel.
NOT_KERNELS = {"availability", "describe", "memory_budget", "to_device", "to_host"}
KERNEL_METHODS = sorted(name for name, _ in inspect.getmembers(Backend, callable)
                        if not name.startswith("_") and name not in NOT_KERNELS)

SPY_SOURCE = '''
    import collections

    from deepntk.backends.numpy_backend import NumpyBackend


    def counted(name):
        def method(self, *args, **kwargs):
            self.calls[name] += 1
            return getattr(NumpyBackend, name)(self, *args, **kwargs)

        return method


    class SpyBackend(NumpyBackend):
        """The NumPy backend, counting the calls of each kernel method."""

        name = "spy"

        def __init__(self):
            self.calls = collections.Counter()


    for _name in {methods!r}:
        setattr(SpyBackend, _name, counted(_name))
'''


def bypassed(*args, **kwargs):
    raise AssertionError("a kernel evaluation bypassed the chosen backend")


@pytest.fixture
def spy(tmp_path, monkeypatch):
    """The spy, registered as a plugin under the entry-point group `deepntk.backends`, with every other
    backend unable to start and their kernel methods, and the compiled pair sums' shared driver, raising."""
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "deepntk_spy_backend.py").write_text(textwrap.dedent(SPY_SOURCE.format(methods=KERNEL_METHODS)))
    dist = plugin / "deepntk_spy_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: deepntk-spy-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nspy = deepntk_spy_backend:SpyBackend\n")
    monkeypatch.syspath_prepend(str(plugin))
    monkeypatch.setattr(registry, "_instances", {})  # no instance of another backend survives from earlier tests
    for cls in (NumpyBackend, NumbaBackend, CupyBackend):
        monkeypatch.setattr(cls, "__init__", bypassed)
    for cls in (NumbaBackend, CupyBackend):
        for name in KERNEL_METHODS:
            if name in vars(cls):
                monkeypatch.setattr(cls, name, bypassed)
    if importlib.util.find_spec("numba") is not None:  # the compiled pair sum's driver needs Numba to import
        # Imported before cnn_pair_sum is patched, and patched in its own namespace: a module first imported
        # while cnn_pair_sum is patched would keep the patched function after the test.
        from deepntk.analytic import numba_cnn_pair_sum

        monkeypatch.setattr(numba_cnn_pair_sum, "nonzero_pair_sums", bypassed)
        monkeypatch.setattr(numba_cnn_pair_sum, "pair_sum_from_nonzero", bypassed)
    monkeypatch.setattr(cnn_pair_sum, "pair_sum_from_nonzero", bypassed)
    backend = deepntk.get_backend("spy")
    assert type(backend).__name__ == "SpyBackend" and not backend.calls
    return backend


def images(N, seed, d=4):
    """Images with zero backgrounds in places (like MNIST's), so that zero patches occur."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, size=(N, 1, d, d)) * (rng.uniform(size=(N, 1, d, d)) < 0.7)


def test_every_kernel_evaluation_of_a_run_goes_through_the_chosen_backend(spy, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the Gram store needs the distributed extra")
    pytest.importorskip("zarr", reason="the Gram store needs the distributed extra")
    from deepntk.engine.experiments.convergence import ConvergenceConfig, run_convergence
    from deepntk.engine.gram import GramKernel, gram
    from deepntk.engine.predict import predict
    from deepntk.engine.solvers import predict_from_stores

    # `deepntk simulate --arch cnn --backend spy`: two seeds as one ensemble, the limit and expected kernels.
    config = ConvergenceConfig(arch="cnn", depths=(3,), seeds=2, points=5, network={"size": 4, "outputs": 2},
                               backend="spy")
    (result,), _ = run_convergence(config)
    assert np.isfinite(result.mean_error_limit) and result.limit.shape == (5, 5)
    assert spy.calls["ntk_ensemble"] == 1 and spy.calls["cnn_pair_sum"] == 3  # limit: β²; expected: C_L²β², β²

    spec = deepntk.CNN(1, 4, 2, 3, 2.0, filter_variance="code")
    X, Xt = images(10, 1) + 0.05, images(6, 2) + 0.05  # inputs x > 0, as the theory assumes
    Y = np.random.default_rng(3).normal(size=(10, 2))
    params = deepntk.init_params(spec, seed=0)
    deepntk.gradient_descent(params, X, Y, 2, eta=0.01, backend="spy")
    assert spy.calls["descend"] == 1

    # The limit kernel's Gram stores (tiles of 4: off-diagonal tiles for the solvers), then the solvers.
    kernel = GramKernel.for_spec("limit", spec, backend="spy")
    before = spy.calls["cnn_pair_sum"]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        train = gram(kernel, X, store=str(tmp_path / "train.zarr"), tile=4, client=client).store
        test = gram(kernel, Xt, X, store=str(tmp_path / "test.zarr"), tile=4, client=client).store
    assert spy.calls["cnn_pair_sum"] - before == 6 + 6  # the upper tiles of 3 × 3, and all 2 × 3
    prediction, _ = predict_from_stores(train, test, Y, [1.0, np.inf], backend="spy")
    assert np.all(np.isfinite(prediction.test)) and spy.calls["gram_tile_products"] > 0

    # The commands pass their --backend along: `limit` (the CNN's pair sum) and `predict --gram` (the solvers').
    from click.testing import CliRunner

    from deepntk.cli.main import cli

    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    before = spy.calls["cnn_pair_sum"], spy.calls["gram_tile_products"]
    limit = CliRunner().invoke(cli, ["limit", "--arch", "cnn", "--x1", str(tmp_path / "X.npy"), "--backend", "spy",
                                     "-o", str(tmp_path / "K.npy")])
    solved = CliRunner().invoke(cli, ["predict", "--gram", train.path, "--gram-test", test.path, "--y-train",
                                      str(tmp_path / "Y.npy"), "--times", "1", "--backend", "spy", "--quiet"])
    assert limit.exit_code == 0 and solved.exit_code == 0, limit.output + solved.output
    assert spy.calls["cnn_pair_sum"] == before[0] + 1 and spy.calls["gram_tile_products"] > before[1]

    before = spy.calls["cnn_pair_sum"]
    predict(X, Y, Xt, [1.0], spec=spec, backend="spy")
    assert spy.calls["cnn_pair_sum"] - before == 2  # K(X, X) and K(Xt, X)
    predict(X, Y, Xt, [1.0], params=params, backend="spy")
    assert spy.calls["ntk"] == 2


def brute_force_pair_sum(X1, X2, rho, beta_sq, f, tap):
    """d⁻⁴ Σ_pq M_pq κ(φ_p(x), φ_q(x')) by loops: each pixel's zero-padded patch cut out one by one, M counted over
    the shifted windows (oracles.window_count_weights), κ per pixel pair."""
    d, r = X1.shape[-1], f // 2
    t = rho**2 * tap

    def patches(x):
        padded = np.pad(x, ((0, 0), (r, r), (r, r)))
        return np.array([padded[:, i:i + f, j:j + f].ravel() for i in range(d) for j in range(d)])

    M = window_count_weights(d, f)
    out = np.empty((len(X1), len(X2)))
    for i, x in enumerate(X1):
        for j, y in enumerate(X2):
            P, Q = patches(x), patches(y)
            total = 0.0
            for p in range(d * d):
                for q in range(d * d):
                    total += M[p, q] * arccos_kernel(t * P[p] @ P[p] + beta_sq, t * Q[q] @ Q[q] + beta_sq,
                                                     t * P[p] @ Q[q] + beta_sq)
            out[i, j] = total / d**4
    return out


def test_every_backend_s_pair_sum_equals_the_brute_force_sum(backend):
    """Symmetric and cross image sets with zero patches, a blank image, β² and C_L²β² (the expected kernel's)."""
    X = images(4, 5)
    X[1] = 0.0
    engine = deepntk.get_backend(backend)
    for beta_sq in (1.3**2, 9.0 * 1.3**2):
        for A, B in ((X, None), (X[:2], X[1:])):
            terms = CNNTerms(A, B, 0.8, 3, "code")
            expected = brute_force_pair_sum(A, A if B is None else B, 0.8, beta_sq, 3, 1 / 9)
            assert_close(engine.cnn_pair_sum(terms, beta_sq), expected, TOL["identity"], f"{backend} pair sum")


def test_numba_s_methods_equal_numpy_s_on_identical_inputs():
    pytest.importorskip("numba", reason="the numba extra is not installed")
    numpy, numba = deepntk.get_backend("numpy"), deepntk.get_backend("numba")
    X = images(7, 6, d=5)
    for A, B in ((X, None), (X[:3], X[2:]), (X[4:], X)):
        terms = CNNTerms(A, B, 1 / 3, 3, "code")
        assert_close(numba.cnn_pair_sum(terms, 1.0), numpy.cnn_pair_sum(terms, 1.0), TOL["identity"], "pair sum")
    rng = np.random.default_rng(8)
    block, Y_cols, Y_rows = rng.normal(size=(130, 70)), rng.normal(size=(70, 5)), rng.normal(size=(130, 5))
    for ours, theirs in zip(numba.gram_tile_products(block, Y_cols, Y_rows),
                            numpy.gram_tile_products(block, Y_cols, Y_rows)):
        assert_close(ours, theirs, TOL["roundoff"], "tile products")
