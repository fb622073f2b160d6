"""`deepntk bench`: backend and peer timings, ratios, and fractions of this machine's float64 matmul peak."""

from __future__ import annotations

import click

from .common import (CommandError, check_output_path, comma_list, overwrite_file_option, progress, quiet_option,
                     user_errors)


@click.command("bench")
@click.option("--backends", default=None, help="Comma-separated deepntk backends [every available one].")
@click.option("--peers", default="torch,jax",
              help="Comma-separated peers to time when installed: torch, torch-cuda, jax; 'none' for none.")
@click.option("--workloads", default=None, help="Only workloads whose name contains one of these (comma-separated); "
              "'scale' runs the Dask scale-out benchmark instead (the distributed extra), 'cnn-limit' the CNN limit "
              "kernel's rates (NumPy reference vs the fused Numba kernel), 'solvers' the iterative solvers on "
              "8,333 MNIST images (needs --data-dir), 'wide-limit' the wide MLP's infinite-width NTK Gram (fused Numba pass vs NumPy path, "
              "fraction of the machine's limit), 'ensembles' E = 10 networks in one call against 10 single "
              "calls, 'cold-start' each first call in a fresh process with an empty Numba cache.")
@click.option("--mnist-gram", type=click.IntRange(min=1), default=None,
              help="With --workloads scale: also the MLP limit Gram of this many MNIST training images into Zarr.")
@click.option("--data-dir", default=None,
              help="With --mnist-gram or --workloads cnn-limit|solvers|wide-limit: the MNIST IDX folder "
              "[$DEEPNTK_DATA].")
@click.option("--reference", default="numpy", show_default=True,
              help="Implementation every result is checked against (always run, shown only if also selected).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Timed calls after the first.")
@click.option("--quick", is_flag=True, help="Smaller depths (L = 1000 MLP, 200 CNN) for a fast look.")
@click.option("--fig3-full", is_flag=True,
              help="Also time Fig. 3 at full settings (L = 100 and 10000, 10 seeds, 2000 GD steps, kernels before/after).")
@click.option("--fig3-backend", default=None,
              help="Backend for --fig3-full [the deepntk backend with the fastest Fig. 3 GD step in this run].")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False), help="Also write results as JSON.")
