"""The experiments `deepntk reproduce` runs, by name (docs/experiments.md#adding-an-experiment): the paper's,
by module path (imported on first use, so listing them stays light), plugins through the entry-point group
`deepntk.experiments`, and those registered in this process with `register_experiment`.

A package registers an `Experiment` (deepntk.engine.experiments.protocol) as
    [project.entry-points."deepntk.experiments"]
    mystudy = "mypackage.mystudy:EXPERIMENT"
"""

from __future__ import annotations

import importlib

from ...base.errors import InputError
from ...base.plugins import entry_points

ENTRY_POINT_GROUP = "deepntk.experiments"

# The paper's experiments: name → the module whose EXPERIMENT it is.
BUILTIN_EXPERIMENTS = {
    "fig3": "deepntk.engine.experiments.fig3",
    "fig4": "deepntk.engine.experiments.fig4",
    "fig5": "deepntk.engine.experiments.fig5",
    "table1": "deepntk.engine.experiments.table1",
    "depth": "deepntk.engine.experiments.depth",
}

_registered: dict = {}


def register_experiment(experiment) -> None:
    """Make `experiment` (an `Experiment`) runnable by name in this process, `deepntk reproduce` included.

    Raises:
        InputError: it is not an Experiment, or its name is taken by another experiment.
    """
    from .protocol import Experiment

    if not isinstance(experiment, Experiment):
        raise InputError(f"register_experiment takes an Experiment, got {type(experiment).__name__}")
    taken = experiment.name in BUILTIN_EXPERIMENTS or _registered.get(experiment.name, experiment) is not experiment
    if taken:
        raise InputError(f"an experiment named {experiment.name!r} is registered already")
    _registered[experiment.name] = experiment


def unregister_experiment(name: str) -> None:
    """Forget an experiment `register_experiment` registered (the paper's stay)."""
    _registered.pop(name, None)


def _entry_points() -> dict:
    return entry_points(ENTRY_POINT_GROUP, BUILTIN_EXPERIMENTS)


def experiment_names() -> list[str]:
    """Every experiment's name, without importing any of them: the paper's first, then the others sorted."""
    return list(BUILTIN_EXPERIMENTS) + sorted(set(_entry_points()) | set(_registered))


def get_experiment(name: str):
    """The `Experiment` called `name`.

    Raises:
        InputError: no experiment has this name, or a plugin's entry point cannot be loaded or is no Experiment.
    """
    from .protocol import Experiment

    if name in BUILTIN_EXPERIMENTS:
        return importlib.import_module(BUILTIN_EXPERIMENTS[name]).EXPERIMENT
    if name in _registered:
        return _registered[name]
    plugins = _entry_points()
    if name not in plugins:
        raise InputError(f"unknown experiment {name!r}; known experiments: {', '.join(experiment_names())}")
    try:
        experiment = plugins[name].load()
    except Exception as exc:  # a broken plugin is reported, not raised through
        raise InputError(f"experiment plugin {name!r} ({plugins[name].value}) cannot be loaded: "
                         f"{type(exc).__name__}: {exc}") from None
    if not isinstance(experiment, Experiment):
        raise InputError(f"experiment plugin {name!r} ({plugins[name].value}) is not a "
                         f"deepntk.engine.experiments.protocol.Experiment")
    return experiment
