"""The empirical NTK of finite wide networks vs its infinite-width limit Θ^L (the mirror of paper Fig. 3 in width):
`deepntk simulate --arch wide-mlp --widths …` (docs/experiments.md#the-width-study).

For each width n and each seed, draws the network's standard normal initialization at a fixed depth L, computes
its empirical NTK Θ on fixed inputs and compares it with Θ^L (`deepntk.analytic.wide_ntk_kernel`). The NTK of a
finite network fluctuates about its mean by O(n^{−1/2}) and its mean differs from Θ^L by O(1/n) (Hanin &
Nica 2020), so the relative error should fall like n^{−1/2}. Intervals and the fitted rate come from
`stats.error_means_and_intervals` and `stats.fit_power_law`, exactly as in the depth study.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..architectures import architecture, preset_fields
from ...base.errors import SpecError, option
from ...base.memory import require_memory
from ..files import read_stored_result
from ..results import run_folder, write_json, write_npz, write_stored_result
from .convergence import ensemble_kernels, limit_and_expected, seed_kernels
from .stats import error_means_and_intervals, fit_power_law, relative_block_errors

# Widths and depth when none are given (the inputs: the architecture's `study`): the five widths take about 1.5 s
# on two cores (the documented 64,256,1024,4096 about 7 s, most of it drawing the 4096² weights).
DEFAULT_WIDTHS = (64, 128, 256, 512, 1024)
DEFAULT_DEPTH = 3
# The rate the theory predicts for the fluctuation of the empirical NTK about Θ^L.
THEORY_RATE = -0.5


@dataclass
class WidthStudyConfig:
    """What the width study runs.

    `network` holds the architecture's fields other than width and depth (the wide MLP's d_in, d_out, σ_w², σ_b²);
    after construction it holds all of them, the rest at their presets.
    """

    arch: str = "wide-mlp"
    widths: tuple | None = None
    depth: int = DEFAULT_DEPTH
    seeds: int = 5
    first_seed: int = 0
    points: int | None = None
    dtype: str = "float64"
    backend: str | None = None
    input_seed: int = 0
    network: dict = field(default_factory=dict)

    def __post_init__(self):
        cls = architecture(self.arch)
        if cls.limit != "width":
            raise SpecError(f"the width study needs an architecture with an infinite-width limit (wide-mlp); "
                            f"{self.arch}'s limit is in depth: study it over {option('depths', None)}")
        self.widths = tuple(DEFAULT_WIDTHS if self.widths is None else self.widths)
        self.points = cls.study.points if self.points is None else self.points
        presets = preset_fields(cls)
        presets.pop("width", None)
        if "width" in self.network:
            raise SpecError(f"the width study sets the width from {option('widths', None)}; leave out "
                            f"{option('width', None)}")
        unknown = sorted(set(self.network) - set(presets))
        if unknown:
            raise SpecError(f"the {cls.arch.upper()} has no field {', '.join(unknown)} (its fields: "
                            f"{', '.join(presets)})")
        self.network = {**presets, **self.network}
        if not self.widths:
            raise SpecError("give at least one width")
        if len(set(self.widths)) != len(self.widths):
            raise SpecError(f"widths must differ from one another, got {list(self.widths)}")
        if self.seeds < 1:
            raise SpecError(f"seeds must be >= 1, got {self.seeds}")
        if self.points < 1:
            raise SpecError(f"points must be >= 1, got {self.points}")
        specs = [self.spec(n) for n in self.widths]  # every width checked now, before any work
        for spec in specs:
            spec.check_storable()
        widest = max(specs, key=lambda spec: spec.width)
        k = widest.outputs
        # One network at a time (its packed weights), every kernel of every width, and one trace of the widest.
        require_memory(widest.parameter_count() * 8 + widest.weight_layers * widest.width ** 2 * 8
                       + len(self.widths) * (self.seeds * k * k + 1) * self.points ** 2 * 8
                       + 2 * (widest.weight_layers + k) * self.points * widest.width * 8,
                       f"the width study up to width {widest.width} at depth {self.depth}")

    def spec(self, width: int):
        """The architecture at `width` and this config's depth and network fields."""
        return architecture(self.arch)(**self.network, width=width, depth=self.depth)

    def inputs(self) -> np.ndarray:
        """The study's inputs: `points` seeded random inputs in [0.05, 1) (the architecture's base study)."""
        spec = self.spec(max(self.widths))
        return architecture(self.arch).study.inputs(spec, self.points, self.input_seed)[0]

    def key(self) -> dict:
        """Everything a stored per-width result depends on (for resuming)."""
        data = asdict(self)
        for name in ("widths", "backend", "network"):
            data.pop(name)
        return {**data, **self.network, "study": "width", "widths": list(self.widths)}


def describe_study(config: WidthStudyConfig) -> str:
    spec = config.spec(max(config.widths))
    return (f"{config.arch.upper()} width study at depth L = {config.depth} (hidden layers), σ_w² = {spec.sigma_w2:g}, "
            f"σ_b² = {spec.sigma_b2:g}, {spec.outputs} output{'s' if spec.outputs != 1 else ''}; Gram of "
            f"{config.points} random inputs")


