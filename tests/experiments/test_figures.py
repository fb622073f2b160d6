"""Every figure the CLI writes is readable: labelled axes, a title, rendered mathtext, a legend entry for every
curve, and the reference lines each figure promises (L^{-1/2}, chance level, the float64 floor).

Each figure is built from a small synthetic result shaped as the experiment code returns it
(engine/experiments/*.py), and inspected through matplotlib's API."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the figures need the plot extra (matplotlib), which is not installed")

from matplotlib.lines import Line2D  # noqa: E402

from deepntk.engine.experiments import figures  # noqa: E402
from deepntk.engine.experiments.compare import DepthRow, SpectrumRow, TrainedRow  # noqa: E402
from deepntk.engine.spectrum import resolve_spectrum  # noqa: E402


def legend_handles(legend):
    return getattr(legend, "legend_handles", None) or legend.legendHandles


def has_data(line) -> bool:
    return bool(np.isfinite(np.asarray(line.get_xydata(), dtype=float)).all(axis=1).any())


def style(line):
    return line.get_linestyle(), line.get_marker()


def assert_readable(fig):
    """Every axes: x and y labels, a title, a legend; every line with data named in the legend, by its own label,
    by its error-bar container's label, or (a proxy) by a legend entry of its style beside one of its colour.
    And the figure renders (mathtext that does not parse fails here)."""
    from matplotlib.colors import to_rgba

    fig.savefig(io.BytesIO(), format="png", dpi=40)
    for ax in fig.axes:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), f"unlabelled axis in {ax.get_title()!r}"
        assert ax.get_title().strip(), "an axes without a title"
        legend = ax.get_legend()
        assert legend is not None, f"no legend in {ax.get_title()!r}"
        texts = {t.get_text() for t in legend.get_texts()}
        handles = [h for h in legend_handles(legend) if isinstance(h, Line2D)]
        named = set()
        for container in ax.containers:
            if container.get_label() in texts:
                for child in container.get_children():
                    named.add(id(child))
        for line in ax.lines:
            if not has_data(line) or id(line) in named or line.get_label() in texts:
                continue
            same_style = any(style(h) == style(line) for h in handles)
            same_colour = any(to_rgba(h.get_color()) == to_rgba(line.get_color()) for h in handles)
            assert same_style and same_colour, (f"a curve ({style(line)}, colour {line.get_color()}) has no legend "
                                                f"entry in {ax.get_title()!r}")


def labelled(ax, text):
    """The lines whose legend label contains `text`."""
    return [line for line in ax.lines if text in line.get_label()]


# --- synthetic results, shaped as engine/experiments returns them --------------------------------------------------

def depth_rows():
    rng = np.random.default_rng(0)
    rows, fits = [], {}
    for rule in ("L^2", "5"):
        for L in (100, 300, 1000):
            e = 0.3 * L**-0.5 * (1 + 0.1 * rng.standard_normal())
            rows.append(DepthRow(rule, L, L**2 if rule == "L^2" else 5.0, 1.2 * e, (1.1 * e, 1.4 * e), e,
                                 (0.8 * e, 1.3 * e), 1e-4, 1e-5, 1e-4, 1e-4))
        fits[rule] = {"slope": -0.49, "slope_ci": 0.1, "slope_vs_limit": -0.45, "slope_vs_limit_ci": 0.12}
    return rows, fits


def spectrum_rows(n=30):
    """Limit and one network per depth; the L = 100 network's Gram has 8 eigenvalues of round-off size."""
    rows = []
    for depth, rank in ((None, n), (100, n - 8), (1000, n)):
        values = 100.0 * np.logspace(0, -9, n)
        values[rank:] = np.linspace(1e-14, -1e-14, n - rank)
        s = resolve_spectrum(values)
        rows.append(SpectrumRow(depth, s.eigenvalues.tolist(), s.floor, s.resolved, s.condition,
                                s.condition_is_lower_bound, 0.0 if depth is None else 0.01))
    return rows


def fig3_result(seeds=3, points=25, coincide=True):
    """reproduce fig3 / fig3_training: the deepest network's kernel after training equals the one at init."""
    gamma = np.linspace(0.1, 1.4, points)
    limit = 1 + np.cos(gamma)
    rng = np.random.default_rng(1)
    depths = []
    for L, C in ((100, 5.0), (10000, 5e4)):
        init = limit + 0.05 * rng.standard_normal((seeds, points))
        trained = init if (coincide and L == 10000) else init + 0.02
        fit = np.cos(gamma) * np.sin(gamma) + 0.01 * rng.standard_normal((seeds, points))
        depths.append({"depth": L, "C_L": C, "steps": 2000, "kernel_init": init.tolist(),
                       "kernel_trained": trained.tolist(), "fit": fit.tolist(),
                       "kernel_drift": [1e-3] * seeds, "seconds": 1.0})
    return {"experiment": "fig3", "scale": "small", "reduced": "L = 1000 with C_L = 500 instead of L = 10000; "
            "3 seeds instead of 10", "gamma": gamma.tolist(), "limit": limit.tolist(),
            "target": (np.cos(gamma) * np.sin(gamma)).tolist(), "depths": depths}


