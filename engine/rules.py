"""C_L as a rule in the depth L ("L^2", "5L", "0.5*L^1.5", a constant) or one value per depth."""

from __future__ import annotations

import math
import re

from ..base.errors import SpecError

_RULE = re.compile(r"^\s*(?P<coef>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)?\s*\*?\s*(?P<L>L(?:\s*\^\s*(?P<pow>[0-9]*\.?[0-9]+))?)?\s*$")


def parse_C_L_rule(text: str):
    """A C_L rule as a function of L: "L^2", "5L", "0.5*L^1.5", or a constant such as "5" or "5e4"."""
    match = _RULE.match(str(text))
    if not match or (match.group("coef") is None and match.group("L") is None):
        raise SpecError(f"cannot read C_L rule {text!r}; use forms like L^2, 5L, 0.5*L^1.5 or a number")
    coef = float(match.group("coef")) if match.group("coef") else 1.0
    power = (float(match.group("pow")) if match.group("pow") else 1.0) if match.group("L") else 0.0
    if not coef > 0 or not math.isfinite(coef):
        raise SpecError(f"C_L rule {text!r} gives C_L <= 0 or an infinite C_L")
    return lambda L: coef * float(L) ** power


def C_L_values(text: str, depths) -> list[float]:
    """C_L for each depth: a rule (see `parse_C_L_rule`) or explicit comma-separated values, one per depth."""
    if "," in str(text):
        try:
            values = [float(part) for part in str(text).split(",")]
        except ValueError:
            raise SpecError(f"cannot read C_L values {text!r}") from None
        if len(values) != len(depths):
            raise SpecError(f"{len(values)} C_L values for {len(depths)} depths; give one per depth or a rule")
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise SpecError(f"C_L values must be finite and > 0, got {text!r}")
        return values
    rule = parse_C_L_rule(text)
    values = [rule(L) for L in depths]
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise SpecError(f"C_L rule {text!r} overflows at depths {list(depths)}")
    return values
