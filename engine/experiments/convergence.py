"""Finite-depth scaled NTK vs the infinite-depth limit (paper §5.1, Fig. 3 at initialization): `deepntk simulate`.

For each depth L (with C_L from a rule such as "L^2") and each seed, draws the paper's initialization,
computes Θ̃ on fixed inputs, and compares it with Θ̃^∞ (Theorems 1/4, corrected; docs/limit-kernels.md) and
with the finite-(L, C_L) expectation E Θ̃ (docs/finite-depth.md). The error against the limit should fall like
L^{-1/2} while C_L is large enough that the 1/C_L² bias is negligible.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from ..api import scaled_ntk
from ..architectures import architecture, preset_fields, spec_field_names
from ..clusters import run_seed_groups
from ...base.errors import SpecError, option
from .stats import fit_power_law, relative_block_errors
from ..files import read_stored_result
from ...base.memory import require_memory
from ..params import init_params
from ..results import run_folder, write_json, write_npz, write_stored_result
from ..rules import C_L_values


@dataclass
class ConvergenceConfig:
    """What `deepntk simulate` runs. Defaults: the paper's Fig. 3 kernel at initialization.

    `depths`, `points` and every field of the network that `network` does not set come from the architecture:
    its `study` (`Study`: the MLP's Fig. 3 arc with d_in = 2, else a Gram of random inputs) and its fields'
    presets (docs/networks.md#adding-an-architecture). `network` holds the architecture's fields other than
    depth and C_L (by field name: the MLP's d_out, the CNN's outputs); after construction it holds all of them.
    """

    arch: str = "mlp"
    depths: tuple | None = None
    C_L: str = "L^2"
    seeds: int = 5
    first_seed: int = 0
    points: int | None = None
    dtype: str = "float64"
    backend: str | None = None
    image_seed: int = 0
    network: dict = field(default_factory=dict)

    def __post_init__(self):
        cls = architecture(self.arch)
        if "C_L" not in spec_field_names(cls):
            raise SpecError(f"simulate studies the NTK against depth at a carrier scale C_L; {self.arch} has no C_L "
                            f"(a width study for it is not built yet)")
        study = cls.study
        self.depths = tuple(study.depths if self.depths is None else self.depths)
        self.points = study.points if self.points is None else self.points
        self.network = study_network(cls, self.network)
        if not self.depths:
            raise SpecError("give at least one depth")
        for L in self.depths:
            if L < 2:
                raise SpecError(f"depth must be >= 2, got {L}")
        if self.seeds < 1:
            raise SpecError(f"seeds must be >= 1, got {self.seeds}")
        if self.points < 1:
            raise SpecError(f"points must be >= 1, got {self.points}")
        specs = [self.spec(L, C) for L, C in zip(self.depths, C_L_values(self.C_L, self.depths))]  # all checked now
        # Kernels of every seed, limit and expectation per depth.
        per_depth = (self.seeds * specs[0].outputs**2 + 2) * study.kernel_entries(self.points) * 8
        require_memory(2 * len(self.depths) * per_depth + self.points * np.prod(specs[0].input_shape) * 8,
                       f"simulate with {self.points} inputs, {self.seeds} seeds and {len(self.depths)} depths")

    def spec(self, depth: int, C_L: float):
        """The architecture at (depth, C_L) with this config's network fields."""
        return architecture(self.arch)(**self.network, depth=depth, C_L=C_L)

    def inputs(self):
        """(X1, X2, x-axis): the architecture's study inputs (X2 None for a Gram of X1)."""
        return architecture(self.arch).study.inputs(self.spec(2, 1.0), self.points, self.image_seed)

    def key(self) -> dict:
        """Everything a stored per-depth result depends on (for resuming): the config's own fields and the
        network's."""
        data = asdict(self)
        for name in ("depths", "backend", "network"):
            data.pop(name)
        return {**data, **self.network, "depths": list(self.depths)}


def study_network(cls, given: dict) -> dict:
    """Every option field of `cls` for its study: `given`, else the study's fixed value, else the preset.

    Raises:
        SpecError: a field `cls` does not have, or one the study fixes at another value.
    """
    presets = preset_fields(cls)
    unknown = sorted(set(given) - set(presets))
    if unknown:
        raise SpecError(f"the {cls.arch.upper()} has no field {', '.join(unknown)} (its fields: "
                        f"{', '.join(presets)})")
    study = cls.study
    for name, value in study.fixed.items():
        if name in given and given[name] != value:
            raise SpecError(f"simulate's {cls.arch.upper()} is {study.why}: {option(name, None)} must be {value}")
    return {**presets, **study.fixed, **given}


def describe_inputs(config: ConvergenceConfig) -> str:
    return architecture(config.arch).study.describe(config.spec(2, 1.0), config.points)


def limit_and_expected(spec, X1, X2, backend=None):
    """(Θ̃^∞, E Θ̃) at the spec's (L, C_L) as (N1, N2) scalar factors of I_k, their costly pieces on `backend`."""
    A1 = spec.prepare_inputs(X1)
    A2 = None if X2 is None else spec.prepare_inputs(X2)
    return spec.limit_kernel(A1, A2, backend=backend), spec.expected_kernel(A1, A2, backend=backend)


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
    reused: bool = False  # read from the folder of an earlier run (resume), not computed by this one

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("kernels", "limit", "expected", "reused")}


def depth_file(folder: str, depth: int) -> str:
    return os.path.join(folder, f"depth-{depth}.npz")


def ensemble_kernels(spec, dtype: str, X1, X2, backend, seeds) -> np.ndarray:
    """Θ̃ of the networks of the paper's initialization drawn from `seeds`, as one ensemble: (E, N1, N2, k, k)."""
    return scaled_ntk(init_params(spec, "paper", dtype=dtype, seeds=seeds), X1, X2, backend=backend)


def seed_kernels(spec, seeds, dtype, X1, X2, backend, client=None, on_seed=None) -> np.ndarray:
    """Θ̃ for every seed, in seed order: all seeds as one ensemble here, or one task per seed on `client`'s
    workers (the inputs enter the graph once)."""
    inputs = (X1, X2) if client is None else \
        tuple(None if X is None else client.scatter(X, broadcast=True, hash=False) for X in (X1, X2))
    return np.array(run_seed_groups(ensemble_kernels, (spec, dtype, *inputs, backend), seeds, (), client, on_seed))


def run_depth(config: ConvergenceConfig, depth: int, C_L: float, X1, X2, on_seed=None, client=None) -> DepthResult:
    spec = config.spec(depth, C_L)
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    start = time.perf_counter()
    kernels = seed_kernels(spec, seeds, config.dtype, X1, X2, config.backend, client, on_seed)
    limit, expected = limit_and_expected(spec, X1, X2, config.backend)
    err_limit = np.array([relative_block_errors(K, limit) for K in kernels])
    err_expected = np.array([relative_block_errors(K, expected) for K in kernels])
    k = kernels.shape[-1]
    offset = float(np.mean(np.trace(kernels, axis1=-2, axis2=-1) / k - limit))
    return DepthResult(depth, C_L, seeds, float(err_limit.mean()), float(err_limit.max()),
                       float(err_expected.mean()), float(err_expected.max()), time.perf_counter() - start,
                       err_limit.mean(axis=(1, 2)).tolist(), err_expected.mean(axis=(1, 2)).tolist(), offset,
                       kernels, limit, expected)


def load_depth(folder: str, config: ConvergenceConfig, depth: int):
    """A stored DepthResult if its config key matches, else None.

    Raises:
        FileFormatError: the file exists but is damaged (named, with what is wrong).
    """
    return read_stored_result(depth_file(folder, depth), config.key(), "stored depth result",
                              ("kernels", "limit", "expected"), lambda summary, arrays: DepthResult(**summary, **arrays))


def save_depth(folder: str, config: ConvergenceConfig, result: DepthResult) -> None:
    write_stored_result(depth_file(folder, result.depth), config.key(), result.summary(), kernels=result.kernels,
                        limit=result.limit, expected=result.expected)


def run_convergence(config: ConvergenceConfig, folder: str | None = None, resume: bool = False, on_seed=None,
                    on_depth=None, client=None, overwrite: bool = False):
    """Run every depth, write results into `folder` (a run folder, docs/files.md#results-folders), and return
    (results, fit): the per-depth results and the fitted rate of the error against the limit
    (`stats.fit_power_law`; None for one depth). With `resume`, the depths an earlier run of this configuration
    stored in `folder` are reused (their results say `reused`); with `overwrite`, an earlier run's files there
    are replaced. `on_seed()` is called once per network this run computes, `on_depth(result)` once per depth,
    computed or reused (a progress display counts a reused depth's networks as done, not in its rate).

    Raises:
        FolderConfigError: `folder` holds another configuration, or this one's results without `resume` or
            `overwrite` (the message names the differing keys).
        FolderInUseError: another run is writing `folder`.
    """
    if folder:
        with run_folder(folder, "simulate", config.key(), resume=resume, overwrite=overwrite):
            return _run_convergence(config, folder, resume, on_seed, on_depth, client)
    return _run_convergence(config, None, False, on_seed, on_depth, client)


def _run_convergence(config, folder, resume, on_seed, on_depth, client):
    X1, X2, _ = config.inputs()
    results = []
    for depth, C_L in zip(config.depths, C_L_values(config.C_L, config.depths)):
        stored = load_depth(folder, config, depth) if (folder and resume) else None
        if stored is not None:
            result = stored
            result.reused = True
        else:
            result = run_depth(config, depth, C_L, X1, X2, on_seed, client)
            if folder:
                save_depth(folder, config, result)
        results.append(result)
        if on_depth:
            on_depth(result)
    fit = error_rate(results)
    if folder:
        write_json(os.path.join(folder, "results.json"),
                   {"experiment": "kernel-convergence-at-init", "config": config.key(),
                    "depths": [r.summary() for r in results], "fit": None if fit is None else fit.to_dict()})
        _, _, axis = config.inputs()
        write_npz(os.path.join(folder, "arrays.npz"), depths=np.array([r.depth for r in results]),
                  C_L=np.array([r.C_L for r in results]), axis=axis,
                  kernels=np.array([r.kernels for r in results]), limit=results[-1].limit,
                  expected=np.array([r.expected for r in results]))
    return results, fit


def error_rate(results: list[DepthResult], against: str = "limit"):
    """The fitted exponent of the error against the limit (or "expected") over depths, with its interval over
    seeds; None with fewer than two depths."""
    if len({r.depth for r in results}) < 2:
        return None
    return fit_power_law([r.depth for r in results],
                         np.array([getattr(r, f"seed_errors_{against}") for r in results]).T)
