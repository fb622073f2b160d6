"""The limit kernels as SymPy expressions (the `symbolic` extra; SymPy is imported only here, lazily).

The arc-cosine kernel is derived, not typed in: for a centred Gaussian pair with variances s₁, s₂ and
correlation cos φ, write g₁ = √s₁·r·cos t, g₂ = √s₂·r·cos(t − φ) in polar coordinates of a standard normal
vector. Then E[σ(g₁)σ(g₂)] = (1/2π)·∫₀^∞ r³e^{−r²/2} dr · √(s₁s₂)·∫ cos t·cos(t − φ) dt over the arc
t ∈ [φ − π/2, π/2] where both units are active; SymPy evaluates both integrals.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


def _sympy():
    try:
        import sympy
    except ImportError as exc:  # pragma: no cover - exercised where SymPy is missing
        raise ImportError("deepntk's symbolic forms need SymPy: pip install 'deepntk[symbolic]'") from exc
    return sympy


@functools.lru_cache(maxsize=None)
def arccos_kernel_expr():
    """(κ, (s1, s2, s12)): κ(s₁, s₂, s₁₂) derived from its Gaussian integral (module docstring)."""
    sp = _sympy()
    s1, s2 = sp.symbols("s1 s2", positive=True)
    s12 = sp.Symbol("s12", real=True)
    r, t = sp.symbols("r t", real=True)
    phi = sp.Symbol("phi", positive=True)
    radial = sp.integrate(r**3 * sp.exp(-r**2 / 2), (r, 0, sp.oo))
    angular = sp.integrate(sp.cos(t) * sp.cos(t - phi), (t, phi - sp.pi / 2, sp.pi / 2))
    kappa_phi = sp.simplify(sp.sqrt(s1 * s2) * radial * angular / (2 * sp.pi))
    kappa = kappa_phi.subs(phi, sp.acos(s12 / sp.sqrt(s1 * s2)))
    return sp.simplify(kappa), (s1, s2, s12)


def arccos_kernel_closed_form_expr():
    """The closed form as usually printed, √(s₁s₂)/(2π)·(sin θ + (π − θ)cos θ); tests check it equals the derivation."""
    sp = _sympy()
    kappa, (s1, s2, s12) = arccos_kernel_expr()
    theta = sp.acos(s12 / sp.sqrt(s1 * s2))
    return sp.sqrt(s1 * s2) / (2 * sp.pi) * (sp.sin(theta) + (sp.pi - theta) * sp.cos(theta)), (s1, s2, s12)


def mlp_limit_expr(d_in: int):
    """Θ̃^∞(x, x') = x·x' + d_out + κ(s₁, s₂, s₁₂) of Theorem 1 (corrected) with symbols
    x_1…x_{d_in}, y_1…y_{d_in} (for x'), rho, beta, d_out.

    Returns:
        (expression, symbols dict with keys "x", "y", "rho", "beta", "d_out").
    """
    sp = _sympy()
    x = sp.symbols(f"x1:{d_in + 1}", positive=True)
    y = sp.symbols(f"y1:{d_in + 1}", positive=True)
    rho, beta = sp.symbols("rho beta", positive=True)
    d_out = sp.Symbol("d_out", positive=True, integer=True)
    kappa, (s1, s2, s12) = arccos_kernel_expr()
    dot = sum(a * b for a, b in zip(x, y))
    scale = rho**2 / d_in
    expr = dot + d_out + kappa.subs({s1: scale * sum(a**2 for a in x) + beta**2,
                                     s2: scale * sum(b**2 for b in y) + beta**2,
                                     s12: scale * dot + beta**2}, simultaneous=True)
    return expr, {"x": x, "y": y, "rho": rho, "beta": beta, "d_out": d_out}


def cnn_limit_expr(c: int, d: int, f: int = 3, filter_variance: str = "paper"):
    """Θ̃^∞ of Theorem 4 (corrected, see deepntk.analytic.cnn) for c channels of d×d images and f×f filters,
    with symbols x_{m,i,j}, y_{m,i,j} (pixels of x and x'), rho, beta, k. Window sizes |W_ab| and the sums over
    offsets are exact integers and rationals. Practical for small d (the expression has d⁴ κ terms).

    Returns:
        (expression, symbols dict with keys "x", "y" (nested lists [m][i][j]), "rho", "beta", "k").
    """
    sp = _sympy()
    from .cnn import window_rows

    r = f // 2
    x = [[[sp.Symbol(f"x_{m}_{i}_{j}", positive=True) for j in range(d)] for i in range(d)] for m in range(c)]
    y = [[[sp.Symbol(f"y_{m}_{i}_{j}", positive=True) for j in range(d)] for i in range(d)] for m in range(c)]
    rho, beta = sp.symbols("rho beta", positive=True)
    k = sp.Symbol("k", positive=True, integer=True)
    tap = sp.Rational(1, c) if filter_variance == "paper" else sp.Rational(1, c * f * f)
    kappa, (s1, s2, s12) = arccos_kernel_expr()

    def patch(img, i, j):
        return [img[m][i + u - r][j + v - r] if 0 <= i + u - r < d and 0 <= j + v - r < d else sp.Integer(0)
                for m in range(c) for u in range(f) for v in range(f)]

    def kappa_of(p, q):
        dot = sum(a * b for a, b in zip(p, q))
        return kappa.subs({s1: rho**2 * tap * sum(a**2 for a in p) + beta**2,
                           s2: rho**2 * tap * sum(b**2 for b in q) + beta**2,
                           s12: rho**2 * tap * dot + beta**2}, simultaneous=True)

    rows = window_rows(d, f)
    total = sp.Integer(0)
    pair_terms = {}
    for ilo, ihi in rows:
        for jlo, jhi in rows:
            window = [(i, j) for i in range(ilo, ihi + 1) for j in range(jlo, jhi + 1)]
            T = lambda img: sum(img[i][j] for i, j in window) / sp.Integer(d * d)
            total += sum(T(x[m]) * T(y[m]) for m in range(c))
            total += k * sp.Rational(len(window), d * d) ** 2
            for p in window:
                for q in window:
                    pair_terms[(p, q)] = pair_terms.get((p, q), 0) + 1
    for (p, q), count in pair_terms.items():
        total += sp.Rational(count, d**4) * kappa_of(patch(x, *p), patch(y, *q))
    return total, {"x": x, "y": y, "rho": rho, "beta": beta, "k": k}


@functools.lru_cache(maxsize=None)
def arccos_derivative_kernel_expr():
    """(κ₀, (s1, s2, s12)): E[σ'(g₁)σ'(g₂)] = (π − θ)/(2π) of a centred Gaussian pair, derived as κ is (module
    docstring): both units are active on the arc t ∈ [φ − π/2, π/2] of the angle t, which is uniform."""
    sp = _sympy()
    s1, s2 = sp.symbols("s1 s2", positive=True)
    s12 = sp.Symbol("s12", real=True)
    t = sp.Symbol("t", real=True)
    phi = sp.Symbol("phi", positive=True)
    kappa0_phi = sp.integrate(sp.Integer(1), (t, phi - sp.pi / 2, sp.pi / 2)) / (2 * sp.pi)
    return sp.simplify(kappa0_phi.subs(phi, sp.acos(s12 / sp.sqrt(s1 * s2)))), (s1, s2, s12)


def wide_kernels_expr(d_in: int, depth: int):
    """The wide ReLU MLP's infinite-width NNGP Σ^L(x, x') and NTK Θ^L(x, x') at depth L (hidden layers) as SymPy
    expressions, by the recursion of `deepntk.analytic.wide_ntk_kernel` (docs/limit-kernels.md#the-infinite-width-kernels)
    written out with the derived κ and κ₀: Σ⁰ = σ_w²·x·x'/d_in + σ_b², Σ^l = σ_w²·κ(Σ^{l−1}) + σ_b²,
    Θ^l = Θ^{l−1}·σ_w²·κ₀(Σ^{l−1}) + Σ^l. Practical for small L (each layer nests the previous one's
    expressions inside arccos and square roots).

    Returns:
        (nngp, ntk, symbols dict with keys "x", "y", "sigma_w2", "sigma_b2").
    """
    sp = _sympy()
    from .checks import check_hidden_layers

    depth = check_hidden_layers(depth)
    x = sp.symbols(f"x1:{d_in + 1}", real=True)
    y = sp.symbols(f"y1:{d_in + 1}", real=True)
    sigma_w2 = sp.Symbol("sigma_w2", positive=True)
    sigma_b2 = sp.Symbol("sigma_b2", nonnegative=True)
    kappa, (s1, s2, s12) = arccos_kernel_expr()
    kappa0, (t1, t2, t12) = arccos_derivative_kernel_expr()
    first = lambda u, v: sigma_w2 * sum(a * b for a, b in zip(u, v)) / d_in + sigma_b2
    var1, var2, cov = first(x, x), first(y, y), first(x, y)
    ntk = cov
    for _ in range(depth):
        derivative = kappa0.subs({t1: var1, t2: var2, t12: cov}, simultaneous=True)
        cov = sigma_w2 * kappa.subs({s1: var1, s2: var2, s12: cov}, simultaneous=True) + sigma_b2
        # A point's own variance: κ(s, s, s) = s/2.
        var1, var2 = sigma_w2 * var1 / 2 + sigma_b2, sigma_w2 * var2 / 2 + sigma_b2
        ntk = ntk * sigma_w2 * derivative + cov
    return cov, ntk, {"x": x, "y": y, "sigma_w2": sigma_w2, "sigma_b2": sigma_b2}


def lambdify_mlp_limit(d_in: int, modules: str = "numpy"):
    """A vectorized function f(X1 (N1, d_in), X2 (N2, d_in), d_out, rho, beta) → (N1, N2) from the SymPy form.

    `modules` is passed to sympy.lambdify ("numpy", or "cupy" for CuPy arrays).
    """
    sp = _sympy()
    expr, sym = mlp_limit_expr(d_in)
    fn = sp.lambdify([*sym["x"], *sym["y"], sym["d_out"], sym["rho"], sym["beta"]], expr, modules=modules)

    def evaluate(X1, X2, d_out=1, rho=1.0, beta=1.0):
        A = [X1[:, j][:, None] for j in range(d_in)]
        B = [X2[:, j][None, :] for j in range(d_in)]
        return fn(*A, *B, d_out, rho, beta)

    return evaluate


def evaluate_high_precision(expr, values: dict, digits: int = 50):
    """expr at exact `values` (symbol → number) with mpmath at `digits` significant digits, as a SymPy Float."""
    sp = _sympy()
    return sp.N(expr.subs({s: sp.nsimplify(v) if isinstance(v, float) else v for s, v in values.items()}), digits)


@dataclass(frozen=True)
class Written:
    """Mathematics that SymPy does not compose (a left-hand side, a sum over windows), in both forms: `plain`
    (Unicode allowed) and `latex` (ASCII LaTeX)."""

    plain: str
    latex: str


# LaTeX names of the symbols whose SymPy names stand for a square or a word (sympy.latex alone writes \sigma_{w2}).
LATEX_NAMES = {"sigma_w2": r"\sigma_w^2", "sigma_b2": r"\sigma_b^2", "d_out": r"d_{\mathrm{out}}"}
KAPPA = Written("κ(s1, s2, s12)", r"\kappa(s_{1}, s_{2}, s_{12})")
KAPPA_0 = Written("κ₀(s1, s2, s12)", r"\kappa_{0}(s_{1}, s_{2}, s_{12})")


def format_formula(arch: str, latex: bool = False, d_in: int = 2) -> str:
    """Plain-text or LaTeX statement of the limit kernel, for `deepntk limit --symbolic [--latex]`.

    The statement is prose (ASCII; LaTeX comments, `% …`, with `latex`) and equations, one a line. An equation's
    right-hand side is the SymPy expression itself, written by sympy.sstr or sympy.latex (with `LATEX_NAMES`);
    what SymPy does not compose is `Written` in both forms. So the LaTeX is ASCII, and every line that is not a
    comment is one math-mode equation (tests/analytic/test_symbolic.py renders each with matplotlib's mathtext).
    """
    kappa, _ = arccos_kernel_expr()
    if arch == "mlp":
        expr, _ = mlp_limit_expr(d_in)
        statement = [f"MLP limit kernel (Theorem 1, corrected: + d_out), d_in = {d_in}, as a factor of I_d_out; "
                     f"x' is written y:",
                     (Written("Θ̃∞(x, x')", r"\tilde{\Theta}^{\infty}(x, x')"), expr),
                     "with the arc-cosine kernel derived from its Gaussian integral:",
                     (KAPPA, kappa)]
    elif arch == "wide-mlp":
        nngp, ntk, _ = wide_kernels_expr(d_in, 1)
        kappa0, _ = arccos_derivative_kernel_expr()
        statement = [f"Wide MLP infinite-width kernels at depth L = 1 (hidden layers), d_in = {d_in}, factors of "
                     f"I_d_out; x' is written y:",
                     (Written("Σ¹(x, x')", r"\Sigma^{1}(x, x')"), nngp),
                     (Written("Θ¹(x, x')", r"\Theta^{1}(x, x')"), ntk),
                     "deeper, layer by layer (deepntk.analytic.symbolic.wide_kernels_expr):",
                     (Written("Σ^l", r"\Sigma^{l}"),
                      Written("σ_w²κ(Σ^(l−1)) + σ_b²", r"\sigma_w^2 \kappa(\Sigma^{l-1}) + \sigma_b^2")),
                     (Written("Θ^l", r"\Theta^{l}"),
                      Written("Θ^(l−1)·σ_w²κ₀(Σ^(l−1)) + Σ^l",
                              r"\Theta^{l-1} \sigma_w^2 \kappa_{0}(\Sigma^{l-1}) + \Sigma^{l}")),
                     "with the arc-cosine kernels derived from their Gaussian integrals:",
                     (KAPPA, kappa), (KAPPA_0, kappa0)]
    else:
        statement = [
            "CNN limit kernel (Theorem 4, corrected), factor of I_k:",
            (Written("Θ̃∞(x, x')", r"\tilde{\Theta}^{\infty}(x, x')"),
             Written("Σ_{a,b} [ Σ_m T_ab(x_m)T_ab(x'_m) + k(|W_ab|/d²)² + d⁻⁴ Σ_{p,q∈W_ab} κ(φ_p(x), φ_q(x')) ]",
                     r"\sum_{a,b} \left[ \sum_{m} T_{ab}(x_m) T_{ab}(x'_m) + k \left(\frac{|W_{ab}|}{d^2}\right)^2"
                     r" + d^{-4} \sum_{p,q \in W_{ab}} \kappa(\phi_p(x), \phi_q(x')) \right]")),
            (Written("T_ab(y)", r"T_{ab}(y)"), Written("d⁻² Σ_{W_ab} y", r"d^{-2} \sum_{(i,j) \in W_{ab}} y_{ij}")),
            (Written("W_ab", r"W_{ab}"), Written("{(i,j): 1 ≤ i−a ≤ d, 1 ≤ j−b ≤ d}",
                                                 r"\{(i,j) : 1 \leq i-a \leq d,\ 1 \leq j-b \leq d\}")),
            "where kappa takes the patches' variances and covariance:",
            (Written("s", "s"), Written("(ρ²/c)|φ|² + β²", r"\frac{\rho^2}{c} |\phi|^2 + \beta^2")),
            (KAPPA, kappa)]
    return _write(statement, latex)


def _write(statement, latex: bool) -> str:
    """Prose lines (a blank line before each but the first) and `lhs = rhs` equations, plain or LaTeX."""
    sp = _sympy()

    def side(value) -> str:
        if isinstance(value, Written):
            return value.latex if latex else value.plain
        if not latex:
            return sp.sstr(value)
        return sp.latex(value, symbol_names={symbol: LATEX_NAMES[symbol.name] for symbol in value.free_symbols
                                             if symbol.name in LATEX_NAMES})

    lines = []
    for part in statement:
        if isinstance(part, str):
            lines += ([""] if lines else []) + [f"% {part}" if latex else part]
        else:
            lhs, rhs = part
            lines.append(f"{side(lhs)} = {side(rhs)}")
    return "\n".join(lines)
