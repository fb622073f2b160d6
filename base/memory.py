"""Memory planning: refuse sizes that cannot fit (in memory, or on the disk a store is written to) before
allocating, and split work so that what a backend holds at once stays under a byte budget
(DEEPNTK_MEMORY_BUDGET)."""

from __future__ import annotations

import math
import os
import shutil

from .errors import DiskSpaceError, InputError, MemoryBudgetError

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


def require_disk(path: str, nbytes: float, what: str) -> None:
    """Raise DiskSpaceError, with the numbers, when `what` needs more than the free space of the file system that
    holds `path` (its nearest existing folder), so a long run is refused up front, not when the disk fills."""
    folder = os.path.abspath(path)
    while not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise DiskSpaceError(f"{what} needs about {format_bytes(nbytes)} of disk, but {folder!r} has only "
                             f"{format_bytes(free)} free")


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


def gram_blocks(N1: int, N2: int, bytes_per_input: int, bytes_per_pair: int, budget: int | None = None,
                symmetric: bool = False) -> tuple[list[slice], list[slice]]:
    """Blocks of rows (of N1 inputs) and columns (of N2) for a Gram computed a block pair at a time, so that one
    block pair's working memory, bytes_per_input per input of its blocks (their activations, once for a
    symmetric Gram's diagonal) plus bytes_per_pair per entry of its Gram block (the block and the temporaries
    that build it), fits the budget (docs/ntk.md#memory). One block each when everything fits.

    Raises MemoryBudgetError with the numbers when even one pair of inputs does not fit.
    """
    budget = memory_budget() if budget is None else budget
    p, q = max(1, bytes_per_input), max(1, bytes_per_pair)
    if (N1 + (0 if symmetric else N2)) * p + N1 * N2 * q <= budget:
        return [slice(0, N1)], [slice(0, N2)]
    if 2 * p + q > budget:
        raise MemoryBudgetError(f"a pair of inputs needs {format_bytes(2 * p + q)} of working memory, more than the "
                                f"budget of {format_bytes(budget)} (set DEEPNTK_MEMORY_BUDGET to raise it)")
    # Square blocks of side b: 2·b·p + b²·q <= budget; a side with fewer inputs is taken whole and the other
    # side's blocks widened to what is left.
    side = int((math.sqrt(p * p + q * budget) - p) // q)
    columns = N1 if symmetric else N2
    cols = min(columns, side) if symmetric else min(columns, max(side, (budget - N1 * p) // (p + N1 * q)))
    rows = side if symmetric else max(1, min(N1, (budget - cols * p) // (p + cols * q)))
    return ([slice(i, min(N1, i + rows)) for i in range(0, N1, rows)],
            [slice(j, min(columns, j + cols)) for j in range(0, columns, cols)])
