"""Exceptions raised at deepntk's boundaries (specs, loaders, backends)."""


class DeepNTKError(Exception):
    """Base class of every error deepntk raises on purpose."""


class SpecError(DeepNTKError, ValueError):
    """An architecture, initialization or hyperparameter value that is out of range."""


class InputError(DeepNTKError, ValueError):
    """Input arrays with the wrong shape, dtype or non-finite values."""


class ParamsFileError(DeepNTKError, ValueError):
    """A params `.npz` file that is missing an array, has a misshaped one, or unreadable metadata."""


class UnknownBackendError(DeepNTKError, ValueError):
    """A backend name that no built-in or entry-point backend provides."""


class BackendUnavailableError(DeepNTKError, RuntimeError):
    """A known backend whose library (or device) is not available here."""
