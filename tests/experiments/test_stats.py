"""The intervals deepntk prints cover the truth at their nominal level: coverage over many synthetic studies with
a known answer and seed noise like deepntk's.

What deepntk's seed noise looks like (300 networks per depth, Fig. 3's MLP at L = 100, 1000, 10⁴ and the default
CNN at L = 100, 300): one network's mean relative error has skewness 1.0–1.45 and log-standard deviation
0.87–1.01 at every depth, the same shape up to scale; one seed's networks at two depths are correlated (ρ up to
0.37: they share their first layers). The half-normal |Z| (one Gaussian fluctuation mode; skewness 1.0,
log-standard deviation 1.11) is at least as hard, so the studies below draw errors c·L^b·|Z|, also correlated
across depths, and χ₃-distributed ones (three modes). Offsets, the signed mean of Θ̃ − Θ̃^∞, are near normal
(skewness 0.1–0.4).

Each coverage is a binomial proportion over M studies. With M = 2000 and true coverage 95%, its standard deviation
is 0.49 points, so the accepted band 93–97% is ±4.1 standard deviations (a false failure once in ~40,000 runs);
the normal intervals these replaced cover 70–88% here, at least 10 standard deviations below the band.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import TOL

from deepntk.engine.experiments.stats import (error_means_and_intervals, fit_power_law, mean_and_ci,
                                              t_quantile)

STUDIES = 2000
BAND = (0.93, 0.97)
TRUE_SLOPE = -0.5


def seed_noise(rng, kind: str, shape, correlation: float = 0.0) -> np.ndarray:
    """Positive multiplicative noise of one network's error: |Z| (optionally correlated along the last axis, the
    depths of one seed) or a χ₃ norm."""
    if kind == "chi3":
        return np.sqrt(np.sum(rng.normal(size=shape + (3,)) ** 2, axis=-1))
    z = rng.normal(size=shape)
    if correlation:
        z = math.sqrt(correlation) * rng.normal(size=shape[:-1] + (1,)) + math.sqrt(1 - correlation) * z
    return np.abs(z)


def studies(rng, depths, seeds: int, kind: str, correlation: float = 0.0) -> np.ndarray:
    """(STUDIES, seeds, depths) errors 0.3 · L^(−1/2) · noise."""
    scale = 0.3 * np.asarray(depths, dtype=float) ** TRUE_SLOPE
    return scale * seed_noise(rng, kind, (STUDIES, seeds, len(depths)), correlation)


def normal_residual_slope_interval(depths, errors):
    """The interval deepntk printed before (the foil): least squares of log(mean error) on log(L), ± 1.96 × the
    residual standard error, whatever the degrees of freedom."""
    x, y = np.log(np.asarray(depths, dtype=float)), np.log(errors.mean(axis=0))
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    stderr = math.sqrt(residual @ residual / (len(x) - 2) / np.sum((x - x.mean()) ** 2))
    return slope - 1.96 * stderr, slope + 1.96 * stderr


def coverage(intervals, truth) -> float:
    return float(np.mean([low <= truth <= high for low, high in intervals]))


CASES = [((100, 1000, 10000), 5, "halfnormal", 0.0),
         ((100, 1000, 10000), 5, "halfnormal", 0.4),
         ((100, 300, 1000, 3000, 10000), 5, "halfnormal", 0.0),
         ((100, 300, 1000, 3000, 10000), 10, "chi3", 0.0),
         ((100, 1600), 3, "halfnormal", 0.0)]


@pytest.mark.parametrize("depths, seeds, kind, correlation", CASES)
def test_slope_interval_covers_the_true_rate(depths, seeds, kind, correlation):
    rng = np.random.default_rng(1 + len(depths) + seeds)
    fits = [fit_power_law(depths, errors) for errors in studies(rng, depths, seeds, kind, correlation)]
    covered = coverage([fit.interval for fit in fits], TRUE_SLOPE)
    assert BAND[0] <= covered <= BAND[1], f"95% slope interval covered the true rate in {covered:.1%} of studies"


@pytest.mark.parametrize("depths", [(100, 1000, 10000), (100, 300, 1000, 3000, 10000)])
def test_the_normal_residual_interval_fails_the_same_check(depths):
    """The check has the power to catch the interval it replaced: 3 depths give it 1 degree of freedom (t = 12.7,
    not 1.96), 5 depths 3 (t = 3.18), and it ignores the seeds."""
    rng = np.random.default_rng(7)
    intervals = [normal_residual_slope_interval(depths, errors) for errors in studies(rng, depths, 5, "halfnormal")]
    covered = coverage(intervals, TRUE_SLOPE)
    assert covered < BAND[0], f"the normal residual interval covered {covered:.1%}: the check cannot tell it apart"


@pytest.mark.parametrize("kind, seeds, depths", [("halfnormal", 5, 3), ("halfnormal", 3, 5), ("chi3", 5, 4),
                                                 ("halfnormal", 10, 2), ("halfnormal", 5, 1), ("halfnormal", 10, 1)])
def test_mean_error_intervals_cover_the_mean(kind, seeds, depths):
    """The bootstrap-t interval of the mean error covers the true mean at the study's middle depth (one depth per
    study, so the hits are independent Bernoulli draws)."""
    rng = np.random.default_rng(11 + seeds + depths)
    grid = np.logspace(2, 4, depths)
    errors = studies(rng, grid, seeds, kind)
    mean_noise = math.sqrt(2 / math.pi) if kind == "halfnormal" else 2 * math.sqrt(2 / math.pi)  # E|Z|, E χ₃
    middle = depths // 2
    truth = 0.3 * grid[middle] ** TRUE_SLOPE * mean_noise
    intervals = []
    for study in errors:
        _, lows, highs = error_means_and_intervals(study)
        intervals.append((lows[middle], highs[middle]))
    covered = coverage(intervals, truth)
    assert BAND[0] <= covered <= BAND[1], f"95% mean-error interval covered the mean in {covered:.1%} of studies"


def test_two_seeds_bound_the_mean_error_only_from_below():
    """Two networks cannot bound a skewed mean from above: half the resamples repeat one value (t = ±∞), so the
    interval is [low, ∞), never a huge finite number that looks like a bound."""
    means, lows, highs = error_means_and_intervals([[0.02, 0.01], [0.05, 0.012]])
    assert np.all(highs == np.inf) and np.all((0 <= lows) & (lows < means))


def test_a_symmetric_interval_undercovers_skewed_errors():
    """Why the mean errors are bootstrapped: on the same half-normal errors with 5 seeds, the normal interval
    (1.96) covers ~85% and even Student's t only ~92%, below the band."""
    rng = np.random.default_rng(5)
    errors = seed_noise(rng, "halfnormal", (STUDIES, 5))
    truth = math.sqrt(2 / math.pi)
    t_intervals = [(m - h, m + h) for m, h in map(mean_and_ci, errors)]
    z_intervals = [(x.mean() - 1.96 * x.std(ddof=1) / math.sqrt(5), x.mean() + 1.96 * x.std(ddof=1) / math.sqrt(5))
                   for x in errors]
    assert coverage(z_intervals, truth) < BAND[0]
    assert coverage(t_intervals, truth) < BAND[0]


