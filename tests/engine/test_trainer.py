"""The trainer: mini-batch SGD, accuracy, kernel drift, checkpoints and bit-identical resume."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import deepntk
from deepntk.base.errors import InputError
from deepntk.engine.trainer import TrainSettings, accuracy, classification_kind, train
from conftest import TOL, assert_close


def toy(L=30, C=30.0**2):
    params = deepntk.init_params(deepntk.MLP(2, 1, L, C), seed=0)
    X = np.random.default_rng(1).uniform(0.1, 1, size=(24, 2))
    return params, X, X[:, :1] * X[:, 1:]


def test_full_batch_trainer_equals_gradient_descent():
    params, X, Y = toy()
    from deepntk.engine.training import gradient_descent

    a = train(params, X, Y, TrainSettings(steps=15, eta=0.5), backend="numpy").params
    b = gradient_descent(params, X, Y, 15, eta=0.5, backend="numpy").params
    for x, y in zip(a.weights + a.biases, b.weights + b.biases):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("batch,evals", [(5, 4), (24, 7)])
def test_trainer_equals_a_hand_written_sgd_loop(backend, batch, evals):
    """Mini-batch SGD as the paper runs it, written out: one seeded permutation per epoch cut into batches (the
    last one short), θ ← θ − lr·∇ℒ_B with ∇ℒ_B from the NumPy reference backpropagation. Evaluations every
    `evals` steps split the trainer's runs of `descend` at other places than the epochs."""
    params, X, Y = toy(L=12, C=144.0)
    steps, lr = 13, 0.5 / (12 * 144.0**2)
    result = train(params, X, Y, TrainSettings(steps=steps, batch_size=batch, lr=lr, seed=4, eval_every=evals),
                   backend=backend)
    rng = np.random.default_rng(4)
    weights, biases = [w.copy() for w in params.weights], [b.copy() for b in params.biases]
    per_epoch = -(-len(X) // batch)
    losses = []
    for step in range(steps):
        if step % per_epoch == 0:
            order = rng.permutation(len(X)) if batch < len(X) else np.arange(len(X))
        idx = order[(step % per_epoch) * batch:(step % per_epoch + 1) * batch]
        value, _, grads = deepntk.loss_and_gradients(params.with_arrays(weights, biases), X[idx], Y[idx],
                                                     backend="numpy")
        losses.append(value)
        weights = [w - lr * g for w, g in zip(weights, grads.weights)]
        biases = [b - lr * g for b, g in zip(biases, grads.biases)]
    assert_close(np.array(result.history["batch_loss"]), np.array(losses), TOL["identity"], "batch losses")
    for got, want in zip(result.params.weights + result.params.biases, weights + biases):
        assert_close(got, want, TOL["identity"], "weights after SGD")


def test_minibatch_training_reduces_loss_and_the_kernel_drift_shrinks_with_depth(backend):
    drifts = []
    for L in (30, 300):
        params, X, Y = toy(L, float(L) ** 2)
        result = train(params, X, Y, TrainSettings(epochs=20, batch_size=8, eta=0.5, seed=3, eval_every=30,
                                                   probe_every=30), backend=backend, probe=X[:4])
        h = result.history
        assert result.steps == 60 and len(h["batch_loss"]) == 60
        assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
        assert h["probe_step"] == [0, 30, 60] and h["kernel_change"][0] == 0.0
        drifts.append(h["kernel_change"][-1])
    assert drifts[1] < 0.2 * drifts[0], drifts  # Theorem 2: Θ̃ stays put as L grows


@pytest.mark.parametrize("batch", [None, 5])
def test_resume_is_bit_identical(tmp_path, batch, backend):
    params, X, Y = toy()
    settings = TrainSettings(steps=23, batch_size=batch, eta=1.0, seed=7, checkpoint_every=10)
    whole = train(params, X, Y, settings, backend=backend, checkpoint_dir=str(tmp_path / "a"))
    part = train(params, X, Y, TrainSettings(steps=10, batch_size=batch, eta=1.0, seed=7, checkpoint_every=10),
                 backend=backend, checkpoint_dir=str(tmp_path / "b"))
    assert part.steps == 10
    resumed = train(params, X, Y, settings, backend=backend, checkpoint_dir=str(tmp_path / "b"), resume=True)
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


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, backend):
    params, X, Y = toy()
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match=r"at step (\d+); the last good state") as info:
        train(params, X, Y * 1e6, TrainSettings(steps=500, lr=1e3, checkpoint_every=7), backend=backend,
              checkpoint_dir=str(tmp_path))
    step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    with np.load(tmp_path / "checkpoint.npz") as data:
        meta = json.loads(str(data["meta"]))
        assert meta["step"] == step == len(meta["history"]["batch_loss"]) and step > 0
        assert np.all(np.isfinite(data["W"])) and np.all(np.isfinite(meta["history"]["batch_loss"]))


