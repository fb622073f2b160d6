"""Which path maps the wide MLP's pairs (docs/limit-kernels.md#which-pair-map-runs): the fused Numba pass by default
where Numba is installed, the NumPy array path with `pair_map="numpy"`, the same values either way; and the depth
map's table, which both apply at σ_b² = 0, within 1e-10 of the exact layer-by-layer recursion at every angle from
0 to π (the refined angles near cos = ±1 included) and every depth from 1 to 10⁵."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from deepntk.analytic import wide as wide_module
from deepntk.analytic import wide_nngp_kernel, wide_ntk_kernel
from conftest import TOL, assert_close

# Angles of the pairs: both ends, the refined band |cos| > 0.999 (θ < 0.045 or θ > π − 0.045), and between.
ANGLES = (0.0, 1e-15, 1e-12, 1e-8, 1e-4, 0.01, 0.1, 1.0, math.pi / 2, 2.0, 3.0, math.pi - 0.01, math.pi - 1e-4,
          math.pi - 1e-8, math.pi - 1e-12, math.pi)


def points_at_angles(angles=ANGLES, d=6):
    """A base point and, for each angle, a point at that angle from it with another norm, plus a zero input."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=d)
    e = rng.normal(size=d)
    e -= (e @ x) / (x @ x) * x
    x_hat, e_hat = x / np.linalg.norm(x), e / np.linalg.norm(e)
    ratios = rng.uniform(0.5, 2.0, size=len(angles))
    points = [x] + [r * np.linalg.norm(x) * (math.cos(a) * x_hat + math.sin(a) * e_hat)
                    for a, r in zip(angles, ratios)]
    return np.vstack(points + [np.zeros(d)])


def normalised_error(K, exact):
    """max |K − exact| / √(exact(x, x)·exact(x', x')): the error on the kernel's own scale at each pair (the NNGP
    at θ = π and L = 1 is 0, where a per-entry relative error has no meaning)."""
    diagonal = np.sqrt(np.diag(exact))
    scale = np.outer(diagonal, diagonal)
    return float(np.max(np.abs(K - exact)[scale > 0] / scale[scale > 0]))


def check_fast_paths_against_the_exact_recursion(depths):
    pytest.importorskip("numba", reason="the numba extra is not installed")
    X = points_at_angles()
    for depth in depths:
        for kernel in (wide_ntk_kernel, wide_nngp_kernel):
            exact = kernel(X, depth=depth, exact=True, pair_map="numpy")
            for pair_map in ("numba", "numpy"):
                fast = kernel(X, depth=depth, pair_map=pair_map)
                error = normalised_error(fast, exact)
                assert error <= TOL["oracle"], (kernel.__name__, depth, pair_map, error)
            # The table by both paths: the same arithmetic but for the angle's and the sums' rounding.
            assert_close(kernel(X, depth=depth, pair_map="numba"), kernel(X, depth=depth, pair_map="numpy"),
                         TOL["identity"], f"{kernel.__name__} L={depth}")


@pytest.mark.parametrize("depths", [(1, 2, 3, 10), (100, 1000)])
def test_the_table_is_within_1e_10_of_the_exact_recursion_at_every_angle(depths):
    check_fast_paths_against_the_exact_recursion(depths)


@pytest.mark.slow
def test_the_table_is_within_1e_10_of_the_exact_recursion_up_to_depth_100000():
    check_fast_paths_against_the_exact_recursion((10_000, 100_000))


@pytest.mark.parametrize("sigma_w2,sigma_b2", [(2.0, 0.0), (1.7, 0.1), (2.0, 2.5)])
def test_the_fused_recursion_equals_the_numpy_recursion(sigma_w2, sigma_b2):
    """With σ_b² > 0 (no depth map) and with exact=True, the fused pass runs the recursion per pair; a cross Gram
    with a row of the first set in the second, and the symmetric Gram, which the fused pass mirrors."""
    pytest.importorskip("numba", reason="the numba extra is not installed")
    X = points_at_angles()
    Y = np.vstack([points_at_angles(ANGLES[::3], d=6)[::-1], X[3]])
    for depth in (1, 7, 300):
        for kernel in (wide_ntk_kernel, wide_nngp_kernel):
            kw = dict(depth=depth, sigma_w2=sigma_w2, sigma_b2=sigma_b2, exact=True)
            for X2 in (None, Y):
                assert_close(kernel(X, X2, pair_map="numba", **kw), kernel(X, X2, pair_map="numpy", **kw),
                             TOL["identity"], f"{kernel.__name__} L={depth}")


def test_the_fused_pass_agrees_with_the_numpy_path_on_random_data():
    """Random Grams with duplicate, scaled, opposite and zero rows (every branch of the angle)."""
    pytest.importorskip("numba", reason="the numba extra is not installed")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 30))
    X[1], X[2], X[3], X[4] = X[0], 2.5 * X[0], -X[0], 0.0
    X[5] = X[6] + 1e-9 * rng.normal(size=30)
    Y = rng.normal(size=(25, 30))
    Y[0] = 0.5 * X[6]
    for kernel in (wide_ntk_kernel, wide_nngp_kernel):
        for sigma_b2 in (0.0, 0.2):
            for X2 in (None, Y):
                kw = dict(depth=40, sigma_b2=sigma_b2)
                fused = kernel(X, X2, pair_map="numba", **kw)
                assert_close(fused, kernel(X, X2, pair_map="numpy", **kw), TOL["identity"], kernel.__name__)
                if X2 is None:
                    np.testing.assert_array_equal(fused, fused.T)


def test_the_default_runs_the_fused_pass_where_numba_is_installed(monkeypatch):
    pytest.importorskip("numba", reason="the numba extra is not installed")
    from deepntk.analytic import numba_wide

    calls = []
    for name in ("depth_map_pairs", "recursion_pairs"):
        compiled = getattr(numba_wide, name)
        monkeypatch.setattr(numba_wide, name, lambda *a, f=compiled, n=name: calls.append(n) or f(*a))
    X = np.random.default_rng(0).normal(size=(5, 3))
    wide_ntk_kernel(X, depth=4)
    wide_nngp_kernel(X, depth=4, sigma_b2=0.5)
    assert calls == ["depth_map_pairs", "recursion_pairs"]
    wide_ntk_kernel(X, depth=4, pair_map="numpy")
    wide_nngp_kernel(X, depth=4, sigma_b2=0.5, pair_map="numpy")
    assert len(calls) == 2


def test_without_numba_the_default_is_numpy_and_numba_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "deepntk.analytic.numba_wide", raising=False)
    monkeypatch.setattr(wide_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba" else importlib_find_spec(name, *a))
    assert wide_module.check_pair_map(None) == "numpy"
    X = np.random.default_rng(1).normal(size=(4, 3))
    assert_close(wide_ntk_kernel(X, depth=3), wide_ntk_kernel(X, depth=3, pair_map="numpy"), TOL["exact"], "Θ")
    with pytest.raises(ImportError, match="pair_map='numba' needs Numba"):
        wide_ntk_kernel(X, depth=3, pair_map="numba")


def importlib_find_spec(name, *args):
    import importlib.util

    return importlib.util.find_spec(name, *args)


@pytest.mark.parametrize("pair_map", ["cuda", "NumPy", 1])
def test_an_unknown_pair_map_is_a_clear_error(pair_map):
    with pytest.raises(ValueError, match="pair_map must be None or one of 'numpy', 'numba'"):
        wide_nngp_kernel(np.ones((2, 2)), depth=2, pair_map=pair_map)
