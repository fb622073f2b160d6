"""What the MNIST studies (Fig. 4, Table 1) share: a stable step size, one training run with its record, and
the limit-kernel prediction beside a trained network (docs/experiments.md#mnist)."""

from __future__ import annotations

import time
import warnings

import numpy as np

from ..params import init_params
from ..predict import limit_kernel_factors
from ..trainer import accuracy, classification_kind, train
from ..training import LossGrowthWarning, loss_growth

# Batch size of every MNIST run in the paper.
BATCH_SIZE = 512


def stable_eta(spec, X, loss: str = "mse", fraction: float = 0.5, sample: int = 100, backend=None) -> float:
    """A scaled step η at `fraction` of the stability bound of gradient descent in the kernel regime.

    Outputs move by −(c·η/N)·K(f − y) per step, with c = 2/k for MSELoss and 1 for the paper's loss, so GD is
    stable for c·η·λ_max(K)/N < 2. λ_max/N is estimated from the limit kernel on `sample` training points
    (the constant mode dominates it, e.g. k·Σ_ab(|W_ab|/d²)² for the CNN).
    """
    Xs = np.asarray(X[:sample], dtype=float)
    K = spec.limit_kernel(spec.prepare_inputs(Xs), backend=backend)
    rate = np.linalg.eigvalsh(K)[-1] / len(Xs)
    c = 2.0 / spec.outputs if loss == "mse" else 1.0
    return fraction * 2.0 / (c * rate)


def limit_kernel_reference(spec, data, t: float, n_train: int = 300, n_test: int = 300, backend=None) -> dict:
    """Test accuracy the infinite-depth theory predicts on a subset: kernel flow from f₀ = 0 to flow time t, and
    kernel regression (t = ∞), both with the limit kernel (Theorems 3 and 6)."""
    from ...analytic import kernel_flow

    X, Y, Xt, Yt = data.X_train[:n_train], data.Y_train[:n_train], data.X_test[:n_test], data.Y_test[:n_test]
    K, Kx = limit_kernel_factors(spec, X, Xt, backend=backend)
    kind = classification_kind(Y)
    lam = np.linalg.eigvalsh(K)
    return {"subset": [len(X), len(Xt)], "flow_time": t,
            "flow_accuracy": accuracy(kernel_flow(K, Y, t, K_test_train=Kx), Yt, kind),
            "regression_accuracy": accuracy(kernel_flow(K, Y, np.inf, K_test_train=Kx), Yt, kind),
            "top_eigenvalue_ratio": float(lam[-1] / lam[-2])}  # K ⊗ I_k repeats each of K's k times


def mnist_run(name, spec, data, settings, init="paper", seed=0, backend=None, dtype="float64", on_step=None):
    """Train one network on `data` and record its accuracy curves (or that it diverged: its loss became NaN, or
    "loss_growth" records where it grew far above its start, which the studies' learning-rate grids provoke on
    purpose and so record beside the run instead of warning)."""
    params = init_params(spec, init, seed, dtype)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LossGrowthWarning)
            result = train(params, data.X_train, data.Y_train, settings, backend=backend, X_test=data.X_test,
                           Y_test=data.Y_test, on_step=on_step)
        h = result.history
        return {"run": name, "init": init, "lr": settings.lr, "train_accuracy": h["train_accuracy"],
                "test_accuracy": h["test_accuracy"], "train_loss": h["train_loss"], "eval_step": h["eval_step"],
                "final_test_accuracy": h["test_accuracy"][-1], "diverged": False,
                "loss_growth": loss_growth(h["batch_loss"]), "seconds": time.perf_counter() - start}
    except FloatingPointError as exc:
        return {"run": name, "init": init, "lr": settings.lr, "diverged": True, "error": str(exc),
                "final_test_accuracy": float("nan"), "seconds": time.perf_counter() - start}


def run_lines(runs) -> list[str]:
    """One summary line per MNIST training run (`mnist_run`'s record, with Table 1's additions where present):
    its test accuracy or divergence, the limit kernel's prediction, the paper's accuracy, a bounded run's rate."""
    from ...base.durations import format_duration  # the one duration format of every report

    lines = []
    for run in runs:
        acc = run["final_test_accuracy"]
        status = "diverged" if run["diverged"] else f"test accuracy {acc:.4f}"
        if run.get("loss_growth"):
            status += f" (loss {run['loss_growth']['factor']:.2g} × its start at step {run['loss_growth']['step']})"
        line = f"{run['run']:<28} {status}  ({run['seconds']:.1f} s)"
        if "theory" in run:
            th = run["theory"]
            line += (f"; limit kernel on {th['subset'][0]}/{th['subset'][1]} images: flow to t = "
                     f"{th['flow_time']:.3g} → {th['flow_accuracy']:.3f}, regression (t = ∞) → "
                     f"{th['regression_accuracy']:.3f}; constant/next eigenvalue "
                     f"{th['top_eigenvalue_ratio']:.3g}")
        if "paper_accuracy" in run:
            line += f"; the paper: {run['paper_accuracy']:.4f}"
        if "steps_per_second" in run:
            line += (f"; {run['steps']} of the schedule's {run['schedule_steps']} steps at "
                     f"{run['steps_per_second']:.3g} steps/s: the whole schedule ≈ "
                     f"{format_duration(run['schedule_seconds_estimate'])} here")
        lines.append(line)
    return lines
