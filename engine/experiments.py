"""The paper's experiments (§5; SPEC §The paper's experiments) at the authors' settings ("paper") or reduced
to run on two CPU cores in minutes ("small", each reduction stated in the result's `reduced` field)."""

from __future__ import annotations

import time

import numpy as np

from deepntk.analytic import fig3_inputs, fig3_limit_curve
from deepntk.engine.api import forward, scaled_ntk
from deepntk.engine.datasets import load_mnist
from deepntk.engine.params import init_params
from deepntk.engine.spec import CNN, MLP
from deepntk.engine.trainer import TrainSettings, train
from deepntk.engine.training import gradient_descent

SCALES = ("small", "paper")


def stable_eta(spec, X, loss: str = "mse", fraction: float = 0.5, sample: int = 100) -> float:
    """A scaled step η at `fraction` of the stability bound of gradient descent in the kernel regime.

    Outputs move by −(c·η/N)·K(f − y) per step, with c = 2/k for MSELoss and 1 for the paper's loss, so GD is
    stable for c·η·λ_max(K)/N < 2. λ_max/N is estimated from the limit kernel on `sample` training points
    (the constant mode dominates it, e.g. k·Σ_ab(|W_ab|/d²)² for the CNN).
    """
    from deepntk.analytic import cnn_limit_kernel, mlp_limit_kernel
    from deepntk.engine.validate import average_pool

    Xs = np.asarray(X[:sample], dtype=float)
    if spec.arch == "mlp":
        K = mlp_limit_kernel(Xs, d_out=spec.d_out, rho=spec.rho, beta=spec.beta)
    else:
        images = average_pool(Xs, spec.pool)
        K = cnn_limit_kernel(images, outputs=spec.outputs, rho=spec.rho, beta=spec.beta,
                             filter_size=spec.filter_size, filter_variance=spec.filter_variance)
    rate = np.linalg.eigvalsh(K)[-1] / len(Xs)
    c = 2.0 / spec.outputs if loss == "mse" else 1.0
    return fraction * 2.0 / (c * rate)


def fig3_training(depths, seeds: int, steps: int = 2000, backend=None, on_seed=None) -> dict:
    """Θ̃(x₀, x(γ)) at init and after `steps` full-batch GD steps (MSELoss, raw lr = 1/(4·L·C_L²): flow time 1/2
    per step) on y = x₁x₂ over the 200 arc points, for each (L, C_L) in `depths` and each seed."""
    x0, X, gamma = fig3_inputs(200)
    Y = (X[:, 0] * X[:, 1])[:, None]
    out = {"gamma": gamma.tolist(), "limit": fig3_limit_curve(gamma).tolist(), "target": Y[:, 0].tolist(),
           "depths": []}
    for L, C in depths:
        start = time.perf_counter()
        init, trained, fits, drift = [], [], [], []
        for seed in range(seeds):
            params = init_params(MLP(2, 1, L, C), "paper", seed)
            K0 = scaled_ntk(params, x0, X, backend=backend)[0, :, 0, 0]
            result = gradient_descent(params, X, Y, steps, lr=1.0 / (4 * L * C**2), loss="mse", backend=backend)
            KT = scaled_ntk(result.params, x0, X, backend=backend)[0, :, 0, 0]
            init.append(K0.tolist())
            trained.append(KT.tolist())
            fits.append(forward(result.params, X, backend=backend)[:, 0].tolist())
            drift.append(float(np.linalg.norm(KT - K0) / np.linalg.norm(K0)))
            if on_seed:
                on_seed()
        out["depths"].append({"depth": L, "C_L": C, "steps": steps, "kernel_init": init, "kernel_trained": trained,
                              "fit": fits, "kernel_drift": drift, "seconds": time.perf_counter() - start})
    return out


def fig3(scale: str = "small", backend=None, on_seed=None) -> dict:
    """Fig. 3 complete: the kernel curve at init and after training, and the fit, per depth over seeds."""
    if scale == "paper":
        depths, seeds, reduced = ((100, 5.0), (10000, 5e4)), 10, ""
    else:
        depths, seeds = ((100, 5.0), (1000, 500.0)), 3
        reduced = "L = 1000 with C_L = 500 instead of L = 10000 with C_L = 5·10⁴; 3 seeds instead of 10"
    return {"experiment": "fig3", "scale": scale, "reduced": reduced,
            **fig3_training(depths, seeds, 2000, backend, on_seed)}