def test_steps_run_while_a_checkpoint_is_written(tmp_path, monkeypatch):
    """The checkpoint after step 5 is written while steps 6 … 10 run: its write waits (up to 30 s) until the run has
    reported step 8, which a write on the training thread would never see, and the files are those of a run
    whose writes wait for nothing (the final checkpoint bit for bit)."""
    import threading

    from deepntk.engine import trainer

    params, X, Y = toy()
    settings = TrainSettings(steps=10, batch_size=6, eta=1.0, seed=2, checkpoint_every=5)
    plain = train(params, X, Y, settings, backend="numpy", checkpoint_dir=str(tmp_path / "plain"))
    step_eight, seen, write = threading.Event(), [], trainer.write_npz

    def slow_write(path, **arrays):
        if not seen:  # the first checkpoint only
            seen.append(step_eight.wait(timeout=30))
        write(path, **arrays)

    monkeypatch.setattr(trainer, "write_npz", slow_write)
    overlapped = train(params, X, Y, settings, backend="numpy", checkpoint_dir=str(tmp_path / "overlapped"),
                       on_step=lambda step, total, value: step == 8 and step_eight.set())
    assert seen == [True]
    for a, b in zip(plain.params.weights, overlapped.params.weights):
        assert np.array_equal(a, b)
    with np.load(tmp_path / "plain" / "checkpoint.npz") as first, \
            np.load(tmp_path / "overlapped" / "checkpoint.npz") as second:
        assert all(np.array_equal(first[name], second[name]) for name in ("W", "b", "order", "meta"))


def test_a_failed_checkpoint_write_is_raised(tmp_path, monkeypatch):
    """A write that fails in the background (here: no space left) stops the run with its error at the next
    checkpoint, not silently."""
    import errno

    from deepntk.engine import trainer

    def full_disk(path, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(trainer, "write_npz", full_disk)
    params, X, Y = toy()
    with pytest.raises(OSError, match="No space left"):
        train(params, X, Y, TrainSettings(steps=10, eta=1.0, checkpoint_every=3), backend="numpy",
              checkpoint_dir=str(tmp_path))


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


def test_evaluations_on_the_first_points_only():
    """eval_points = 7: the losses and accuracies are those of the trained network on the first 7 training and
    test points, computed here from its outputs; the trained weights are those of a run that evaluates all."""
    params, X, Y = toy(L=12, C=144.0)
    labels = np.eye(2)[(X[:, 0] > X[:, 1]).astype(int)]
    X_test, labels_test = X[::-1] * 0.9, labels[::-1]
    settings = dict(steps=6, batch_size=8, eta=0.3, loss="mse")
    part = train(params, X, labels[:, :1], TrainSettings(eval_points=7, **settings), backend="numpy",
                 X_test=X_test, Y_test=labels_test[:, :1])
    whole = train(params, X, labels[:, :1], TrainSettings(**settings), backend="numpy", X_test=X_test,
                  Y_test=labels_test[:, :1])
    assert np.array_equal(part.params.W, whole.params.W)
    for inputs, targets, name in ((X, labels[:, :1], "train"), (X_test, labels_test[:, :1], "test")):
        outputs = deepntk.forward(part.params, inputs[:7], backend="numpy")
        assert part.history[f"{name}_loss"][-1] == pytest.approx(np.mean((outputs - targets[:7]) ** 2),
                                                                  rel=TOL["exact"])
        assert part.history[f"{name}_accuracy"][-1] == accuracy(outputs, targets[:7], "binary")
        assert part.history[f"{name}_loss"][-1] != whole.history[f"{name}_loss"][-1]
    with pytest.raises(InputError, match="eval_points must be a positive integer"):
        TrainSettings(eval_points=0, **settings)
