"""Exceptions raised at deepntk's boundaries (specs, inputs, files, backends, training)."""

from __future__ import annotations

import re

# How a message names a parameter the user should set: written by `option`, shown by `DeepNTKError.in_words`.
_OPTION = re.compile(r"\{option:(\w+)(?:=(\w+))?\}")


def option(name: str, value: str | None = "True") -> str:
    """A parameter that an error message tells the user to set, in words the reader's interface renders:
    "resume=True" from the Python API (str(error)), "--resume" on the command line (cli.common.user_errors).
    `value` None names the parameter alone ("checkpoint_dir" / "--checkpoint-dir")."""
    return f"{{option:{name}{'' if value is None else '=' + value}}}"


def api_words(name: str, value: str | None) -> str:
    return name if value is None else f"{name}={value}"


class DeepNTKError(Exception):
    """Base class of every error deepntk raises on purpose. Its message names parameters through `option`, so
    that str(error) speaks the Python API and the command line can speak its flags (`in_words`)."""

    def __str__(self):
        return self.in_words(api_words)

    def in_words(self, words) -> str:
        """The message with each option written as `words(name, value)`."""
        return _OPTION.sub(lambda match: words(match.group(1), match.group(2)), super().__str__())


class SpecError(DeepNTKError, ValueError):
    """An architecture, initialization or hyperparameter value that is out of range."""


class InputError(DeepNTKError, ValueError):
    """Input arrays with the wrong shape, dtype or non-finite values."""


class FileFormatError(DeepNTKError, ValueError):
    """A file deepntk reads that is missing, damaged, or not what it claims to be (the message names it)."""


class ParamsFileError(FileFormatError):
    """A params `.npz` file that is missing an array, has a misshaped one, or unreadable metadata."""


class MissingExtraError(DeepNTKError, ImportError):
    """An optional library that a call needs is not installed; the message names the extra that installs it."""


class UnknownBackendError(DeepNTKError, ValueError):
    """A backend name that no built-in or entry-point backend provides."""


class BackendUnavailableError(DeepNTKError, RuntimeError):
    """A known backend whose library (or device) is not available here."""


class ClusterError(DeepNTKError, RuntimeError):
    """A cluster that cannot be started or reached, or an unknown kind of cluster (the message says why)."""


class FolderInUseError(DeepNTKError, RuntimeError):
    """A results or checkpoint folder that another running deepntk process holds."""


class FolderConfigError(InputError):
    """A results or checkpoint folder that holds another configuration's results, or this configuration's when
    the run would neither resume nor overwrite them (the message names the differing keys and the way out)."""


class MemoryBudgetError(DeepNTKError, MemoryError):
    """A size derived from the input that cannot fit in memory, refused before allocating (with the numbers)."""


class DiskSpaceError(DeepNTKError, OSError):
    """A store that cannot fit on the disk it is written to, refused before writing (with the numbers)."""


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
