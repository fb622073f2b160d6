"""Parameters: drawn once on the host (so every backend sees identical weights), saved and loaded as `.npz`.

File contract (docs/files.md): arrays `W1 … WL` (MLP, shape (out, in), PyTorch `nn.Linear` layout) or
`w1 … wL` (CNN, shape (out_ch, in_ch, f, f), PyTorch `Conv2d` layout), `b1 … bL` (shape (out,)), and a JSON
string under `meta` (arch, sizes, depth, C_L, rho, beta, init, seed, dtype, deepntk version).
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, field, replace

import numpy as np

from deepntk.engine.architectures import Architecture, spec_from_meta
from deepntk.engine.errors import ParamsFileError, SpecError
from deepntk.engine.files import json_entry, read_npz
from deepntk.engine.memory import require_memory
from deepntk.engine.results import write_npz
from deepntk.engine.validate import warn_if_unresolved

INITS = ("paper", "kaiming-uniform")
DTYPES = {"float64": np.float64, "float32": np.float32}
# Python's bookkeeping per layer array (object header, shape, strides), beside the numbers themselves.
PER_ARRAY_OVERHEAD = 200


def resolve_dtype(dtype) -> np.dtype:
    """Accept 'float32'/'float64' or a NumPy float dtype; reject everything else."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise SpecError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise SpecError(f"dtype must be float32 or float64, got {dtype!r}")
    return resolved


def params_bytes(spec, dtype) -> int:
    """Memory one network's parameters take as per-layer arrays (numbers plus per-array overhead)."""
    return spec.parameter_count() * resolve_dtype(dtype).itemsize + 2 * spec.depth * PER_ARRAY_OVERHEAD


@dataclass
class Params:
    """All weights and biases of one network, in PyTorch layout, with the spec they belong to.

    Attributes:
        spec: the `MLP` or `CNN` they parametrize.
        weights: L arrays, `weights[l-1]` is W^l of shape `spec.weight_shape(l)`.
        biases: L arrays, `biases[l-1]` is b^l of shape `spec.bias_shape(l)`.
        init: how they were drawn ("paper", "kaiming-uniform", or "custom" for trained/loaded weights).
        seed: the integer seed of the draw, if any.
    """

    spec: Architecture
    weights: list
    biases: list
    init: str = "custom"
    seed: int | None = None
    extra_meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.spec, Architecture):
            raise TypeError(f"Params.spec must be an architecture spec such as deepntk.MLP or deepntk.CNN, got "
                            f"{type(self.spec).__name__}")
        check_shapes(self.spec, self.weights, self.biases)
        dtypes = {w.dtype for w in self.weights} | {b.dtype for b in self.biases}
        if len(dtypes) != 1:
            raise ParamsFileError(f"all arrays must share one dtype, got {sorted(str(d) for d in dtypes)}")
        resolve_dtype(dtypes.pop())

    @property
    def dtype(self) -> np.dtype:
        return self.weights[0].dtype

    @property
    def depth(self) -> int:
        return self.spec.depth

    @property
    def ntk_scale(self) -> float:
        """1/(L·C_L²), the factor that turns the NTK into the scaled NTK Θ̃ (docs/ntk.md)."""
        return 1.0 / (self.spec.depth * float(self.spec.C_L) ** 2)

    def astype(self, dtype) -> "Params":
        dtype = resolve_dtype(dtype)
        return replace(self, weights=[w.astype(dtype) for w in self.weights],
                       biases=[b.astype(dtype) for b in self.biases])

    def with_arrays(self, weights, biases, init: str = "custom") -> "Params":
        """A copy holding other arrays of the same shapes (e.g. after a training step)."""
        return replace(self, weights=list(weights), biases=list(biases), init=init)

    def meta(self) -> dict:
        from deepntk import __version__

        return {**self.spec.to_meta(), "init": self.init, "seed": self.seed, "dtype": str(self.dtype),
                "deepntk_version": __version__, **self.extra_meta}

    def save(self, path) -> None:
        """Write the `.npz` file contract atomically (temporary file, then rename)."""
        arrays = {}
        for layer, (w, b) in enumerate(zip(self.weights, self.biases), start=1):
            arrays[self.spec.weight_key(layer)] = w
            arrays[f"b{layer}"] = b
        arrays["meta"] = np.array(json.dumps(self.meta()))
        write_npz(os.fspath(path), **arrays)


