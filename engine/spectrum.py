"""What float64 resolves of a symmetric Gram's spectrum: the round-off floor n·ε·λ_max, the eigenvalues above
it, and a condition number that is a number only when λ_min is above the floor
(docs/numerical-traps.md#eigenvalues-below-the-float64-floor)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ResolvedSpectrum:
    """A symmetric matrix's eigenvalues split at the float64 floor.

    Attributes:
        eigenvalues: all eigenvalues, largest first, as computed (those at or below `floor` are round-off).
        floor: n·ε·max|λ|, the size of the eigenvalue errors float64 makes on an n × n matrix of that norm.
        resolved: how many eigenvalues lie above the floor (they are the first `resolved` of `eigenvalues`).
        condition: λ_max/λ_min when every eigenvalue is resolved, else λ_max/floor.
        condition_is_lower_bound: True when `condition` is the bound λ_max/floor: λ_min is not told apart from 0.
    """

    eigenvalues: np.ndarray
    floor: float
    resolved: int
    condition: float
    condition_is_lower_bound: bool


def format_condition(condition: float, is_lower_bound: bool, digits: int = 3) -> str:
    """A condition number as printed: "5.43e+08", or "≥ 1.11e+14" when it is a lower bound."""
    return ("≥ " if is_lower_bound else "") + f"{condition:.{digits}g}"


def resolve_spectrum(eigenvalues) -> ResolvedSpectrum:
    """Split a symmetric n × n matrix's eigenvalues at the float64 resolution floor n·ε·max|λ|.

    A symmetric eigensolver (and the float64 sums that built the matrix) perturb every eigenvalue by up to
    about n·ε·‖K‖₂, so an eigenvalue at or below that floor, negative ones included, is round-off: its sign and
    size say nothing about the matrix (docs/numerical-traps.md#eigenvalues-below-the-float64-floor).

    Args:
        eigenvalues: the n eigenvalues of a symmetric matrix, in any order.

    Returns:
        ResolvedSpectrum with the eigenvalues largest first. Its condition is λ_max/λ_min when λ_min is above the
        floor; otherwise λ_max/floor, flagged as a lower bound (never a ratio of round-off, never negative).
    """
    values = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())[::-1]
    if values.size == 0:
        raise ValueError("no eigenvalues")
    norm = float(np.max(np.abs(values)))
    floor = values.size * float(np.finfo(np.float64).eps) * norm
    resolved = int(np.count_nonzero(values > floor))
    if resolved == values.size:
        return ResolvedSpectrum(values, floor, resolved, float(values[0] / values[-1]), False)
    bound = float(values[0] / floor) if resolved else float("inf")
    return ResolvedSpectrum(values, floor, resolved, bound, True)
