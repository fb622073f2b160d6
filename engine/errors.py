"""Exceptions raised at deepntk's boundaries (specs, inputs, files, backends, training)."""


class DeepNTKError(Exception):
    """Base class of every error deepntk raises on purpose."""


class SpecError(DeepNTKError, ValueError):
    """An architecture, initialization or hyperparameter value that is out of range."""


class InputError(DeepNTKError, ValueError):
    """Input arrays with the wrong shape, dtype or non-finite values."""


class FileFormatError(DeepNTKError, ValueError):
    """A file deepntk reads that is missing, damaged, or not what it claims to be (the message names it)."""


class ParamsFileError(FileFormatError):
    """A params `.npz` file that is missing an array, has a misshaped one, or unreadable metadata."""


class UnknownBackendError(DeepNTKError, ValueError):
    """A backend name that no built-in or entry-point backend provides."""


class BackendUnavailableError(DeepNTKError, RuntimeError):
    """A known backend whose library (or device) is not available here."""


class ClusterError(DeepNTKError, RuntimeError):
    """A cluster that cannot be started or reached, or an unknown kind of cluster (the message says why)."""


class FolderInUseError(DeepNTKError, RuntimeError):
    """A results or checkpoint folder that another running deepntk process holds."""


class MemoryBudgetError(DeepNTKError, MemoryError):
    """A size derived from the input that cannot fit in memory, refused before allocating (with the numbers)."""


class TrainingDiverged(DeepNTKError, FloatingPointError):
    """The loss stopped being finite. `step` is the step whose loss `value` was not finite; `W`, `b` hold the
    packed parameters before that step (the last good state) and `losses` the finite batch losses before it."""

    def __init__(self, message: str, step: int, W=None, b=None, losses=(), value=float("nan")):
        super().__init__(message)
        self.step = step
        self.value = value
        self.W = W
        self.b = b
        self.losses = list(losses)
