"""Griffe extension: an architecture's spec field `x: float = spec_field("help", 1.0)` documents as the
dataclass parameter `x: float = 1.0`, and one without a default as required, as Python sees it; the site would
otherwise print the `spec_field(...)` call as the default."""

from __future__ import annotations

import griffe


class SpecFields(griffe.Extension):
    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs) -> None:
        value = attr.value
        if not (isinstance(value, griffe.ExprCall) and str(value.function) == "spec_field"):
            return
        positional = [a for a in value.arguments if not isinstance(a, griffe.ExprKeyword)]
        keywords = {a.name: a.value for a in value.arguments if isinstance(a, griffe.ExprKeyword)}
        default = keywords.get("default", positional[1] if len(positional) > 1 else None)
        attr.value = default
