"""Ctrl-C (SIGINT) and SIGTERM in every command (docs/files.md#progress-and-interrupts): the work stops where it
is, every `with` block unwinds (a Dask cluster shuts down, a results folder is released), and one line says
what is kept and how to continue; exit status 130 for SIGINT and 143 for SIGTERM, as a shell reports them.

SIGTERM is raised as `Terminated`, a KeyboardInterrupt, so both signals take one path. A command says what an
interrupted run keeps with `keeps(describe)`; `describe()` is called once everything has unwound, so it reads
what is on disk then (tiles a worker finished during the shutdown included).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

import click

KEPT = "deepntk.kept"
NOTHING_KEPT = "nothing is kept; rerun the command to start again"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where the program is, as Python raises KeyboardInterrupt for SIGINT."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM raises `Terminated` for the duration of the block (in the main thread only, where handlers can be
    installed; the previous handler comes back after it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def keeps(describe) -> None:
    """Register what the current command keeps when interrupted: `describe()` returns the clause after
    "interrupted: ", e.g. "4 of 15 tiles kept in K.zarr; rerun with --resume"."""
    click.get_current_context().meta[KEPT] = describe


def report_interrupt(ctx: click.Context | None, exc: KeyboardInterrupt) -> int:
    """Print the one line about an interrupted command and return its exit status (130 or 143)."""
    describe = ctx.meta.get(KEPT) if ctx is not None else None
    try:
        kept = describe() if describe is not None else NOTHING_KEPT
    except Exception as error:  # the line must come out, whatever state the run left behind
        kept = f"what is kept could not be read ({type(error).__name__}: {error})"
    # In a terminal the line starts over the "^C" the terminal echoed.
    start = "\r" if sys.stderr.isatty() else ""
    click.echo(f"{start}interrupted: {kept}", err=True)
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
