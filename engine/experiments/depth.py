"""The depth study (issue #33; docs/depth-study.md): MNIST kernel regression (t = ∞) and kernel flow (a finite
t) against depth for the wide ReLU network's infinite-width NTK Θ^L and NNGP Σ^L, the deep narrow MLP's
expected kernel E Θ̃ at (L, C_L) and its depth-independent limit Θ̃^∞, each beside measures of its collapse
and of the resolution float64 leaves it.

Every (kernel, depth) is one unit of work; a run saves its results after each unit into its results folder, so an
interrupted run continues with `reproduce depth --resume` from the units it finished.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from ...base.errors import InputError
from ..results import record_file
from .datasets import load_mnist
from .protocol import SILENT, Experiment, PlotResult, reduction_lines

DEPTHS = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
# `--scale full` (every training image, out of core): two depths, one before and one deep into the collapse.
FULL_DEPTHS = (10, 1000)
# The kernels, in the order of the table: name → what the table calls it.
KERNELS = {"wide-ntk": "wide NTK Θ^L", "wide-nngp": "wide NNGP Σ^L", "narrow-expected": "narrow E Θ̃ (L, C_L)",
           "narrow-limit": "narrow Θ̃^∞"}
# Each kernel's Gram kind (deepntk.engine.gram.GramKernel), for `--scale full`'s Zarr stores.
GRAM_KINDS = {"wide-ntk": "wide-ntk", "wide-nngp": "wide-nngp", "narrow-expected": "expected",
              "narrow-limit": "limit"}
# The deep narrow MLP of Table 1 (docs/experiments.md#table-1): C_L = 4, ρ = β = 1, on the 784 raw pixels.
C_L = 4.0
# Kernel-flow time for the kernel divided by its mean diagonal entry (docs/depth-study.md#what-is-computed):
# the same step size relative to each kernel's scale, so the kernels are compared at one flow time.
FLOW_TIME = 1000.0
QUICK_IMAGES = 200
# Above this many training images the in-memory eigendecomposition (8·N² bytes, three times) is refused:
# `--scale full` takes the Gram stores and the iterative solvers.
MAX_IN_MEMORY = 20000
SCALE_FORMS = "quick, <N>k (N thousand training images, 1 ≤ N ≤ 20) or full"


def depth_scale(scale: str, kernels=None, depths=None) -> dict:
    """What `scale` runs: training and test images (None: all), depths, kernels, and whether the Grams go out of
    core (Zarr stores and iterative solvers, as `reproduce table1 --predict`). `kernels` (names of KERNELS) and
    `depths` (integers ≥ 1), where given, replace the scale's own.

    Raises:
        InputError: `scale` is none of SCALE_FORMS, or a kernel or depth is not one the study takes.
    """
    plan = _scale_plan(scale)
    if kernels is not None:
        unknown = [kernel for kernel in kernels if kernel not in KERNELS]
        if unknown or not kernels:
            raise InputError(f"the depth study's kernels are {', '.join(KERNELS)}, got {', '.join(map(str, kernels))!r}")
        plan["kernels"] = tuple(kernel for kernel in KERNELS if kernel in kernels)  # the table's order
    if depths is not None:
        if not depths or any(isinstance(depth, bool) or not isinstance(depth, int) or depth < 1 for depth in depths):
            raise InputError(f"the depth study's depths are integers L >= 1, got {', '.join(map(str, depths))!r}")
        plan["depths"] = tuple(sorted(set(depths)))
    return plan


def _scale_plan(scale: str) -> dict:
    if scale == "quick":
        return {"train_size": QUICK_IMAGES, "test_size": QUICK_IMAGES, "depths": DEPTHS, "kernels": tuple(KERNELS),
                "out_of_core": False}
    if scale == "full":
        return {"train_size": None, "test_size": None, "depths": FULL_DEPTHS, "kernels": tuple(KERNELS),
                "out_of_core": True}
    match = re.fullmatch(r"([1-9][0-9]*)k", str(scale))
    if match and int(match[1]) * 1000 <= MAX_IN_MEMORY:
        return {"train_size": int(match[1]) * 1000, "test_size": None, "depths": DEPTHS, "kernels": tuple(KERNELS),
                "out_of_core": False}
    raise InputError(f"the depth study's scale is {SCALE_FORMS}, got {scale!r}")


@dataclass(frozen=True)
class DepthConfig:
    """`deepntk reproduce depth --scale quick|<N>k|full [--kernels …] [--depths …]`; `data_dir`: the MNIST IDX folder
    (not in the key); `kernels`, `depths`: those of the scale where None (`depth_scale`)."""

    scale: str = "quick"
    data_dir: str | None = field(default=None, metadata={"key": False})
    kernels: list | None = field(default=None, metadata={"key": "if given"})
    depths: list | None = field(default=None, metadata={"key": "if given"})

    def __post_init__(self):
        depth_scale(self.scale, self.kernels, self.depths)


def units(kernels, depths) -> list[tuple[str, int | None]]:
    """The (kernel, depth) pairs a run computes, in order: Θ̃^∞ once (depth None), then depth by depth. The deep
    narrow MLP needs L ≥ 2 weight layers, so it has no L = 1."""
    todo = [("narrow-limit", None)] if "narrow-limit" in kernels else []
    for depth in depths:
        todo += [(kernel, depth) for kernel in kernels if kernel != "narrow-limit"
                 and not (kernel == "narrow-expected" and depth < 2)]
    return todo


def kernel_spec(kernel: str, depth: int | None, d_in: int, d_out: int):
    """The architecture whose closed form is `kernel` at `depth`: the wide MLP (its limit kernel is Θ^L; width
    d_in, so its inputs pass unscaled) or Table 1's deep narrow MLP."""
    from ..architectures import MLP, WideMLP

    if kernel in ("wide-ntk", "wide-nngp"):
        return WideMLP(d_in=d_in, d_out=d_out, width=d_in, depth=depth)
    return MLP(d_in, d_out, 2 if depth is None else depth, C_L)


