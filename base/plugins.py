"""Plugins of other packages: the entry points of a group (deepntk.backends, deepntk.experiments)."""

from __future__ import annotations

from importlib import metadata


def entry_points(group: str, builtin) -> dict:
    """{name: entry point} of the installed distributions' entry points in `group`, leaving out the names of
    `builtin` (a plugin cannot replace a built-in)."""
    try:
        found = metadata.entry_points(group=group)
    except TypeError:  # Python 3.10 without the selection API
        found = metadata.entry_points().get(group, [])
    return {ep.name: ep for ep in found if ep.name not in builtin}
