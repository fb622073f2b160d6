"""PNG figures of the studies' results (the `plot` extra; matplotlib is imported only here, inside the functions).

Each figure has a builder `<name>_figure(...)` that returns the matplotlib Figure (what the tests inspect);
`save(figure, path)` writes any of them. An experiment's Result names its builder
(deepntk.engine.experiments.protocol.PlotResult). Every axes gets labelled axes, mathtext for the symbols, a
legend entry for every curve and a title that says what was computed and what was reduced."""

from __future__ import annotations

import re
import textwrap

import numpy as np

from ...base.errors import MissingExtraError

CHANCE_CLASSES = 10  # MNIST digits: the Fig. 4 runs classify 10 classes
THETA = r"\tilde\Theta"
FLOOR = r"$n\,\varepsilon\,\lambda_{\mathrm{max}}$"
NEEDS_MATPLOTLIB = "plots need matplotlib: pip install 'deepntk[plot]'"


def new_figure(panels: int = 1, width: float = 5.5, height: float = 4.2):
    """A Figure (no pyplot state) with `panels` axes side by side; (figure, list of axes)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError(NEEDS_MATPLOTLIB) from None
    fig = Figure(figsize=(width * panels, height))
    return fig, list(fig.subplots(1, panels, squeeze=False)[0])


def label_axes(ax, xlabel: str, ylabel: str, title: str, legend_size: float = 7, **legend):
    """Axis labels, title and a legend of every labelled curve."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=legend_size, **legend)


def save(fig, path):
    """Lay out and write as a 130-dpi PNG."""
    from ..results import record_file

    fig.tight_layout()
    record_file(path)  # a figure in a results folder is one of its run's files
    fig.savefig(path, dpi=130, bbox_inches="tight")  # "tight": legends placed outside the axes stay in


def rule_tex(rule: str) -> str:
    """A C_L rule as mathtext: "0.5*L^1.5" → "0.5 \\cdot L^{1.5}" (exponents braced, so all of "1.5" is raised)."""
    return re.sub(r"\^([0-9.eE+-]+)", r"^{\1}", str(rule)).replace("*", r" \cdot ")


def reduction_note(reduced: str, width: int = 80) -> str:
    """The experiment's 'reduced' entry as title lines: what the small scale changed, or the paper's settings."""
    if not reduced:
        return "the paper's settings"
    return textwrap.fill("small scale, reduced: " + reduced, width)


def joined_curves(x, curves):
    """Several curves over the same x as one polyline broken by NaN: one line, one legend entry per kind."""
    curves = np.atleast_2d(np.asarray(curves, dtype=float))
    gap = np.full((curves.shape[0], 1), np.nan)
    xs = np.concatenate([np.broadcast_to(np.asarray(x, dtype=float), curves.shape), gap], axis=1).ravel()
    return xs, np.concatenate([curves, gap], axis=1).ravel()


