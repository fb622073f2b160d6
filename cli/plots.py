"""PNG figures for the CLI's results (the `plot` extra; matplotlib is imported only here)."""

from __future__ import annotations

import numpy as np

from deepntk.cli.common import CommandError


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("plots need matplotlib: pip install 'deepntk[plot]'") from None
    return plt


def save(fig, path):
    """Lay out, write as a 130-dpi PNG, and release the figure."""
    from deepntk.engine.results import record_file

    fig.tight_layout()
    record_file(path)  # a figure in a results folder is one of its run's files
    fig.savefig(path, dpi=130)
    pyplot().close(fig)


def depth_plot(rows, fits, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for rule in fits:
        mine = [r for r in rows if r.rule == rule]
        depths = [r.depth for r in mine]
        ax.errorbar(depths, [r.error_expected for r in mine], yerr=[r.error_expected_ci for r in mine], marker="o",
                    capsize=3, label=f"C_L = {rule}: vs E[Θ̃] (slope {fits[rule]['slope']:+.2f})")
        ax.plot(depths, [r.error_limit for r in mine], ls="--", marker="x", label=f"C_L = {rule}: vs Θ̃∞")
    ax.set(xscale="log", yscale="log", xlabel="depth L", ylabel="mean relative error",
           title="Scaled NTK at initialization vs theory")
    ax.legend(fontsize=7)
    save(fig, path)


def spectrum_plot(rows, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        ax.semilogy(range(1, len(r.eigenvalues) + 1), [max(e, 1e-300) for e in r.eigenvalues],
                    label="limit" if r.depth is None else f"L = {r.depth}", lw=2 if r.depth is None else 1)
    ax.set(xlabel="index", ylabel="eigenvalue", title="Spectrum of the scaled NTK Gram")
    ax.legend(fontsize=8)
    save(fig, path)


def trained_plot(rows, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    depths = [r.depth for r in rows]
    ax.loglog(depths, [r.gap_limit for r in rows], "o-", label="vs flow with Θ̃∞")
    ax.loglog(depths, [r.gap_empirical for r in rows], "s-", label="vs flow with Θ̃₀")
    ax.loglog(depths, [r.kernel_drift for r in rows], "^--", label="kernel drift")
    ax.set(xlabel="depth L", ylabel="relative gap", title="Trained network vs kernel-flow prediction")
    ax.legend(fontsize=8)
    save(fig, path)


def fig3_plot(result, path):
    plt = pyplot()
    gamma = np.asarray(result["gamma"])
    fig, axes = plt.subplots(1, len(result["depths"]) + 1, figsize=(4.2 * (len(result["depths"]) + 1), 3.6))
    for ax, row in zip(axes, result["depths"]):
        for k0, kt in zip(row["kernel_init"], row["kernel_trained"]):
            ax.plot(gamma, k0, color="tab:blue", alpha=0.5, lw=0.8)
            ax.plot(gamma, kt, color="tab:orange", alpha=0.5, lw=0.8, ls="--")
        ax.plot(gamma, result["limit"], color="k", lw=1.5, label="limit Θ̃∞")
        ax.plot([], [], color="tab:blue", label="init")
        ax.plot([], [], color="tab:orange", ls="--", label="after training")
        ax.set(title=f"L = {row['depth']}, C_L = {row['C_L']:g}", xlabel="γ", ylabel="Θ̃(x₀, x(γ))")
        ax.legend(fontsize=7)
    ax = axes[-1]
    ax.plot(gamma, result["target"], "k", lw=1.5, label="y = x₁x₂")
    for row in result["depths"]:
        ax.plot(gamma, row["fit"][0], ls="--", label=f"network, L = {row['depth']}")
    ax.set(title="fit after training", xlabel="γ")
    ax.legend(fontsize=7)
    save(fig, path)


def fig4_plot(result, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for run in result["runs"]:
        if not run["diverged"]:
            ax.plot(run["eval_step"], run["test_accuracy"], marker="o", label=run["run"])
    ax.set(xlabel="SGD step", ylabel="test accuracy", title=f"MNIST, depth {result['depth']}")
    ax.legend(fontsize=7)
    save(fig, path)


def fig5_plot(result, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    values = result["carrier_minus_C"]
    ax.plot(range(1, len(values) + 1), values, lw=1)
    ax.axhline(result["target"], color="k", ls=":", label="target y")
    ax.set(xlabel="layer l", ylabel="σ(z^l)_last − C_L", title=f"Per-layer accumulation, L = {result['depth']}")
    ax.legend()
    save(fig, path)


def table1_predict_plot(result, path):
    """Test accuracy of the limit kernel's flow against flow time per network; the paper's trained accuracy at
    its flow time as a marker, regression (t = ∞) as a dashed line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in result["rows"]:
        times, acc = row["flow_times"][:-1], row["test_accuracy"][:-1]
        line, = ax.semilogx(times, acc, "o-", label=f"{row['run']} (limit kernel, N = {row['train_images']})")
        ax.axhline(row["regression_accuracy"], color=line.get_color(), ls="--", lw=0.8)
        ax.plot([row["paper_flow_time"]], [row["paper_accuracy"]], "*", ms=12, color=line.get_color())
    ax.set_xlabel("flow time t (★: the paper's trained network at its schedule's t)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    save(fig, path)
