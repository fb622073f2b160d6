"""SymPy forms against the NumPy closed forms, 50-digit mpmath, and the Gaussian integral."""

from __future__ import annotations

import re

import numpy as np
import pytest

sympy = pytest.importorskip("sympy", reason="the symbolic extra (SymPy) is not installed")
mpmath = pytest.importorskip("mpmath")

from deepntk.analytic import arccos_kernel, cnn_limit_kernel, mlp_limit_kernel  # noqa: E402
from deepntk.analytic.symbolic import (arccos_kernel_closed_form_expr, arccos_kernel_expr, cnn_limit_expr,  # noqa: E402
                                       evaluate_high_precision, format_formula, lambdify_mlp_limit, mlp_limit_expr)
from conftest import TOL  # noqa: E402


def test_derived_arccos_kernel_equals_the_printed_closed_form():
    derived, (s1, s2, s12) = arccos_kernel_expr()
    printed, _ = arccos_kernel_closed_form_expr()
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.uniform(0.2, 3, size=2)
        c = rng.uniform(-0.99, 0.99) * np.sqrt(a * b)
        values = {s1: a, s2: b, s12: c}
        assert float(derived.subs(values)) == pytest.approx(float(printed.subs(values)), rel=TOL["reordering"])


@pytest.mark.parametrize("cos", [0.3, -0.7, 1 - 1e-9, -1 + 1e-9])
def test_derived_kernel_matches_the_gaussian_integral_to_30_digits(cos):
    """E[σ(g₁)σ(g₂)] by 50-digit quadrature of the 2-D Gaussian integral over the quadrant both units are on."""
    mpmath.mp.dps = 50
    s1, s2 = mpmath.mpf("1.3"), mpmath.mpf("0.7")
    c = mpmath.mpf(cos)
    s12 = c * mpmath.sqrt(s1 * s2)
    # g1 = √s1 z1, g2 = √s2 (c z1 + √(1−c²) z2); integrate over z1 > 0 the inner closed-form E_z2[σ(g2)].
    q = mpmath.sqrt(1 - c * c)

    def inner(z1):
        mean, sd = mpmath.sqrt(s2) * c * z1, mpmath.sqrt(s2) * q
        u = mean / sd
        return mean * mpmath.ncdf(u) + sd * mpmath.npdf(u)

    integral = mpmath.quad(lambda z1: mpmath.sqrt(s1) * z1 * inner(z1) * mpmath.npdf(z1), [0, mpmath.inf])
    derived, (a, b, ab) = arccos_kernel_expr()
    value = evaluate_high_precision(derived, {a: sympy.Rational(13, 10), b: sympy.Rational(7, 10),
                                              ab: sympy.Float(str(s12), 50)})
    assert abs(value - sympy.Float(str(integral), 50)) < sympy.Float("1e-30") * abs(value)
    assert float(value) == pytest.approx(arccos_kernel(1.3, 0.7, float(s12)), rel=TOL["reordering"])


def test_mlp_expression_matches_numpy():
    rng = np.random.default_rng(1)
    X1, X2 = rng.uniform(0.1, 1.5, size=(4, 3)), rng.uniform(0.1, 1.5, size=(3, 3))
    fn = lambdify_mlp_limit(3)
    for d_out, rho, beta in ((1, 1.0, 1.0), (3, 0.7, 1.4)):
        K = fn(X1, X2, d_out, rho, beta)
        expected = mlp_limit_kernel(X1, X2, d_out=d_out, rho=rho, beta=beta)
        np.testing.assert_allclose(K, expected, rtol=TOL["identity"])
    expr, sym = mlp_limit_expr(3)
    values = {**dict(zip(sym["x"], X1[0])), **dict(zip(sym["y"], X2[1])), sym["rho"]: 0.7, sym["beta"]: 1.4,
              sym["d_out"]: 3}
    high = evaluate_high_precision(expr, values, 50)
    ref = mlp_limit_kernel(X1[:1], X2[1:2], d_out=3, rho=0.7, beta=1.4)[0, 0]
    assert float(high) == pytest.approx(ref, rel=TOL["reordering"])


def test_cnn_expression_matches_numpy():
    rng = np.random.default_rng(2)
    c, d, f = 1, 3, 3
    X = rng.uniform(0.1, 1.0, size=(2, c, d, d))
    expr, sym = cnn_limit_expr(c, d, f)
    values = {sym["rho"]: sympy.Rational(7, 10), sym["beta"]: sympy.Rational(6, 5), sym["k"]: 2}
    for m in range(c):
        for i in range(d):
            for j in range(d):
                values[sym["x"][m][i][j]] = X[0, m, i, j]
                values[sym["y"][m][i][j]] = X[1, m, i, j]
    value = float(evaluate_high_precision(expr, values, 30))
    expected = cnn_limit_kernel(X, outputs=2, rho=0.7, beta=1.2, filter_size=f)[0, 1]
    assert value == pytest.approx(expected, rel=TOL["identity"])