def depth_figure(rows, fits, seeds=None, points=None):
    """Error of Θ̃ against E Θ̃ (with 95% intervals over seeds) and against Θ̃^∞ per C_L rule, with the theory's
    L^{−1/2} rate drawn through each rule's first point. Rules differ in colour and marker (filled, hollow):
    their fluctuations can coincide."""
    fig, (ax,) = new_figure(height=5.6)
    handles = []
    for i, rule in enumerate(fits):
        look = dict(color=f"C{i}", marker="os^vD"[i % 5], ms=6 + 2 * (i % 2), mfc="none" if i % 2 else None)
        mine = [r for r in rows if r.rule == rule]
        depths = np.array([r.depth for r in mine], dtype=float)
        expected = [r.error_expected for r in mine]
        name = f"$C_L = {rule_tex(rule)}$"
        below_above = [[r.error_expected - r.error_expected_interval[0] for r in mine],
                       [r.error_expected_interval[1] - r.error_expected for r in mine]]  # the interval is asymmetric
        handles.append(ax.errorbar(depths, expected, yerr=below_above, capsize=3, **look,
                                   label=rf"{name}: vs $\mathbb{{E}}\,{THETA}$ (fitted slope "
                                         f"{fits[rule]['slope']:+.2f} ± {fits[rule]['slope_ci']:.2f}, 95%)"))
        handles += ax.plot(depths, [r.error_limit for r in mine], ls="--", **{**look, "marker": "x", "mfc": None},
                           label=rf"{name}: vs ${THETA}^\infty$")
        handles += ax.plot(depths, expected[0] * (depths / depths[0]) ** -0.5, ls=":", color=look["color"], lw=1.2,
                           label=rf"$\propto L^{{-1/2}}$ (theory) through {name}'s first point")
    ax.set(xscale="log", yscale="log")
    what = ", ".join(part for part in (seeds and f"{seeds} seeds per depth", points and f"{points} arc points") if part)
    label_axes(ax, "depth $L$", rf"mean relative error of ${THETA}$",
               "Scaled NTK at initialization vs theory" + (f"\n{what}; bars: 95% interval over seeds" if what else ""),
               handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
    return fig


SPECTRUM_STYLES = [dict(marker="o"), dict(marker="s"), dict(marker="^"), dict(marker="v"), dict(marker="D")]


def spectrum_figure(rows, rule=None, points=None, seed=None):
    """The eigenvalues above the float64 floor (log scale) per kernel, and the floor n·ε·λ_max: dashed, one line
    shared where the floors are within a factor 1.5 (indistinguishable on the axis), else one per kernel."""
    fig, (ax,) = new_figure(height=4.6)
    finite = 0
    colours = {}
    for r in rows:
        values = np.asarray(r.eigenvalues[:r.resolved])
        index = np.arange(1, len(values) + 1)
        name = "limit" if r.depth is None else f"L = {r.depth}"
        label = (rf"limit ${THETA}^\infty$" if r.depth is None else f"$L = {r.depth}$") + \
            f": {r.resolved} of {len(r.eigenvalues)} above the floor"
        if r.depth is None:
            line, = ax.semilogy(index, values, color="k", lw=2.4, alpha=0.6, label=label)
        else:
            line, = ax.semilogy(index, values, lw=1, ms=4, markevery=3, mfc="none",
                                **SPECTRUM_STYLES[finite % len(SPECTRUM_STYLES)], label=label)
            finite += 1
        colours[name] = line.get_color()
    floors = [r.floor for r in rows]
    if max(floors) <= 1.5 * min(floors):
        spread = f"{min(floors):.1e}" if max(floors) == min(floors) else f"{min(floors):.1e} … {max(floors):.1e}"
        ax.axhline(max(floors), color="0.3", ls="--", lw=1, label=f"float64 floor {FLOOR} ({spread})")
    else:
        for r, (name, colour) in zip(rows, colours.items()):
            ax.axhline(r.floor, color=colour, ls="--", lw=1,
                       label=f"float64 floor {FLOOR} of {name} ({r.floor:.1e})")
    n = len(rows[0].eigenvalues)
    networks = ", ".join(part for part in (seed is not None and f"one network (seed {seed}) per depth",
                                           rule and f"$C_L = {rule_tex(rule)}$") if part)
    label_axes(ax, r"index $i$ (largest first)", r"eigenvalue $\lambda_i$",
               f"Spectrum of the scaled NTK Gram on {points or n} Fig. 3 arc points"
               + (f"\n{networks}" if networks else "") + "\nonly eigenvalues above the float64 floor are drawn")
    return fig


def trained_figure(rows, rule=None, seed=None):
    """Relative gap of the trained network's outputs to the kernel-flow predictions, and the kernel drift."""
    fig, (ax,) = new_figure()
    depths = [r.depth for r in rows]
    ax.loglog(depths, [r.gap_limit for r in rows], "o-", label=rf"$f_T$ vs flow with ${THETA}^\infty$")
    ax.loglog(depths, [r.gap_empirical for r in rows], "s-", label=rf"$f_T$ vs flow with ${THETA}_0$")
    ax.loglog(depths, [r.kernel_drift for r in rows], "^--",
              label=rf"kernel drift $\|{THETA}_T - {THETA}_0\| / \|{THETA}_0\|$")
    first = rows[0]
    setting = ", ".join(part for part in (seed is not None and f"one network (seed {seed}) per depth",
                                          rule and f"$C_L = {rule_tex(rule)}$") if part)
    label_axes(ax, "depth $L$", "relative gap / relative drift",
               f"Trained network vs kernel-flow prediction\n{first.steps} GD steps of η = {first.eta:g} "
               f"(flow time t = {first.t:g})" + (f"; {setting}" if setting else ""), legend_size=8)
    return fig


def fig3_figure(result):
    """Per depth, Θ̃(x₀, x(γ)) of every seed at init (solid) and after training (dotted, hollow markers: the two
    coincide at large depth), with the limit; last panel, the trained networks' fits against the target."""
    gamma = np.asarray(result["gamma"])
    rows = result["depths"]
    fig, axes = new_figure(len(rows) + 1, width=4.4, height=4.0)
    for ax, row in zip(axes, rows):
        seeds = len(row["kernel_init"])
        ax.plot(*joined_curves(gamma, row["kernel_init"]), color="tab:blue", lw=1, alpha=0.7,
                label=f"at initialization ({seeds} seeds)")
        ax.plot(*joined_curves(gamma, row["kernel_trained"]), color="tab:orange", lw=1.4, ls=":", marker="o",
                ms=3.5, mfc="none", markevery=17, label=f"after {row['steps']} GD steps ({seeds} seeds)")
        ax.plot(gamma, result["limit"], color="k", lw=1.3, ls="--", label=rf"limit ${THETA}^\infty$")
        label_axes(ax, r"$\gamma$", rf"${THETA}(x_0, x(\gamma))$", f"$L = {row['depth']}$, $C_L = {row['C_L']:g}$")
    ax = axes[-1]
    ax.plot(gamma, result["target"], "k", lw=1.5, label=r"target $y = x_1 x_2$")
    for row, style in zip(rows, ["--", "-.", ":", (0, (5, 1, 1, 1))] * len(rows)):
        ax.plot(*joined_curves(gamma, row["fit"]), ls=style, lw=1,
                label=f"network after training, $L = {row['depth']}$ ({len(row['fit'])} seeds)")
    label_axes(ax, r"$\gamma$", r"$f(x(\gamma))$", "fit after training")
    seeds = sorted({len(row["kernel_init"]) for row in rows})
    fig.suptitle(f"Fig. 3: scaled NTK at initialization and after training, {'/'.join(map(str, seeds))} seeds per "
                 f"depth\n{reduction_note(result.get('reduced', ''), 140)}", fontsize=9)
    return fig


FIG4_MARKERS = "os^vD<>ph*"


def fig4_figure(result):
    """Test accuracy over SGD steps per run, the diverged runs named in the legend, and chance level."""
    fig, (ax,) = new_figure(width=6.5, height=5.0)
    for i, run in enumerate(result["runs"]):
        if run["diverged"]:  # no curve: a legend entry (no data) says so
            ax.plot([], [], ls="none", marker="x", color="0.4", label=f"{run['run']}: diverged")
        else:
            paper = run.get("init") == "paper"
            # hollow markers shrinking run by run: runs stuck at the same accuracy stay visible, nested
            ax.plot(run["eval_step"], run["test_accuracy"], marker=FIG4_MARKERS[i % len(FIG4_MARKERS)],
                    ms=4 if paper else max(11 - 1.3 * i, 3), mfc=None if paper else "none", lw=2 if paper else 1,
                    label=run["run"])
    ax.axhline(1 / CHANCE_CLASSES, color="k", ls=":", lw=1, label=f"chance ({CHANCE_CLASSES} classes)")
    ax.set_ylim(0, 1)
    label_axes(ax, "SGD step", "test accuracy",
               f"Fig. 4: MNIST, depth {result['depth']}, paper init vs Kaiming-uniform\n"
               + reduction_note(result.get("reduced", "")))
    return fig


def fig5_figure(result):
    """σ(z^l)_last − C_L over the layers l < L of the trained network, its output at l = L, and the target."""
    fig, (ax,) = new_figure()
    values = result["carrier_minus_C"]
    L = len(values)
    ax.plot(range(1, L), values[:-1], lw=1, label=r"$\sigma(z^l)_{\mathrm{last}} - C_L$, $l < L$")
    ax.plot([L], [values[-1]], "*", ms=11, color="tab:red", label=r"output $f(x)$ at $l = L$")
    ax.axhline(result["target"], color="k", ls=":", label=r"target $y = x_1 x_2$")
    C_L = f", $C_L = {result['C_L']:g}$" if "C_L" in result else ""
    label_axes(ax, "layer $l$", r"$\sigma(z^l)_{\mathrm{last}} - C_L$",
               f"Fig. 5: per-layer accumulation after training, $L = {result['depth']}${C_L}\n"
               + reduction_note(result.get("reduced", "")), legend_size=8)
    return fig


def table1_predict_figure(result):
    """Test accuracy of the limit kernel's flow against flow time per network; the paper's trained accuracy at
    its flow time as a star, regression (t = ∞) as a dashed line, both explained by legend entries of their own."""
    from matplotlib.lines import Line2D

    fig, (ax,) = new_figure(width=6.5, height=4.6)
    for row in result["rows"]:
        times, acc = row["flow_times"][:-1], row["test_accuracy"][:-1]
        line, = ax.semilogx(times, acc, "o-", label=f"{row['run']}: limit kernel's flow ({row['train_images']} "
                                                     f"training, {row['test_images']} test images)")
        ax.axhline(row["regression_accuracy"], color=line.get_color(), ls="--", lw=0.8)
        ax.plot([row["paper_flow_time"]], [row["paper_accuracy"]], "*", ms=12, color=line.get_color())
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.4", ls="--", lw=0.8, label=r"limit kernel, regression ($t = \infty$)"),
                Line2D([], [], color="0.4", ls="none", marker="*", ms=12,
                       label="the paper's trained network, at its schedule's $t$")]
    train_size = result.get("train_size")
    ax.set_xlabel("flow time $t$")
    ax.set_ylabel("test accuracy")
    ax.set_title("Table 1 from the limit kernels: flow of the limit kernel vs flow time\n"
                 + ("every MNIST training image of each network's task" if train_size is None else
                    f"reduced: {train_size} MNIST training images per network"), fontsize=9)
    ax.legend(handles=handles, fontsize=7)
    return fig


