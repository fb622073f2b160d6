"""Finite-depth scaled NTK vs the infinite-depth limit (paper §5.1, Fig. 3 at initialization).

For each depth L (with C_L from a rule such as "L^2") and each seed, draws the paper's initialization,
computes Θ̃ on fixed inputs, and compares it with Θ̃^∞ (Theorems 1/4, corrected) and with the finite-(L, C_L)
expectation E Θ̃ (SPEC). The error against the limit should fall like L^{-1/2} while C_L is large enough that
the 1/C_L² bias is negligible.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from deepntk.analytic import (cnn_expected_kernel, cnn_limit_kernel, fig3_inputs, mlp_expected_kernel,
                              mlp_limit_kernel)
from deepntk.engine.api import scaled_ntk
from deepntk.engine.errors import SpecError
from deepntk.engine.params import init_params
from deepntk.engine.results import write_json, write_npz
from deepntk.engine.spec import CNN, MLP
from deepntk.engine.validate import average_pool

_RULE = re.compile(r"^\s*(?P<coef>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)?\s*\*?\s*(?P<L>L(?:\s*\^\s*(?P<pow>[0-9]*\.?[0-9]+))?)?\s*$")


def C_L_values(text: str, depths) -> list[float]:
    """C_L for each depth: a rule (see `parse_C_L_rule`) or explicit comma-separated values, one per depth."""
    if "," in str(text):
        try:
            values = [float(part) for part in str(text).split(",")]
        except ValueError:
            raise SpecError(f"cannot read C_L values {text!r}") from None
        if len(values) != len(depths):
            raise SpecError(f"{len(values)} C_L values for {len(depths)} depths; give one per depth or a rule")
        if min(values) <= 0:
            raise SpecError(f"C_L must be > 0, got {text!r}")
        return values
    rule = parse_C_L_rule(text)
    return [rule(L) for L in depths]


def parse_C_L_rule(text: str):
    """A C_L rule as a function of L: "L^2", "5L", "0.5*L^1.5", or a constant such as "5" or "5e4"."""
    match = _RULE.match(str(text))
    if not match or (match.group("coef") is None and match.group("L") is None):
        raise SpecError(f"cannot read C_L rule {text!r}; use forms like L^2, 5L, 0.5*L^1.5 or a number")
    coef = float(match.group("coef")) if match.group("coef") else 1.0
    power = (float(match.group("pow")) if match.group("pow") else 1.0) if match.group("L") else 0.0
    if coef <= 0:
        raise SpecError(f"C_L rule {text!r} gives C_L <= 0")
    return lambda L: coef * float(L) ** power


@dataclass
class ConvergenceConfig:
    """What `deepntk simulate` runs. Defaults: the paper's Fig. 3 kernel at initialization."""

    arch: str = "mlp"
    depths: tuple = (100, 300, 1000, 3000, 10000)
    C_L: str = "L^2"
    seeds: int = 5
    first_seed: int = 0
    points: int = 200
    rho: float = 1.0
    beta: float = 1.0
    dtype: str = "float64"
    backend: str | None = None
    # CNN only: random positive images, seeded.
    in_channels: int = 1
    size: int = 5
    outputs: int = 1
    filter_size: int = 3
    pool: int = 1
    image_seed: int = 0

    def __post_init__(self):
        if self.arch not in ("mlp", "cnn"):
            raise SpecError(f"arch must be 'mlp' or 'cnn', got {self.arch!r}")
        if not self.depths:
            raise SpecError("give at least one depth")
        for L in self.depths:
            if L < 2:
                raise SpecError(f"depth must be >= 2, got {L}")
        if self.seeds < 1:
            raise SpecError(f"seeds must be >= 1, got {self.seeds}")
        if self.points < 1:
            raise SpecError(f"points must be >= 1, got {self.points}")
        for L, C in zip(self.depths, C_L_values(self.C_L, self.depths)):
            self.spec(L, C)  # validates every spec up front

    def spec(self, depth: int, C_L: float):
        if self.arch == "mlp":
            return MLP(2, self.outputs, depth, C_L, self.rho, self.beta)
        return CNN(self.in_channels, self.size, self.outputs, depth, C_L, self.rho, self.beta,
                   self.filter_size, self.pool)

    def inputs(self):
        """(X1, X2, x-axis): Fig. 3's x₀ against the arc points, or a Gram of random positive images."""
        if self.arch == "mlp":
            x0, X, gamma = fig3_inputs(self.points)
            return x0, X, gamma
        rng = np.random.default_rng(self.image_seed)
        images = rng.uniform(0.05, 1.0, size=(self.points, self.in_channels, self.size, self.size))
        return images, None, np.arange(self.points)

    def key(self) -> dict:
        """Everything a stored per-depth result depends on (for resuming)."""
        data = asdict(self)
        data.pop("depths")
        data.pop("backend")
        data["depths"] = list(self.depths)
        return data


def limit_and_expected(config: ConvergenceConfig, depth: int, C_L: float, X1, X2):
    """(Θ̃^∞, E Θ̃) as (N1, N2) scalar factors of I_k."""
    common = dict(rho=config.rho, beta=config.beta)
    if config.arch == "mlp":
        kw = dict(d_out=config.outputs, **common)
        return (mlp_limit_kernel(X1, X2, **kw), mlp_expected_kernel(X1, X2, depth=depth, C_L=C_L, **kw))
    A1 = average_pool(X1, config.pool)
    A2 = None if X2 is None else average_pool(X2, config.pool)
    kw = dict(outputs=config.outputs, filter_size=config.filter_size, **common)
    return (cnn_limit_kernel(A1, A2, **kw), cnn_expected_kernel(A1, A2, depth=depth, C_L=C_L, **kw))


