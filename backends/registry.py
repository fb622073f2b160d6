"""Backend registry: built-ins by module path (imported on first use), plugins via entry points.

Third-party packages register a `Backend` subclass under the entry-point group `deepntk.backends`:
    [project.entry-points."deepntk.backends"]
    mybackend = "mypackage.module:MyBackend"
"""

from __future__ import annotations

import importlib
from importlib import metadata

from deepntk.engine.errors import BackendUnavailableError, UnknownBackendError

ENTRY_POINT_GROUP = "deepntk.backends"

# name → (module, class); imported only when that backend is asked for.
BUILTIN_BACKENDS = {
    "numpy": ("deepntk.backends.numpy_backend", "NumpyBackend"),
    "numba": ("deepntk.backends.numba_backend", "NumbaBackend"),
    "cupy": ("deepntk.backends.cupy_backend", "CupyBackend"),
}

# Order in which `backend=None` picks the best installed backend. CuPy is opt-in: it moves every call's
# data to the GPU, which only pays off for large batches.
DEFAULT_PREFERENCE = ("numba", "numpy")

_instances: dict = {}


def _entry_points() -> dict:
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python 3.10 without the selection API
        eps = metadata.entry_points().get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep for ep in eps if ep.name not in BUILTIN_BACKENDS}


def backend_names() -> list[str]:
    """Every known backend name, available or not."""
    return list(BUILTIN_BACKENDS) + sorted(_entry_points())


def backend_class(name: str):
    """The backend class for `name` (importing only its module, which must not import its library yet)."""
    if name in BUILTIN_BACKENDS:
        module, attr = BUILTIN_BACKENDS[name]
        return getattr(importlib.import_module(module), attr)
    plugins = _entry_points()
    if name in plugins:
        return plugins[name].load()
    raise UnknownBackendError(f"unknown backend {name!r}; known backends: {', '.join(backend_names())}")


def get_backend(name: str | None = None):
    """The backend instance for `name`, or the best installed one for None.

    Raises:
        UnknownBackendError: no backend has this name (the message lists the known ones).
        BackendUnavailableError: the backend exists but its library or device is missing (the message names
            the extra to install).
    """
    if name is None:
        for candidate in DEFAULT_PREFERENCE:
            if backend_class(candidate).availability()[0]:
                return get_backend(candidate)
        return get_backend("numpy")
    if not isinstance(name, str):
        return name  # an already constructed backend instance
    name = name.lower()
    if name not in _instances:
        cls = backend_class(name)
        ok, reason = cls.availability()
        if not ok:
            raise BackendUnavailableError(f"backend {name!r} is not available: {reason}")
        _instances[name] = cls()
    return _instances[name]


def available_backends() -> list[dict]:
    """One row per known backend: name, available, device, version, and why not where unavailable."""
    rows = []
    for name in backend_names():
        try:
            cls = backend_class(name)
        except Exception as exc:  # a broken plugin must not break the listing
            rows.append({"name": name, "available": False, "device": "-", "version": "-", "reason": str(exc)})
            continue
        ok, reason = cls.availability()
        if ok:
            rows.append(get_backend(name).describe())
        else:
            rows.append({"name": name, "available": False, "device": "-", "version": "-", "reason": reason})
    return rows
