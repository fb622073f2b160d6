"""`deepntk simulate`: finite-depth scaled NTK at initialization vs the infinite-depth limit (paper Fig. 3)."""

from __future__ import annotations

import os
import time

import click

from deepntk.cli.common import CommandError, backend_option, comma_list, progress, quiet_option, user_errors
from deepntk.engine.convergence import ConvergenceConfig, run_convergence
from deepntk.engine.results import ensure_writable_folder, environment, write_json

DEFAULT_DEPTHS = {"mlp": "100,300,1000,3000,10000", "cnn": "100,300,1000,3000"}
DEFAULT_POINTS = {"mlp": 200, "cnn": 6}


@click.command("simulate")
@click.option("--arch", type=click.Choice(["mlp", "cnn"]), default="mlp", show_default=True)
@click.option("--depths", default=None, help=f"Comma-separated depths L [mlp: {DEFAULT_DEPTHS['mlp']}; "
              f"cnn: {DEFAULT_DEPTHS['cnn']}].")
@click.option("--C-L", "C_L", default="L^2", show_default=True,
              help="C_L as a rule in L (L^2, 5L, 0.5*L^1.5), a constant (5), or one value per depth (5,5e4).")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="Networks per depth.")
@click.option("--first-seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--points", type=click.IntRange(min=1), default=None,
              help="MLP: arc points of Fig. 3 [200]; CNN: random images [6].")
@click.option("--rho", type=float, default=1.0, show_default=True)
@click.option("--beta", type=float, default=1.0, show_default=True)
@click.option("--outputs", type=click.IntRange(min=1), default=1, show_default=True, help="Outputs k (d_out).")
@click.option("--in-channels", type=click.IntRange(min=1), default=1, show_default=True, help="CNN input channels.")
@click.option("--size", type=click.IntRange(min=1), default=5, show_default=True, help="CNN image side.")
@click.option("--filter-size", type=click.IntRange(min=1), default=3, show_default=True, help="CNN filter side.")
@click.option("--pool", type=click.IntRange(min=1), default=1, show_default=True, help="CNN fixed input pool.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@backend_option
@click.option("-o", "--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Results folder [deepntk-results/simulate-<arch>-<time>].")
@click.option("--resume", is_flag=True, help="Reuse depths already stored in --out with the same settings.")
@click.option("--train", "train_too", is_flag=True,
              help="Fig. 3 complete: also train each network (full-batch GD, MSELoss, lr = 1/(4·L·C_L²)) on "
                   "y = x₁x₂ and compare the kernel before and after training.")
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True, help="GD steps with --train.")
@quiet_option
def command(arch, depths, C_L, seeds, first_seed, points, rho, beta, outputs, in_channels, size, filter_size, pool,
            dtype, backend, out_dir, resume, train_too, steps, quiet):
    """Scaled NTK at initialization vs its infinite-depth limit, over depths and seeds.

    With no options: the paper's Fig. 3 kernel Θ̃(x₀, x(γ)) on 200 arc points, at L = 100 … 10000 with
    C_L = L², 5 seeds per depth. Prints, per depth, the mean and max relative error against the limit
    Θ̃^∞ and against the finite-(L, C_L) expectation, and the fitted error-vs-depth slope (≈ −½ expected).
    """
    from deepntk.backends.registry import get_backend

    if resume and out_dir is None:
        raise CommandError("--resume needs --out, the folder of the run to resume")
    if train_too:
        if arch != "mlp":
            raise CommandError("--train runs the Fig. 3 MLP experiment; use deepntk train for the CNN")
        return _simulate_training(depths or DEFAULT_DEPTHS["mlp"], C_L, seeds, steps, backend, out_dir, quiet)
    with user_errors():
        config = ConvergenceConfig(arch=arch, depths=tuple(comma_list(depths or DEFAULT_DEPTHS[arch], "--depths")), C_L=C_L,
                                   seeds=seeds, first_seed=first_seed, points=points or DEFAULT_POINTS[arch],
                                   rho=rho, beta=beta, dtype=dtype, backend=backend, in_channels=in_channels,
                                   size=size, outputs=outputs, filter_size=filter_size, pool=pool)
        backend_name = get_backend(backend).name
        out_dir = out_dir or os.path.join("deepntk-results", f"simulate-{arch}-{time.strftime('%Y%m%d-%H%M%S')}")
        ensure_writable_folder(out_dir)

    what = "Θ̃(x₀, x(γ)) on the Fig. 3 arc" if arch == "mlp" else f"Gram of {config.points} random images"
    click.echo(f"deepntk simulate: {arch.upper()} {what}; C_L = {C_L}; {seeds} seeds; backend {backend_name}; "
               f"{dtype}")
    header = (f"{'L':>7} {'C_L':>10} {'seeds':>5} {'err vs limit':>13} {'max':>9} "
              f"{'err vs E[Θ̃]':>13} {'max':>9} {'time s':>7}")
    click.echo(header)
    bar = progress(len(config.depths) * seeds, "networks", quiet)

    def on_depth(r):
        bar.clear()
        click.echo(f"{r.depth:>7} {r.C_L:>10.4g} {len(r.seeds):>5} {r.mean_error_limit:>13.3e} "
                   f"{r.max_error_limit:>9.2e} {r.mean_error_expected:>13.3e} {r.max_error_expected:>9.2e} "
                   f"{r.seconds:>7.2f}")

    started = time.perf_counter()
    with user_errors():
        results, slope, se = run_convergence(config, out_dir, resume, on_seed=bar.update, on_depth=on_depth)
    bar.close()
    if len(results) >= 2:
        ci = f" ± {1.96 * se:.2f} (95%)" if se == se else ""
        click.echo(f"fitted slope of mean error vs limit against L: {slope:+.3f}{ci}  (theory: −0.5 while the "
                   f"1/C_L² bias is negligible)")
    write_json(os.path.join(out_dir, "manifest.json"),
               {"command": "simulate", "config": config.key(), "backend": backend_name,
                "seconds": time.perf_counter() - started, "per_depth_seconds": {r.depth: r.seconds for r in results},
                "environment": environment(), "files": ["results.json", "arrays.npz", "manifest.json"] +
                [f"depth-{r.depth}.npz" for r in results]})
    click.echo(f"results in {out_dir}")