def fig4_result():
    steps = [20, 40, 60]
    runs = [{"run": "paper init", "init": "paper", "lr": 1e-3, "train_accuracy": [0.5, 0.7, 0.8],
             "test_accuracy": [0.5, 0.7, 0.8], "train_loss": [0.09, 0.08, 0.07], "eval_step": steps,
             "final_test_accuracy": 0.8, "diverged": False, "seconds": 1.0},
            {"run": "kaiming-uniform lr=0.01", "init": "kaiming-uniform", "lr": 1e-2, "train_accuracy": [0.1] * 3,
             "test_accuracy": [0.098, 0.1, 0.101], "train_loss": [0.1] * 3, "eval_step": steps,
             "final_test_accuracy": 0.101, "diverged": False, "seconds": 1.0},
            {"run": "kaiming-uniform lr=1", "init": "kaiming-uniform", "lr": 1.0, "diverged": True,
             "error": "loss is NaN", "final_test_accuracy": float("nan"), "seconds": 1.0}]
    return {"experiment": "fig4", "scale": "small", "reduced": "depth 100 instead of 1000; 5000 training images",
            "note": "", "depth": 100, "runs": runs}


def fig5_result(L=50):
    carrier = np.linspace(0, 0.43, L).tolist()
    return {"experiment": "fig5", "scale": "small", "reduced": "L = 1000 (C_L = 500) instead of 10000", "depth": L,
            "C_L": 500.0, "x": [0.5, 0.866], "carrier_minus_C": carrier, "output": carrier[-1], "target": 0.433}


def table1_predict_result(train_size=2000):
    rows = []
    for name, t_paper, acc in (("MLP", 2.3e4, 0.97), ("CNN", 8.0e3, 0.99)):
        times = [t_paper / 100, t_paper / 10, t_paper, float("inf")]
        accuracy = [0.8, 0.85, 0.9, 0.95]
        rows.append({"run": name, "task": "digits", "train_images": train_size, "test_images": 500, "note": "",
                     "flow_times": times, "test_accuracy": accuracy, "flow_accuracy": accuracy[-2],
                     "regression_accuracy": accuracy[-1], "paper_flow_time": t_paper, "paper_accuracy": acc,
                     "iterations": [10, 10, 10, 20], "residuals": [1e-7] * 4, "converged": [True] * 4,
                     "gram_seconds": 1.0, "solve_seconds": 1.0, "seconds": 2.0})
    return {"experiment": "table1-predict", "train_size": train_size, "test_size": 500, "tolerance": 1e-6,
            "max_iterations": 500, "nystrom_rank": 100, "store_dir": "grams", "rows": rows}


# --- the figures ---------------------------------------------------------------------------------------------------

def test_compare_depth_draws_the_inverse_square_root_reference():
    rows, fits = depth_rows()
    fig = figures.depth_figure(rows, fits, seeds=3, points=50)
    assert_readable(fig)
    ax, = fig.axes
    assert "$" in ax.get_ylabel() and r"\tilde\Theta" in ax.get_ylabel()
    assert "3 seeds" in ax.get_title()
    references = labelled(ax, "L^{-1/2}")
    assert len(references) == len(fits), "not one L^(-1/2) reference per C_L rule"
    anchors = []
    for line in references:
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        assert np.polyfit(np.log(x), np.log(y), 1)[0] == pytest.approx(-0.5)
        anchors.append(y[0])
    firsts = [next(r for r in rows if r.rule == rule).error_expected for rule in fits]
    assert sorted(anchors) == pytest.approx(sorted(firsts))  # each anchored at its rule's first point


def test_compare_spectrum_draws_only_resolved_eigenvalues_and_the_floor():
    rows = spectrum_rows()
    fig = figures.spectrum_figure(rows, rule="L^2", points=30, seed=0)
    assert_readable(fig)
    ax, = fig.axes
    floor = max(r.floor for r in rows)
    curves = [line for line in ax.lines if len(line.get_xdata()) > 2]
    assert len(curves) == len(rows)
    for line, row in zip(curves, rows):
        y = np.asarray(line.get_ydata())
        assert len(y) == row.resolved and np.all(y > row.floor), "an unresolved eigenvalue is drawn"
    assert [r.resolved for r in rows] == [30, 22, 30]
    floors = labelled(ax, "float64 floor")
    assert floors and all(line.get_linestyle() == "--" for line in floors)
    assert np.asarray(floors[0].get_ydata())[0] == pytest.approx(floor)
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] > floor / 1e3  # no axis down to denormals
    labels = [line.get_label() for line in curves]
    assert len(set(labels)) == len(labels) and any("limit" in label for label in labels)


