"""deepntk: deep narrow ReLU networks and their infinite-depth neural tangent kernels.

Implements the networks, initialization and limit kernels of Lee, Choi, Ryu and No, "Neural Tangent Kernel
Analysis of Deep Narrow Neural Networks", ICML 2022, with the corrections listed in the README.

Importing this package loads only NumPy; Numba, CuPy, SymPy and matplotlib are imported when first used.
"""


import os as _os

# OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after every product, on the cores that the Numba kernels
# run on next; 2^16 cycles is enough to keep them warm between products (docs/backends.md#blas-threads). This
# reaches OpenBLAS only if NumPy is not loaded yet (the CLI, worker processes); a value the user set wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")

# The facade imports absolutely, unlike the modules below it: pytest imports the repository root (this file) by
# its path, under the clone's folder name, and relative imports would then load a second copy of the package
# under that name (or fail, where the name has a hyphen).

from deepntk.backends.registry import available_backends, get_backend
from deepntk.base.version import __version__
from deepntk.engine.api import activations, forward, loss_and_gradients, scaled_ntk
from deepntk.engine.architectures import CNN, MLP, WideMLP
from deepntk.engine.params import (
    Ensemble,
    Params,
    init_params,
    load_params,
    stack_params,
)
from deepntk.engine.training import gradient_descent


def gram(kernel, X1, X2=None, **options):
    """Tile a Gram into a Zarr store on Dask workers: see `deepntk.engine.gram.gram` (the distributed extra)."""
    from deepntk.engine.gram import gram as tiled_gram

    return tiled_gram(kernel, X1, X2, **options)


def compare_with_theory(params, X1, X2=None, *, backend=None):
    """A network's Θ̃ against Θ̃^∞ and E Θ̃ at its own (L, C_L), per k×k block, with 95% intervals: see
    `deepntk.engine.experiments.compare_params.compare_with_theory` (docs/finite-depth.md)."""
    from deepntk.engine.experiments.compare_params import compare_with_theory as compare

    return compare(params, X1, X2, backend=backend)


def open_store(path):
    """Open a Gram store that `deepntk gram` or `deepntk.gram` wrote (a `.zarr` folder), for reading or resuming.

    Returns a `deepntk.engine.gram.GramStore`: `.read(rows, cols)` gives entries as a NumPy array (a symmetric
    Gram's lower tiles from their mirror), `.shape`, `.complete` and `.config` describe it, and
    `deepntk.engine.solvers.KernelOperator.from_store` solves with it tile by tile (docs/training.md#kernel-flow).
    Needs the distributed extra (Zarr).

    Raises:
        GramStoreError: the folder is missing, is not a deepntk Gram store, or has another format.
    """
    from deepntk.engine.gram import open_store as open_gram_store

    return open_gram_store(path)

__all__ = [
    "MLP",
    "WideMLP",
    "CNN",
    "Params",
    "Ensemble",
    "init_params",
    "stack_params",
    "load_params",
    "forward",
    "activations",
    "loss_and_gradients",
    "scaled_ntk",
    "gradient_descent",
    "get_backend",
    "gram",
    "open_store",
    "compare_with_theory",
    "available_backends",
    "__version__",
]
