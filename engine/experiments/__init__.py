"""The paper's studies and what serves them, one module per study, built on the core of `deepntk.engine`.

    convergence  Fig. 3 at initialization: finite-depth Θ̃ vs the limit over depths and seeds (`simulate`)
    fig3         Fig. 3 with training: the kernel before/after GD, drift and fit (`reproduce fig3`, `simulate --train`)
    fig4         Fig. 4: paper init vs Kaiming-uniform on MNIST
    table1       Table 1: MNIST accuracies beside the limit kernel's prediction
    fig5         Fig. 5: the output built up layer by layer
    compare      finite networks vs theory: depth rates, trained vs kernel flow, spectra (`compare`)
    mnist        what Fig. 4 and Table 1 share (step size, one run, limit-kernel reference)
    datasets     MNIST from IDX files and the Fig. 3 toy set
    stats        relative errors, power-law fits, confidence intervals
    benchmark    timed workloads of the backends and their peers (`bench`); peers: PyTorch and JAX versions

A new experiment is a new module here that calls the engine's public functions; the CLI calls it.
"""

import importlib

# The paper's experiments `deepntk reproduce` runs: name → (module, whether it reads MNIST).
PAPER_EXPERIMENTS = {"fig3": ("fig3", False), "fig4": ("fig4", True), "fig5": ("fig5", False),
                     "table1": ("table1", True)}


def run_experiment(name: str, scale: str = "small", *, data_dir=None, backend=None, **options) -> dict:
    """Run one of the paper's experiments at `scale` ("small" or "paper") and return its result dict; `options` go
    to the experiment's function (table1: max_steps, networks)."""
    module_name, reads_mnist = PAPER_EXPERIMENTS[name]
    run = getattr(importlib.import_module(f"deepntk.engine.experiments.{module_name}"), name)
    if reads_mnist:
        return run(scale, data_dir=data_dir, backend=backend, **options)
    return run(scale, backend=backend, **options)