def _simulate_training(depths, C_L, seeds, steps, backend, out_dir, quiet):
    """Fig. 3 complete: kernel at init and after training, kernel drift and fit, per depth over seeds."""
    import numpy as np

    from deepntk.engine.convergence import C_L_values
    from deepntk.engine.experiments import fig3_training

    with user_errors():
        depth_list = comma_list(depths, "--depths")
        pairs = list(zip(depth_list, C_L_values(C_L, depth_list)))
        out_dir = out_dir or os.path.join("deepntk-results", f"simulate-train-{time.strftime('%Y%m%d-%H%M%S')}")
        ensure_writable_folder(out_dir)
        bar = progress(len(pairs) * seeds, "networks", quiet)
        result = fig3_training(pairs, seeds, steps, backend, on_seed=bar.update)
        bar.close()
    limit = np.asarray(result["limit"])
    click.echo(f"Fig. 3 with training: {steps} GD steps (MSELoss, lr = 1/(4·L·C_L²)), {seeds} seeds")
    click.echo(f"{'L':>7} {'C_L':>10} {'init vs limit':>14} {'trained vs limit':>17} {'kernel drift':>13} "
               f"{'fit RMSE':>10} {'time s':>7}")
    for row in result["depths"]:
        k0, kt = np.asarray(row["kernel_init"]), np.asarray(row["kernel_trained"])
        rmse = np.mean([np.sqrt(np.mean((np.asarray(f) - result["target"]) ** 2)) for f in row["fit"]])
        click.echo(f"{row['depth']:>7} {row['C_L']:>10.4g} {np.mean(np.abs(k0 - limit) / limit):>14.3e} "
                   f"{np.mean(np.abs(kt - limit) / limit):>17.3e} {np.mean(row['kernel_drift']):>13.3e} "
                   f"{rmse:>10.3e} {row['seconds']:>7.1f}")
    write_json(os.path.join(out_dir, "results.json"), {"experiment": "fig3-training", **result})
    write_json(os.path.join(out_dir, "manifest.json"), {"command": "simulate --train", "C_L": C_L, "seeds": seeds,
                                                        "steps": steps, "backend": backend,
                                                        "environment": environment()})
    click.echo(f"results in {out_dir}")
