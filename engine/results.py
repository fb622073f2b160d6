"""Result folders: atomic writes of JSON and `.npz`, a record of the run that owns a folder (its configuration and
the files it wrote, docs/files.md#results-folders), and a manifest describing the run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import stat
import sys
import tempfile
import threading
import time

import numpy as np

from .files import read_json
from ..base.errors import FileFormatError, FolderConfigError, FolderInUseError, option

# Held by the run writing a folder where the folder itself cannot be locked (see _lock_folder).
LOCK_FILE = ".deepntk.lock"
# A run folder's record: the command and configuration that own it and the files deepntk wrote there (RunFolder).
RUN_RECORD = "run.json"
RUN_RECORD_FORMAT = 1


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
    record_file(path)
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


def write_stored_result(path: str, key: dict, summary: dict, **arrays) -> None:
    """One unit of a resumable study (a depth, a width), atomically: the configuration `key` it belongs to, its
    JSON summary and its arrays, as `files.read_stored_result` reads them back."""
    write_npz(path, key=np.array(json.dumps(key)), summary=np.array(json.dumps(summary)), **arrays)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def environment() -> dict:
    """Versions and machine facts for a manifest."""
    from ..base.version import __version__

    libs = {"numpy": np.__version__}
    for name in ("scipy", "numba", "cupy"):
        module = sys.modules.get(name)
        if module is not None:
            libs[name] = getattr(module, "__version__", "?")
    return {"deepntk": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "libraries": libs, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


# The folders this process holds (exclusive_folder), by absolute path: [lock, re-entries]. A second flock of the
# same folder from this process would be refused like another process's, so re-entries are counted here.
_LOCKS: dict = {}
_LOCKS_GUARD = threading.Lock()


def _lock_folder(path: str):
    """An exclusive, non-blocking lock on folder `path`, or None where another process holds it.

    The lock is flock(2) on a descriptor of the folder itself: it leaves no file in the folder, the operating
    system drops it when the process dies (a killed run leaves none), and there is no lock file whose removal
    could let two runs lock two different files. Where a folder cannot be flocked (no fcntl, or a file system
    without flock on folders, such as NFS), a lock file (LOCK_FILE, through filelock) stands in; it stays, as
    removing a lock file is what would open that race."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (ImportError, OSError):
        return _lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        return _lock_file(path)
    return lambda: os.close(fd)  # closing the only descriptor releases the lock


def _lock_file(path: str):
    """The fallback of `_lock_folder`: filelock on LOCK_FILE in `path`; None where another process holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(os.path.join(path, LOCK_FILE), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock.release


@contextlib.contextmanager
def exclusive_folder(path: str, what: str = "results folder"):
    """Hold folder `path` for this run: a second deepntk run into the same folder is refused at once instead of
    mixing its files with this one's (docs/files.md#results-folders). The lock is the operating system's
    (`_lock_folder`), so a killed run leaves none; re-entries from this process (the CLI and the engine may both
    hold it) are counted.

    Raises:
        FolderInUseError: another process holds the folder.
    """
    key = os.path.abspath(path)
    with _LOCKS_GUARD:
        held = _LOCKS.get(key)
        if held is None:
            release = _lock_folder(path)
            if release is None:
                raise FolderInUseError(f"{what} {path!r} is in use by another deepntk run; wait for it to finish or "
                                       f"choose another folder")
            held = _LOCKS[key] = [release, 0]
        held[1] += 1
    try:
        yield path
    finally:
        with _LOCKS_GUARD:
            held[1] -= 1
            if held[1] == 0:
                del _LOCKS[key]
                held[0]()


def canonical(config) -> dict:
    """`config` as its JSON round trip (tuples become lists, NumPy scalars numbers), to compare like with like."""
    return json.loads(json.dumps(config, sort_keys=True, default=_jsonable))


def differing_keys(old, new, prefix: str = "") -> list[str]:
    """The keys whose values differ between two configurations, nested keys dotted ("settings.eta")."""
    return [key for key, _, _ in differences(old, new, prefix)]


def differences(old, new, prefix: str = "") -> list[tuple]:
    """(dotted key, old value, new value) for each key whose value differs between two configurations; a key
    one side lacks has the value ABSENT there."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [(prefix.rstrip(".") or "configuration", old, new)]
    found = []
    for key in sorted(set(old) | set(new)):
        if key not in old or key not in new:
            if old.get(key) != new.get(key):
                found.append((prefix + key, old.get(key, ABSENT), new.get(key, ABSENT)))
        else:
            found += differences(old[key], new[key], f"{prefix}{key}.")
    return found