@overwrite_file_option
@quiet_option
def command(backends, peers, workloads, mnist_gram, data_dir, reference, repeats, quick, fig3_full, fig3_backend, output,
            overwrite, quiet):
    """Time the backends (and peers, when installed) on the paper's workloads, in one run.

    Workloads: (a) Fig. 3 NTK Gram (MLP d_in=2, L=10000, 200 arc points, against themselves and against x₀),
    (b) one full-batch GD step on those points, (c) MLP Gram and GD step at N=16 and N=512, (d) CNN (7×7,
    3 channels, L=1000) Gram and GD step at N=64. Prints medians, ratios against numpy and numba, and useful
    FLOP/s as a fraction of the measured float64 matmul peak.
    """
    from ..backends.registry import availability, backend_names, get_backend
    from ..engine.experiments.benchmark import (describe_machine, fig3_full_settings, matmul_peak, run_benchmark,
                                                standard_workloads)
    from ..engine.experiments.peers import PEERS, why_not_run

    check_output_path(output, overwrite=overwrite)
    if workloads is not None and workloads.strip() == "scale":
        return _scale(mnist_gram, data_dir, output, quiet)
    if workloads is not None and workloads.strip() == "cnn-limit":
        return _cnn_limit(data_dir, output, quiet)
    if workloads is not None and workloads.strip() == "solvers":
        return _solvers(data_dir, output, quiet)
    if workloads is not None and workloads.strip() == "wide-limit":
        return _wide_limit(data_dir, output, quiet)
    if workloads is not None and workloads.strip() in ("ensembles", "cold-start"):
        with user_errors():
            backend = get_backend(comma_list(backends, "--backends", str.strip)[0] if backends else None).name
        return (_ensembles if workloads.strip() == "ensembles" else _cold_start)(backend, quick, repeats, output,
                                                                                 quiet)
    if backends is None:
        chosen = [n for n in backend_names() if availability(n)[0]]
    else:
        chosen = comma_list(backends, "--backends", str.strip)
        with user_errors():
            for name in chosen:
                get_backend(name)
    peer_names = [] if peers.strip().lower() == "none" else comma_list(peers, "--peers", str.strip)
    for name in peer_names:
        if name not in PEERS:
            raise CommandError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    not_run = {name: reason for name in peer_names if (reason := why_not_run(name)) is not None}
    peer_names = [name for name in peer_names if name not in not_run]
    selected = standard_workloads(quick)
    if workloads:
        wanted = comma_list(workloads, "--workloads", str.strip)
        selected = [w for w in selected if any(part in w.name for part in wanted)]
        if not selected:
            raise CommandError(f"no workload matches {workloads!r}")

    peak = matmul_peak()
    click.echo(f"float64 matmul peak of this machine: {peak / 1e9:.1f} GFLOP/s ({describe_machine()})")
    header = (f"{'workload':<20} {'impl':<11} {'first s':>8} {'median s':>9} {'vs numpy':>9} {'vs numba':>9} "
              f"{'GFLOP/s':>8} {'%peak':>6} {'us/layer':>9} {'rel err':>8}")
    click.echo(header)
    implementations = chosen + peer_names
    medians = {}

    def on_result(t):
        medians[(t.workload, t.implementation)] = t.median

        def ratio(other):
            base = medians.get((t.workload, other))
            return f"{base / t.median:>8.2f}x" if base and t.median == t.median else f"{'-':>9}"

        bar.clear()
        rate = t.flops / t.median if t.median == t.median else float("nan")
        line = (f"{t.workload:<20} {t.implementation:<11} {t.first_call:>8.3f} {t.median:>9.4f} {ratio('numpy')} "
                f"{ratio('numba')} {rate / 1e9:>8.2f} {100 * rate / peak:>5.1f}% {t.median / t.depth * 1e6:>9.3f} "
                f"{t.rel_error:>8.1e}")
        click.echo(line + (f"  {t.note}" if t.note else ""))

    with user_errors(), progress(None, "timed calls", quiet) as bar:
        get_backend(reference)
        timings = run_benchmark(selected, implementations, repeats, on_result=on_result, reference=reference,
                                on_step=bar.set)
    if not_run:
        click.echo("peers not run: " + "; ".join(f"{name} ({reason})" for name, reason in not_run.items()))
    report = {"matmul_peak_flops": peak, "timings": [t.__dict__ for t in timings], "peers_not_run": not_run}
    if fig3_full:
        gd_times = {t.implementation: t.median for t in timings
                    if t.workload == "fig3-gd-step-200" and t.implementation in chosen and t.median == t.median}
        backend = fig3_backend or (min(gd_times, key=gd_times.get) if gd_times else chosen[0])
        bar = progress(20, "fig3 seeds", quiet)
        with user_errors():
            fig3 = fig3_full_settings(backend, on_seed=bar.update)
        bar.close()
        report["fig3_full"] = {"backend": backend, **fig3}
        click.echo(f"Fig. 3 full settings on {backend}: {fig3['seconds']:.1f} s total")
        for L, row in fig3["depths"].items():
            click.echo(f"  L = {L:>6}, C_L = {row['C_L']:g}: {row['seconds']:.1f} s, kernel drift "
                       f"{row['kernel_drift_mean']:.2e}, final MSE {row['final_mse_mean']:.2e}")
    _write_report(output, report)


def _scale(mnist_gram, data_dir, output, quiet):
    """Dask workers on this machine: 1 vs 2 workers, per-task overhead, and optionally a full-MNIST Gram."""
    from ..engine.experiments.scale import scale_benchmark

    with user_errors():
        mnist = None
        if mnist_gram:
            from ..engine.architectures import MLP
            from ..engine.experiments.datasets import load_dataset

            data = load_dataset("mnist", MLP, data_dir=data_dir)
            if len(data.X_train) < mnist_gram:
                raise CommandError(f"--mnist-gram {mnist_gram}: only {len(data.X_train)} training images are there")
            mnist = data.X_train[:mnist_gram]
        with progress(None, "scale-out measurements", quiet) as bar:
            report = scale_benchmark(mnist, on_step=bar.set)
    speedup, overhead = report["speedup"], report["overhead"]
    click.echo(f"{speedup['workload']}: 1 worker {speedup['seconds_1_worker']:.2f} s, 2 workers "
               f"{speedup['seconds_2_workers']:.2f} s, speed-up {speedup['speedup']:.2f}× ({report['cpus']} CPUs)")
    click.echo(f"{overhead['workload']}: {overhead['seconds']:.2f} s, {overhead['seconds_per_task']:.2f} s per task, "
               f"scheduling overhead {100 * overhead['overhead']:.1f}% between tasks "
               f"({100 * overhead['outside_tasks']:.1f}% of the workers' wall time outside tasks)")
    if "mnist" in report:
        m = report["mnist"]
        click.echo(f"{m['workload']}: {m['seconds']:.1f} s, {m['gflops']:.1f} GFLOP/s, "
                   f"{m['bytes_written'] / 2**30:.2f} GiB written, {m['bytes_on_disk'] / 2**30:.2f} GiB on disk, "
                   f"peak {m['peak_worker_bytes'] / 2**30:.2f} GiB resident per worker")
    _write_report(output, report)