@dataclass
class WidthResult:
    """One width's networks against Θ^L: `seed_errors` is each network's mean over input pairs of the relative
    block error ‖Θ(x, x') − Θ^L(x, x')·I_k‖_F / ‖Θ^L(x, x')·I_k‖_F."""

    width: int
    seeds: list
    mean_error: float
    max_error: float
    seconds: float
    seed_errors: list
    kernels: np.ndarray = field(repr=False)
    limit: np.ndarray = field(repr=False)
    reused: bool = False

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("kernels", "limit", "reused")}


@dataclass(frozen=True)
class WidthStudy:
    """The study's outcome: per-width results, the mean error per width with its interval over seeds, and the
    fitted rate of the error against width (None with one width)."""

    results: list
    means: np.ndarray
    lows: np.ndarray
    highs: np.ndarray
    fit: object

    @property
    def theory_inside(self) -> bool | None:
        """Whether the rate's interval contains −1/2 (None without an interval)."""
        if self.fit is None or not np.isfinite(self.fit.half_width):
            return None
        low, high = self.fit.interval
        return bool(low <= THEORY_RATE <= high)

    def to_dict(self) -> dict:
        return {"widths": [r.summary() for r in self.results],
                "mean_errors": self.means.tolist(), "intervals": np.c_[self.lows, self.highs].tolist(),
                "fit": None if self.fit is None else self.fit.to_dict(), "theory_rate": THEORY_RATE,
                "theory_inside_interval": self.theory_inside}


def width_file(folder: str, width: int) -> str:
    return os.path.join(folder, f"width-{width}.npz")


def run_width(config: WidthStudyConfig, width: int, X, on_seed=None, client=None) -> WidthResult:
    """Every seed's empirical NTK at `width` against Θ^L. Without a cluster the networks are drawn one at a time:
    the wide MLP has no ensemble kernels, and at n = 4096 one network's weights take 0.4 GB."""
    spec = config.spec(width)
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    start = time.perf_counter()
    if client is None:
        kernels = []
        for seed in seeds:
            kernels.append(ensemble_kernels(spec, config.dtype, X, None, config.backend, [seed])[0])
            if on_seed:
                on_seed()
        kernels = np.array(kernels)
    else:
        kernels = seed_kernels(spec, seeds, config.dtype, X, None, config.backend, client, on_seed)
    limit, _ = limit_and_expected(spec, X, None, config.backend)
    errors = np.array([relative_block_errors(K, limit) for K in kernels])
    return WidthResult(width, seeds, float(errors.mean()), float(errors.max()), time.perf_counter() - start,
                       errors.mean(axis=(1, 2)).tolist(), kernels, limit)


def load_width(folder: str, config: WidthStudyConfig, width: int):
    """A stored WidthResult if its config key matches, else None.

    Raises:
        FileFormatError: the file exists but is damaged (named, with what is wrong).
    """
    return read_stored_result(width_file(folder, width), config.key(), "stored width result", ("kernels", "limit"),
                              lambda summary, arrays: WidthResult(**summary, **arrays))


def save_width(folder: str, config: WidthStudyConfig, result: WidthResult) -> None:
    write_stored_result(width_file(folder, result.width), config.key(), result.summary(), kernels=result.kernels,
                        limit=result.limit)


def run_width_study(config: WidthStudyConfig, folder: str | None = None, resume: bool = False, on_seed=None,
                    on_width=None, client=None, overwrite: bool = False) -> WidthStudy:
    """Run every width, write results into `folder` (a run folder, docs/files.md#results-folders) and return the
    WidthStudy. With `resume`, the widths an earlier run of this configuration stored there are reused.
    `on_seed()` is called once per network this run computes, `on_width(result)` once per width, computed or
    reused (a progress display counts a reused width's networks as done, not in its rate).

    Raises:
        FolderConfigError: `folder` holds another configuration, or this one's results without `resume` or
            `overwrite`.
        FolderInUseError: another run is writing `folder`.
    """
    if folder:
        with run_folder(folder, "simulate", config.key(), resume=resume, overwrite=overwrite):
            return _run_width_study(config, folder, resume, on_seed, on_width, client)
    return _run_width_study(config, None, False, on_seed, on_width, client)


def _run_width_study(config, folder, resume, on_seed, on_width, client):
    X = config.inputs()
    results = []
    for width in config.widths:
        stored = load_width(folder, config, width) if (folder and resume) else None
        if stored is not None:
            result = stored
            result.reused = True
        else:
            result = run_width(config, width, X, on_seed, client)
            if folder:
                save_width(folder, config, result)
        results.append(result)
        if on_width:
            on_width(result)
    seed_errors = np.array([r.seed_errors for r in results]).T  # (seeds, widths)
    means, lows, highs = error_means_and_intervals(seed_errors)
    fit = fit_power_law(config.widths, seed_errors, variable="n") if len(config.widths) > 1 else None
    study = WidthStudy(results, means, lows, highs, fit)
    if folder:
        write_json(os.path.join(folder, "results.json"),
                   {"experiment": "kernel-convergence-in-width", "config": config.key(), **study.to_dict()})
        write_npz(os.path.join(folder, "arrays.npz"), widths=np.array(config.widths), inputs=X,
                  kernels=np.array([r.kernels for r in results]), limit=results[-1].limit)
    return study
