"""Result folders: atomic writes of JSON and `.npz`, and a manifest describing the run."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time

import numpy as np


def atomic_write_bytes(path: str, payload: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, data) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def write_npz(path: str, **arrays) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def environment() -> dict:
    """Versions and machine facts for a manifest."""
    from deepntk import __version__

    libs = {"numpy": np.__version__}
    for name in ("scipy", "numba", "cupy"):
        module = sys.modules.get(name)
        if module is not None:
            libs[name] = getattr(module, "__version__", "?")
    return {"deepntk": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "libraries": libs, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def ensure_writable_folder(path: str) -> str:
    """Create `path` if needed and check that files can be written there; raise OSError otherwise."""
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"output folder {path!r} is not writable")
    return path