def check_shapes(spec, weights, biases) -> None:
    """Raise ParamsFileError naming the first array whose presence or shape does not fit the spec."""
    if not isinstance(weights, (list, tuple)) or not isinstance(biases, (list, tuple)):
        raise TypeError(f"weights and biases must be lists of arrays, got {type(weights).__name__} and "
                        f"{type(biases).__name__}")
    if len(weights) != spec.depth or len(biases) != spec.depth:
        raise ParamsFileError(f"expected {spec.depth} weight and bias arrays, got {len(weights)} and {len(biases)}")
    for layer in range(1, spec.depth + 1):
        for key, array, shape in ((spec.weight_key(layer), weights[layer - 1], spec.weight_shape(layer)),
                                  (f"b{layer}", biases[layer - 1], spec.bias_shape(layer))):
            if not isinstance(array, np.ndarray):
                raise ParamsFileError(f"{key} must be a NumPy array, got {type(array).__name__}")
            if array.shape != shape:
                raise ParamsFileError(f"{key} has shape {array.shape}, expected {shape}")
            if array.dtype.kind != "f":
                raise ParamsFileError(f"{key} must hold floats, got dtype {array.dtype}")
            if not np.all(np.isfinite(array)):
                raise ParamsFileError(f"{key} contains NaN or infinite values")


def load_params(path) -> Params:
    """Read a params `.npz` file, checking every array against the spec stored in its `meta`.

    Raises:
        ParamsFileError: the file is missing, damaged (truncated, bit-flipped, not an archive), or its
            `meta` or arrays do not match; the message names the file and what is wrong.
    """
    path = os.fspath(path)
    arrays = read_npz(path, "params file", ParamsFileError)
    meta = json_entry(arrays, "meta", path, "params file", ParamsFileError)
    try:
        spec = spec_from_meta(meta)
    except (SpecError, TypeError) as exc:
        raise ParamsFileError(f"{path!r}: invalid architecture in 'meta': {exc}") from None
    weights, biases = [], []
    for layer in range(1, spec.depth + 1):
        for key, target in ((spec.weight_key(layer), weights), (f"b{layer}", biases)):
            if key not in arrays:
                raise ParamsFileError(f"{path!r} is missing array {key}")
            target.append(arrays[key])
    known = set(spec.to_meta()) | {"init", "seed", "dtype", "deepntk_version"}
    extra = {k: v for k, v in meta.items() if k not in known}
    try:
        return Params(spec, weights, biases, init=str(meta.get("init", "custom")), seed=meta.get("seed"),
                      extra_meta=extra)
    except ParamsFileError as exc:
        raise ParamsFileError(f"{path!r}: {exc}") from None


def init_params(spec, init: str = "paper", seed: int = 0, dtype="float64") -> Params:
    """Draw the parameters of `spec` on the host from an integer seed.

    Args:
        spec: an `MLP` or `CNN`.
        init: "paper" (docs/networks.md exactly) or "kaiming-uniform" (PyTorch's default for `nn.Linear` and
            `nn.Conv2d`: weights and biases ~ U(±1/√fan_in)).
        seed: integer seed; the same seed gives the same arrays on every backend and dtype (drawn in float64).
        dtype: "float64" or "float32". Warns (PrecisionWarning) where it cannot resolve the output at C_L.

    Raises:
        MemoryBudgetError: the parameters would not fit in the memory available (checked before drawing).
    """
    if not isinstance(spec, Architecture):
        raise TypeError(f"spec must be an architecture spec such as deepntk.MLP or deepntk.CNN, got "
                        f"{type(spec).__name__}")
    if init not in INITS:
        raise SpecError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise SpecError(f"seed must be a non-negative integer, got {seed!r}")
    dtype = resolve_dtype(dtype)
    # float64 draws plus the cast copy.
    require_memory(params_bytes(spec, np.float64) + params_bytes(spec, dtype),
                   f"a {spec.arch.upper()} of depth {spec.depth}")
    warn_if_unresolved(spec.C_L, dtype)
    rng = np.random.default_rng(int(seed))
    if init == "kaiming-uniform":
        weights, biases = _kaiming_uniform(spec, rng)
    else:
        weights, biases = spec.paper_weights(rng)
    return Params(spec, [w.astype(dtype) for w in weights], [b.astype(dtype) for b in biases],
                  init=init, seed=int(seed))


def _kaiming_uniform(spec, rng):
    weights, biases = [], []
    for layer in range(1, spec.depth + 1):
        bound = 1.0 / np.sqrt(spec.fan_in(layer))
        weights.append(rng.uniform(-bound, bound, size=spec.weight_shape(layer)))
        biases.append(rng.uniform(-bound, bound, size=spec.bias_shape(layer)))
    return weights, biases
