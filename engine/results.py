"""Result folders: atomic writes of JSON and `.npz`, and a manifest describing the run."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import stat
import sys
import tempfile
import time

import numpy as np

from deepntk.engine.errors import FolderInUseError

# Held by the run writing a folder (see exclusive_folder).
LOCK_FILE = ".deepntk.lock"


def file_mode(path: str) -> int:
    """The permissions a plain open() would give `path`: its own where it exists, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: str, write, suffix: str = "") -> None:
    """Write `path` through a temporary file in the same folder and a rename, so a killed run never leaves a
    half-written file under the final name; the file gets the permissions a plain write would give it."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str, payload: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(payload))


def write_json(path: str, data) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def write_npz(path: str, **arrays) -> None:
    atomic_write(path, lambda handle: np.savez(handle, **arrays), suffix=".npz")


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


@contextlib.contextmanager
def exclusive_folder(path: str, what: str = "results folder"):
    """Hold `path` for this run: a second deepntk run into the same folder is refused at once instead of mixing
    its files with this one's. The lock is the operating system's (filelock), so a killed run leaves none."""
    from filelock import FileLock, Timeout

    # One lock object per folder in this process, counting re-entries (the CLI and the engine may both hold it).
    lock = FileLock(os.path.join(path, LOCK_FILE), is_singleton=True, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FolderInUseError(f"{what} {path!r} is in use by another deepntk run; wait for it to finish or "
                               f"choose another folder") from None
    try:
        yield path
    finally:
        lock.release()


def ensure_writable_folder(path: str) -> str:
    """Create `path` if needed and check that files can be written there; raise OSError otherwise."""
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"output folder {path!r} is not writable")
    return path
