"""What every command shares: one-line errors, `.npy` inputs, progress bars, warnings on stderr."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import click
import numpy as np

from deepntk.engine.errors import DeepNTKError


class CommandError(click.ClickException):
    """A usage or input error: one line on stderr, exit status 2."""

    exit_code = 2


@contextlib.contextmanager
def user_errors():
    """Turn deepntk's own errors (bad input, unknown backend, …) into one-line CLI errors."""
    try:
        yield
    except (DeepNTKError, ValueError, MemoryError, OSError) as exc:
        raise CommandError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def comma_list(text: str, name: str, convert=int, minimum=None) -> list:
    """Parse "a,b,c" into converted values, each >= `minimum` if given; one-line errors otherwise."""
    try:
        values = [convert(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"{name} must be a comma-separated list, got {text!r}") from None
    if not values:
        raise CommandError(f"{name} is empty")
    if minimum is not None and min(values) < minimum:
        raise CommandError(f"{name} values must be >= {minimum}, got {text!r}")
    return values


def load_npy(path: str, name: str) -> np.ndarray:
    """Read a `.npy` file of numbers, with one-line errors for everything that can be wrong with it."""
    if not path.endswith(".npy"):
        raise CommandError(f"{name}: {path!r} is not a .npy file")
    if not os.path.isfile(path):
        raise CommandError(f"{name}: file {path!r} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CommandError(f"{name}: cannot read {path!r} as .npy ({exc})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise CommandError(f"{name}: {path!r} does not hold a numeric array")
    return array


def save_npy(path: str, array: np.ndarray) -> None:
    from deepntk.engine.results import atomic_write_bytes
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    with user_errors():
        atomic_write_bytes(path, buffer.getvalue())


def progress(total: int, description: str, quiet: bool):
    """A tqdm bar on stderr; disabled with --quiet or when stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, file=sys.stderr, disable=quiet or not sys.stderr.isatty(),
                leave=False, dynamic_ncols=True)


def show_warnings_briefly():
    """Print warnings as one 'Warning: …' line on stderr (no source line dumps)."""

    def show(message, category, filename, lineno, file=None, line=None):
        click.echo(f"Warning: {message}", err=True)

    warnings.showwarning = show


def _resolve_backend(ctx, param, value):
    """Fail on an unknown or unavailable backend before any work starts."""
    if value is None:
        return None
    from deepntk.backends.registry import get_backend

    try:
        return get_backend(value).name
    except DeepNTKError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


backend_option = click.option("--backend", default=None, metavar="NAME", callback=_resolve_backend,
                              help="Compute backend (numpy, numba, cupy, or a plugin); default: the best installed.")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")
