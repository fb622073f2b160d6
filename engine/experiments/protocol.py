"""What every experiment `deepntk reproduce` runs shares (docs/experiments.md#adding-an-experiment): a config
dataclass, a `run(config, backend=..., client=..., progress=...)` that returns a `Result`, and the `Experiment`
record that names them for the registry (`deepntk.engine.experiments.registry`).

A `Result` knows its summary table (the lines printed), its arrays, its figure, and how to save itself into a
run folder and load itself back, through the one writer of `deepntk.engine.results` (every file it writes is
recorded in the folder's run record)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...base.errors import FileFormatError, InputError
from ..files import read_json, read_npz
from ..results import write_json, write_npz

RESULTS_FILE = "results.json"
ARRAYS_FILE = "arrays.npz"
SCALES = ("small", "paper")


def check_scale(scale: str) -> str:
    """`scale` if it is one of SCALES: "small" (minutes on 2 CPU cores) or "paper" (the authors' settings)."""
    if scale not in SCALES:
        raise InputError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    return scale


def reduction_lines(data: dict) -> list[str]:
    """The summary's first lines: where a run was reduced from the paper's settings (its "reduced" entry), and
    which data it read (its "note": MNIST's training files, or a split of the test files when only those are
    there — the numbers differ)."""
    lines = []
    if data.get("reduced"):
        lines.append(f"{data['experiment']} ({data['scale']}): reduced from the paper's settings: {data['reduced']}")
    notes = {data.get("note")} | {row.get("note") for row in data.get("rows", []) if isinstance(row, dict)}
    lines += [f"data: {note}" for note in sorted(n for n in notes if n)]
    return lines


def list_arrays(data: dict) -> dict:
    """The entries of `data` that are lists of numbers (or of lists of numbers) as arrays: what a result stores
    beside its JSON in ARRAYS_FILE when it names no arrays of its own."""
    return {key: np.asarray(value) for key, value in data.items()
            if isinstance(value, list) and value and not isinstance(value[0], dict)}


class Result:
    """One run's outcome: `data` (JSON-friendly, written as RESULTS_FILE) and `arrays` (name → ndarray, written
    as ARRAYS_FILE when there are any; default: `list_arrays(data)`). An experiment subclasses it for its
    `summary` and `figure`; a checkpointing one names the list of its finished parts in `parts_key`."""

    parts_key = "rows"

    def __init__(self, data: dict, arrays: dict | None = None):
        self.data = data
        self.arrays = list_arrays(data) if arrays is None else dict(arrays)
        self.loaded = False  # read back by `load`, not computed by this process

    @property
    def complete(self) -> bool:
        """False for the results an interrupted run of a checkpointing experiment saved (its "complete" entry):
        `reproduce --resume` continues that run instead of reusing them."""
        return bool(self.data.get("complete", True))

    @property
    def parts(self) -> list:
        """The finished parts (rows, training runs, …) that a checkpointing experiment saved: what an interrupted
        run keeps and `reproduce --resume` continues from (the list under `parts_key` in `data`)."""
        return list(self.data.get(self.parts_key, []))

    def summary(self) -> list[str]:
        """The lines the command prints after the run (its summary table)."""
        return []

    def figure(self):
        """The run's matplotlib Figure, or None where the experiment draws none. matplotlib is imported here only
        (it is optional: the `plot` extra)."""
        return None

    def save(self, folder: str) -> None:
        """Write RESULTS_FILE and, if there are arrays, ARRAYS_FILE into `folder` (atomically, each file recorded
        in the run record of the folder this process holds; docs/files.md#results-folders)."""
        write_json(os.path.join(folder, RESULTS_FILE), self.data)
        if self.arrays:
            write_npz(os.path.join(folder, ARRAYS_FILE), **self.arrays)

    @classmethod
    def load(cls, folder: str):
        """The result that `save` wrote into `folder`, None where it holds none.

        Raises:
            FileFormatError: a results file is damaged (named, with what is wrong).
        """
        path = os.path.join(folder, RESULTS_FILE)
        if not os.path.exists(path):
            return None
        data = read_json(path, "results file")
        if not isinstance(data, dict):
            raise FileFormatError(f"results file {path!r} is damaged (not a JSON object)")
        arrays_path = os.path.join(folder, ARRAYS_FILE)
        arrays = {}
        if os.path.exists(arrays_path):
            arrays = dict(read_npz(arrays_path, "results arrays"))
        result = cls(data, arrays)
        result.loaded = True
        return result

    @classmethod
    def unfinished_parts(cls, folder: str | None) -> list:
        """The parts that an interrupted run of a checkpointing experiment saved in `folder`, for this run to keep
        and not compute again: none where there is no folder, no saved result, or a complete one.

        Raises:
            FileFormatError: the results file is damaged.
        """
        earlier = cls.load(folder) if folder is not None else None
        return earlier.parts if earlier is not None and not earlier.complete else []


class PlotResult(Result):
    """A Result drawn by a builder of `deepntk.engine.experiments.figures` that takes the result's data: `figure_builder` names it
    (imported only when the figure is asked for, so matplotlib stays optional)."""

    figure_builder = ""

    def figure(self):
        from . import figures

        return getattr(figures, self.figure_builder)(self.data)


class Progress:
    """What an experiment tells about its long loops. `show(label, done, total, remark)`: `done` of `total` in the
    loop `label`, whose first show states where this run starts (the units an earlier run kept, 0 in a fresh run:
    the rate and ETA count only what later shows add); `on_step(step, total, loss)`: the trainer's callback, step 1
    starting a new training. This one shows nothing; the command line passes `deepntk.cli.progress.Stages`."""

    def show(self, label: str, done: int, total: int | None, remark: str = "") -> None:
        pass

    def on_step(self, step: int, total: int, value) -> None:
        pass


SILENT = Progress()


@dataclass(frozen=True)
class Experiment:
    """An experiment as the registry knows it.

    Attributes:
        name: what `deepntk reproduce NAME` calls it.
        config: its config dataclass; a field named like a `reproduce` option (scale, data_dir, networks,
            max_steps) takes that option's value. A field whose metadata says `{"key": False}` (where the data is
            read from) is left out of the run folder's configuration (`config_key`).
        run: `run(config, backend=None, client=None, progress=SILENT) -> Result`.
        result: its Result class (`result.load(folder)` reads a saved run back).
        uses_client: whether `run` spreads its work over a Dask `client` (`--cluster`).
        description: one line for `deepntk reproduce --help`.
        checkpoints: `run` also takes `folder`, the run folder: it saves its results there as its parts finish
            (with "complete": False until the end) and continues an unfinished run it finds there
            (`reproduce --resume`).
    """

    name: str
    config: type
    run: Callable
    result: type = Result
    uses_client: bool = False
    description: str = ""
    checkpoints: bool = False


def config_key(config) -> dict:
    """The fields of `config` that decide its results: the run folder's configuration (a rerun with the same key
    finds the same folder)."""
    # A field marked {"key": "if given"} is left out while None (its default), so adding such an option keeps the
    # folders of earlier runs, which did not have it, theirs.
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.metadata.get("key", True) and not (f.metadata.get("key") == "if given" and getattr(config, f.name) is None)}