# What `differences` reports for a key one configuration lacks.
ABSENT = object()
# Values longer than this (as JSON) are left out of `describe_differences`: digests, arrays of inputs.
SHORT_VALUE = 30


def describe_differences(old, new, labels=("stored", "requested")) -> str:
    """The differing keys of two configurations for an error message, each with its two values (named by
    `labels`) where both are short: "kernel.spec.depth (stored 3, requested 5), x1"."""
    def shown(label, value):
        return f"not {label}" if value is ABSENT else f"{label} {json.dumps(value)}"

    parts = []
    for key, before, after in differences(old, new):
        values = shown(labels[0], before), shown(labels[1], after)
        long = any(value is not ABSENT and len(json.dumps(value)) > SHORT_VALUE for value in (before, after))
        parts.append(key if long else f"{key} ({values[0]}, {values[1]})")
    return ", ".join(parts)


def default_folder(command: str, config) -> str:
    """deepntk-results/<command>-<first 8 hex digits of the configuration's SHA-1>: runs of different
    configurations never share a default folder, and a rerun of the same configuration finds its results there
    (held to the rules of `run_folder`, as in a folder given by name). Only where that folder's record names
    another configuration (a hash collision) is it the first of `<folder>-2`, `-3`, … that does not.

    Raises:
        FileFormatError: a candidate folder's run record is damaged.
    """
    text = json.dumps({"command": command, "config": canonical(config)}, sort_keys=True)
    stem = "-".join("".join(c if c.isalnum() else " " for c in command).split())
    path = os.path.join("deepntk-results", f"{stem}-{hashlib.sha1(text.encode()).hexdigest()[:8]}")
    wanted = {"command": command, "config": canonical(config)}
    for candidate in (path, *(f"{path}-{n}" for n in range(2, 10**6))):
        record = read_record(candidate) if os.path.isdir(candidate) else None
        if record is None or not differing_keys({"command": record["command"], "config": record["config"]}, wanted):
            return candidate
    raise FolderConfigError(f"every default folder {path}-N holds another configuration; choose a folder with -o")


# The run folders this process holds, by absolute path (record_file finds them there).
_HELD: dict = {}


class RunFolder:
    """A results folder held by one run of one configuration. Its record (RUN_RECORD) names the command, the
    configuration and every file deepntk wrote there; it is written with the first file, and each file is added
    before it is written, so a killed run's record still lists what it may have left."""

    def __init__(self, path: str, command: str, config: dict, files=(), resumed: bool = False):
        self.path = path
        self.command = command
        self.config = config
        self.files = list(files)
        self.resumed = resumed  # the files an earlier run of this configuration recorded are continued from
        self._lock = threading.Lock()

    def record(self, name: str) -> None:
        """Add `name` (a file or folder inside this folder) to the record, writing the record if it changes."""
        if name in (RUN_RECORD, LOCK_FILE):
            return
        with self._lock:
            if name in self.files:
                return
            self.files.append(name)
            write_json(os.path.join(self.path, RUN_RECORD),
                       {"format": RUN_RECORD_FORMAT, "command": self.command, "config": self.config,
                        "files": self.files})


def record_file(path) -> None:
    """Note `path` in the record of the run folder this process holds around it, if any (atomic_write calls this
    before every write, so every file deepntk writes in a run folder is recorded)."""
    folder = _HELD.get(os.path.dirname(os.path.abspath(os.fspath(path))))
    if folder is not None:
        folder.record(os.path.basename(os.fspath(path)))


def read_record(path: str) -> dict | None:
    """The run record of folder `path`, None if it has none.

    Raises:
        FileFormatError: the record is damaged (named, with what is wrong).
    """
    record_path = os.path.join(path, RUN_RECORD)
    if not os.path.exists(record_path):
        return None
    record = read_json(record_path, "run record")
    if not (isinstance(record, dict) and isinstance(record.get("command"), str) and "config" in record
            and isinstance(record.get("files"), list) and all(isinstance(f, str) for f in record["files"])):
        raise FileFormatError(f"run record {record_path!r} is damaged (not a run record); remove it to reuse the "
                              f"folder")
    return record