def limit_kernel_reference(spec, data, t: float, n_train: int = 300, n_test: int = 300) -> dict:
    """Test accuracy the infinite-depth theory predicts on a subset: kernel flow from f₀ = 0 to flow time t, and
    kernel regression (t = ∞), both with the limit kernel (Theorems 3 and 6)."""
    from deepntk.analytic import cnn_limit_kernel, kernel_flow, mlp_limit_kernel
    from deepntk.engine.trainer import accuracy, classification_kind
    from deepntk.engine.validate import average_pool

    X, Y, Xt, Yt = data.X_train[:n_train], data.Y_train[:n_train], data.X_test[:n_test], data.Y_test[:n_test]
    k = Y.shape[1]
    if spec.arch == "mlp":
        K, Kx = mlp_limit_kernel(X, d_out=k, rho=spec.rho, beta=spec.beta), mlp_limit_kernel(Xt, X, d_out=k,
                                                                                           rho=spec.rho, beta=spec.beta)
    else:
        kw = dict(outputs=k, rho=spec.rho, beta=spec.beta, filter_size=spec.filter_size,
                  filter_variance=spec.filter_variance)
        A, B = average_pool(X, spec.pool), average_pool(Xt, spec.pool)
        K, Kx = cnn_limit_kernel(A, **kw), cnn_limit_kernel(B, A, **kw)
    K, Kx = np.kron(K, np.eye(k)), np.kron(Kx, np.eye(k))
    kind = classification_kind(Y)
    lam = np.linalg.eigvalsh(K)
    return {"subset": [len(X), len(Xt)], "flow_time": t,
            "flow_accuracy": accuracy(kernel_flow(K, Y, t, K_test_train=Kx), Yt, kind),
            "regression_accuracy": accuracy(kernel_flow(K, Y, np.inf, K_test_train=Kx), Yt, kind),
            "top_eigenvalue_ratio": float(lam[-1] / lam[-1 - k])}


def _mnist_run(name, spec, data, settings, init="paper", seed=0, backend=None, dtype="float64", on_step=None):
    params = init_params(spec, init, seed, dtype)
    start = time.perf_counter()
    try:
        result = train(params, data.X_train, data.Y_train, settings, backend=backend, X_test=data.X_test,
                       Y_test=data.Y_test, on_step=on_step)
        h = result.history
        return {"run": name, "init": init, "lr": settings.lr, "train_accuracy": h["train_accuracy"],
                "test_accuracy": h["test_accuracy"], "train_loss": h["train_loss"], "eval_step": h["eval_step"],
                "final_test_accuracy": h["test_accuracy"][-1], "diverged": False,
                "seconds": time.perf_counter() - start}
    except FloatingPointError as exc:
        return {"run": name, "init": init, "lr": settings.lr, "diverged": True, "error": str(exc),
                "final_test_accuracy": float("nan"), "seconds": time.perf_counter() - start}


