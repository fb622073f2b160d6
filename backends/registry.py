"""Backend registry: built-ins by module path (imported on first use), plugins via entry points.

Third-party packages register a `Backend` subclass under the entry-point group `deepntk.backends`:
    [project.entry-points."deepntk.backends"]
    mybackend = "mypackage.module:MyBackend"
"""

from __future__ import annotations

import importlib

from ..base.errors import BackendUnavailableError, UnknownBackendError
from ..base.plugins import entry_points

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
    return entry_points(ENTRY_POINT_GROUP, BUILTIN_BACKENDS)


def backend_names() -> list[str]:
    """Every known backend name, available or not."""
    return list(BUILTIN_BACKENDS) + sorted(_entry_points())


def backend_class(name: str):
    """The backend class for `name` (importing only its module, which must not import its library yet).

    Raises:
        UnknownBackendError: no backend has this name.
        BackendUnavailableError: a plugin's entry point cannot be loaded or is not a `Backend` subclass.
    """
    if name in BUILTIN_BACKENDS:
        module, attr = BUILTIN_BACKENDS[name]
        return getattr(importlib.import_module(module), attr)
    plugins = _entry_points()
    if name not in plugins:
        raise UnknownBackendError(f"unknown backend {name!r}; known backends: {', '.join(backend_names())}")
    try:
        cls = plugins[name].load()
    except Exception as exc:  # a broken plugin is isolated: whatever its import raises, it is only unavailable
        raise BackendUnavailableError(f"backend plugin {name!r} ({plugins[name].value}) cannot be loaded: "
                                      f"{type(exc).__name__}: {exc}") from None
    from .base import Backend

    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendUnavailableError(f"backend plugin {name!r} ({plugins[name].value}) is not a "
                                      f"deepntk.backends.base.Backend subclass")
    return cls


def availability(name: str) -> tuple[bool, str]:
    """(available, reason if not) for a backend name, never raising for a broken plugin."""
    try:
        cls = backend_class(name)
    except BackendUnavailableError as exc:
        return False, str(exc)
    try:
        ok, reason = cls.availability()
    except Exception as exc:  # a plugin's own check failing means: not usable here, and why
        return False, f"its availability check failed: {type(exc).__name__}: {exc}"
    return bool(ok), str(reason)


def get_backend(name=None):
    """The backend instance for `name`, or the best installed one for None.

    Args:
        name: a backend name (case-insensitive), a `Backend` instance (returned as it is), or None.

    Raises:
        UnknownBackendError: no backend has this name (the message lists the known ones).
        BackendUnavailableError: the backend exists but its library or device is missing (the message names
            the extra to install), or its plugin is broken.
        TypeError: `name` is neither a string, a Backend nor None.
    """
    from .base import Backend

    if name is None:
        for candidate in DEFAULT_PREFERENCE:
            if availability(candidate)[0]:
                return get_backend(candidate)
        return get_backend("numpy")
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend must be a backend name (str), a deepntk Backend instance or None, got "
                        f"{type(name).__name__}")
    name = name.strip().lower()
    if name not in _instances:
        ok, reason = availability(name)
        if not ok:
            raise BackendUnavailableError(f"backend {name!r} is not available: {reason}")
        try:
            _instances[name] = backend_class(name)()
        except Exception as exc:
            raise BackendUnavailableError(f"backend {name!r} could not be started: {type(exc).__name__}: {exc}") \
                from None
    return _instances[name]


def available_backends() -> list[dict]:
    """One row per known backend: name, available, device, version, and why not where unavailable."""
    rows = []
    for name in backend_names():
        ok, reason = availability(name)
        if ok:
            try:
                rows.append(get_backend(name).describe())
                continue
            except Exception as exc:  # a plugin that fails to start or describe itself is listed, not fatal
                reason = f"{type(exc).__name__}: {exc}"
        rows.append({"name": name, "available": False, "device": "-", "version": "-", "reason": reason})
    return rows
