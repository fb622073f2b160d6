"""The architectures deepntk simulates, one module each, and the registry that names them.

Adding an architecture (docs/networks.md#adding-an-architecture): write its module here (a frozen dataclass
mixing in `Architecture`, its fields declared with `spec_field`), add it to `ARCHITECTURES`, and give the
backends a layer-ops class for its `layer_kind` in `deepntk.backends.layers.LAYER_OPS` and, optionally, fused
kernels. Nothing else branches on the architecture's name: the commands' options are its fields and `deepntk
simulate`'s defaults its `study`.
"""

from __future__ import annotations

from dataclasses import MISSING, fields

from .cnn import CNN, average_pool
from .common import (COMMAND_FIELDS, Architecture, OptionField, Study, option_fields,
                     preset_fields, spec_field)
from .mlp import MLP
from .wide import WideMLP
from ...base.errors import InputError, SpecError

ARCHITECTURES = {cls.arch: cls for cls in (MLP, CNN, WideMLP)}


def architecture(name: str):
    """The spec class registered under `name` ("mlp", "cnn")."""
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise SpecError(f"unknown architecture {name!r} (expected one of {', '.join(ARCHITECTURES)})") from None


def spec_from_meta(meta: dict):
    """Rebuild a spec from the dict written by `to_meta` (params files)."""
    if not isinstance(meta, dict):
        raise SpecError(f"architecture metadata must be a JSON object, got {type(meta).__name__}")
    meta_fields = dict(meta)
    cls = architecture(meta_fields.pop("arch", None))
    missing = [f.name for f in fields(cls) if f.name not in meta_fields and f.default is MISSING]
    if missing:
        raise SpecError(f"{cls.arch} spec is missing {', '.join(missing)}")
    return cls(**{f.name: meta_fields[f.name] for f in fields(cls) if f.name in meta_fields})


def spec_field_names(cls) -> list[str]:
    return [f.name for f in fields(cls)]


def architecture_for_inputs(shape: tuple[int, ...], name: str = "X"):
    """The one architecture whose inputs have this array shape ((N, d_in): MLP, (N, c, d, d): CNN), among those
    `inferred_from_inputs` (the wide MLP reads MLP-shaped inputs and must be named)."""
    matches = []
    for cls in (cls for cls in ARCHITECTURES.values() if cls.inferred_from_inputs):
        try:
            cls.sizes_from_inputs(shape)
        except InputError:
            continue
        matches.append(cls)
    if len(matches) != 1:
        raise InputError(f"{name} has shape {shape}, which fits {'no' if not matches else 'more than one'} "
                         f"architecture; give the architecture ({', '.join(ARCHITECTURES)})")
    return matches[0]


def spec_for_data(cls, options: dict, input_shape: tuple[int, ...], outputs: int | None = None, given=(),
                  name: str = "X", **fixed):
    """A `cls` spec whose input sizes (and outputs, if given) come from the data and every other field from
    `options` (extra keys ignored), `fixed` overriding both. A size named in `given` (set by the user, not a
    default) that differs from the data is an error, never silently replaced."""
    sizes = cls.sizes_from_inputs(input_shape, name)
    if outputs is not None:
        sizes[cls.outputs_field] = outputs
    chosen = {name: options[name] for name in spec_field_names(cls) if name in options}
    for field, value in sizes.items():
        if field in given and chosen.get(field) != value:
            raise InputError(f"{field} is {chosen.get(field)} but {name} has {value}")
    return cls(**{**chosen, **sizes, **fixed})


__all__ = ["ARCHITECTURES", "Architecture", "MLP", "CNN", "WideMLP", "architecture", "spec_from_meta", "average_pool",
           "spec_field_names", "architecture_for_inputs", "spec_for_data", "spec_field", "option_fields",
           "preset_fields", "OptionField", "Study", "COMMAND_FIELDS"]