def _remove_recorded(path: str, files) -> None:
    """Remove the files an earlier run recorded in `path`, and nothing else (names that would leave the folder
    are skipped)."""
    for name in files:
        if os.path.isabs(name) or os.path.normpath(name).split(os.sep)[0] in ("..", ".", ""):
            continue
        target = os.path.join(path, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.unlink(target)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, RUN_RECORD))


def _claim(path: str, command: str, config: dict, resume, overwrite: bool, what: str) -> RunFolder:
    """The RunFolder for this run, after checking what `path` holds against `command` and `config`."""
    old = read_record(path)
    if old is None:
        foreign = sorted(name for name in os.listdir(path) if name != LOCK_FILE)
        if foreign and not overwrite:
            shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
            raise FolderConfigError(f"{what} {path!r} holds files that no deepntk run recorded ({shown}); choose "
                                    f"another folder, or pass {option('overwrite')} to write beside them")
        return RunFolder(path, command, config)
    differing = differing_keys({"command": old["command"], "config": old["config"]},
                               {"command": command, "config": config})
    if differing:
        if not overwrite:
            raise FolderConfigError(f"{what} {path!r} holds the results of a different configuration (differs in: "
                                    f"{', '.join(k.removeprefix('config.') for k in differing)}); pass "
                                    f"{option('overwrite')} to replace them, or choose another folder")
    elif old["files"] and not resume and not overwrite:
        again = f"{option('resume')} to reuse them, " if resume is not None else ""
        raise FolderConfigError(f"{what} {path!r} already holds the results of this configuration; pass {again}"
                                f"{option('overwrite')} to compute them again, or choose another folder")
    if overwrite:
        _remove_recorded(path, old["files"])
        return RunFolder(path, command, config)
    return RunFolder(path, command, config, old["files"], resumed=bool(old["files"]))


@contextlib.contextmanager
def run_folder(path, command: str, config: dict, *, resume: bool | None = False, overwrite: bool = False,
               what: str = "results folder"):
    """Hold folder `path` for a run of `command` with `config` and yield its RunFolder
    (docs/files.md#results-folders).

    A folder whose record names another command or configuration is refused, naming the differing keys, unless
    `overwrite`; so is one that already holds this configuration's results, unless `resume` (continue from them)
    or `overwrite`. `overwrite` first removes the files the earlier run recorded, and only those. `resume` None:
    the command cannot resume, and the refusal does not offer it. A run that records no file leaves the folder as
    it found it: one this call created is removed again.

    Raises:
        FolderConfigError: the folder holds another configuration, or this one's results (see above).
        FolderInUseError: another deepntk run holds the folder.
        OSError: the folder cannot be created or written.
    """
    if resume and overwrite:
        raise FolderConfigError(f"{option('resume')} continues a run and {option('overwrite')} replaces it; give "
                                f"one of them")
    path = os.fspath(path)
    absolute = os.path.abspath(path)
    if absolute in _HELD:  # held already by this process: the command line around the engine, for this same run
        held = _HELD[absolute]
        if held.command != command or held.config != canonical(config):
            raise FolderInUseError(f"{what} {path!r} is in use by another run in this process")
        yield held
        return
    created = absolute
    while not os.path.exists(os.path.dirname(created)) and os.path.dirname(created) != created:
        created = os.path.dirname(created)  # the outermost folder that makedirs will create
    created = None if os.path.exists(absolute) else created
    os.makedirs(path, exist_ok=True)
    try:
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{what} {path!r} is not writable")
        with exclusive_folder(path, what):
            folder = _claim(path, command, canonical(config), resume, overwrite, what)
            _HELD[absolute] = folder
            try:
                yield folder
            finally:
                del _HELD[absolute]
    finally:
        if created is not None:  # remove what makedirs made, from the inside out, while it is empty
            current = absolute
            while True:
                try:
                    os.rmdir(current)
                except OSError:
                    break
                if current == created:
                    break
                current = os.path.dirname(current)
