"""The CuPy backend on the CPU: `CupyBackend(xp=numpy)` with its CUDA kernels (kernels.cu) compiled for the host
(tests/cuda_emulation.py), so that the real kernel source runs through the backend's own launch code: its grids,
argument lists, shared-memory sizes, compiled widths, ensembles, blocking under a memory budget, mirrored Gram
tiles and device-resident descent. What only a GPU can judge (speed, registers in use, the device's compiler) is
in tests/backends/test_cuda_compile.py (ptxas, where nvcc is installed) and in the GPU suite (marked gpu)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import deepntk
from deepntk.analytic import cnn_limit_kernel
from deepntk.analytic.cnn import CNNTerms
from deepntk.analytic import cnn_pair_sum
from deepntk.backends import cupy_backend
from deepntk.backends.cupy_backend import (CupyBackend, NARROW_WIDTH, SHARED_LIMIT, compiled_width, gram_layer_bytes,
                                           gram_micro_tile, mirror_lower_tiles)
from deepntk.base.errors import TrainingDiverged
from deepntk.engine.packed import network_inputs, pack
from oracles import correlation_h_grid, perturbed
from conftest import TOL, assert_close
from cuda_emulation import compiler_missing_reason, emulated_kernel

NUMPY = deepntk.get_backend("numpy")


class CupyOnHost(CupyBackend):
    """CupyBackend on NumPy whose launches run kernels.cu compiled for the host; counts launches per kernel."""

    def __init__(self):
        super().__init__(xp=np)
        self.kernels_available = True
        self.launches = {name: 0 for name in ("dense_forward", "dense_deltas", "dense_trace", "dense_gram",
                                              "conv_forward", "conv_backward", "cnn_correlation_sums")}


@pytest.fixture
def on_host(monkeypatch):
    reason = compiler_missing_reason()
    if reason:
        pytest.skip(reason)
    backend = CupyOnHost()

    def kernel(name, dtype, *template_args):
        compiled = emulated_kernel(name, dtype, *template_args)

        def launch(*args, **kwargs):
            backend.launches[name] += 1
            return compiled(*args, **kwargs)

        return launch

    monkeypatch.setattr(cupy_backend, "_kernel", kernel)
    return backend


def narrow_mlp(k=2, depth=6, seed=1, dtype="float64"):
    return perturbed(deepntk.init_params(deepntk.MLP(2, k, depth, 3.0), seed=seed), scale=0.1).astype(dtype)


def small_cnn(k=2, depth=5, seed=1, size=5):
    return perturbed(deepntk.init_params(deepntk.CNN(1, size, k, depth, 3.0), seed=seed), scale=0.1)


def points(N, seed=2):
    return np.random.default_rng(seed).uniform(0.1, 1, size=(N, 2))


def images(N, size=5, seed=2):
    return np.random.default_rng(seed).uniform(0.1, 1, size=(N, 1, size, size))


def test_mirror_fills_exactly_the_tiles_below_the_diagonal():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(3, 10, 10, 2, 2))
    full = full + full.transpose(0, 2, 1, 4, 3)  # symmetric Grams of three networks
    tile = 4
    blocks = np.arange(10) // tile
    partial = full.copy()
    partial[:, blocks[:, None] > blocks[None, :]] = np.nan  # what a symmetric launch leaves unwritten
    assert np.array_equal(mirror_lower_tiles(np, partial, tile), full)
    assert np.array_equal(mirror_lower_tiles(np, partial[1], tile), full[1])


def test_fused_networks_fit_shared_memory():
    """Every width the fused path accepts stages its Gram tiles within the shared-memory limit, and a thread's
    K²·MICRO² accumulators stay few (16 where several pairs share a thread, else K²)."""
    for k in range(1, 11):
        assert k * k * gram_micro_tile(k) ** 2 <= max(16, k * k)
    backend = CupyOnHost()
    for width in range(3, NARROW_WIDTH + 3):
        for k in range(1, width - 1):
            net = pack(deepntk.init_params(deepntk.MLP(width - 1 - k, k, 2, 2.0)))
            fits = width <= NARROW_WIDTH and gram_layer_bytes(width, k, 8) <= SHARED_LIMIT
            assert backend._fused(net) == fits, (width, k)


def test_widths_are_compiled_in_where_a_threads_arrays_fit_registers():
    assert compiled_width(4, 0) == compiled_width(4, 1) == compiled_width(4, 2) == 4  # the paper's widths
    assert compiled_width(26, 0) == 26 and compiled_width(27, 0) == 0 and compiled_width(20, 1) == 20
    assert compiled_width(16, 2) == 16 and compiled_width(17, 2) == 0 and compiled_width(16, 3) == 0


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("network", ["compiled width", "run-time width", "CNN", "CNN, one row a launch",
                                     "CNN, two values a thread"])
def test_fused_paths_match_the_reference(on_host, monkeypatch, k, network):
    """Forward, Grams and loss gradients of the kernels against NumPy: MLPs with the width compiled in and
    passed at run time; CNNs with all Jacobian rows in one launch, one row per launch (a smaller shared-memory
    limit), and 17×17 images (n·d² = 1156 values: two per thread of a 1024-thread block)."""
    if network == "run-time width":
        monkeypatch.setattr(cupy_backend, "REGISTER_VALUES", 0)  # every kernel takes the width as an argument
    if network.startswith("CNN"):
        size = 17 if network == "CNN, two values a thread" else 5
        params, X, X2 = small_cnn(k, size=size), images(7, size), images(3, size, seed=3)
        if network == "CNN, one row a launch":  # room for one δ image and one layer's weights
            monkeypatch.setattr(cupy_backend, "SHARED_LIMIT", cupy_backend.conv_shared_bytes(pack(params), 1, 1))
        rows = cupy_backend.conv_rows_per_launch(pack(params))
        assert rows == (1 if network == "CNN, one row a launch" else k)
    else:
        params, X, X2 = narrow_mlp(k), points(37), points(11, seed=3)
    assert on_host._fused(pack(params))
    Y = np.random.default_rng(4).normal(size=(len(X), k))
    for what, call in (("forward", lambda b: deepntk.forward(params, X, backend=b)),
                       ("Gram", lambda b: deepntk.scaled_ntk(params, X, backend=b)),
                       ("cross Gram", lambda b: deepntk.scaled_ntk(params, X, X2, backend=b)),
                       ("loss", lambda b: deepntk.loss_and_gradients(params, X, Y, loss="mse", backend=b)[0]),
                       ("dW", lambda b: deepntk.loss_and_gradients(params, X, Y, loss="mse", backend=b)[2].W),
                       ("db", lambda b: deepntk.loss_and_gradients(params, X, Y, loss="mse", backend=b)[2].b)):
        assert_close(call(on_host), call("numpy"), TOL["identity"], what)
    kernels = ("conv_forward", "conv_backward") if network.startswith("CNN") else ("dense_forward", "dense_deltas",
                                                                                 "dense_trace", "dense_gram")
    assert all(on_host.launches[name] for name in kernels), on_host.launches


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_float32_kernels_against_the_float64_reference(on_host, arch):
    params, X = (small_cnn(1), images(6)) if arch == "cnn" else (narrow_mlp(1), points(20))
    for call in (lambda p, b: deepntk.forward(p, X, backend=b), lambda p, b: deepntk.scaled_ntk(p, X, backend=b)):
        got = call(params.astype("float32"), on_host)
        assert got.dtype == np.float32
        assert_close(got, call(params, "numpy"), TOL["float32"])


def ensemble_and_data(E=3, k=2, N=37, arch="mlp"):
    rng = np.random.default_rng(8)
    if arch == "cnn":
        return [small_cnn(k, seed=seed) for seed in range(E)], images(N, seed=8), rng.normal(size=(N, k))
    members = [narrow_mlp(k, depth=7, seed=seed) for seed in range(E)]
    return members, rng.uniform(0.1, 1, size=(N, 2)), rng.normal(size=(N, k))


@pytest.mark.parametrize("arch,launches", [
    ("mlp", {"dense_forward": 1, "dense_deltas": 1, "dense_trace": 3, "dense_gram": 2}),
    ("cnn", {"conv_forward": 1 + 1 + 3, "conv_backward": 1 + 3}),  # forward; gradients; one per Gram block
])
def test_an_ensemble_in_one_launch_equals_its_networks_one_by_one(on_host, arch, launches):
    members, X, Y = ensemble_and_data(N=11 if arch == "cnn" else 37, arch=arch)
    ensemble = deepntk.stack_params(members)
    outputs = deepntk.forward(ensemble, X, backend=on_host)
    gram = deepntk.scaled_ntk(ensemble, X, backend=on_host)
    cross = deepntk.scaled_ntk(ensemble, X[:5], X, backend=on_host)
    values, _, grads = deepntk.loss_and_gradients(ensemble, X, Y, loss="paper", backend=on_host)
    assert {name: count for name, count in on_host.launches.items() if count} == launches
    for e, params in enumerate(members):
        value, _, single = deepntk.loss_and_gradients(params, X, Y, loss="paper", backend="numpy")
        for what, got, want in (("forward", outputs[e], deepntk.forward(params, X, backend="numpy")),
                                ("Gram", gram[e], deepntk.scaled_ntk(params, X, backend="numpy")),
                                ("cross Gram", cross[e], deepntk.scaled_ntk(params, X[:5], X, backend="numpy")),
                                ("loss", values[e], value), ("dW", grads.W[e], single.W), ("db", grads.b[e], single.b)):
            assert_close(got, want, TOL["identity"], f"{what} of network {e}")


def test_blocked_paths_under_a_small_memory_budget(on_host, monkeypatch):
    """A budget of a few inputs forces several blocks: the Grams' mirrored off-diagonal blocks and the gradient
    sums accumulated over blocks must equal the one-piece reference, for every network of an ensemble."""
    members, X, Y = ensemble_and_data(E=2, N=40)
    nets = pack(deepntk.stack_params(members))
    per_input = 2 * nets.depth * nets.width * 3 * 8  # two networks' activations and two-row Jacobians
    monkeypatch.setenv("DEEPNTK_MEMORY_BUDGET", str(2 * 40 * 40 * 4 * 8 + 2 * 7 * per_input))
    theta = on_host.ntk_ensemble(nets, network_inputs(nets, members[0].spec, X))
    assert on_host.launches["dense_trace"] >= 6 and on_host.launches["dense_gram"] >= 21  # ≥ 6 blocks: upper pairs
    monkeypatch.setenv("DEEPNTK_MEMORY_BUDGET", str(7 * 2 * 2 * nets.depth * nets.width * 8))  # 7 inputs per block
    values, _, dW, db = on_host.loss_and_gradients_ensemble(nets, network_inputs(nets, members[0].spec, X), Y, "mse")
    assert on_host.launches["dense_deltas"] == 6
    for e, params in enumerate(members):
        value, _, single = deepntk.loss_and_gradients(params, X, Y, loss="mse", backend="numpy")
        assert_close(theta[e], NUMPY.ntk(pack(params), network_inputs(nets, members[0].spec, X)), TOL["identity"],
                     f"blocked Gram of network {e}")
        assert value == pytest.approx(values[e], rel=TOL["identity"])
        assert_close(dW[e], single.W, TOL["identity"], f"blocked dW of network {e}")
        assert_close(db[e], single.b, TOL["identity"], f"blocked db of network {e}")


@pytest.mark.parametrize("networks,arch", [(1, "mlp"), (3, "mlp"), (2, "cnn")])
def test_device_resident_descent_with_index_plans(on_host, networks, arch):
    """descend on the device with mini-batch index plans equals the reference loop step for step, for one
    network (no ensemble axis) and for an ensemble (every network in each launch), MLPs and CNNs."""
    members, X, Y = ensemble_and_data(E=networks, k=1, N=20, arch=arch)
    net = pack(members[0] if networks == 1 else deepntk.stack_params(members))
    Xp = network_inputs(net, members[0].spec, X)
    plan = [np.arange(0, 7), None, np.array([19, 3, 5]), np.arange(10, 20)]
    W, b, losses = on_host.descend(net, Xp, Y, "paper", 1e-3, plan)
    assert on_host.launches["conv_backward" if arch == "cnn" else "dense_deltas"] == len(plan)
    assert losses.shape == ((len(plan),) if networks == 1 else (len(plan), networks))
    for e, params in enumerate(members):
        We, be, losses_e = NUMPY.descend(pack(params), Xp, Y, "paper", 1e-3, plan)
        mine = (W, b, losses) if networks == 1 else (W[e], b[e], losses[:, e])
        for what, got, want in zip(("weights", "biases", "losses"), mine, (We, be, losses_e), strict=True):
            assert_close(got, want, TOL["identity"], f"{what} of network {e}")


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_a_nan_weight_reaches_the_outputs_as_in_the_reference(on_host, arch):
    """ReLU as the kernels write it keeps NaN (max(NaN, 0) is NaN in NumPy), so a diverged network shows."""
    params = small_cnn() if arch == "cnn" else narrow_mlp()
    params.W[2].flat[0] = np.nan  # a weight into the first unit (channel) of layer 3
    X = images(3) if arch == "cnn" else points(3)
    want = deepntk.forward(params, X, backend="numpy")
    assert np.isnan(want).all()
    assert np.isnan(deepntk.forward(params, X, backend=on_host)).all()


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_a_diverging_network_of_an_ensemble_is_named(on_host):
    members, X, Y = ensemble_and_data(E=3, k=1, N=10)
    members[2].b[-1, 0] = 1e300  # its output, and so its loss, overflows at the first step
    with pytest.raises(TrainingDiverged, match="network 2 became inf at step 0"):
        deepntk.gradient_descent(deepntk.stack_params(members), X, Y, 2, eta=0.1, backend=on_host)


@pytest.mark.parametrize("c,f,d,variance,rho,beta,near_one", [
    (1, 3, 7, "code", 0.8, 1.3, False), (2, 3, 5, "paper", 0.8, 1.3, False), (1, 5, 6, "code", 0.8, 1.3, True),
    (1, 3, 7, "code", 1 / 3, 1.0, True)])
def test_cnn_limit_kernel_in_device_code_equals_the_reference(on_host, monkeypatch, c, f, d, variance, rho, beta,
                                                              near_one):
    """kernels.cu's pixel-pair sum against deepntk.analytic's direct sum: symmetric and cross Grams both ways,
    images with zero backgrounds (like MNIST's), a blank image, and the second set sent in chunks of 3 images;
    scales whose correlations are all near one (the last: Table 1's) take the shorter polynomial."""
    monkeypatch.setattr(cupy_backend, "CUDA_CHUNK_BYTES", 3 * d * d * (c * f * f + 3) * 8)
    pair_sum = on_host.cnn_pair_sum
    rng = np.random.default_rng(c * 100 + f * 10 + d)
    X = rng.uniform(0.0, 1.0, size=(8, c, d, d))
    X[:4] *= rng.uniform(size=(4, 1, d, d)) < 0.35  # sparse strokes: zero patches wherever a window misses them
    X[2] = 0.0
    options = dict(outputs=2, rho=rho, beta=beta, filter_size=f, filter_variance=variance)
    terms = CNNTerms(X, None, rho, f, variance)
    assert cnn_pair_sum.correlations_near_one(terms.P1, terms.norm1, terms.P1, terms.norm1, terms.t,
                                              options["beta"] ** 2) == near_one
    for A, B in ((X, None), (X[:3], X[1:]), (X[1:], X[:3])):
        assert_close(cnn_limit_kernel(A, B, pair_sum=pair_sum, **options),
                     cnn_limit_kernel(A, B, pair_sum="numpy", **options),
                     TOL["identity"], "CNN limit kernel")
    assert on_host.launches["cnn_correlation_sums"] == 3 + 1 + 1  # the symmetric Gram's 8 images in chunks of 3


@pytest.mark.parametrize("near_one", [False, True])
def test_the_device_correlation_form_matches_a_30_digit_arc_cosine(on_host, near_one):
    """kernels.cu's h(ρ) (both polynomials) against mpmath at 30 digits on `correlation_h_grid`: one patch per image,
    unit roots and weight, so that out[i, 0] = h(⟨u_i, u⟩) = h(ρ_i) with u_i = (ρ_i, √(1 − ρ_i²)) and u = (1, 0)."""
    grid = correlation_h_grid(near_one)
    if grid is None:
        pytest.skip("mpmath comes with the symbolic extra")
    rho, expected = grid
    n = len(rho)
    U1 = np.stack([rho, np.sqrt(np.maximum(1.0 - rho**2, 0.0))], axis=1)[:, None, :]
    constants = cnn_pair_sum.H_NEAR_ONE_CONSTANTS if near_one else cnn_pair_sum.H_CONSTANTS
    out = np.zeros((n, 1))
    kernel = cupy_backend._kernel("cnn_correlation_sums", "float64", int(near_one))
    ones, zeros = np.ones((n, 1)), np.zeros((n, 1), dtype=np.int64)
    kernel((n, 1), (cupy_backend.PAIR_THREADS,),
           [U1, ones, zeros, np.ones(n, dtype=np.int64), np.int32(1), np.array([[[1.0, 0.0]]]), np.ones((1, 1)),
            np.zeros((1, 1), dtype=np.int64), np.ones(1, dtype=np.int64), np.int32(1), np.int32(2), np.ones((1, 1)),
            np.int32(1), np.int32(1), np.int32(0), np.int32(0), np.array(constants), out],
           shared_mem=cupy_backend.PAIR_THREADS * 8)
    assert_close(out[:, 0], expected, TOL["exact"], "h on the device")


def test_tile_products_on_the_backend_s_namespace_equal_einsum():
    """`gram_tile_products` as the CuPy backend runs it (the reference's products on its array namespace, here
    NumPy), against einsum."""
    rng = np.random.default_rng(7)
    block, Y_cols, Y_rows = rng.normal(size=(40, 30)), rng.normal(size=(30, 3)), rng.normal(size=(40, 3))
    to_rows, to_cols = CupyBackend(xp=np).gram_tile_products(block, Y_cols, Y_rows)
    assert_close(to_rows, np.einsum("ij,jc->ic", block, Y_cols), TOL["roundoff"], "tile · Y[cols]")
    assert_close(to_cols, np.einsum("ij,ic->jc", block, Y_rows), TOL["roundoff"], "tileᵀ · Y[rows]")


def test_gram_larger_than_the_budget_is_refused(monkeypatch):
    monkeypatch.setenv("DEEPNTK_MEMORY_BUDGET", "1000")
    backend = CupyOnHost()
    with pytest.raises(MemoryError, match="budget"):
        deepntk.scaled_ntk(narrow_mlp(1), points(30), backend=backend)


def test_the_host_build_refuses_what_the_device_would_misread(on_host):
    """The emulation's own checks: a launch argument without a fixed C type (a Python int, which CuPy passes as
    a 64-bit integer) and too little dynamic shared memory for the weights the kernel stages."""
    nets = pack(narrow_mlp(1)).stacked()
    Xt = np.ascontiguousarray(points(5).T.copy())
    Xt = np.vstack([Xt, np.zeros((nets.width - 2, 5))])
    out = np.empty((1, 1, 5))
    kernel = emulated_kernel("dense_forward", "float64", nets.width)
    chunk, shared = on_host._weight_stage(nets)
    good = [nets.W, nets.b, Xt, out, np.int32(nets.depth), np.int32(nets.width), np.int32(1), np.int32(5),
            np.int32(chunk)]
    kernel((1, 1), (128,), good, shared_mem=shared)
    assert_close(out[0, 0], NUMPY.forward(pack(narrow_mlp(1)), Xt.T)[:, 0], TOL["identity"])
    with pytest.raises(TypeError, match="argument 4: int 6 has no fixed C type"):
        kernel((1, 1), (128,), good[:4] + [nets.depth] + good[5:], shared_mem=shared)
    with pytest.raises(TypeError, match="argument 6: the kernel takes a 4-byte integer; got int64"):
        kernel((1, 1), (128,), good[:6] + [np.int64(1)] + good[7:], shared_mem=shared)
    with pytest.raises(RuntimeError, match="wrote past the dynamic shared memory"):
        kernel((1, 1), (128,), good, shared_mem=shared - 8 * nets.width)


def test_unavailable_cupy_names_the_missing_piece():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed: availability depends on the device here")
    ok, reason = CupyBackend.availability()
    assert not ok and reason == "cupy is not installed (pip install 'deepntk[cuda]')"
    assert not CupyBackend(xp=np).kernels_available and cupy_backend.cuda_unavailable_reason() == reason
