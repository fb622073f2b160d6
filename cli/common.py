"""What every command shares: one-line errors, `.npy` inputs, progress bars, warnings on stderr."""

from __future__ import annotations

import contextlib
import os
import warnings

import click
import numpy as np

from .progress import Progress
from ..base.durations import format_duration  # noqa: F401 (for the commands)
from ..base.errors import DeepNTKError


class CommandError(click.ClickException):
    """A usage or input error: one line on stderr, exit status 2."""

    exit_code = 2


@contextlib.contextmanager
def user_errors():
    """Turn deepntk's own errors (bad input, unknown backend, …) into one-line CLI errors."""
    try:
        yield
    except (DeepNTKError, ValueError, MemoryError, OSError) as exc:
        text = exc.in_words(cli_words) if isinstance(exc, DeepNTKError) else str(exc)
        raise CommandError(text.splitlines()[0] if text else type(exc).__name__) from None


def cli_words(name: str, value: str | None) -> str:
    """A parameter that an engine error names (deepntk.base.errors.option), as its command-line flag."""
    flag = "--" + name.replace("_", "-")
    return flag if value in (None, "True") else f"{flag} {value}"


def comma_list(text: str, name: str | None, convert=int, minimum=None, what: str = "values") -> list:
    """Parse "a,b,c" into converted values, each >= `minimum` if given; one-line errors otherwise (prefixed by
    the option's `name` when given)."""
    prefix = f"{name} " if name else ""
    try:
        values = [convert(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"{prefix}must be a comma-separated list of {what}, got {text!r}") from None
    if not values:
        raise CommandError(f"{prefix}is empty: give at least one of the {what}")
    if minimum is not None and any(not v >= minimum for v in values):
        raise CommandError(f"{prefix}every {what[:-1] if what.endswith('s') else what} must be >= {minimum}, got "
                           f"{text!r}")
    return values


class CommaList(click.ParamType):
    """"a,b,c" as a list of converted values, checked when the command line is parsed (before any output)."""

    name = "list"

    def __init__(self, item=int, minimum=None, what: str = "values"):
        self.item = item
        self.minimum = minimum
        self.what = what

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return comma_list(str(value), None, self.item, self.minimum, self.what)
        except CommandError as exc:
            self.fail(exc.format_message(), param, ctx)


class CLRule(click.ParamType):
    """C_L as a rule in L (L^2, 5L, 0.5*L^1.5), a constant, or one value per depth; with `several`, a comma list
    of rules. Checked at parse time; the value stays text (the engine reads it per depth)."""

    name = "rule"

    def __init__(self, several: bool = False):
        self.several = several

    def convert(self, value, param, ctx):
        from ..base.errors import SpecError
        from ..engine.rules import C_L_values, parse_C_L_rule

        text = str(value).strip()
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            self.fail("is empty", param, ctx)
        try:
            if self.several:
                for part in parts:
                    parse_C_L_rule(part)
            else:  # a rule or one value per depth, read as the engine reads it (the depths come later)
                C_L_values(text, [2] * len(parts))
        except SpecError as exc:
            self.fail(str(exc), param, ctx)
        return parts if self.several else text


def load_npy(path: str, name: str) -> np.ndarray:
    """Read a `.npy` file of numbers, with one-line errors for everything that can be wrong with it (missing,
    damaged, an archive, pickled objects, non-numeric, 0-d or empty)."""
    if not path.endswith(".npy"):
        raise CommandError(f"{name}: {path!r} is not a .npy file")
    if not os.path.isfile(path):
        raise CommandError(f"{name}: file {path!r} does not exist")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # truncated headers and bodies surface as many exception types
        raise CommandError(f"{name}: cannot read {path!r} as .npy ({type(exc).__name__}: {exc})") from None
    if not isinstance(array, np.ndarray):
        if hasattr(array, "close"):
            array.close()
        raise CommandError(f"{name}: {path!r} is an .npz archive, not a .npy array")
    if array.dtype.kind not in "biuf":
        raise CommandError(f"{name}: {path!r} does not hold a numeric array (dtype {array.dtype})")
    if array.ndim == 0 or array.size == 0:
        raise CommandError(f"{name}: {path!r} holds no points (shape {array.shape})")
    return array


def save_npy(path: str, array: np.ndarray) -> None:
    from ..engine.results import atomic_write_bytes
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    with user_errors():
        atomic_write_bytes(path, buffer.getvalue())


def check_output_path(path: str | None, name: str = "-o", *, overwrite: bool, beside=()) -> str | None:
    """Refuse, before any work, an output file whose folder is missing, is not a folder, or is not writable, and
    one that exists already unless `overwrite` (--overwrite, `overwrite_file_option`): a rerun never silently
    replaces a file. `beside`: the files the command writes next to it (train's .metrics.json), held to the same
    rule."""
    if path is None:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CommandError(f"{name}: {path!r} is a folder; give a file name")
    if not os.path.isdir(folder):
        what = "is a file" if os.path.exists(folder) else "does not exist"
        raise CommandError(f"{name}: cannot write {path!r}: its folder {folder!r} {what}")
    if not os.access(folder, os.W_OK):
        raise CommandError(f"{name}: cannot write {path!r}: its folder {folder!r} is not writable")
    existing = [file for file in (path, *beside) if os.path.lexists(file)]
    if existing and not overwrite:
        raise CommandError(f"{name}: {existing[0]!r} already exists; pass --overwrite to replace it, or choose "
                           f"another file")
    return path


def hold_output_folder(path: str | None, command: str, config: dict, *, resume: bool | None = None,
                       overwrite: bool = False, name: str = "-o") -> str:
    """Hold the results folder of this run until the command ends (deepntk.engine.results.run_folder), before any
    work: a folder another run holds, or one that holds another configuration's results (or this one's, without
    --resume or --overwrite), is refused with one line. `path` None: the configuration's default folder
    (`default_folder`), held to the same rules. With --resume and no earlier results there, one line says so."""
    from ..engine.results import default_folder, run_folder

    with user_errors():
        if path is None:
            path = default_folder(command, config)
        try:
            folder = click.get_current_context().with_resource(
                run_folder(path, command, config, resume=resume, overwrite=overwrite))
        except OSError as exc:
            raise CommandError(f"{name}: cannot use {path!r} as a results folder ({exc.strerror or exc})") from None
    if resume and not folder.resumed:
        click.echo(f"nothing to resume in {path}: starting afresh")
    return path


overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Replace the results an earlier run left in the results folder (only the files "
                                     "it recorded), whatever its configuration.")
# The same rule for a command that writes one file (-o): an existing one is refused unless --overwrite.
overwrite_file_option = click.option("--overwrite", is_flag=True, help="Replace the -o file if it exists.")


def progress(total: int | None, description: str, quiet: bool) -> Progress:
    """Progress of a loop on stderr: a bar in a terminal, a plain line every 30 s off one (cli/progress.py)."""
    try:
        return Progress(description, total, quiet)
    except ValueError as exc:  # a malformed $DEEPNTK_PROGRESS_INTERVAL
        raise CommandError(str(exc)) from None


def format_with_interval(value: float, interval) -> str:
    """"2.123e-02 [1.1e-02, 3.9e-02]", 31 characters wide: a mean and its (possibly asymmetric) interval, or the
    mean alone where there is no interval (nan bounds: one draw)."""
    low, high = interval
    if low != low or high != high:
        return f"{value:>10.3e}".ljust(20).rjust(31)
    upper = f"{high:.1e}]" if high != float("inf") else "∞)"  # too few draws to bound it
    return f"{value:>10.3e} [{low:.1e}, {upper}".rjust(31)


def show_warnings_briefly():
    """Print warnings as one 'Warning: …' line on stderr (no source line dumps), once per command and cause: a
    deepntk warning's category and `cause` (its counts and names may differ between calls), else its text."""
    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        cause = (category, getattr(message, "cause", None) or str(message))
        if cause not in shown:
            shown.add(cause)
            click.echo(f"Warning: {message}", err=True)

    warnings.showwarning = show


def _resolve_backend(ctx, param, value):
    """Fail on an unknown or unavailable backend before any work starts."""
    if value is None:
        return None
    from ..backends.registry import get_backend

    try:
        return get_backend(value).name
    except DeepNTKError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


backend_option = click.option("--backend", default=None, metavar="NAME", callback=_resolve_backend,
                              help="Compute backend (numpy, numba, cupy, or a plugin); default: the best installed.")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")


class ClusterType(click.ParamType):
    """local, tcp://host:port, slurm, pbs or local-cuda, checked when the command line is parsed."""

    name = "cluster"

    def convert(self, value, param, ctx):
        from ..engine.clusters import check_cluster
        from ..base.errors import ClusterError

        try:
            return check_cluster(value)
        except ClusterError as exc:
            self.fail(str(exc), param, ctx)


def solver_options(when: str):
    """--max-iterations and --nystrom-rank of the iterative solvers (deepntk.engine.solvers); `when` says which
    other option they go with."""
    from ..engine.solvers import MAX_ITERATIONS, NYSTROM_RANK

    def decorate(func):
        func = click.option("--nystrom-rank", type=click.IntRange(min=1), default=NYSTROM_RANK, show_default=True,
                            help=f"With {when}: rank of the regression's Nyström preconditioner (more: fewer CG "
                                 "iterations on ill-conditioned Grams; 4 × N × rank × 8 bytes while built).")(func)
        return click.option("--max-iterations", type=click.IntRange(min=1), default=MAX_ITERATIONS,
                            show_default=True, help=f"With {when}: bound on each solve (one Lanczos run for the "
                                                    "finite flow times; conjugate gradients for t = inf).")(func)
    return decorate


def cluster_options(func):
    """--cluster, --workers and --cluster-config: run each (depth, seed) network as one task on Dask workers."""
    for option in reversed([
        click.option("--cluster", type=ClusterType(), default=None,
                     help="Run each network as a Dask task: local, tcp://host:port, slurm, pbs or local-cuda "
                          "[in this process]."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="With --cluster local: worker processes [one per core]."),
        click.option("--cluster-config", default=None, help="With slurm/pbs: the batch settings (YAML/JSON)."),
    ]):
        func = option(func)
    return func


@contextlib.contextmanager
def maybe_cluster(cluster, workers, config_path):
    """A Dask client when --cluster is given, else None (the work runs in this process)."""
    if cluster is None:
        yield None
        return
    from ..engine.clusters import dask_client

    with user_errors(), dask_client(None, cluster, workers, config_path) as client:
        yield client
