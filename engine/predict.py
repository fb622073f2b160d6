"""Kernel-flow and kernel-regression predictions (Theorems 3 and 6; docs/training.md#kernel-flow) with the
limit kernel of an architecture or the empirical kernel of a network: `deepntk predict`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..base.errors import InputError
from ..base.validate import check_input_sets, check_targets, warns_once_per_cause


def limit_kernel_factors(spec, X_train, X_test, backend=None, kernel="limit"):
    """The limit kernel's scalar factors (Θ̃^∞ = K·I_k; docs/training.md#kernel-flow): K (N, N) on the training
    inputs and K_test_train (M, N), for inputs as the user gives them (the spec prepares them). `kernel_flow`
    takes them with (N, k) targets as it would K ⊗ I_k, at an eigendecomposition of size N instead of N·k.
    `backend` computes their costly pieces (the CNN's pixel-pair sums); `kernel` names the closed form as
    `deepntk.engine.gram.CLOSED_FORMS` does ("wide-nngp": the wide MLP's NNGP Σ^L)."""
    from .gram import closed_form

    compute = closed_form(kernel, spec)
    A = spec.prepare_inputs(np.asarray(X_train, dtype=np.float64))
    B = spec.prepare_inputs(np.asarray(X_test, dtype=np.float64))
    return compute(A, backend=backend), compute(B, A, backend=backend)


def check_times(times) -> list[float]:
    """Flow times: numbers t >= 0 (inf for kernel regression), at least one."""
    values = []
    for t in np.atleast_1d(np.asarray(times, dtype=object)).tolist():
        try:
            value = float(t)
        except (TypeError, ValueError):
            raise InputError(f"flow times must be numbers >= 0 or inf, got {t!r}") from None
        if math.isnan(value) or value < 0:
            raise InputError(f"flow times must be numbers >= 0 or inf, got {t!r}")
        values.append(value)
    if not values:
        raise InputError("give at least one flow time")
    return values


@dataclass
class Prediction:
    """Predictions at each flow time: `train` (T, N, k) and `test` (T, M, k), with their mean squared errors
    (`test_mse` None without test targets) and, where the targets are classes, the test accuracy
    (`test_accuracy`, from `classification_accuracies`)."""

    times: list
    train: np.ndarray
    test: np.ndarray
    train_mse: list
    test_mse: list | None
    test_accuracy: list | None = None


def classification_accuracies(Y_train, Y_test, test) -> list | None:
    """The test accuracy of each time's predictions `test` (T, M, k) where the targets are classes as
    `trainer.classification_kind` tells them (one-hot rows: argmax; one 0/1 column: the output rounded), as the
    experiments score MNIST (docs/experiments.md#mnist); None for other targets or without `Y_test`."""
    from .trainer import accuracy, classification_kind

    if Y_test is None:
        return None
    kind = classification_kind(Y_train)
    if kind is None or classification_kind(Y_test) != kind:
        return None
    return [accuracy(f, Y_test, kind) for f in test]


@warns_once_per_cause
def predict(X_train, Y_train, X_test, times, *, Y_test=None, spec=None, params=None, backend=None,
            kernel: str = "limit") -> Prediction:
    """Kernel gradient flow from f₀ = 0 to each time t (t = inf: kernel regression), with the limit kernel of
    `spec` or, given `params`, the network's empirical scaled NTK Θ̃₀.

    Args:
        X_train, X_test: inputs as the architecture takes them ((N, d_in) or (N, c, d, d)).
        Y_train, Y_test: targets (N, k) (or (N,) for k = 1).
        times: flow times t >= 0.
        spec: the architecture whose limit kernel is used (exactly one of spec and params).
        params: a network whose empirical kernel is used instead.
        backend: computes either kernel (the NTK, or the limit kernel's costly pieces): a backend name,
            instance, or None for the best installed one.
        kernel: with `spec`, which closed form: "limit" (the spec's limit kernel: Θ̃^∞, or the wide MLP's
            Θ^L), "wide-ntk" (Θ^L) or "wide-nngp" (Σ^L, NNGP regression), the last two for the wide MLP only.
    """
    from ..analytic import kernel_flow

    if (spec is None) == (params is None):
        raise InputError("give exactly one of spec (the limit kernel) or params (the empirical kernel)")
    if params is not None and kernel != "limit":
        raise InputError(f"kernel {kernel!r} is a closed form: give spec, not params")
    times = check_times(times)
    arch = spec if spec is not None else params.spec
    X, Xt = check_input_sets({"X_train": X_train, "X_test": X_test}, arch, pool=False)
    Y = check_targets(Y_train, len(X), arch.outputs, "Y_train")
    Yt = None if Y_test is None else check_targets(Y_test, len(Xt), arch.outputs, "Y_test")
    if params is not None:
        from .api import scaled_ntk

        K, Kx = scaled_ntk(params, X, backend=backend), scaled_ntk(params, Xt, X, backend=backend)
    else:
        K, Kx = limit_kernel_factors(spec, X, Xt, backend, kernel)
    train, test = [], []
    for t in times:
        train.append(kernel_flow(K, Y, t))
        test.append(kernel_flow(K, Y, t, K_test_train=Kx))
    train_mse = [float(np.mean((f - Y) ** 2)) for f in train]
    test_mse = None if Yt is None else [float(np.mean((f - Yt) ** 2)) for f in test]
    return Prediction(times, np.array(train), np.array(test), train_mse, test_mse,
                      classification_accuracies(Y, Yt, test))
