"""Fig. 4 (paper §5.2; docs/experiments.md#fig-4): the paper's initialization trains a deep narrow MLP on MNIST,
PyTorch's Kaiming-uniform initialization of the same architecture does not, for any learning rate."""

from __future__ import annotations

from deepntk.engine.architectures import MLP
from deepntk.engine.experiments.datasets import load_mnist
from deepntk.engine.experiments.mnist import BATCH_SIZE, mnist_run, stable_eta
from deepntk.engine.trainer import TrainSettings

KAIMING_LEARNING_RATES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


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
    paper_lr = 1e-5 if scale == "paper" else stable_eta(spec, data.X_train, backend=backend) / (depth * C_L**2)
    every = 2 * -(-len(data.X_train) // BATCH_SIZE)  # evaluate every two epochs, for the accuracy curves

    def settings(lr):
        return TrainSettings(epochs=epochs, batch_size=BATCH_SIZE, lr=lr, loss="mse", eval_every=every)

    runs = [mnist_run("paper init", spec, data, settings(paper_lr), "paper", backend=backend, on_step=on_step)]
    for lr in KAIMING_LEARNING_RATES:
        runs.append(mnist_run(f"kaiming-uniform lr={lr:g}", spec, data, settings(lr), "kaiming-uniform",
                              backend=backend, on_step=on_step))
    return {"experiment": "fig4", "scale": scale, "reduced": reduced, "note": data.note, "depth": depth,
            "runs": runs}