def fig4(scale: str = "small", data_dir=None, backend=None, on_step=None) -> dict:
    """Fig. 4: the paper's init trains a deep narrow MLP on MNIST while PyTorch's Kaiming-uniform init on the
    same architecture does not, for any learning rate of the grid (MSELoss, plain SGD, batch 512)."""
    if scale == "paper":
        depth, pool, train_size, test_size, epochs, reduced = 1000, 1, None, None, 100, ""
    else:
        depth, pool, train_size, test_size, epochs = 100, 4, 5000, 1000, 20
        reduced = ("depth 100 instead of 1000; 7×7 pooled inputs (width 60) instead of 784; 5000 training and "
                   "1000 test images; 20 epochs; paper init at half the stability bound of the step (see stable_eta)")
    data = load_mnist(data_dir, pool=pool, train_size=train_size, test_size=test_size)
    d_in = data.X_train.shape[1]
    C_L = 4.0
    spec = MLP(d_in, 10, depth, C_L)
    paper_lr = 1e-5 if scale == "paper" else stable_eta(spec, data.X_train) / (depth * C_L**2)
    every = 2 * -(-len(data.X_train) // 512)  # evaluate every two epochs, for the accuracy curves

    def settings(lr):
        return TrainSettings(epochs=epochs, batch_size=512, lr=lr, loss="mse", eval_every=every)

    runs = [_mnist_run("paper init", spec, data, settings(paper_lr), "paper", backend=backend, on_step=on_step)]
    for lr in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        runs.append(_mnist_run(f"kaiming-uniform lr={lr:g}", spec, data, settings(lr), "kaiming-uniform",
                               backend=backend, on_step=on_step))
    return {"experiment": "fig4", "scale": scale, "reduced": reduced, "note": data.note, "depth": depth,
            "runs": runs}


def table1(scale: str = "small", data_dir=None, backend=None, on_step=None) -> dict:
    """Table 1: test accuracy of the deep narrow MLP and CNN on MNIST (10 classes) and the CNN on 0 vs 1."""
    if scale == "paper":
        rows = [("MLP", dict(pool=1), MLP(784, 10, 4000, 4.0), 1e-5, 1500, "float32", "digits"),
                ("CNN", dict(layout="image"), CNN(1, 28, 10, 4000, 4.0, 1.0 / 3, pool=4, filter_variance="code"),
                 1e-5, 2000, "float32", "digits"),
                ("CNN binary", dict(layout="image"), CNN(1, 28, 1, 20000, 20.0, 1.0 / 3, pool=4,
                                                         filter_variance="code"), 1e-8, 1000, "float64", "binary")]
        sizes, reduced = dict(), ""
    else:
        rows = [("MLP", dict(pool=4), MLP(49, 10, 200, 4.0), None, 10, "float64", "digits"),
                ("CNN", dict(layout="image"), CNN(1, 28, 10, 30, 4.0, 1.0 / 3, pool=4, filter_variance="code"),
                 None, 10, "float64", "digits"),
                ("CNN binary", dict(layout="image"), CNN(1, 28, 1, 200, 20.0, 1.0 / 3, pool=4, filter_variance="code"),
                 None, 5, "float64", "binary")]
        sizes = dict(train_size=3000, test_size=1000)
        reduced = ("depths 200/30/200 instead of 4000/4000/20000; the MLP on 7×7 pooled inputs; 3000 training and "
                   "1000 test images; 10/10/5 epochs; the step at half its stability bound (stable_eta) instead of the "
                   "paper's raw lr; float64")
    out = {"experiment": "table1", "scale": scale, "reduced": reduced, "rows": []}
    for name, layout, spec, lr, epochs, dtype, task in rows:
        data = load_mnist(data_dir, task=task, **layout, **sizes)
        if lr is None:
            lr = stable_eta(spec, data.X_train) / (spec.depth * spec.C_L**2)
        settings = TrainSettings(epochs=epochs, batch_size=512, lr=lr, loss="mse")
        run = _mnist_run(name, spec, data, settings, backend=backend, dtype=dtype, on_step=on_step)
        steps = epochs * -(-len(data.X_train) // 512)
        flow_time = steps * lr * spec.depth * spec.C_L**2 * 2.0 / spec.outputs  # MSELoss: 2η/k per step
        run["theory"] = limit_kernel_reference(spec, data, flow_time)
        run.update({"task": task, "depth": spec.depth, "C_L": spec.C_L, "epochs": epochs, "note": data.note,
                    "chance": 0.5 if task == "binary" else 0.1})
        out["rows"].append(run)
    return out


def fig5(scale: str = "small", backend=None) -> dict:
    """Fig. 5: per layer l, σ(z^l)_last − C_L for the last output carrier of the Fig. 3 network after training
    (the output itself at l = L): the output is built up a little in every layer."""
    from deepntk.backends.registry import get_backend
    from deepntk.engine.packed import network_inputs, pack

    L, C, reduced = (10000, 5e4, "") if scale == "paper" else (1000, 500.0, "L = 1000 (C_L = 500) instead of 10000")
    _, X, _ = fig3_inputs(200)
    Y = (X[:, 0] * X[:, 1])[:, None]
    params = init_params(MLP(2, 1, L, C), "paper", 0)
    trained = gradient_descent(params, X, Y, 2000, lr=1.0 / (4 * L * C**2), loss="mse", backend=backend).params
    x = np.array([[np.cos(np.pi / 3), np.sin(np.pi / 3)]])
    net = pack(trained)
    reference = get_backend("numpy")
    _, acts = reference.trace(net, net.W, net.b, network_inputs(net, trained.spec, x))
    carrier = np.array([a[0, -1] for a in acts[1:]]) - C  # σ(z^l) of the last output carrier, l = 1 … L-1
    output = float(forward(trained, x, backend=backend)[0, 0])
    return {"experiment": "fig5", "scale": scale, "reduced": reduced, "depth": L, "C_L": C, "x": x[0].tolist(),
            "carrier_minus_C": carrier.tolist() + [output], "output": output, "target": float(x[0, 0] * x[0, 1])}