def test_compare_trained_figure():
    rows = [TrainedRow(L, L**2, 300, 0.05, 15.0, 1e-3, 0.1 / L**0.5, 0.05 / L**0.5, 0.01 / L**0.5)
            for L in (100, 1000, 3000)]
    fig = figures.trained_figure(rows, rule="L^2", seed=0)
    assert_readable(fig)
    ax, = fig.axes
    assert any(r"\tilde\Theta^\infty" in line.get_label() for line in ax.lines)
    assert "seed 0" in ax.get_title() and "300 GD steps" in ax.get_title()


def test_fig3_init_and_trained_curves_are_told_apart_where_they_coincide():
    result = fig3_result()
    fig = figures.fig3_figure(result)
    assert_readable(fig)
    *kernel_panels, fit_panel = fig.axes
    assert len(kernel_panels) == 2
    for ax in kernel_panels:
        assert r"\tilde\Theta(x_0, x(\gamma))" in ax.get_ylabel() and ax.get_xlabel() == r"$\gamma$"
        init, = labelled(ax, "initialization")
        trained, = labelled(ax, "after")
        assert init.get_linestyle() != trained.get_linestyle(), "init and trained share a line style"
        assert init.get_marker() != trained.get_marker(), "init and trained share a marker"
        assert trained.get_marker() not in ("None", "", None, " ")
        assert labelled(ax, r"\tilde\Theta^\infty")
    deepest = kernel_panels[-1]  # here the curves coincide
    (init,), (trained,) = labelled(deepest, "initialization"), labelled(deepest, "after")
    np.testing.assert_array_equal(init.get_ydata(), trained.get_ydata())
    assert fit_panel.get_ylabel().strip() and "$" in fit_panel.get_ylabel()
    assert labelled(fit_panel, "target")
    suptitle = fig.get_suptitle() if hasattr(fig, "get_suptitle") else fig._suptitle.get_text()
    assert "3 seeds" in suptitle and "instead of" in suptitle


def test_fig4_says_it_is_the_small_reduction_and_draws_chance():
    fig = figures.fig4_figure(fig4_result())
    assert_readable(fig)
    ax, = fig.axes
    assert "small" in ax.get_title() and "depth 100 instead of 1000" in ax.get_title().replace("\n", " ")
    chance, = labelled(ax, "chance")
    assert np.allclose(chance.get_ydata(), 0.1) and chance.get_label() in {t.get_text() for t in
                                                                            ax.get_legend().get_texts()}
    assert any("kaiming-uniform lr=1" in t.get_text() and "diverged" in t.get_text()
               for t in ax.get_legend().get_texts())


def test_fig5_uses_mathtext():
    fig = figures.fig5_figure(fig5_result())
    assert_readable(fig)
    ax, = fig.axes
    assert ax.get_ylabel() == r"$\sigma(z^l)_{\mathrm{last}} - C_L$"
    assert "$L = 50$" in ax.get_title() and "instead of 10000" in ax.get_title()
    assert labelled(ax, "target")


def test_table1_predict_explains_the_regression_lines_and_stars():
    fig = figures.table1_predict_figure(table1_predict_result())
    assert_readable(fig)
    ax, = fig.axes
    legend = ax.get_legend()
    entries = dict(zip((t.get_text() for t in legend.get_texts()), legend_handles(legend)))
    assert any("regression" in text and handle.get_linestyle() == "--" for text, handle in entries.items())
    assert any("paper" in text and handle.get_marker() == "*" for text, handle in entries.items())
    assert "2000" in ax.get_title()
    assert len(ax.lines) == 3 * 2  # per network: flow curve, regression line, star


def test_compare_spectrum_draws_one_floor_per_kernel_where_the_floors_differ():
    rows = spectrum_rows()
    scaled = resolve_spectrum(1e3 * np.asarray(rows[1].eigenvalues))  # λ_max 1e3 times larger: floor too
    rows[1] = SpectrumRow(100, scaled.eigenvalues.tolist(), scaled.floor, scaled.resolved, scaled.condition,
                          scaled.condition_is_lower_bound, 0.01)
    fig = figures.spectrum_figure(rows, rule="L^2", points=30, seed=0)
    assert_readable(fig)
    ax, = fig.axes
    floors = labelled(ax, "float64 floor")
    assert sorted(np.asarray(line.get_ydata())[0] for line in floors) == pytest.approx(sorted(r.floor for r in rows))
