"""Durations in the words every report uses ("42 s", "3.5 min", "7.2 h", "12.3 days")."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """A duration in the largest unit that keeps it at least 1: "42 s", "3.5 min", "7.2 h", "12.3 days"."""
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
