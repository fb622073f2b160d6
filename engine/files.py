"""Reading the files deepntk writes (params, checkpoints, per-depth results): every kind of damage becomes
one `FileFormatError` that names the file and what is wrong, never a zipfile, JSON or NumPy traceback."""

from __future__ import annotations

import json
import os
import zipfile
import zlib

import numpy as np

from ..base.errors import FileFormatError

# What NumPy and zipfile raise on truncated, bit-flipped or foreign content.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError,
                NotImplementedError)


def read_npz(path, what: str, error=FileFormatError) -> dict:
    """All arrays of an `.npz` archive, read eagerly (so damage anywhere shows now, as `error`)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise error(f"{what} {path!r} does not exist")
    if os.path.isdir(path):
        raise error(f"{what} {path!r} is a folder, not a file")
    if os.path.getsize(path) == 0:
        raise error(f"{what} {path!r} is empty (0 bytes)")
    try:
        archive = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise error(f"cannot read {what} {path!r} as an .npz archive ({_reason(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise error(f"{what} {path!r} holds a single array (.npy content), not an .npz archive")
    try:
        with archive:
            return {name: archive[name] for name in archive.files}
    except _READ_ERRORS as exc:
        raise error(f"{what} {path!r} is damaged ({_reason(exc)})") from None


def read_json(path, what: str, error=FileFormatError):
    """The JSON value in file `path`; damage (not JSON, not UTF-8) becomes one `error` naming the file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise error(f"{what} {path!r} is damaged ({exc})") from None


def json_entry(arrays: dict, key: str, path, what: str, error=FileFormatError) -> dict:
    """The JSON object stored as a string array under `key` of an archive read by `read_npz`."""
    if key not in arrays:
        raise error(f"{what} {os.fspath(path)!r} has no {key!r} entry")
    entry = arrays[key]
    if entry.ndim != 0 or entry.dtype.kind != "U":
        raise error(f"{what} {os.fspath(path)!r}: {key!r} must be a JSON string, got a {entry.dtype} array of shape "
                    f"{entry.shape}")
    try:
        value = json.loads(str(entry))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise error(f"{what} {os.fspath(path)!r}: {key!r} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise error(f"{what} {os.fspath(path)!r}: {key!r} must be a JSON object, got {type(value).__name__}")
    return value


def read_stored_result(path, key: dict, what: str, arrays: tuple, build):
    """One unit of a resumable study as `results.write_stored_result` wrote it: `build(summary, arrays)` from its
    JSON summary and its named arrays; None where no file is there or it holds another configuration than `key`.

    Raises:
        FileFormatError: the file exists but is damaged (named, with what is wrong).
    """
    if not os.path.exists(path):
        return None
    data = read_npz(path, what)
    if json_entry(data, "key", path, what) != key:
        return None
    summary = json_entry(data, "summary", path, what)
    missing = [name for name in arrays if name not in data]
    if missing:
        raise FileFormatError(f"{what} {os.fspath(path)!r} is missing {', '.join(missing)}")
    try:
        return build(summary, {name: data[name] for name in arrays})
    except TypeError as exc:
        raise FileFormatError(f"{what} {os.fspath(path)!r} has a damaged summary ({exc})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
