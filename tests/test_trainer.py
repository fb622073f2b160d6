"""The trainer: mini-batch SGD, accuracy, kernel drift, checkpoints and bit-identical resume."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from deepntk.engine.errors import InputError
from deepntk.engine.trainer import TrainSettings, accuracy, classification_kind, train


def toy(L=30, C=30.0**2):
    params = deepntk.init_params(deepntk.MLP(2, 1, L, C), seed=0)
    X = np.random.default_rng(1).uniform(0.1, 1, size=(24, 2))
    return params, X, (X[:, 0] * X[:, 1])[:, None]


def test_full_batch_trainer_equals_gradient_descent():
    params, X, Y = toy()
    from deepntk.engine.training import gradient_descent

    a = train(params, X, Y, TrainSettings(steps=15, eta=0.5), backend="numpy").params
    b = gradient_descent(params, X, Y, 15, eta=0.5, backend="numpy").params
    for x, y in zip(a.weights + a.biases, b.weights + b.biases):
        assert np.array_equal(x, y)


def test_minibatch_training_reduces_loss_and_the_kernel_drift_shrinks_with_depth():
    drifts = []
    for L in (30, 300):
        params, X, Y = toy(L, float(L) ** 2)
        result = train(params, X, Y, TrainSettings(epochs=20, batch_size=8, eta=0.5, seed=3, eval_every=30,
                                                   probe_every=30), backend="numba", probe=X[:4])
        h = result.history
        assert result.steps == 60 and len(h["batch_loss"]) == 60
        assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
        assert h["probe_step"] == [0, 30, 60] and h["kernel_change"][0] == 0.0
        drifts.append(h["kernel_change"][-1])
    assert drifts[1] < 0.2 * drifts[0], drifts  # Theorem 2: Θ̃ stays put as L grows


@pytest.mark.parametrize("batch", [None, 5])
def test_resume_is_bit_identical(tmp_path, batch):
    params, X, Y = toy()
    settings = TrainSettings(steps=23, batch_size=batch, eta=1.0, seed=7, checkpoint_every=10)
    whole = train(params, X, Y, settings, backend="numba", checkpoint_dir=str(tmp_path / "a"))
    part = train(params, X, Y, TrainSettings(steps=10, batch_size=batch, eta=1.0, seed=7, checkpoint_every=10),
                 backend="numba", checkpoint_dir=str(tmp_path / "b"))
    assert part.steps == 10
    resumed = train(params, X, Y, settings, backend="numba", checkpoint_dir=str(tmp_path / "b"), resume=True)
    assert resumed.resumed_from == 10
    for x, y in zip(whole.params.weights + whole.params.biases, resumed.params.weights + resumed.params.biases):
        assert np.array_equal(x, y)
    assert whole.history["batch_loss"] == resumed.history["batch_loss"]


def test_resume_refuses_another_configuration(tmp_path):
    params, X, Y = toy()
    train(params, X, Y, TrainSettings(steps=3, eta=1.0), backend="numpy", checkpoint_dir=str(tmp_path))
    with pytest.raises(InputError, match="different configuration .*settings"):
        train(params, X, Y, TrainSettings(steps=6, eta=2.0), backend="numpy", checkpoint_dir=str(tmp_path),
              resume=True)
    with pytest.raises(InputError, match="different configuration .*data"):
        train(params, X, Y + 1, TrainSettings(steps=6, eta=1.0), backend="numpy", checkpoint_dir=str(tmp_path),
              resume=True)


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    params, X, Y = toy()
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match=r"at step (\d+); the last good state"):
        train(params, X, Y * 1e6, TrainSettings(steps=500, lr=1e3), backend="numpy", checkpoint_dir=str(tmp_path))
    with np.load(tmp_path / "checkpoint.npz") as data:
        assert np.all(np.isfinite(data["W"]))


def test_accuracy_conventions():
    Y = np.eye(3)[[0, 2, 1]]
    assert classification_kind(Y) == "onehot"
    assert accuracy(np.array([[0.9, 0, 0], [0, 0.1, 0.5], [0.2, 0.1, 0]]), Y, "onehot") == pytest.approx(2 / 3)
    yb = np.array([[0.0], [1.0]])
    assert classification_kind(yb) == "binary"
    assert accuracy(np.array([[0.4], [0.6]]), yb, "binary") == 1.0
    assert classification_kind(np.array([[0.3]])) is None


def test_settings_are_validated():
    with pytest.raises(InputError, match="exactly one of steps or epochs"):
        TrainSettings(eta=1.0)
    with pytest.raises(InputError, match="batch_size"):
        TrainSettings(steps=1, batch_size=0, eta=1.0)