DEPTH_STUDY_STYLE = {"wide-ntk": ("tab:red", "o", r"wide NTK $\Theta^L$"),
                     "wide-nngp": ("tab:orange", "s", r"wide NNGP $\Sigma^L$"),
                     "narrow-expected": ("tab:blue", "^", rf"deep narrow $\mathbb{{E}}\,{THETA}$ at $(L, C_L)$"),
                     "narrow-limit": ("tab:blue", None, rf"deep narrow ${THETA}^\infty$")}


def depth_study_figure(result):
    """MNIST test accuracy against depth (log axis) per kernel: regression (t = ∞) solid, flow dashed; the deep
    narrow limit Θ̃^∞ (depth-independent) as horizontal lines, and the majority vote dotted."""
    from matplotlib.lines import Line2D

    fig, (ax,) = new_figure(width=7.0, height=4.8)
    depths = result["depths"]
    for kernel in result["kernels"]:
        color, marker, label = DEPTH_STUDY_STYLE[kernel]
        rows = sorted((row for row in result["rows"] if row["kernel"] == kernel),
                      key=lambda row: -1 if row["depth"] is None else row["depth"])
        if not rows:
            continue
        if kernel == "narrow-limit":
            ax.axhline(rows[0]["regression_accuracy"], color=color, lw=1.2, alpha=0.6, label=label + ", regression")
            ax.axhline(rows[0]["flow_accuracy"], color=color, lw=1.2, ls="--", alpha=0.6, label=label + ", flow")
            continue
        x = [row["depth"] for row in rows]
        ax.semilogx(x, [row["regression_accuracy"] for row in rows], color=color, marker=marker, ms=5,
                    label=label + ", regression")
        ax.semilogx(x, [row["flow_accuracy"] for row in rows], color=color, marker=marker, ms=5, mfc="none",
                    ls="--", label=label + ", flow")
    ax.axhline(result["majority_accuracy"], color="k", ls=":", lw=1.2,
               label=f"majority vote (class {result['majority_class']})")
    if "inverse_norm_vote_accuracy" in result:
        ax.axhline(result["inverse_norm_vote_accuracy"], color="0.5", ls="-.", lw=1,
                   label=f"vote weighted by $1/|x|$ (class {result['inverse_norm_vote_class']})")
    ax.set_xscale("log")
    ax.set_xlim(min(depths) / 1.5, max(depths) * 1.5)
    ax.set_ylim(0, 1)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.4", label=r"regression ($t = \infty$)"),
                Line2D([], [], color="0.4", ls="--", label=f"flow ($t = {result['flow_time']:g}$, kernel / mean diagonal)")]
    label_axes(ax, "depth $L$ (wide: hidden layers; narrow: weight layers)", "MNIST test accuracy",
               f"Depth study: {result['train_images']} training, {result['test_images']} test images "
               f"(scale {result['scale']}); narrow $C_L = {result['C_L']:g}$"
               + ("" if result.get("complete", True) else " — unfinished run"),
               legend_size=7, handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig
