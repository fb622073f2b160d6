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
    protocol     what every experiment `deepntk reproduce` runs shares: config, run → Result, save/load
    registry     the experiments by name: the paper's, entry points "deepntk.experiments", register_experiment

A new experiment is one module here (a config dataclass, `run(config, backend=, client=, progress=)` returning a
`Result` with its summary and figure, and an `EXPERIMENT` record) plus its registration
(docs/experiments.md#adding-an-experiment); `deepntk reproduce` runs it by name.
"""
