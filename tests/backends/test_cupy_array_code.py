"""The CuPy backend's host-side logic on the CPU: its fused, blocked and mirrored paths with the four CUDA
kernel launches replaced by plain NumPy stand-ins written here from the kernels' contracts (kernels.cu).

The kernels themselves are covered by the cross-backend tests when a GPU is present (backend id 'cupy', marked
gpu); what runs here is everything around them: the blocking under a memory budget, the mirrored Gram tiles,
the device-resident descent with index plans, and the fallbacks."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import deepntk
from deepntk.backends import cupy_backend
from deepntk.backends.cupy_backend import (CupyBackend, GRAM_THREADS, NARROW_WIDTH, SHARED_LIMIT, gram_layer_bytes,
                                           gram_micro_tile, mirror_lower_tiles)
from deepntk.engine.packed import network_inputs, pack
from oracles import perturbed
from conftest import TOL, assert_close


class KernelStandIns(CupyBackend):
    """CupyBackend on NumPy whose kernel launches are plain loops over layers, inputs last (n, N) as on the GPU."""

    def __init__(self):
        super().__init__(xp=np)
        self.kernels_available = True
        self.launches = {"forward": 0, "deltas": 0, "trace": 0, "gram": 0}

    @staticmethod
    def _layers(net, W, b, Xt):
        a, acts, zs = Xt, [], []
        for layer in range(net.depth):
            acts.append(a)
            z = W[layer] @ a + b[layer][:, None]
            zs.append(z)
            a = np.maximum(z, 0.0)
        return acts, zs

    def _launch_forward(self, net, W, b, Xt):
        self.launches["forward"] += 1
        return self._layers(net, W, b, Xt)[1][-1][: net.outputs]

    def _launch_deltas(self, net, W, b, Xt, Yt, coeff):
        self.launches["deltas"] += 1
        acts, zs = self._layers(net, W, b, Xt)
        k = Yt.shape[0]
        delta = np.zeros_like(zs[-1])
        delta[:k] = coeff * (zs[-1][:k] - Yt)
        D = [None] * net.depth
        for layer in range(net.depth - 1, -1, -1):
            D[layer] = delta
            if layer:
                delta = (W[layer].T @ delta) * (zs[layer - 1] > 0)
        return np.array(acts), np.array(D), zs[-1][:k]

    def _launch_trace(self, net, W, b, Xt):
        self.launches["trace"] += 1
        acts, zs = self._layers(net, W, b, Xt)
        k, n, B = net.outputs, net.width, Xt.shape[1]
        G = np.zeros((k, n, B))
        G[np.arange(k), np.arange(k)] = 1.0
        Gs = [None] * net.depth
        for layer in range(net.depth - 1, -1, -1):
            Gs[layer] = G
            if layer:
                G = np.einsum("kmb,mj->kjb", G, W[layer]) * (zs[layer - 1] > 0)[None]
        return np.array(acts), np.array(Gs)

    def _launch_gram(self, net, A1, G1, A2, G2, same):
        self.launches["gram"] += 1
        pair = np.einsum("lni,lnj->lij", A1, A2) + 1.0
        out = np.einsum("lij,lani,lbnj->ijab", pair, G1, G2)
        if same:  # what a symmetric launch leaves unwritten
            tiles = np.arange(out.shape[0]) // (gram_micro_tile(net.outputs) * GRAM_THREADS)
            out[tiles[:, None] > tiles[None, :]] = np.nan
        return out


def narrow_mlp(k=2, depth=6, seed=1):
    params = perturbed(deepntk.init_params(deepntk.MLP(2, k, depth, 3.0), seed=seed), scale=0.1)
    return params


def points(N, seed=2):
    return np.random.default_rng(seed).uniform(0.1, 1, size=(N, 2))


def test_mirror_fills_exactly_the_tiles_below_the_diagonal():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(10, 10, 2, 2))
    full = full + full.transpose(1, 0, 3, 2)  # a symmetric Gram
    tile = 4
    blocks = np.arange(10) // tile
    partial = full.copy()
    partial[blocks[:, None] > blocks[None, :]] = np.nan  # what a symmetric launch leaves unwritten
    assert np.array_equal(mirror_lower_tiles(np, partial, tile), full)


def test_fused_networks_fit_shared_memory():
    """Every width the fused path accepts stages its Gram tiles within the shared-memory limit, and a thread's
    K²·MICRO² accumulators stay few (16 where several pairs share a thread, else K²)."""
    for k in range(1, 11):
        assert k * k * gram_micro_tile(k) ** 2 <= max(16, k * k)
    stand_ins = KernelStandIns()
    for width in range(3, NARROW_WIDTH + 3):
        for k in range(1, width - 1):
            net = pack(deepntk.init_params(deepntk.MLP(width - 1 - k, k, 2, 2.0)))
            fits = width <= NARROW_WIDTH and gram_layer_bytes(width, k, 8) <= SHARED_LIMIT
            assert stand_ins._fused(net) == fits, (width, k)


@pytest.mark.parametrize("k", [1, 2])
def test_fused_paths_match_the_reference(k):
    stand_ins = KernelStandIns()
    params = narrow_mlp(k)
    assert stand_ins._fused(pack(params))
    X, X2 = points(37), points(11, seed=3)
    Y = np.random.default_rng(4).normal(size=(37, k))
    for got, want in ((deepntk.forward(params, X, backend=stand_ins), deepntk.forward(params, X, backend="numpy")),
                      (deepntk.scaled_ntk(params, X, backend=stand_ins), deepntk.scaled_ntk(params, X, backend="numpy")),
                      (deepntk.scaled_ntk(params, X, X2, backend=stand_ins),
                       deepntk.scaled_ntk(params, X, X2, backend="numpy"))):
        assert_close(got, want, TOL["identity"])
    _, _, g1 = deepntk.loss_and_gradients(params, X, Y, loss="mse", backend=stand_ins)
    _, _, g2 = deepntk.loss_and_gradients(params, X, Y, loss="mse", backend="numpy")
    for a, b in zip(g1.weights + g1.biases, g2.weights + g2.biases):
        assert_close(a, b, TOL["identity"])
    assert all(stand_ins.launches.values()), stand_ins.launches


def test_blocked_paths_under_a_small_memory_budget(monkeypatch):
    """A budget of a few inputs forces several blocks: the Gram's mirrored off-diagonal blocks and the
    gradient sums accumulated over blocks must equal the one-piece reference."""
    stand_ins = KernelStandIns()
    params = narrow_mlp(2, depth=5)
    X, Y = points(40), np.random.default_rng(5).normal(size=(40, 2))
    net = pack(params)
    per_input = net.depth * net.width * 3 * 8
    monkeypatch.setenv("DEEPNTK_MEMORY_BUDGET", str(40 * 40 * 4 * 8 + 2 * 7 * per_input))
    assert_close(deepntk.scaled_ntk(params, X, backend=stand_ins), deepntk.scaled_ntk(params, X, backend="numpy"),
                 TOL["identity"], "blocked symmetric Gram")
    assert stand_ins.launches["trace"] >= 6 and stand_ins.launches["gram"] >= 21  # ≥ 6 blocks: upper pairs only
    monkeypatch.setenv("DEEPNTK_MEMORY_BUDGET", str(7 * 2 * net.depth * net.width * 8))  # 7 inputs per block
    value_a, _, g1 = deepntk.loss_and_gradients(params, X, Y, backend=stand_ins)
    value_b, _, g2 = deepntk.loss_and_gradients(params, X, Y, backend="numpy")
    assert value_a == pytest.approx(value_b, rel=TOL["identity"]) and stand_ins.launches["deltas"] == 6
    for a, b in zip(g1.weights + g1.biases, g2.weights + g2.biases):
        assert_close(a, b, TOL["identity"], "blocked gradients")


def test_device_resident_descent_with_index_plans():
    """descend on the device with mini-batch index plans equals the reference loop step for step."""
    stand_ins = KernelStandIns()
    params = narrow_mlp(1, depth=5)
    net = pack(params)
    X = network_inputs(net, params.spec, points(20))
    Y = np.random.default_rng(6).normal(size=(20, 1))
    plan = [np.arange(0, 7), None, np.array([19, 3, 5]), np.arange(10, 20)]
    W1, b1, losses1 = stand_ins.descend(net, X, Y, "paper", 1e-3, plan)
    W2, b2, losses2 = deepntk.get_backend("numpy").descend(net, X, Y, "paper", 1e-3, plan)
    assert stand_ins.launches["deltas"] == len(plan)
    assert_close(losses1, losses2, TOL["identity"], "batch losses")
    assert_close(W1, W2, TOL["identity"], "weights")
    assert_close(b1, b2, TOL["identity"], "biases")


def test_gram_larger_than_the_budget_is_refused(monkeypatch):
    monkeypatch.setenv("DEEPNTK_MEMORY_BUDGET", "1000")
    with pytest.raises(MemoryError, match="budget"):
        deepntk.scaled_ntk(narrow_mlp(1), points(30), backend=KernelStandIns())


def test_unavailable_cupy_names_the_missing_piece():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed: availability depends on the device here")
    ok, reason = CupyBackend.availability()
    assert not ok and reason == "cupy is not installed (pip install 'deepntk[cuda]')"
    assert not CupyBackend(xp=np).kernels_available and cupy_backend.cuda_unavailable_reason() == reason