def _wide_limit(data_dir, output, quiet):
    """Gram entries per second of the wide MLP's NTK, fused vs NumPy, and the fraction of the machine's limit."""
    from ..engine.experiments.benchmark import describe_machine, wide_limit_rates

    with user_errors(), progress(None, "timed Grams", quiet) as bar:
        report = wide_limit_rates(data_dir=data_dir, on_step=bar.set)
    click.echo(f"wide MLP's NTK Θ^L Gram (σ_b² = 0, the depth map's table) on {describe_machine()}")
    click.echo(f"{'inputs':<8} {'L':>6} {'pairs':>9} {'numba pairs/s':>14} {'numpy pairs/s':>14} {'speed-up':>9} "
               f"{'limit s':>8} {'of limit':>9}")
    for row in report["rows"]:
        click.echo(f"{row['inputs']:<8} {row['depth']:>6} {row['pairs']:>9} {row['numba']['pairs_per_second']:>14.4g} "
                   f"{row['numpy']['pairs_per_second']:>14.4g} {row['speedup']:>8.1f}× {row['limit_seconds']:>8.3f} "
                   f"{row['fraction_of_limit']:>8.1%}")
    click.echo(f"limit: X1·X2ᵀ at the measured matmul peak ({report['matmul_peak_flops'] / 1e9:.1f} GFLOP/s) plus "
               f"each pair's arccos, log and depth-map recurrence at their rate on in-cache cosines of the set ("
               + ", ".join(f"{row['inputs']} {row['pair_map_per_second']:.3g}/s" for row in report["rows"])
               + "), every core")
    if not any(row["inputs"] == "MNIST" for row in report["rows"]):
        click.echo("no MNIST row: give --data-dir (or set DEEPNTK_DATA)")
    _write_report(output, {"wide_limit": report})


def _cnn_limit(data_dir, output, quiet):
    """Pairs and arc-cosine evaluations per second of the CNN limit kernel, reference vs fused."""
    from ..engine.experiments.benchmark import cnn_limit_rates, describe_machine

    with user_errors(), progress(None, "timed Grams", quiet) as bar:
        report = cnn_limit_rates(data_dir=data_dir, on_step=bar.set)
    bound = report["root_bound_per_second"]
    click.echo(f"CNN limit kernel's pixel-pair sum on {describe_machine()}")
    click.echo(f"{'images':<15} {'Gram':<9} {'κ form':<8} {'pairs':>8} {'numpy pairs/s':>14} {'numba pairs/s':>14} "
               f"{'speed-up':>9} {'κ evaluated':>12} {'κ/s (numba)':>12} {'of bound':>9} {'of κ loop':>10} "
               f"{'analytic':>9}")
    for row in report["rows"]:
        click.echo(f"{row['image']:<15} {row['gram']:<9} {row['polynomial']:<8} {row['pairs']:>8.0f} "
                   f"{row['numpy']['pairs_per_second']:>14.4g} "
                   f"{row['numba']['pairs_per_second']:>14.4g} {row['speedup']:>8.1f}× "
                   f"{row['evaluated_fraction']:>12.0%} {row['numba']['arccos_per_second']:>12.4g} "
                   f"{row['fraction_of_bound']:>8.1%} {row['fraction_of_kappa_loop']:>9.1%} "
                   f"{row['analytic_over_numba']:>8.2f}×")
        if "cupy" in row:
            click.echo(f"{'':<15} on the CUDA device: {row['cupy']['pairs_per_second']:.4g} pairs/s, "
                       f"{row['cupy']['arccos_per_second']:.4g} κ/s, {row['cupy_speedup_over_numba']:.1f}× numba")
    click.echo(f"bound: {bound:.3g} square roots/s on every core (one per κ); κ loop: "
               f"{report['kappa_loop_per_second']:.3g}/s, the kernel's κ arithmetic alone on in-cache arrays "
               f"(full polynomial)")
    click.echo("uniform: random images, default scales; MNIST: Table 1's CNN scales, whose correlations are all "
               "≥ 7/8 (κ form 'near one': the shorter polynomial); analytic: deepntk.analytic.cnn_limit_kernel "
               "called without pair_sum, its time over numba's")
    if not any("MNIST" in row["image"] for row in report["rows"]):
        click.echo("no MNIST rows: give --data-dir (or set DEEPNTK_DATA)")
    _write_report(output, {"cnn_limit": report})


