"""Benchmark workloads of the backends and of peers (PyTorch, JAX), timed in one run on one machine.

Every implementation computes the same quantity on identical host-drawn weights; each result is checked
against the NumPy reference before its time is reported. Times are medians of repeated calls after a first
call (reported apart: it includes JIT compilation for Numba, JAX and CUDA kernels). Useful FLOPs count the
structured algorithm's arithmetic (docs/ntk.md), and are divided by the measured float64 matrix-product
rate of this machine (its physical limit for this kind of work).
"""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
from ..api import loss_and_gradients, scaled_ntk
from ..architectures import CNN, MLP, WideMLP
from ..params import init_params


@dataclass
class Workload:
    """One timed task: an NTK Gram or one full-batch GD step."""

    name: str
    kind: str  # "ntk" or "gd"
    params: object
    X1: np.ndarray
    X2: np.ndarray | None = None
    Y: np.ndarray | None = None
    flops: float = 0.0

    @property
    def depth(self) -> int:
        return self.params.spec.depth


@dataclass
class Timing:
    workload: str
    implementation: str
    first_call: float
    median: float
    repeats: int
    rel_error: float
    flops: float
    depth: int
    note: str = ""
    extra: dict = field(default_factory=dict)


def perturbed_paper_params(spec, seed=0, scale=1e-3):
    """The paper's init with every entry moved slightly: dense, generic weights near the init."""
    params = init_params(spec, "paper", seed)
    rng = np.random.default_rng(seed + 1)
    jitter = lambda a: a + scale * rng.standard_normal(a.shape)
    return params.with_arrays([jitter(w) for w in params.weights], [jitter(b) for b in params.biases])


def dense_ntk_flops(N1, N2, symmetric, L, n, k):
    pairs = N1 * (N1 + 1) / 2 if symmetric else N1 * N2
    trace = (N1 + (0 if symmetric else N2)) * L * (2 * n * n + 2 * k * n * n)
    return pairs * L * (2 * n + 2 * k * k * n + 2 * k * k) + trace


def wide_ntk_flops(N, L, n, d_in, k):
    """Useful FLOPs of the wide MLP's symmetric empirical NTK Gram of N inputs at depth L (hidden layers), width n,
    k outputs, as `Backend._gram` computes it with `WideDenseOps` (docs/performance.md#the-wide-mlp-ntk-gram):
    the forward pass 2N·n·(d_in + (L−1)·n + k), the Jacobians' backward pass through the L − 1 hidden-to-hidden
    layers and the read-out 2N·k·n·((L−1)·n + k), and per input pair (N(N+1)/2 of them, the Gram being
    symmetric) every layer's activation product 2·fan-in and Jacobian product 2k²·fan-out, summed over the
    L + 1 layers: 2(d_in + L·n) + 2k²(L·n + k). The padding of the first and last layers to n × n (which the code
    multiplies too) is not counted, so the rate reported is a lower bound on the rate the BLAS calls run at."""
    forward = 2 * N * n * (d_in + (L - 1) * n + k)
    backward = 2 * N * k * n * ((L - 1) * n + k)
    pairs = N * (N + 1) / 2
    return forward + backward + pairs * (2 * (d_in + L * n) + 2 * k * k * (L * n + k))


def dense_gd_flops(N, L, n):
    return 6.0 * n * n * L * N


def conv_ntk_flops(N1, N2, symmetric, L, n, k, f, d):
    per_input = L * 2 * n * n * f * f * d * d * (1 + 2 * k)
    pairs = N1 * (N1 + 1) / 2 if symmetric else N1 * N2
    return (N1 + (0 if symmetric else N2)) * per_input + pairs * k * k * 2 * L * (n * n * f * f + n)


def conv_gd_flops(N, L, n, f, d):
    return 3.0 * 2 * n * n * f * f * d * d * L * N


def standard_workloads(quick: bool = False) -> list[Workload]:
    """(a) Fig. 3 Gram, (b) Fig. 3 GD step, (c) MLP N = 16 and 512, (d) CNN 7×7, L = 1000, N = 64, (e) the wide
    MLP's NTK Gram at width 1024, L = 10, N = 512."""
    from ...analytic import fig3_inputs, fig3_target

    L = 1000 if quick else 10000
    x0, X, _ = fig3_inputs(200)
    target = fig3_target(X)
    mlp = perturbed_paper_params(MLP(2, 1, L, 5e4 if L == 10000 else float(L) * 5))
    n = mlp.spec.width
    rng = np.random.default_rng(0)
    out = [
        Workload("fig3-gram-200x200", "ntk", mlp, X, None, flops=dense_ntk_flops(200, 200, True, L, n, 1)),
        Workload("fig3-gram-x0x200", "ntk", mlp, x0, X, flops=dense_ntk_flops(1, 200, False, L, n, 1)),
        Workload("fig3-gd-step-200", "gd", mlp, X, Y=target, flops=dense_gd_flops(200, L, n)),
    ]
    for N in (16, 512):
        XN = rng.uniform(0.05, 1.0, size=(N, 2))
        YN = fig3_target(XN)
        out.append(Workload(f"mlp-gram-N{N}", "ntk", mlp, XN, flops=dense_ntk_flops(N, N, True, L, n, 1)))
        out.append(Workload(f"mlp-gd-step-N{N}", "gd", mlp, XN, Y=YN, flops=dense_gd_flops(N, L, n)))
    Lc = 200 if quick else 1000
    cnn = perturbed_paper_params(CNN(1, 7, 1, Lc, float(Lc), filter_size=3))
    images = rng.uniform(0.05, 1.0, size=(64, 1, 7, 7))
    labels = rng.uniform(-1, 1, size=(64, 1))
    out.append(Workload("cnn-gram-N64", "ntk", cnn, images, flops=conv_ntk_flops(64, 64, True, Lc, 3, 1, 3, 7)))
    out.append(Workload("cnn-gd-step-N64", "gd", cnn, images, Y=labels, flops=conv_gd_flops(64, Lc, 3, 3, 7)))
    out.append(wide_gram_workload())
    return out


def wide_gram_workload(N: int = 512, width: int = 1024, depth: int = 10, d_in: int = 784) -> Workload:
    """The finite wide MLP's empirical NTK Gram (issue #33: width 1024, L = 10, N = 512 MNIST-sized inputs), whose
    target is half the measured matmul peak: every FLOP of it is in BLAS products."""
    wide = perturbed_paper_params(WideMLP(d_in=d_in, d_out=1, width=width, depth=depth))
    X = np.random.default_rng(0).normal(size=(N, d_in))
    return Workload(f"wide-gram-N{N}", "ntk", wide, X, flops=wide_ntk_flops(N, depth, width, d_in, 1))


def run_deepntk(workload: Workload, backend: str, ensemble: bool = False):
    """The workload's result through the API: the Gram, or the gradients as one vector (per network for an
    ensemble)."""
    if workload.kind == "ntk":
        return scaled_ntk(workload.params, workload.X1, workload.X2, backend=backend)
    value, _, grads = loss_and_gradients(workload.params, workload.X1, workload.Y, loss="paper", backend=backend)
    if ensemble:
        return [np.concatenate([dW.ravel(), db.ravel()]) for dW, db in zip(grads.W, grads.b)]
    return np.concatenate([grads.W.ravel(), grads.b.ravel()])