def kernel_matrix(kernel: str, depth: int | None, X1, X2=None, backend=None) -> np.ndarray:
    """The kernel's (N1, N2) scalar factor between raw MNIST inputs (X2 None: X1 with itself)."""
    from ...analytic import wide_nngp_kernel, wide_ntk_kernel

    if kernel == "wide-ntk":
        return wide_ntk_kernel(X1, X2, depth=depth)
    if kernel == "wide-nngp":
        return wide_nngp_kernel(X1, X2, depth=depth)
    spec = kernel_spec(kernel, depth, X1.shape[1], 10)
    closed_form = spec.limit_kernel if kernel == "narrow-limit" else spec.expected_kernel
    return closed_form(X1, X2, backend=backend)


def normalised_moments(blocks, diagonal: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the normalised off-diagonal entries K(x, x')/√(K(x, x)K(x', x')) of a
    symmetric Gram, from its blocks: `blocks()` yields (rows, cols, block, weight), slices and the entries there,
    each entry counted `weight` times (1 for row blocks of the whole Gram; 2 for a store's upper tiles off the
    diagonal). Two passes (the deviations from the mean in the second), so a spread of 1e-11 around a mean
    near 1 keeps its digits, where E[x²] − E[x]² would cancel to nothing."""
    root = np.sqrt(diagonal)

    def normalised():
        for rows, cols, block, weight in blocks():
            entries = block / np.outer(root[rows], root[cols])
            off = np.arange(rows.start, rows.stop)[:, None] != np.arange(cols.start, cols.stop)[None, :]
            yield entries, off, weight

    total = count = 0.0
    for entries, off, weight in normalised():
        total += weight * float(np.sum(entries, where=off))
        count += weight * float(np.count_nonzero(off))
    mean = total / count
    square = 0.0
    for entries, off, weight in normalised():
        square += weight * float(np.sum((entries - mean) ** 2, where=off))
    return mean, math.sqrt(square / count)


def _row_blocks(K: np.ndarray, rows: int = 1024):
    """`normalised_moments`'s blocks of an in-memory Gram: `rows` rows at a time (one N × N copy is not made)."""
    whole = slice(0, K.shape[1])
    return lambda: ((slice(start, min(start + rows, len(K))), whole, K[start:start + rows], 1)
                    for start in range(0, len(K), rows))


def collapse_measures(K: np.ndarray, eigenvalues: np.ndarray) -> dict:
    """How far a training Gram has collapsed towards a constant, and what float64 still resolves of it
    (docs/depth-study.md#collapse-measures).

    Returns:
        spread: standard deviation of the normalised off-diagonal entries (0 for a constant kernel);
        one_minus_mean: 1 − their mean (0 when every pair looks alike to the kernel);
        effective_rank: (tr K)²/tr(K²) = (Σλ)²/Σλ²;
        entropy_rank: exp of the entropy of λ/Σλ over the eigenvalues above the float64 floor;
        resolved: eigenvalues above the floor N·ε·λ_max (engine/spectrum.py);
        condition, condition_is_lower_bound: λ_max/λ_min, or λ_max/floor where λ_min is below it.
    """
    from ..spectrum import resolve_spectrum

    mean, spread = normalised_moments(_row_blocks(K), np.diag(K))
    spectrum = resolve_spectrum(eigenvalues)
    kept = spectrum.eigenvalues[:spectrum.resolved]
    p = kept / kept.sum()
    return {"spread": spread, "one_minus_mean": 1.0 - mean,
            "effective_rank": float(np.trace(K) ** 2 / np.sum(K * K)),
            "entropy_rank": float(np.exp(-np.sum(p * np.log(p)))), "resolved": spectrum.resolved,
            "condition": spectrum.condition, "condition_is_lower_bound": spectrum.condition_is_lower_bound}


def predict_in_memory(K_train: np.ndarray, K_test: np.ndarray, Y: np.ndarray, flow_time: float):
    """(flow, regression) test outputs of the scalar kernel K, and K's eigenvalues, from one eigendecomposition.

    Flow: f_t(x) = K(x, X)·V·diag((1 − e^{−tλ/N})/λ)·Vᵀ·Y at t = `flow_time` × the mean diagonal entry (the flow
    of K divided by that mean, at `flow_time`); regression: t = ∞, K's pseudo-inverse, the eigenvalues at or below
    the float64 floor N·ε·λ_max dropped (docs/depth-study.md#what-is-computed)."""
    from ...analytic.flow import flow_filter

    lam, V = np.linalg.eigh(0.5 * (K_train + K_train.T))
    N = len(K_train)
    floor = N * np.finfo(np.float64).eps * np.max(np.abs(lam))
    projected = V.T @ Y
    outputs = []
    for t in (flow_time * float(np.mean(np.diag(K_train))), np.inf):
        outputs.append(K_test @ (V @ (flow_filter(lam, t, N, floor)[:, None] * projected)))
    return outputs[0], outputs[1], lam


def majority_accuracy(labels_train, labels_test) -> tuple[int, float]:
    """The most frequent training class and the test accuracy of predicting it for every image."""
    majority = int(np.argmax(np.bincount(labels_train, minlength=10)))
    return majority, float(np.mean(labels_test == majority))


def inverse_norm_vote(X_train, labels_train, labels_test) -> tuple[int, float]:
    """The class c with the largest Σ_{i ∈ c} 1/|x_i| and the test accuracy of predicting it for every image.

    Where the normalised NTK is a constant c₀ off the diagonal and 1 on it (the wide NTK's L → ∞ form at σ_b² = 0,
    c₀ = 1/4), K = c₀·aaᵀ + (1 − c₀)·diag(a²) with a_i = |x_i| (up to one factor), and by Sherman–Morrison every
    test output of kernel regression on one-hot targets is |x|·c₀·aᵀK⁻¹Y ∝ |x|·Σ_{i ∈ c} 1/a_i per class c: one
    class for every image, the training images voting with weight 1/|x_i| (docs/depth-study.md#the-limit-classifier)."""
    weights = np.bincount(labels_train, weights=1.0 / np.linalg.norm(X_train, axis=1), minlength=10)
    vote = int(np.argmax(weights))
    return vote, float(np.mean(labels_test == vote))


def _predictions(flow, regression, labels) -> dict:
    """Accuracies of the argmax classes, and the share of test images given the regression's most common class
    (1 when the classifier gives every image one class)."""
    classes = np.argmax(regression, axis=1)
    counts = np.bincount(classes, minlength=10)
    return {"flow_accuracy": float(np.mean(np.argmax(flow, axis=1) == labels)),
            "regression_accuracy": float(np.mean(classes == labels)),
            "top_class": int(np.argmax(counts)), "top_class_share": float(counts.max() / len(classes))}


def depth_unit_in_memory(kernel, depth, data, backend=None) -> dict:
    """One (kernel, depth) row: the Grams in memory, one eigendecomposition, accuracies and collapse measures."""
    K_train = kernel_matrix(kernel, depth, data.X_train, backend=backend)
    K_test = kernel_matrix(kernel, depth, data.X_test, data.X_train, backend=backend)
    flow, regression, eigenvalues = predict_in_memory(K_train, K_test, data.Y_train, FLOW_TIME)
    return {**_predictions(flow, regression, data.labels_test), **collapse_measures(K_train, eigenvalues)}


def store_collapse_measures(store, on_tile=None) -> dict:
    """The measures of `collapse_measures` that passes over a symmetric Gram store's upper tiles give (the
    eigenvalues are out of reach at N = 60,000: their entries are None); `on_tile(done, total)` as tiles are read
    (the two passes of `normalised_moments`)."""
    diagonal = np.concatenate([np.diag(store.read(*store.slices(i, i))) for i in range(-(-store.shape[0] // store.tile))])
    tiles_per_pass = len(store.tiles())
    done, frobenius = [0], [0.0]

    def tiles():
        for i, j in store.tiles():
            rows, cols = store.slices(i, j)
            block, weight = store.read(rows, cols), 1 if i == j else 2
            if done[0] < tiles_per_pass:  # tr(K²) on the first pass, which reads every tile anyway
                frobenius[0] += weight * float(np.sum(block * block))
            yield rows, cols, block, weight
            done[0] += 1
            if on_tile:
                on_tile(done[0], 2 * tiles_per_pass)

    mean, spread = normalised_moments(tiles, diagonal)
    return {"spread": spread, "one_minus_mean": 1.0 - mean,
            "effective_rank": float(np.sum(diagonal) ** 2 / frobenius[0]), "entropy_rank": None, "resolved": None,
            "condition": None, "condition_is_lower_bound": None, "mean_diagonal": float(np.mean(diagonal))}


def unit_label(kernel: str, depth: int | None) -> str:
    """One (kernel, depth) row as its progress lines and warnings name it: "wide NTK Θ^L at L = 1000"."""
    return KERNELS[kernel] + ("" if depth is None else f" at L = {depth}")


def unit_stem(store_dir: str, kernel: str, depth: int | None) -> str:
    """The path, less its "-train.zarr" / "-test.zarr", of one (kernel, depth) row's Gram stores."""
    return os.path.join(store_dir, kernel if depth is None else f"{kernel}-L{depth}")


def depth_unit_out_of_core(kernel, depth, data, store_dir, client=None, backend=None, progress=SILENT) -> dict:
    """One (kernel, depth) row through Zarr Gram stores (`deepntk gram`) and the iterative solvers
    (`deepntk.engine.solvers.predict_from_stores`), as `reproduce table1 --predict` runs them."""
    from ..gram import GramKernel, gram
    from ..solvers import MAX_ITERATIONS, predict_from_stores, solve_fields

    spec = kernel_spec(kernel, depth, data.X_train.shape[1], 10)
    gram_kernel = GramKernel.for_spec(GRAM_KINDS[kernel], spec, backend=backend)
    stem = unit_stem(store_dir, kernel, depth)
    label = unit_label(kernel, depth)

    def tiles(stage):
        return lambda done, total: progress.show(f"{label}: {stage}", done, total)

    train = gram(gram_kernel, data.X_train, store=f"{stem}-train.zarr", client=client, resume=True,
                 on_tile=tiles("train Gram")).store
    test = gram(gram_kernel, data.X_test, data.X_train, store=f"{stem}-test.zarr", client=client, resume=True,
                on_tile=tiles("test Gram")).store
    measures = store_collapse_measures(train, on_tile=tiles("collapse measures, tiles read"))
    times = [FLOW_TIME * measures.pop("mean_diagonal"), np.inf]
    # A batch log hears from the solves too (minutes each at N = 60,000); they stop when they converge.
    prediction, solves = predict_from_stores(
        train, test, data.Y_train, times, Y_test=data.Y_test, backend=backend,
        on_iteration=lambda solver, j: progress.show(f"{label}: {solver} iterations (stops when it converges)", j,
                                                     MAX_ITERATIONS))
    more = f"the study bounds each solve at {MAX_ITERATIONS} iterations (deepntk.engine.solvers.MAX_ITERATIONS)"
    return {**_predictions(prediction.test[0], prediction.test[1], data.labels_test), "flow_times": times,
            **solve_fields(solves, more), **measures}


def depth_study(scale: str = "quick", data_dir=None, backend=None, client=None, progress=SILENT, folder=None,
                kernels=None, depths=None) -> dict:
    """The depth study at `scale` (`depth_scale`, with its `kernels` and `depths` where given). With `folder` (a
    results folder this run holds), the results are saved there after every (kernel, depth), and the rows an
    earlier, unfinished run saved there are kept and not computed again."""
    plan = depth_scale(scale, kernels, depths)
    data = load_mnist(data_dir, train_size=plan["train_size"], test_size=plan["test_size"])
    majority, majority_acc = majority_accuracy(data.labels_train, data.labels_test)
    vote, vote_acc = inverse_norm_vote(data.X_train, data.labels_train, data.labels_test)
    out = {"experiment": "depth", "scale": scale, "train_images": len(data.X_train),
           "test_images": len(data.X_test), "note": data.note, "depths": list(plan["depths"]),
           "kernels": list(plan["kernels"]), "C_L": C_L, "flow_time": FLOW_TIME, "majority_class": majority,
           "majority_accuracy": majority_acc, "inverse_norm_vote_class": vote, "inverse_norm_vote_accuracy": vote_acc,
           "targets": "one-hot, class = argmax of the 10 outputs",
           "out_of_core": plan["out_of_core"], "rows": DepthResult.unfinished_parts(folder),
           "complete": False}
    done = {(row["kernel"], row["depth"]) for row in out["rows"]}
    todo = units(plan["kernels"], plan["depths"])
    if plan["out_of_core"]:  # inside the results folder, so its record lists the stores (--overwrite removes them)
        store_dir = tempfile.mkdtemp(prefix="deepntk-depth-") if folder is None else os.path.join(folder, "grams")
        record_file(store_dir)
        os.makedirs(store_dir, exist_ok=True)
    for index, (kernel, depth) in enumerate(todo):
        if (kernel, depth) in done:  # not shown: the first count shown is the reused rows, not rated as work
            continue
        progress.show("depth study", index, len(todo), f"{KERNELS[kernel]}" + ("" if depth is None else
                                                                              f", L = {depth}"))
        started = time.perf_counter()
        if plan["out_of_core"]:
            row = depth_unit_out_of_core(kernel, depth, data, store_dir, client, backend, progress)
        else:
            row = depth_unit_in_memory(kernel, depth, data, backend)
        out["rows"].append({"kernel": kernel, "depth": depth, **row, "seconds": time.perf_counter() - started})
        if folder is not None:
            DepthResult(out, {}).save(folder)
        if plan["out_of_core"]:  # the row is saved: its stores (≈ 19 GB each at N = 60,000) make room for the next
            for part in ("train", "test"):
                shutil.rmtree(f"{unit_stem(store_dir, kernel, depth)}-{part}.zarr", ignore_errors=True)
    progress.show("depth study", len(todo), len(todo))
    if plan["out_of_core"] and folder is None:
        shutil.rmtree(store_dir, ignore_errors=True)
    out["complete"] = True
    return out


@dataclass(frozen=True)
class _Column:
    header: str
    width: int
    form: object


def _number(value, form: str) -> str:
    return "—" if value is None else format(value, form)


def _condition(row) -> str:
    if row["condition"] is None:
        return "—"
    return ("≥ " if row["condition_is_lower_bound"] else "") + f"{row['condition']:.2e}"


COLUMNS = (_Column("kernel", 21, lambda row: KERNELS[row["kernel"]]),
           _Column("L", 6, lambda row: "∞" if row["depth"] is None else str(row["depth"])),
           _Column("regression", 10, lambda row: f"{row['regression_accuracy']:.4f}"),
           _Column("flow", 7, lambda row: f"{row['flow_accuracy']:.4f}"),
           _Column("one class", 9, lambda row: f"{row['top_class']}:{row['top_class_share']:.2f}"),
           _Column("spread", 9, lambda row: _number(row["spread"], ".2e")),
           _Column("1 − mean", 9, lambda row: _number(row["one_minus_mean"], ".2e")),
           _Column("eff. rank", 9, lambda row: _number(row["effective_rank"], ".3g")),
           _Column("entropy rank", 12, lambda row: _number(row["entropy_rank"], ".4g")),
           _Column("resolved", 8, lambda row: _number(row["resolved"], "d")),
           _Column("condition", 11, _condition),
           _Column("time s", 7, lambda row: f"{row['seconds']:.1f}"))


class DepthResult(PlotResult):
    """`depth_study`'s result: a table of (kernel, depth) rows beside the majority vote, drawn as accuracy against
    depth (`figures.depth_study_figure`). `complete` is False in the file an unfinished run left."""

    figure_builder = "depth_study_figure"

    def summary(self) -> list[str]:
        data = self.data
        lines = reduction_lines(data) + [
            f"depth study ({data['scale']}): {data['train_images']} training and {data['test_images']} test images; "
            f"targets {data['targets']}; flow at t = {data['flow_time']:g} (kernel / its mean diagonal), "
            f"regression at t = ∞; narrow MLP C_L = {data['C_L']:g}",
            f"majority vote (class {data['majority_class']}): test accuracy {data['majority_accuracy']:.4f}; "
            f"vote weighted by 1/|x| (class {data['inverse_norm_vote_class']}): "
            f"{data['inverse_norm_vote_accuracy']:.4f}",
            "one class: the regression's most common class and the share of test images given it",
            " ".join(f"{c.header:>{c.width}}" if i else f"{c.header:<{c.width}}" for i, c in enumerate(COLUMNS))]
        for row in data["rows"]:
            lines.append(" ".join(f"{c.form(row):>{c.width}}" if i else f"{c.form(row):<{c.width}}"
                                  for i, c in enumerate(COLUMNS)))
        from ..solvers import unconverged_solves

        for row in data["rows"]:  # out of core: the iterative solves that stopped above their tolerance, and why
            if "solver_reports" in row:
                lines += [f"warning: {line}" for line in
                          unconverged_solves(row, row["flow_times"], unit_label(row["kernel"], row["depth"]))]
        if not self.complete:
            lines.append(f"unfinished: {len(data['rows'])} rows; rerun with --resume to complete it")
        return lines


def run(config: DepthConfig, backend=None, client=None, progress=SILENT, folder=None) -> DepthResult:
    """The depth study at `config.scale`, its units through `progress.show`, saved into `folder` as they end."""
    return DepthResult(depth_study(config.scale, config.data_dir, backend, client, progress, folder,
                                   config.kernels, config.depths), {})


EXPERIMENT = Experiment("depth", DepthConfig, run, DepthResult, uses_client=True, checkpoints=True,
                        description="MNIST accuracy and kernel collapse against depth: wide NTK/NNGP vs the deep "
                                    "narrow MLP's kernels (issue #33)")
