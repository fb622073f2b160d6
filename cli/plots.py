"""PNG figures for the CLI's results (the `plot` extra; matplotlib is imported only here)."""

from __future__ import annotations

from deepntk.cli.common import CommandError


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("plots need matplotlib: pip install 'deepntk[plot]'") from None
    return plt


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
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def spectrum_plot(rows, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        ax.semilogy(range(1, len(r.eigenvalues) + 1), [max(e, 1e-300) for e in r.eigenvalues],
                    label="limit" if r.depth is None else f"L = {r.depth}", lw=2 if r.depth is None else 1)
    ax.set(xlabel="index", ylabel="eigenvalue", title="Spectrum of the scaled NTK Gram")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def trained_plot(rows, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    depths = [r.depth for r in rows]
    ax.loglog(depths, [r.gap_limit for r in rows], "o-", label="vs flow with Θ̃∞")
    ax.loglog(depths, [r.gap_empirical for r in rows], "s-", label="vs flow with Θ̃₀")
    ax.loglog(depths, [r.kernel_drift for r in rows], "^--", label="kernel drift")
    ax.set(xlabel="depth L", ylabel="relative gap", title="Trained network vs kernel-flow prediction")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
