"""Statistics the studies share: relative block errors, power-law fits over seeds, confidence intervals.

Every interval is over independent networks (seeds), never a normal one: a study has 3–16 seeds, where the
normal 1.96 understates the 95% half-width by up to 30% (t₄ = 2.78). The rate of the error against depth is
fitted once per seed and the seeds' slopes are averaged, so its interval reflects how much the rate varies from
network to network, not how straight a few points happen to lie; mean errors, which are skewed, get a bootstrap-t
interval (docs/experiments.md#intervals). tests/experiments/test_stats.py proves each interval's coverage.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


@functools.lru_cache(maxsize=None)
def t_quantile(dof: int, level: float = CONFIDENCE) -> float:
    """The two-sided `level` quantile of Student's t with `dof` degrees of freedom (t₄ = 2.776 at 95%)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, dof))


def relative_block_errors(theta: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """‖Θ̃(x, x') − r(x, x')·I_k‖_F / ‖r(x, x')·I_k‖_F for every pair: (N1, N2)."""
    k = theta.shape[-1]
    target = reference[..., None, None] * np.eye(k)
    return np.linalg.norm(theta - target, axis=(-2, -1)) / np.linalg.norm(target, axis=(-2, -1))


@dataclass(frozen=True)
class SlopeFit:
    """The fitted exponent b of error ∝ L^b, with its interval over seeds.

    Attributes:
        slope: the mean of the seeds' least-squares slopes of log(error) against log(L); equal to the slope of
            the seeds' geometric-mean error.
        stderr: its standard error over seeds (nan with one seed).
        half_width: the `level` interval's half-width, t_{seeds−1} × stderr (nan with one seed).
        seeds, depths: how many networks per point, and how many points (depths, or widths) the fit spans.
        level: the interval's confidence level.
        variable: what the error is fitted against: "L" (depth) or "n" (width).
        slope_of_means: the least-squares slope of log(mean error over seeds) against log(L), the slope of the
            mean errors a study's table prints; no interval. It differs from `slope` when one seed's large errors
            dominate a mean (docs/experiments.md#intervals).
    """

    slope: float
    stderr: float
    half_width: float
    seeds: int
    depths: int
    level: float = CONFIDENCE
    variable: str = "L"
    slope_of_means: float = float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return self.slope - self.half_width, self.slope + self.half_width

    def describe(self) -> str:
        """"mean of the 5 seeds' fitted slopes −0.556, 95% interval [−0.97, −0.14]; slope of the mean errors
        −0.612", or, with one seed (whose slope is that of the mean errors), why there is no interval."""
        if not math.isfinite(self.half_width):
            per = "depth" if self.variable == "L" else "width"
            return f"{self.slope:+.3f} (no interval: one seed per {per}; use --seeds ≥ 2)"
        low, high = self.interval
        return (f"mean of the {self.seeds} seeds' fitted slopes {self.slope:+.3f}, {self.level:.0%} interval "
                f"[{low:+.2f}, {high:+.2f}]; slope of the mean errors {self.slope_of_means:+.3f}")

    def to_dict(self) -> dict:
        low, high = self.interval
        return {"slope": self.slope, "stderr": self.stderr, "interval": [low, high], "level": self.level,
                "seeds": self.seeds, "depths" if self.variable == "L" else "widths": self.depths,
                "method": slope_method(self.variable), "slope_of_mean_errors": self.slope_of_means}


def slope_method(variable: str = "L") -> str:
    """How the rate and its interval are computed, as results files record it."""
    return (f"mean of the seeds' least-squares slopes of log(error) against log({variable}), with a Student t "
            "interval over seeds")


SLOPE_METHOD = slope_method()


def fit_power_law(depths, seed_errors, level: float = CONFIDENCE, variable: str = "L") -> SlopeFit:
    """Fit error ∝ L^b per seed and average: the rate and its t interval over seeds.

    Each seed's networks give one slope; seeds are independent, so the slopes are independent draws whatever the
    correlation between one seed's networks at different depths, and their t interval covers the depth range's
    mean slope at its nominal level (tests/experiments/test_stats.py proves the coverage).

    Args:
        depths: the D depths L (at least two distinct).
        seed_errors: (S, D) positive errors, seed s at depth d.
        level: confidence level of the interval.
        variable: the name of what `depths` holds, "L" or, for widths, "n" (recorded in the SlopeFit).

    Returns:
        A SlopeFit, with the slope of the mean errors beside; its half-width is nan when S = 1.

    Raises:
        ValueError: fewer than two distinct depths, a shape mismatch, or an error that is not positive and finite.
    """
    x = np.log(np.asarray(depths, dtype=float))
    errors = np.asarray(seed_errors, dtype=float)
    if errors.ndim != 2 or errors.shape[1] != len(x) or errors.shape[0] < 1:
        raise ValueError(f"seed_errors must have shape (seeds, {len(x)}), got {errors.shape}")
    if len(np.unique(x)) < 2:
        raise ValueError(f"a power-law fit needs at least two distinct depths, got {list(depths)}")
    if not np.all(np.isfinite(errors) & (errors > 0)):
        raise ValueError("a power-law fit needs positive, finite errors")
    centred = x - x.mean()
    slopes = np.log(errors) @ centred / (centred @ centred)
    of_means = float(np.log(errors.mean(axis=0)) @ centred / (centred @ centred))
    seeds = len(slopes)
    if seeds < 2:
        return SlopeFit(float(slopes[0]), float("nan"), float("nan"), 1, len(x), level, variable, of_means)
    stderr = float(slopes.std(ddof=1) / math.sqrt(seeds))
    return SlopeFit(float(slopes.mean()), stderr, t_quantile(seeds - 1, level) * stderr, seeds, len(x), level,
                    variable, of_means)


# Resamples of the t statistic per interval, and their fixed seed (the same study always prints the same interval).
BOOTSTRAP_DRAWS = 4000
BOOTSTRAP_SEED = 20220717


def error_means_and_intervals(seed_errors, level: float = CONFIDENCE):
    """The mean error at every depth with its `level` interval, from a bootstrap-t over seeds with the
    errors' shape learned from all depths together.

    One network's error is skewed (skewness 1.0–1.5 over 300 seeds at every depth measured), and a symmetric t
    interval over 5 seeds then covers ~92%, not 95%. The errors of every depth share one shape up to scale (the
    standard deviation of log(error) is 0.87–1.01 from L = 100 to 10⁴, MLP and CNN), so each error is divided by
    its depth's mean, the S·D shapes are pooled, and the t statistic's skewed distribution is resampled from them
    (docs/experiments.md#intervals; tests/experiments/test_stats.py proves the coverage).

    Args:
        seed_errors: (S, D) positive errors, seed s at depth d.
        level: confidence level.

    Returns:
        (means, lows, highs), each of shape (D,); lows and highs are nan with one seed.
    """
    errors = np.asarray(seed_errors, dtype=float)
    if errors.ndim != 2 or errors.shape[0] < 1:
        raise ValueError(f"seed_errors must have shape (seeds, depths), got {errors.shape}")
    seeds = errors.shape[0]
    means = errors.mean(axis=0)
    if seeds < 2:
        nan = np.full_like(means, np.nan)
        return means, nan, nan.copy()
    stderrs = errors.std(axis=0, ddof=1) / math.sqrt(seeds)
    # Deviations from the depth's own mean are shrunk by (S − 1)/S in variance; undo that before pooling.
    shapes = ((errors / means - 1.0) * math.sqrt(seeds / (seeds - 1))).ravel()
    draws = 1.0 + shapes[np.random.default_rng(BOOTSTRAP_SEED).integers(0, shapes.size, (BOOTSTRAP_DRAWS, seeds))]
    deviation, spread = draws.mean(axis=1) - 1.0, draws.std(axis=1, ddof=1)
    # A resample of one value repeated has no spread (up to round-off): its t is ±∞, or 0 at the mean itself.
    flat = spread <= 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        t_stats = np.where(flat, np.sign(deviation) * np.inf, deviation / (spread / math.sqrt(seeds)))
    t_stats = np.nan_to_num(t_stats, nan=0.0, posinf=np.inf, neginf=-np.inf)
    low_quantile, high_quantile = np.quantile(t_stats, [(1 - level) / 2, (1 + level) / 2])
    # With 2 seeds (or 3 at one depth) a quantile can be infinite (resamples of one value): the interval is then
    # unbounded above, as it should be. An error is positive: a lower bound below zero says nothing more than zero does.
    with np.errstate(over="ignore", invalid="ignore"):
        low, high = means - high_quantile * stderrs, means - low_quantile * stderrs
    return means, np.maximum(np.nan_to_num(low, nan=0.0, neginf=0.0), 0.0), np.nan_to_num(high, nan=np.inf)


def mean_and_ci(values, level: float = CONFIDENCE) -> tuple[float, float]:
    """Mean and the half-width of its Student t `level` interval (nan for a single value)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(t_quantile(len(values) - 1, level) * values.std(ddof=1)
                                       / math.sqrt(len(values)))
