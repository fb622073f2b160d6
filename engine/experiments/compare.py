"""Comparisons of finite networks with the theory (paper §5.1, Theorems 2–3): convergence over a grid of
depths and C_L rules, trained networks against kernel-flow predictions, and kernel spectra."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...analytic import fig3_inputs, fig3_target, kernel_flow, mlp_limit_kernel
from ..api import forward, scaled_ntk
from .convergence import ConvergenceConfig, error_rate, run_depth
from .fig3 import fig3_network
from .stats import SLOPE_METHOD, error_means_and_intervals, mean_and_ci
from ..params import init_params
from ..rules import parse_C_L_rule
from ..spectrum import resolve_spectrum
from ..training import gradient_descent


@dataclass
class DepthRow:
    rule: str
    depth: int
    C_L: float
    error_limit: float
    error_limit_interval: tuple
    error_expected: float
    error_expected_interval: tuple
    offset: float
    offset_ci: float
    expected_offset: float
    predicted_offset: float


def depth_study(depths, rules, seeds: int = 5, points: int = 50, backend=None, on_seed=None, client=None):
    """Finite-depth Θ̃ (Fig. 3 kernel at init) against Θ̃^∞ and E Θ̃ over depths × C_L rules.

    The error against E Θ̃ is the fluctuation alone (expected ∝ L^{−1/2}); the mean errors carry 95% intervals
    over seeds (`stats.error_means_and_intervals`); the measured offset mean(Θ̃ − Θ̃^∞) (with its 95% t
    interval over seeds) is reported beside its exact expectation at this (L, C_L),
    mean(E Θ̃ − Θ̃^∞), and beside the asymptotic 1/C_L², so the bias and the rate are separated
    (docs/finite-depth.md).

    Returns:
        (rows, fits) with fits[rule] = {slope, slope_ci, slope_vs_limit, slope_vs_limit_ci, method}: the
        rates of the error against E Θ̃ and against Θ̃^∞ with their 95% half-widths over seeds
        (`stats.fit_power_law`). With a `client`, each (depth, seed) network is one task on its workers.

    Raises:
        ValueError: fewer than two distinct depths (no rate to fit).
    """
    if len(set(depths)) < 2:
        raise ValueError(f"the depth study fits a rate: give at least two distinct depths, got {list(depths)}")
    rows, fits = [], {}
    for rule in rules:
        config = ConvergenceConfig(depths=tuple(depths), C_L=rule, seeds=seeds, points=points, backend=backend)
        X1, X2, _ = config.inputs()
        C = parse_C_L_rule(rule)
        depth_results = [run_depth(config, L, C(L), X1, X2, on_seed, client) for L in depths]
        limit = error_means_and_intervals(np.array([r.seed_errors_limit for r in depth_results]).T)
        expected = error_means_and_intervals(np.array([r.seed_errors_expected for r in depth_results]).T)
        for d, r in enumerate(depth_results):
            k = r.kernels.shape[-1]
            seed_offsets = np.mean(np.trace(r.kernels, axis1=-2, axis2=-1) / k - r.limit, axis=(1, 2))
            offset, offset_ci = mean_and_ci(seed_offsets)
            rows.append(DepthRow(rule, r.depth, r.C_L, float(limit[0][d]), (float(limit[1][d]), float(limit[2][d])),
                                 float(expected[0][d]), (float(expected[1][d]), float(expected[2][d])), offset,
                                 offset_ci, float(np.mean(r.expected - r.limit)), 1.0 / r.C_L**2))
        fluctuation, vs_limit = error_rate(depth_results, "expected"), error_rate(depth_results, "limit")
        fits[rule] = {"slope": fluctuation.slope, "slope_ci": fluctuation.half_width,
                      "slope_vs_limit": vs_limit.slope, "slope_vs_limit_ci": vs_limit.half_width,
                      "method": SLOPE_METHOD}
    return rows, fits


@dataclass
class TrainedRow:
    depth: int
    C_L: float
    steps: int
    eta: float
    t: float
    train_loss: float
    gap_limit: float
    gap_empirical: float
    kernel_drift: float


def trained_study(depths, rule: str = "L^2", steps: int = 300, eta: float = 0.05, train_points: int = 30,
                  test_points: int = 20, seed: int = 0, backend=None, on_depth=None):
    """Train the Fig. 3 network (paper loss, scaled step η) and compare its outputs at test points with the
    kernel-flow prediction f_{t = steps·η} from the limit kernel and from the initial empirical kernel
    (Theorems 2–3: the gaps shrink with depth). Also reports the kernel drift ‖Θ̃_T − Θ̃_0‖/‖Θ̃_0‖.
    `on_depth()` is called as each depth ends."""
    _, X, _ = fig3_inputs(train_points)
    gamma_test = np.linspace(0.1, np.pi / 2 - 0.1, test_points)
    X_test = np.stack([np.cos(gamma_test), np.sin(gamma_test)], axis=1)
    Y = fig3_target(X)
    C = parse_C_L_rule(rule)
    t = steps * eta
    K_lim = mlp_limit_kernel(X)
    pred_limit = kernel_flow(K_lim, Y, t, K_test_train=mlp_limit_kernel(X_test, X))
    rows = []
    for L in depths:
        params = init_params(fig3_network(L, C(L)), "paper", seed)
        K0 = scaled_ntk(params, X, backend=backend)
        pred_empirical = kernel_flow(K0, Y, t, K_test_train=scaled_ntk(params, X_test, X, backend=backend))
        result = gradient_descent(params, X, Y, steps, eta=eta, loss="paper", backend=backend)
        f_net = forward(result.params, X_test, backend=backend)
        KT = scaled_ntk(result.params, X, backend=backend)
        gap = lambda pred: float(np.linalg.norm(f_net - pred) / np.linalg.norm(pred))
        rows.append(TrainedRow(L, C(L), steps, eta, t, float(result.losses[-1]), gap(pred_limit), gap(pred_empirical),
                               float(np.linalg.norm(KT - K0) / np.linalg.norm(K0))))
        if on_depth:
            on_depth()
    return rows


@dataclass
class SpectrumRow:
    depth: int | None
    eigenvalues: list
    floor: float
    resolved: int
    condition: float
    condition_is_lower_bound: bool
    eig_rel_error: float


def _spectrum_row(depth, eigenvalues, reference=None) -> SpectrumRow:
    spectrum = resolve_spectrum(eigenvalues)
    eig = spectrum.eigenvalues
    error = 0.0 if reference is None else float(np.linalg.norm(eig - reference) / np.linalg.norm(reference))
    return SpectrumRow(depth, eig.tolist(), spectrum.floor, spectrum.resolved, spectrum.condition,
                       spectrum.condition_is_lower_bound, error)


def spectrum_study(depths, rule: str = "L^2", points: int = 40, seed: int = 0, backend=None, on_depth=None):
    """Eigenvalues of the Gram on the Fig. 3 arc points: the limit (depth None) and one network per depth, with
    the relative error of the sorted spectrum against the limit's. Each row carries the float64 floor n·ε·λ_max,
    how many eigenvalues lie above it, and the condition number, or its lower bound λ_max/floor when λ_min is
    round-off (`deepntk.engine.spectrum`; docs/numerical-traps.md#eigenvalues-below-the-float64-floor).
    `on_depth()` is called as each depth ends."""
    _, X, _ = fig3_inputs(points)
    C = parse_C_L_rule(rule)
    limit = _spectrum_row(None, np.linalg.eigvalsh(mlp_limit_kernel(X)))
    rows = [limit]
    for L in depths:
        K = scaled_ntk(init_params(fig3_network(L, C(L)), "paper", seed), X, backend=backend)[..., 0, 0]
        rows.append(_spectrum_row(L, np.linalg.eigvalsh(0.5 * (K + K.T)), reference=np.asarray(limit.eigenvalues)))
        if on_depth:
            on_depth()
    return rows


def as_dicts(rows):
    return [asdict(r) for r in rows]