@pytest.mark.parametrize("seeds", [3, 5, 16])
def test_mean_and_ci_covers_near_normal_offsets(seeds):
    """Offsets are near normal: Student's t covers at 95%; the normal 1.96 it replaced did not at 3 or 5 seeds."""
    rng = np.random.default_rng(seeds)
    values = rng.normal(0.02, 0.05, size=(STUDIES, seeds))
    intervals = [(m - h, m + h) for m, h in map(mean_and_ci, values)]
    assert BAND[0] <= coverage(intervals, 0.02) <= BAND[1]
    if seeds <= 5:
        z = [(x.mean() - 1.96 * x.std(ddof=1) / math.sqrt(seeds), x.mean() + 1.96 * x.std(ddof=1) / math.sqrt(seeds))
             for x in values]
        assert coverage(z, 0.02) < BAND[0]


def test_t_quantiles_match_the_printed_table():
    """Student's t two-sided 95% quantiles from a printed table (Fisher & Yates)."""
    for dof, table in ((1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042)):
        assert abs(t_quantile(dof) - table) < 5e-4, dof


def test_a_noise_free_power_law_is_recovered_exactly():
    depths = np.array([100, 300, 1000, 3000])
    errors = np.array([c * depths ** -0.37 for c in (0.1, 0.2, 0.4)])
    fit = fit_power_law(depths, errors)
    assert abs(fit.slope + 0.37) < TOL["roundoff"]
    assert fit.half_width < TOL["roundoff"]


def test_the_slope_of_the_mean_errors_is_reported_beside_the_mean_of_the_seeds_slopes():
    """Two depths, three seeds, one seed far above the others at the first depth: the seeds' slopes are
    log(0.03/0.9)/log(10) = −1.477, 0 and 0, mean −0.492; the mean errors 0.3133 and 0.02333 give
    log(0.02333/0.3133)/log(10) = −1.128. Both are printed, each named, since they differ this much."""
    fit = fit_power_law([100, 1000], [[0.9, 0.03], [0.02, 0.02], [0.02, 0.02]])
    assert abs(fit.slope - math.log10(0.03 / 0.9) / 3) < TOL["roundoff"]
    assert abs(fit.slope_of_means - math.log10((0.07 / 3) / (0.94 / 3))) < TOL["roundoff"]
    assert "mean of the 3 seeds' fitted slopes -0.492" in fit.describe(), fit.describe()
    assert "slope of the mean errors -1.128" in fit.describe(), fit.describe()
    assert fit.to_dict()["slope_of_mean_errors"] == fit.slope_of_means


def test_one_seed_gives_a_rate_without_an_interval():
    fit = fit_power_law([100, 1000], [[0.1, 0.03]])
    assert math.isnan(fit.half_width) and "no interval" in fit.describe()
    means, lows, highs = error_means_and_intervals([[0.1, 0.03]])
    assert np.all(np.isnan(lows)) and np.all(np.isnan(highs))
    assert math.isnan(mean_and_ci([0.1])[1])


@pytest.mark.parametrize("depths, errors, message", [
    ([100, 100], [[0.1, 0.2]], "two distinct depths"),
    ([100, 1000], [[0.1, 0.0]], "positive"),
    ([100, 1000], [[0.1, float("nan")]], "positive"),
    ([100, 1000, 3000], [[0.1, 0.2]], "shape"),
])
def test_bad_fits_are_refused(depths, errors, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(depths, errors)
