"""The NumPy backend: the reference every other backend is tested against."""

from .base import Backend


class NumpyBackend(Backend):
    """Plain NumPy, one vectorized step per layer; the executable specification."""

    name = "numpy"

