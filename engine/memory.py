"""Memory planning: refuse sizes that cannot fit before allocating, and split work so that what a backend
holds at once stays under a byte budget (DEEPNTK_MEMORY_BUDGET)."""

from __future__ import annotations

import os

from deepntk.engine.errors import InputError, MemoryBudgetError

# Default working-set budget per call; DEEPNTK_MEMORY_BUDGET (bytes) overrides it.
DEFAULT_BUDGET = 2 << 30


def memory_budget() -> int:
    """The working-memory budget of one call in bytes (DEEPNTK_MEMORY_BUDGET, else 2 GiB)."""
    value = os.environ.get("DEEPNTK_MEMORY_BUDGET")
    if not value:
        return DEFAULT_BUDGET
    try:
        budget = int(float(value))
    except ValueError:
        raise InputError(f"DEEPNTK_MEMORY_BUDGET must be a number of bytes, got {value!r}") from None
    if budget <= 0:
        raise InputError(f"DEEPNTK_MEMORY_BUDGET must be > 0 bytes, got {value!r}")
    return budget


def available_memory() -> int:
    """Bytes of memory available to this process now (MemAvailable on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def format_bytes(count: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{int(count)} bytes"


def require_memory(nbytes: float, what: str) -> None:
    """Raise MemoryBudgetError, with the numbers, when `what` needs more than the memory available now."""
    available = available_memory()
    if nbytes > available:
        raise MemoryBudgetError(f"{what} needs about {format_bytes(nbytes)} of memory, but only "
                                f"{format_bytes(available)} is available")


def input_blocks(count: int, bytes_per_input: int, budget: int | None = None) -> list[slice]:
    """Contiguous slices of `count` inputs, each small enough that bytes_per_input·len fits the budget.

    Raises MemoryBudgetError with the numbers when even one input does not fit.
    """
    budget = memory_budget() if budget is None else budget
    if bytes_per_input > budget:
        raise MemoryBudgetError(f"one input needs {format_bytes(bytes_per_input)} of working memory, more than the "
                                f"budget of {format_bytes(budget)} (set DEEPNTK_MEMORY_BUDGET to raise it)")
    size = max(1, min(count, budget // max(1, bytes_per_input)))
    return [slice(start, min(count, start + size)) for start in range(0, count, size)]