def _ensembles(backend, quick, repeats, output, quiet):
    """E = 10 networks as one ensemble call against 10 single calls, per standard workload."""
    from ..engine.experiments.benchmark import ensemble_rates

    click.echo(f"{'workload':<20} {'10 single calls s':>18} {'ensemble of 10 s':>17} {'speed-up':>9} {'rel err':>8}"
               f"   (backend {backend})")
    with user_errors(), progress(None, "workloads", quiet) as bar:
        rows = ensemble_rates(backend, quick=quick, repeats=repeats, on_step=bar.set)
    for row in rows:
        click.echo(f"{row['workload']:<20} {row['single_calls_s']:>18.4f} {row['ensemble_s']:>17.4f} "
                   f"{row['speedup']:>8.2f}x {row['rel_error']:>8.1e}")
    _write_report(output, {"backend": backend, "ensembles": rows})


def _cold_start(backend, quick, repeats, output, quiet):
    """Each first call in a fresh process with an empty Numba cache (what a newcomer's first command pays)."""
    from ..engine.experiments.benchmark import cold_start

    with user_errors(), progress(None, "fresh processes", quiet) as bar:
        report = cold_start(backend, on_step=bar.set)
    for name, row in report.items():
        click.echo(f"first {name:<10} {row['first_call_s']:>6.2f} s   (import deepntk {row['import_s']:.2f} s; "
                   f"backend {backend}, empty Numba cache)")
    _write_report(output, {"backend": backend, "cold_start": report})


def _solvers(data_dir, output, quiet):
    """The iterative solvers at N = 8,333 MNIST images: time, iterations, residual, memory, against dense."""
    from ..engine.experiments.benchmark import solver_rates
    from ..base.memory import format_bytes

    with user_errors(), progress(None, "stages", quiet) as bar:
        report = solver_rates(data_dir, on_step=bar.set)
    click.echo(f"MLP limit Gram of {report['train_images']} MNIST images ({format_bytes(report['gram_bytes'])}) "
               f"and {report['test_images']} test images: {report['gram_seconds']:.1f} s")
    click.echo(f"{'solver':<26} {'t':>9} {'iterations':>10} {'residual':>9} {'seconds':>8} {'memory':>10} "
               f"{'test acc':>8}")
    for row in report["rows"]:
        click.echo(f"{row['solver']:<26} {row['t']:>9.3g} {row['iterations']:>10} {row['residual']:>9.1e} "
                   f"{row['seconds']:>8.1f} {format_bytes(row['peak_bytes']):>10} {row['test_accuracy']:>8.4f}")
    dense = report["dense"]
    click.echo(f"{'dense eigendecomposition':<26} {dense['t']:>9.3g} {'':>10} {'':>9} {dense['seconds']:>8.1f} "
               f"{format_bytes(dense['peak_bytes']):>10} {dense['test_accuracy']:>8.4f}   (flow vs dense "
               f"{dense['flow_vs_dense']:.1e})")
    _write_report(output, {"solvers": report})


def _write_report(output, report):
    if output:
        import sys

        from ..engine.experiments.benchmark import machine
        from ..engine.results import environment, write_json

        env = environment()  # the date and versions a quoted number needs beside it, the peers' included
        env["libraries"].update({name: getattr(sys.modules[name], "__version__", "?") for name in ("torch", "jax")
                                 if name in sys.modules})
        write_json(output, {"machine": machine(), "environment": env, **report})
        click.echo(f"wrote {output}")
