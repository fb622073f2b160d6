"""Split work over inputs so that what a backend holds at once stays under a byte budget."""

from __future__ import annotations

import os

# Default working-set budget per call; DEEPNTK_MEMORY_BUDGET (bytes) overrides it.
DEFAULT_BUDGET = 2 << 30


def memory_budget() -> int:
    value = os.environ.get("DEEPNTK_MEMORY_BUDGET")
    return int(value) if value else DEFAULT_BUDGET


def input_blocks(count: int, bytes_per_input: int, budget: int | None = None) -> list[slice]:
    """Contiguous slices of `count` inputs, each small enough that bytes_per_input·len fits the budget.

    Raises MemoryError with the numbers when even one input does not fit.
    """
    budget = memory_budget() if budget is None else budget
    if bytes_per_input > budget:
        raise MemoryError(f"one input needs {bytes_per_input / 2**30:.2f} GiB of working memory, more than the "
                          f"budget of {budget / 2**30:.2f} GiB (set DEEPNTK_MEMORY_BUDGET to raise it)")
    size = max(1, min(count, budget // max(1, bytes_per_input)))
    return [slice(start, min(count, start + size)) for start in range(0, count, size)]