def test_formula_text():
    assert "d_out" in format_formula("mlp") and "\\\\" not in format_formula("mlp")
    assert "\\pi" in format_formula("mlp", latex=True)
    assert "W_ab" in format_formula("cnn")


@pytest.mark.parametrize("depth", [1, 2])
def test_wide_kernel_expressions_match_the_recursion(depth):
    """Σ^L and Θ^L written out from the derived κ and κ₀ (no shared code with deepntk.analytic.wide) against
    wide_nngp_kernel and wide_ntk_kernel's exact recursion, at σ_b² > 0 and σ_w² ≠ 2 so every constant enters.
    The expressions are evaluated with mpmath at 100 digits: in float64 their naive arccos of a point's correlation
    with itself (1 up to rounding) loses half the digits from L = 2 on, which the recursion's angle form avoids."""
    from deepntk.analytic import wide_nngp_kernel, wide_ntk_kernel
    from deepntk.analytic.symbolic import wide_kernels_expr

    X = np.random.default_rng(3).normal(size=(4, 2))
    nngp, ntk, sym = wide_kernels_expr(2, depth)
    names = [*sym["x"], *sym["y"], sym["sigma_w2"], sym["sigma_b2"]]
    for expr, closed in ((nngp, wide_nngp_kernel), (ntk, wide_ntk_kernel)):
        evaluate = sympy.lambdify(names, expr, modules="mpmath")
        with mpmath.workdps(100):
            # A self-correlation rounded to 1 + 1e-100 makes arccos complex by i·1e-50 (each layer takes a square root
            # of that error: L = 2 leaves i·1e-25): the real part is the value.
            got = np.array([[float(mpmath.re(evaluate(*map(mpmath.mpf, x), *map(mpmath.mpf, y), mpmath.mpf("1.7"),
                                                      mpmath.mpf("0.1")))) for y in X] for x in X])
        want = closed(X, depth=depth, sigma_w2=1.7, sigma_b2=0.1, exact=True)
        assert np.max(np.abs(got - want) / np.abs(want)) < TOL["identity"], (got, want)


def test_wide_formula_text_is_the_wide_kernel():
    """Before: `deepntk limit --arch wide-mlp --symbolic` printed the CNN's formula."""
    text = format_formula("wide-mlp")
    assert "Wide MLP" in text and "sigma_w2" in text and "W_ab" not in text


def balanced(line: str) -> bool:
    """Every group brace and every \\left closes, in order (escaped braces \\{ \\} are characters, not groups)."""
    depth, sizes = 0, 0
    for token in re.findall(r"\\[{}]|\\left|\\right|[{}]", line):
        if token in ("{", "}"):
            depth += 1 if token == "{" else -1
        elif token in ("\\left", "\\right"):
            sizes += 1 if token == "\\left" else -1
        if depth < 0 or sizes < 0:
            return False
    return depth == 0 and sizes == 0


@pytest.mark.parametrize("arch", ["mlp", "cnn", "wide-mlp"])
def test_latex_output_is_ascii_and_every_equation_is_latex_math(arch, capsys):
    """Before: --latex mixed Unicode into its LaTeX ("κ(s1, s2, s12) = \\frac{…}", "Θ∞(x, x') = Σ_{a,b} …"), which
    LaTeX rejects. Now the output is ASCII, prose lines are % comments, and every other line is one equation that
    matplotlib's mathtext (an independent TeX math parser) typesets."""
    from deepntk.cli.main import main

    assert main(["limit", "--symbolic", "--latex", "--arch", arch]) == 0
    text = capsys.readouterr().out
    assert text.isascii(), sorted({c for c in text if not c.isascii()})
    equations = [line for line in text.splitlines() if line.strip() and not line.startswith("%")]
    assert len(equations) >= 2 and all(" = " in line for line in equations), text
    for line in equations:
        assert balanced(line), line
    mathtext = pytest.importorskip("matplotlib.mathtext", reason="rendering the LaTeX needs matplotlib (the plot extra)")
    parser = mathtext.MathTextParser("path")
    for line in equations:
        parser.parse(f"${line}$")  # raises ValueError on LaTeX it cannot parse


def test_the_brace_check_can_fail():
    assert not balanced(r"\frac{a}{b") and not balanced(r"\left(a") and not balanced("}{")
    assert balanced(r"\{(i,j) : \left( x_{1} \right)\}")