def relative_block_errors(theta: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """‖Θ̃(x, x') − r(x, x')·I_k‖_F / ‖r(x, x')·I_k‖_F for every pair: (N1, N2)."""
    k = theta.shape[-1]
    target = reference[..., None, None] * np.eye(k)
    return np.linalg.norm(theta - target, axis=(-2, -1)) / np.linalg.norm(target, axis=(-2, -1))


def fit_power_law(depths, errors):
    """Least-squares slope of log(error) against log(L), with its standard error (nan for < 3 depths)."""
    x = np.log(np.asarray(depths, dtype=float))
    y = np.log(np.asarray(errors, dtype=float))
    if len(x) < 2:
        return float("nan"), float("nan")
    A = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    if len(x) < 3:
        return float(coef[0]), float("nan")
    resid = y - A @ coef
    sigma2 = resid @ resid / (len(x) - 2)
    se = math.sqrt(sigma2 / np.sum((x - x.mean()) ** 2))
    return float(coef[0]), se


@dataclass
class DepthResult:
    depth: int
    C_L: float
    seeds: list
    mean_error_limit: float
    max_error_limit: float
    mean_error_expected: float
    max_error_expected: float
    seconds: float
    seed_errors_limit: list
    seed_errors_expected: list
    mean_offset: float
    kernels: np.ndarray = field(repr=False)
    limit: np.ndarray = field(repr=False)
    expected: np.ndarray = field(repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("kernels", "limit", "expected")}


def depth_file(folder: str, depth: int) -> str:
    return os.path.join(folder, f"depth-{depth}.npz")


def run_depth(config: ConvergenceConfig, depth: int, C_L: float, X1, X2, on_seed=None) -> DepthResult:
    spec = config.spec(depth, C_L)
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    start = time.perf_counter()
    kernels = []
    for seed in seeds:
        params = init_params(spec, "paper", seed, config.dtype)
        kernels.append(scaled_ntk(params, X1, X2, backend=config.backend))
        if on_seed:
            on_seed()
    kernels = np.array(kernels)
    limit, expected = limit_and_expected(config, depth, C_L, X1, X2)
    err_limit = np.array([relative_block_errors(K, limit) for K in kernels])
    err_expected = np.array([relative_block_errors(K, expected) for K in kernels])
    k = kernels.shape[-1]
    offset = float(np.mean(np.trace(kernels, axis1=-2, axis2=-1) / k - limit))
    return DepthResult(depth, C_L, seeds, float(err_limit.mean()), float(err_limit.max()),
                       float(err_expected.mean()), float(err_expected.max()), time.perf_counter() - start,
                       err_limit.mean(axis=(1, 2)).tolist(), err_expected.mean(axis=(1, 2)).tolist(), offset,
                       kernels, limit, expected)


def load_depth(folder: str, config: ConvergenceConfig, depth: int):
    """A stored DepthResult if its config key matches, else None."""
    path = depth_file(folder, depth)
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        if json.loads(str(data["key"])) != config.key():
            return None
        summary = json.loads(str(data["summary"]))
        return DepthResult(**summary, kernels=data["kernels"], limit=data["limit"], expected=data["expected"])


def save_depth(folder: str, config: ConvergenceConfig, result: DepthResult) -> None:
    write_npz(depth_file(folder, result.depth), key=np.array(json.dumps(config.key())),
              summary=np.array(json.dumps(result.summary())), kernels=result.kernels, limit=result.limit,
              expected=result.expected)


def run_convergence(config: ConvergenceConfig, folder: str | None = None, resume: bool = False, on_seed=None,
                    on_depth=None):
    """Run every depth (reusing stored ones with `resume`), write results, and return (results, slope, se)."""
    X1, X2, _ = config.inputs()
    results = []
    for depth, C_L in zip(config.depths, C_L_values(config.C_L, config.depths)):
        stored = load_depth(folder, config, depth) if (folder and resume) else None
        if stored is not None:
            result = stored
            if on_seed:
                for _ in range(config.seeds):
                    on_seed()
        else:
            result = run_depth(config, depth, C_L, X1, X2, on_seed)
            if folder:
                save_depth(folder, config, result)
        results.append(result)
        if on_depth:
            on_depth(result)
    slope, se = fit_power_law([r.depth for r in results], [r.mean_error_limit for r in results])
    if folder:
        write_json(os.path.join(folder, "results.json"),
                   {"experiment": "kernel-convergence-at-init", "config": config.key(),
                    "depths": [r.summary() for r in results], "fitted_slope": slope, "slope_stderr": se})
        _, _, axis = config.inputs()
        write_npz(os.path.join(folder, "arrays.npz"), depths=np.array([r.depth for r in results]),
                  C_L=np.array([r.C_L for r in results]), axis=axis,
                  kernels=np.array([r.kernels for r in results]), limit=results[-1].limit,
                  expected=np.array([r.expected for r in results]))
    return results, slope, se