def time_call(fn, repeats: int, budget: float = 20.0, min_seconds: float = 0.5, max_calls: int = 200):
    """(result, first-call seconds, median of `repeats` or more calls after it); slow calls repeat less, at
    least once, and fast ones go on until they have run `min_seconds` in all (at most `max_calls` calls): the
    first few calls after a compilation or a BLAS call run slower, and three of them put the median of a
    2-ms NTK Gram at 4 ms. `repeats=0` times the first call alone (a reference path that compiles nothing)."""
    start = time.perf_counter()
    result = fn()
    first = time.perf_counter() - start
    if repeats == 0:
        return result, first, first
    times = []
    least = max(1, min(repeats, int(budget / max(first, 1e-9))))
    while len(times) < least or (sum(times) < min_seconds and len(times) < max_calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return result, first, statistics.median(times)


def matmul_peak(dtype=np.float64, size: int = 2048, repeats: int = 5) -> float:
    """Measured FLOP/s of a square float64 matrix product (best of `repeats`)."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2.0 * size**3 / best


def machine(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The CPU the benchmark ran on: its model name, the CPUs this process may use, and its widest float64 vector
    instructions (the compiled kernels' vector width depends on them: AVX-512 holds 8 lanes, AVX2 4), read from
    Linux's `cpuinfo` where it exists."""
    import os
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open(cpuinfo) as info:
            for line in info:
                name, _, value = line.partition(":")
                if name.strip() == "model name":
                    model = value.strip()
                elif name.strip() in ("flags", "Features"):
                    flags = set(value.split())
    except OSError:
        pass
    vector = next((label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("sve", "SVE"),
                                             ("asimd", "NEON"), ("sse2", "SSE2")) if flag in flags), "unknown")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cpus": cpus, "vector": vector}


def describe_machine() -> str:
    m = machine()
    return f"{m['cpu']}, {m['cpus']} CPUs, {m['vector']}"


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def relative_error(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))


def run_benchmark(workloads, implementations, repeats: int = 3, on_result=None, reference: str = "numpy",
                  on_step=None):
    """Time each workload with each implementation; returns a list of Timing. `on_result(timing)` reports each
    shown timing, `on_step(done, total)` each (workload, implementation) finished, the reference's and the
    skipped peers' included."""
    from . import peers

    timings = []
    names = [reference] + [i for i in implementations if i != reference]
    step = _stepper(on_step, len(workloads) * len(names))
    for workload in workloads:
        expected = None
        for name in names:
            if name in peers.PEERS:
                fn = peers.PEERS[name](workload)
                if fn is None:
                    step()
                    continue
            else:
                fn = lambda name=name: run_deepntk(workload, name)
            try:
                result, first, median = time_call(fn, repeats)
            except Exception as exc:  # a peer that cannot run this workload is reported, not fatal
                timing = Timing(workload.name, name, float("nan"), float("nan"), 0, float("nan"), workload.flops,
                                workload.depth, note=f"failed: {type(exc).__name__}: {str(exc)[:80]}")
            else:
                if expected is None:
                    expected = result
                timing = Timing(workload.name, name, first, median, repeats, relative_error(result, expected),
                                workload.flops, workload.depth)
                if name == "jax":
                    import jax

                    timing.note = f"on {jax.default_backend()}; first call includes compilation"
            step()
            if name == reference and name not in implementations:
                continue
            timings.append(timing)
            if on_result:
                on_result(timing)
    return timings


def _stepper(on_step, total: int):
    """A function that counts one more finished step of `total` and tells `on_step(done, total)` (if given)."""
    done = 0

    def step():
        nonlocal done
        done += 1
        if on_step:
            on_step(done, total)

    return step


def fig3_full_settings(backend, seeds: int = 10, steps: int = 2000, depths=((100, 5.0), (10000, 5e4)),
                       on_seed=None) -> dict:
    """Fig. 3 at the authors' settings (docs/experiments.md#fig-3), timed: per depth and seed, Θ̃(x₀, X) at init,
    `steps` full-batch GD steps with MSELoss at raw lr = 1/(4·L·C_L²), and Θ̃(x₀, X) after training
    (`fig3.fig3_training`). Returns the time, the mean kernel drift ‖Θ̃_T − Θ̃_0‖/‖Θ̃_0‖ and the fit error per depth."""
    from .fig3 import fig3_training, training_summary

    start = time.perf_counter()
    result = fig3_training(depths, seeds, steps, backend, on_seed)
    report = {"seeds": seeds, "steps": steps, "seconds": time.perf_counter() - start, "depths": {}}
    for row in training_summary(result):
        report["depths"][row["depth"]] = {"C_L": row["C_L"], "seconds": row["seconds"],
                                          "kernel_drift_mean": row["kernel_drift"], "final_mse_mean": row["fit_mse"]}
    return report


