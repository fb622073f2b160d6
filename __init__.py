"""deepntk: deep narrow ReLU networks and their infinite-depth neural tangent kernels.

Implements the networks, initialization and limit kernels of Lee, Choi, Ryu and No, "Neural Tangent Kernel
Analysis of Deep Narrow Neural Networks", ICML 2022, with the corrections listed in the README.

Importing this package loads only NumPy; Numba, CuPy, SymPy and matplotlib are imported when first used.
"""

__version__ = "0.1.0"

import os as _os

# OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after every product, on the cores that the Numba kernels
# run on next; 2^16 cycles is enough to keep them warm between products (docs/backends.md#blas-threads). This
# reaches OpenBLAS only if NumPy is not loaded yet (the CLI, worker processes); a value the user set wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")

from deepntk.backends.registry import available_backends, get_backend
from deepntk.engine.api import activations, forward, loss_and_gradients, scaled_ntk
from deepntk.engine.architectures import CNN, MLP
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

__all__ = [
    "MLP",
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
    "available_backends",
    "__version__",
]
