"""Specs, initializers and the `.npz` params contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepntk
from deepntk.base.errors import ParamsFileError, SpecError


@pytest.mark.parametrize("kwargs,match", [
    (dict(depth=1), "depth must be >= 2"),
    (dict(C_L=0.0), "C_L must be"),
    (dict(C_L=-3.0), "C_L must be"),
    (dict(rho=0.0), "rho must be"),
    (dict(beta=-1.0), "beta must be"),
    (dict(C_L=float("nan")), "C_L must be"),
])
def test_mlp_spec_rejects_bad_values(kwargs, match):
    base = dict(d_in=2, d_out=1, depth=10, C_L=5.0)
    with pytest.raises(SpecError, match=match):
        deepntk.MLP(**{**base, **kwargs})


@pytest.mark.parametrize("kwargs,match", [
    (dict(filter_size=4), "odd"),
    (dict(pool=4), "pool"),
    (dict(filter_size=11, size=5), "larger than"),
    (dict(filter_variance="other"), "filter_variance"),
])
def test_cnn_spec_rejects_bad_values(kwargs, match):
    base = dict(in_channels=1, size=6, outputs=1, depth=10, C_L=5.0)
    with pytest.raises(SpecError, match=match):
        deepntk.CNN(**{**base, **kwargs})


def test_unknown_init_and_dtype_are_rejected():
    spec = deepntk.MLP(2, 1, 5, 3.0)
    with pytest.raises(SpecError, match="unknown init"):
        deepntk.init_params(spec, init="xavier")
    with pytest.raises(SpecError, match="dtype"):
        deepntk.init_params(spec, dtype="float16")


def test_paper_mlp_init_has_the_spec_block_structure():
    spec = deepntk.MLP(d_in=2, d_out=2, depth=4, C_L=5.0, rho=1.0, beta=1.0)
    p = deepntk.init_params(spec, seed=0)
    W1, W2, W4 = p.weights[0], p.weights[1], p.weights[3]
    assert np.array_equal(W1[:2], 5.0 * np.eye(2)) and np.all(W1[3:] == 0)
    assert np.array_equal(p.biases[0][3:], [5.0, 5.0]) and np.all(p.biases[0][:2] == 0)
    assert np.array_equal(W2[:2, :2], np.eye(2)) and np.array_equal(W2[3:, 3:], np.eye(2))
    assert np.all(W2[2, 2:] == 0) and np.all(W2[:, 2] == 0)
    assert np.array_equal(W4, np.hstack([np.zeros((2, 3)), np.eye(2)])) and np.array_equal(p.biases[3], [-5.0, -5.0])


def test_paper_init_random_units_have_the_stated_variances():
    """u ~ N(0, ρ²/d_in), v ~ N(0, C_L²β²): sample variances over 20000 layers within 4 standard errors."""
    spec = deepntk.MLP(d_in=3, d_out=1, depth=20002, C_L=4.0, rho=0.7, beta=1.3)
    p = deepntk.init_params(spec, seed=1)
    u = np.array([w[3, :3] for w in p.weights[1:-1]]).ravel()
    v = np.array([b[3] for b in p.biases[1:-1]])
    for sample, variance in ((u, 0.7**2 / 3), (v, (4.0 * 1.3) ** 2)):
        se = variance * np.sqrt(2 / len(sample))
        assert abs(sample.var() - variance) < 4 * se


def test_kaiming_uniform_bounds_use_fan_in():
    spec = deepntk.CNN(in_channels=2, size=5, outputs=1, depth=3, C_L=1.0, filter_size=3)
    p = deepntk.init_params(spec, init="kaiming-uniform", seed=3)
    assert np.max(np.abs(p.weights[0])) <= 1 / np.sqrt(2 * 9)
    assert np.max(np.abs(p.weights[1])) <= 1 / np.sqrt(4 * 9)
    assert np.max(np.abs(p.weights[1])) > 0.9 / np.sqrt(4 * 9)


def test_same_seed_same_weights_and_dtype_cast_from_one_draw():
    spec = deepntk.MLP(2, 1, 6, 3.0)
    a = deepntk.init_params(spec, seed=7)
    b = deepntk.init_params(spec, seed=7, dtype="float32")
    for wa, wb in zip(a.weights, b.weights):
        assert np.array_equal(wa.astype(np.float32), wb)


@pytest.mark.parametrize("spec", [deepntk.MLP(3, 2, 5, 4.0, 0.9, 1.1),
                                  deepntk.CNN(2, 8, 3, 4, 6.0, filter_size=5, pool=2, filter_variance="code")])
def test_save_load_round_trip(tmp_path, spec):
    params = deepntk.init_params(spec, seed=5, dtype="float32")
    path = tmp_path / "p.npz"
    params.save(path)
    loaded = deepntk.load_params(path)
    assert loaded.spec == spec and loaded.init == "paper" and loaded.seed == 5 and loaded.dtype == np.float32
    for x, y in zip(params.weights + params.biases, loaded.weights + loaded.biases):
        assert np.array_equal(x, y)
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        key = "w1" if spec.arch == "cnn" else "W1"
        assert data[key].shape == spec.weight_shape(1)
    assert meta["deepntk_version"] == deepntk.__version__ and meta["C_L"] == spec.C_L


def test_load_names_the_first_missing_or_misshaped_array(tmp_path):
    spec = deepntk.MLP(2, 1, 4, 3.0)
    arrays = {f"W{i}": w for i, w in enumerate(deepntk.init_params(spec).weights, 1)}
    arrays.update({f"b{i}": b for i, b in enumerate(deepntk.init_params(spec).biases, 1)})
    meta = json.dumps(spec.to_meta())
    broken = dict(arrays, W3=np.zeros((4, 3)))
    np.savez(tmp_path / "shape.npz", meta=meta, **broken)
    with pytest.raises(ParamsFileError, match=r"W3 has shape \(4, 3\), expected \(4, 4\)"):
        deepntk.load_params(tmp_path / "shape.npz")
    missing = {k: v for k, v in arrays.items() if k != "b2"}
    np.savez(tmp_path / "missing.npz", meta=meta, **missing)
    with pytest.raises(ParamsFileError, match="missing array b2"):
        deepntk.load_params(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ParamsFileError, match="cannot read"):
        deepntk.load_params(tmp_path / "junk.npz")


def test_params_from_pytorch_layout_arrays_drop_in():
    """Weights trained elsewhere (PyTorch nn.Linear layout (out, in)) load through the same constructor."""
    spec = deepntk.MLP(2, 1, 3, 2.0)
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=spec.weight_shape(l)) for l in range(1, 4)]
    biases = [rng.normal(size=spec.bias_shape(l)) for l in range(1, 4)]
    params = deepntk.Params(spec, weights, biases)
    x = np.array([[0.3, 0.5]])
    h = np.maximum(weights[0] @ x[0] + biases[0], 0)
    h = np.maximum(weights[1] @ h + biases[1], 0)
    assert deepntk.forward(params, x, backend="numpy")[0, 0] == pytest.approx(weights[2] @ h + biases[2])


def test_saved_files_honour_the_umask_and_keep_an_existing_files_mode(tmp_path):
    """Like np.save: a new file gets 0666 less the umask; overwriting keeps the file's own permissions."""
    import os
    import stat

    params = deepntk.init_params(deepntk.MLP(2, 1, 3, 2.0))
    old = os.umask(0o022)
    try:
        params.save(tmp_path / "new.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o644
        (tmp_path / "kept.npz").write_bytes(b"")
        os.chmod(tmp_path / "kept.npz", 0o640)
        params.save(tmp_path / "kept.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "kept.npz").st_mode) == 0o640
    finally:
        os.umask(old)