def cnn_limit_rates(sizes=((7, 400), (28, 24)), data_dir=None, on_step=None) -> dict:
    """Image pairs and arc-cosine evaluations per second of the CNN limit kernel: the NumPy reference of
    `deepntk.analytic` and the fused Numba kernel, timed in one run, for a symmetric Gram (the fused kernel
    computes the upper pairs only; the reference's blocks span the diagonal, so at 7×7 it computes all N²) and
    a cross Gram (a quarter of the images against the rest, like test × training: the same pairs for both).
    Images: uniform random ones with the default scales (no zero patch and correlations down to 0.1: the fused
    kernel's worst case) and, when `data_dir` (or DEEPNTK_DATA) holds MNIST, MNIST training images at Table 1's
    CNN settings (rho = 1/3 with the authors' tap variance; 7×7: 4×4-pooled as Table 1's CNNs take them), whose
    correlations are all near one (`deepntk.analytic.cnn_pair_sum.correlations_near_one`). Beside the backends' pair
    sums, `cnn_limit_kernel` as a standalone user calls it (`analytic`: no `pair_sum`, so the fastest installed CPU
    implementation, docs/limit-kernels.md#which-pair-sum-runs), whose time over the Numba backend's is
    `analytic_over_numba`.

    Beside them two limits, measured on every core in the same run: the rate of the square root each κ needs
    (`root_bound`), and of the kernel's whole κ arithmetic on in-cache arrays
    (`kappa_loop_ceiling`: the fused kernel with free inner products and patch lists). Arc-cosine evaluations
    count those each implementation makes (the fused kernel skips pairs with a zero patch); pixel pairs per
    second count d⁴ per image pair for both. The sizes make the per-call costs (packing the patches, waking the
    threads) small beside the pair sum, as in Table 1's Grams of thousands of images: at 160 7×7 images they
    were a third of the fused kernel's time. The reference is timed once (it compiles nothing and takes ~20 s
    a set), the fused kernel as the median of `time_call`'s calls (at least three). Where CuPy reaches a CUDA
    device, the device's kernel (kernels.cu) is timed too, in the same way, and compared with the fused one.
    `on_step(done, total)` reports each implementation timed on each Gram."""
    from ...analytic import cnn_limit_kernel
    from ...analytic.cnn import CNNTerms
    from ...analytic.cnn_pair_sum import correlations_near_one
    from ...backends.registry import availability, get_backend

    # Uniform images take a CNN's default scales (those of `cnn_limit_kernel` too).
    sets = [(f"{d}×{d} uniform", np.random.default_rng(d).uniform(0.0, 1.0, size=(n, 1, d, d)),
             kappa_scales(CNN(1, d, 1, 2, 1.0))) for d, n in sizes]
    mnist = _mnist_images(data_dir, max(n for _, n in sizes))
    if mnist is not None:
        from ..architectures.cnn import average_pool

        for d, n in sizes:
            images = mnist[:n] if d == 28 else average_pool(mnist[:n], 28 // d)
            sets.append((f"{d}×{d} MNIST", images[:, None], table1_cnn_scales()))
    bound, ceiling = root_bound(), kappa_loop_ceiling()
    # The backends' own pair sums, by name (`Backend.cnn_pair_sum`): Numba's, and the device's where CuPy has one.
    compiled = [(name, get_backend(name).cnn_pair_sum) for name in ("numba", "cupy")
                if name == "numba" or availability(name)[0]]
    rows = []
    step = _stepper(on_step, len(sets) * 2 * (len(compiled) + 2))  # 2 Grams a set; numpy, compiled, analytic
    for name, X, scales in sets:
        n, d = len(X), X.shape[-1]
        for _, pair_sum in compiled:
            cnn_limit_kernel(X[:2], pair_sum=pair_sum, **scales)  # compile before timing
        # The reference evaluates κ for all d⁴ pixel pairs of an image pair, the fused kernel for the pairs of
        # nonzero patches only (docs/limit-kernels.md#zero-patches).
        terms = CNNTerms(X, None, scales["rho"], scales["filter_size"], scales["filter_variance"])
        live = (terms.norm1 > 0).sum(axis=1).astype(float)
        near_one = correlations_near_one(terms.P1, terms.norm1, terms.P1, terms.norm1, terms.t, scales["beta"] ** 2)
        quarter = n // 4
        grams = {"symmetric": ((X, None), n * (n + 1) / 2, (live.sum() ** 2 + (live**2).sum()) / 2),
                 "cross": ((X[:quarter], X[quarter:]), quarter * (n - quarter),
                           live[:quarter].sum() * live[quarter:].sum())}
        for gram, (images, pairs, fused_evaluations) in grams.items():
            row = {"image": name, "gram": gram, "images": n, "pairs": pairs, "scales": scales,
                   "polynomial": "near one" if near_one else "full"}
            evaluated = {"numpy": pairs * d**4, "numba": fused_evaluations, "cupy": fused_evaluations,
                         "analytic": fused_evaluations}
            # "analytic": no pair_sum, the closed form's own default (the fused kernel where Numba is installed).
            timed = [("numpy", "numpy", 0)] + [(label, f, 3) for label, f in compiled] + [("analytic", None, 3)]
            for label, pair_sum, repeats in timed:
                call = functools.partial(cnn_limit_kernel, *images, pair_sum=pair_sum, **scales)
                _, _, median = time_call(call, repeats=repeats)
                row[label] = {"seconds": median, "pairs_per_second": pairs / median,
                              "pixel_pairs_per_second": pairs * d**4 / median,
                              "arccos_per_second": evaluated[label] / median}
                step()
            row["speedup"] = row["numpy"]["seconds"] / row["numba"]["seconds"]
            row["analytic_over_numba"] = row["analytic"]["seconds"] / row["numba"]["seconds"]
            row["evaluated_fraction"] = evaluated["numba"] / evaluated["numpy"]
            row["fraction_of_bound"] = row["numba"]["arccos_per_second"] / bound
            row["fraction_of_kappa_loop"] = row["numba"]["arccos_per_second"] / ceiling
            if "cupy" in row:
                row["cupy_speedup_over_numba"] = row["numba"]["seconds"] / row["cupy"]["seconds"]
            rows.append(row)
    return {"rows": rows, "root_bound_per_second": bound, "kappa_loop_per_second": ceiling}


def wide_limit_rates(size: int = 2048, depth: int = 1000, data_dir=None, repeats: int = 3, on_step=None) -> dict:
    """Gram entries (input pairs) per second of the wide MLP's NTK Θ^L at σ_b² = 0: the fused Numba pass and the
    NumPy array path of `deepntk.analytic.wide_ntk_kernel`, timed in one run, on a cross Gram of `size` × `size`
    inputs (one tile of `deepntk gram`'s Zarr path, whose off-diagonal tiles are such cross Grams): uniform random
    inputs in [0, 1]^784 and, when `data_dir` (or DEEPNTK_DATA) holds MNIST, MNIST training images.

    The machine's limit for this algorithm, measured in the same run on every core
    (docs/performance.md#wide-kernel-grams): the X1·X2ᵀ product at the measured float64 matmul peak (2·d FLOPs a pair) plus the per-pair
    work (an arccos, a log and the depth map's Clenshaw recurrence) at its rate on an in-cache array of 4096 of
    the set's own cosines (`numba_wide.depth_map_in_cache`). `fraction_of_limit` is the limit's time over the measured one.
    `on_step(done, total)` reports each path timed on each set."""
    from ...analytic import wide as wide_module
    from ...analytic import wide_ntk_kernel
    from ...analytic.numba_wide import depth_map_in_cache

    rng = np.random.default_rng(0)
    sets = [("uniform", rng.uniform(0.0, 1.0, size=(2 * size, 784)))]
    mnist = _mnist_images(data_dir, 2 * size)
    if mnist is not None:
        sets.append(("MNIST", mnist.reshape(len(mnist), -1)))
    peak = matmul_peak()
    table = wide_module._depth_map_table(depth)[1]
    arguments = (table, wide_module._S_LO, wide_module._PANEL_WIDTH, wide_module._THETA_MIN)
    out = np.empty(20_000)
    rows = []
    step = _stepper(on_step, 2 * len(sets))
    for name, X in sets:
        A, B = X[:size], X[size:2 * size]
        pairs, d = len(A) * len(B), X.shape[1]
        row = {"inputs": name, "pairs": pairs, "depth": depth, "d_in": d}
        # The ceiling on this set's own cosines (libm's arccos takes longer on some ranges than on others).
        sample = A[:64] @ B[:64].T / np.outer(np.linalg.norm(A[:64], axis=1), np.linalg.norm(B[:64], axis=1))
        cosines = np.clip(sample.ravel(), -1.0, 1.0)
        depth_map_in_cache(cosines, *arguments, out[:2])
        # Best times, as the matmul peak's: on a shared machine a median mixes in other processes' load.
        best = min(_timed(lambda: depth_map_in_cache(cosines, *arguments, out)) for _ in range(repeats))
        row["pair_map_per_second"] = cosines.size * out.size / best
        for pair_map, count in (("numba", repeats), ("numpy", 1)):
            wide_ntk_kernel(A[:4], B[:4], depth=depth, pair_map=pair_map)  # compile, build the table
            seconds = min(_timed(lambda: wide_ntk_kernel(A, B, depth=depth, pair_map=pair_map))
                          for _ in range(count))
            row[pair_map] = {"seconds": seconds, "pairs_per_second": pairs / seconds}
            step()
        limit = 2.0 * d * pairs / peak + pairs / row["pair_map_per_second"]
        row["limit_seconds"] = limit
        row["speedup"] = row["numpy"]["seconds"] / row["numba"]["seconds"]
        row["fraction_of_limit"] = limit / row["numba"]["seconds"]
        rows.append(row)
    return {"rows": rows, "matmul_peak_flops": peak}


def kappa_scales(spec) -> dict:
    """The options of a CNN spec that its limit kernel's κ depends on."""
    return {"rho": spec.rho, "beta": spec.beta, "filter_size": spec.filter_size,
            "filter_variance": spec.filter_variance}


def table1_cnn_scales() -> dict:
    """`kappa_scales` of Table 1's 10-class CNN (deepntk.engine.experiments.table1)."""
    from .table1 import table1_rows

    return kappa_scales(next(row[2] for row in table1_rows("paper")[0] if row[0] == "CNN"))


def solver_rates(data_dir=None, size: int = 8333, test_size: int = 1000, max_iterations: int = 1000,
                 tol: float = 1e-6, on_step=None) -> dict:
    """The iterative solvers on the limit Gram of Table 1's MLP (784 inputs) for `size` MNIST training images
    (8,333: the training part of the split made when only the test files exist): kernel flow to the paper's
    flow time and a decade below and above it (one Lanczos run), and kernel regression (conjugate gradients),
    with their iterations, residuals, seconds, test accuracy, and working memory beyond the Gram (numpy's
    allocations, traced), beside the dense eigendecomposition's seconds and memory on the same Gram.
    `on_step(done, total)` reports each of the four stages (Grams, flow, regression, dense)."""
    import tracemalloc

    from .datasets import load_mnist
    from .table1 import paper_flow_time, table1_rows
    from ..solvers import KernelOperator, flows, phi, regression
    from ..trainer import accuracy, classification_kind

    _, _, spec, lr, epochs, _, _ = table1_rows("paper")[0][0]
    data = load_mnist(data_dir, task="digits", pool=1, train_size=size, test_size=test_size, download=False)
    step = _stepper(on_step, 4)
    started = time.perf_counter()
    K = spec.limit_kernel(data.X_train)
    K_test = spec.limit_kernel(data.X_test, data.X_train)
    gram_seconds = time.perf_counter() - started
    step()
    kind = classification_kind(data.Y_train)
    t_paper = paper_flow_time(spec, lr, epochs, 60000)
    times = [t_paper / 10, t_paper, t_paper * 10]
    operator = KernelOperator.from_array(K)
    report = {"train_images": len(K), "test_images": len(K_test), "gram_seconds": gram_seconds,
              "gram_bytes": K.nbytes, "flow_times": times, "rows": []}

    def traced(solve):
        tracemalloc.start()
        began = time.perf_counter()
        try:
            result = solve()
            return result, time.perf_counter() - began, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            step()

    solved, seconds, peak = traced(lambda: flows(operator, data.Y_train, times, tol=tol,
                                                 max_iterations=max_iterations))
    for t, solve in zip(times, solved):
        report["rows"].append({"solver": "flow (Lanczos, shared)", "t": t, "iterations": solve.iterations,
                               "residual": solve.residual, "seconds": seconds, "peak_bytes": peak,
                               "test_accuracy": accuracy(K_test @ solve.coefficients, data.Y_test, kind)})
    solve, seconds, peak = traced(lambda: regression(operator, data.Y_train, tol=tol, max_iterations=max_iterations))
    report["rows"].append({"solver": "regression (CG, Nyström)", "t": float("inf"), "iterations": solve.iterations,
                           "residual": solve.residual, "seconds": seconds, "peak_bytes": peak,
                           "test_accuracy": accuracy(K_test @ solve.coefficients, data.Y_test, kind)})

    def eigendecomposition():  # `kernel_flow`'s method, one eigendecomposition for all k columns
        lam, V = np.linalg.eigh(K)
        return K_test @ (V @ (phi(lam, t_paper, len(K))[:, None] * (V.T @ data.Y_train)))

    dense, seconds, peak = traced(eigendecomposition)
    report["dense"] = {"t": t_paper, "seconds": seconds, "peak_bytes": peak,
                       "test_accuracy": accuracy(dense, data.Y_test, kind),
                       "flow_vs_dense": relative_error(K_test @ solved[1].coefficients, dense)}
    return report


def _mnist_images(data_dir, count: int):
    """The first `count` MNIST training images in [0, 1] (N, 28, 28), or None when no MNIST folder is given."""
    from .datasets import DataError, mnist_folder, read_mnist_pair

    try:
        folder = mnist_folder(data_dir)
    except DataError:
        return None
    pair = read_mnist_pair(folder, "train", download=False)
    return None if pair is None else pair[0][:count].astype(np.float64) / 255.0


def root_bound(size: int = 1 << 16, repeats: int = 3) -> float:
    """Square roots per second on every core: the one operation of each arc-cosine kernel evaluation of the
    fused CNN kernel that does not pipeline (the rest are ~35 multiplications and additions), the machine's
    limit for that kernel, measured."""
    from ...analytic.numba_cnn_pair_sum import square_roots

    x = np.random.default_rng(0).uniform(0.5, 1.5, size=size)
    rounds = 64
    square_roots(x, 1)
    _, _, median = time_call(lambda: square_roots(x, rounds), repeats=repeats)
    return size * rounds / median


def kappa_loop_ceiling(size: int = 2048, rows: int = 40000, repeats: int = 3) -> float:
    """Arc-cosine evaluations per second, on every core, of the fused CNN kernel's κ arithmetic (a clamp, a
    square root, a degree-16 polynomial, a weighted sum) over arrays that stay in cache: the ceiling of that
    kernel without its inner products and patch bookkeeping."""
    from ...analytic.numba_cnn_pair_sum import H_CONSTANTS, correlation_sums_in_cache

    rng = np.random.default_rng(0)
    rho, weights = rng.uniform(-1.0, 1.0, size=size), rng.uniform(0.0, 9.0, size=size)
    out = np.empty(rows)
    correlation_sums_in_cache(rho, weights, out[:2], H_CONSTANTS)
    _, _, median = time_call(lambda: correlation_sums_in_cache(rho, weights, out, H_CONSTANTS), repeats=repeats)
    return size * rows / median


def ensemble_rates(backend: str, networks: int = 10, quick: bool = False, repeats: int = 3,
                   on_step=None) -> list[dict]:
    """Each standard workload for E networks (distinct seeds) as one ensemble call against E single-network
    calls, timed in one run on `backend`; the ensemble's results are checked against the single calls'.
    `on_step(done, total)` reports each workload."""
    from ..params import stack_params

    rows = []
    workloads = standard_workloads(quick)
    step = _stepper(on_step, len(workloads))
    for workload in workloads:
        members = [perturbed_paper_params(workload.params.spec, seed) for seed in range(networks)]
        ensemble = stack_params(members)
        singles = lambda w=workload, ms=members: [run_deepntk(_with_params(w, p), backend) for p in ms]
        together = lambda w=workload, ens=ensemble: run_deepntk(_with_params(w, ens), backend, ensemble=True)
        expected, _, single_s = time_call(singles, repeats)
        got, first, ensemble_s = time_call(together, repeats)
        rows.append({"workload": workload.name, "networks": networks, "single_calls_s": single_s,
                     "ensemble_s": ensemble_s, "speedup": single_s / ensemble_s, "first_call_s": first,
                     "flops": networks * workload.flops,
                     "rel_error": relative_error(np.concatenate([np.ravel(g) for g in got]),
                                                 np.concatenate([np.ravel(e) for e in expected]))})
        step()
    return rows


def _with_params(workload: Workload, params) -> Workload:
    return Workload(workload.name, workload.kind, params, workload.X1, workload.X2, workload.Y, workload.flops)


COLD_START_CALLS = {
    "forward": "deepntk.forward(p, X, backend={backend!r})",
    "ntk": "deepntk.scaled_ntk(p, X, backend={backend!r})",
    "gradients": "deepntk.loss_and_gradients(p, X, X[:, :1], backend={backend!r})",
}


def cold_start(backend: str = "numba", on_step=None) -> dict:
    """Seconds of each first call (forward, NTK, gradients) on a fresh install: each in a new process with an
    empty Numba cache, so it includes the compilation a newcomer's first command pays; also `import deepntk`.
    `on_step(done, total)` reports each call."""
    import os
    import subprocess
    import sys
    import tempfile

    script = ("import time; t0 = time.perf_counter(); import numpy as np, deepntk; t1 = time.perf_counter(); "
              "p = deepntk.init_params(deepntk.MLP(2, 1, 100, 5.0), seed=0); "
              "X = np.random.default_rng(0).uniform(0.1, 1, (8, 2)); t2 = time.perf_counter(); {call}; "
              "print(t1 - t0, time.perf_counter() - t2)")
    report = {}
    step = _stepper(on_step, len(COLD_START_CALLS))
    for name, call in COLD_START_CALLS.items():
        with tempfile.TemporaryDirectory() as cache:
            # Generated kernel sources (backends/numba_width_kernels.py) start from nothing too.
            env = {**os.environ, "NUMBA_CACHE_DIR": cache, "DEEPNTK_KERNEL_DIR": os.path.join(cache, "kernels")}
            done = subprocess.run([sys.executable, "-c", script.format(call=call.format(backend=backend))], env=env,
                                  capture_output=True, text=True, check=True)
        import_s, call_s = (float(v) for v in done.stdout.split()[-2:])
        report[name] = {"first_call_s": call_s, "import_s": import_s}
        step()
    return report
