"""Parameters: drawn once on the host (so every backend sees identical weights), saved and loaded as `.npz`.

File contract (docs/files.md): arrays `W1 … WL` (MLP, shape (out, in), PyTorch `nn.Linear` layout) or
`w1 … wL` (CNN, shape (out_ch, in_ch, f, f), PyTorch `Conv2d` layout), `b1 … bL` (shape (out,)), and a JSON
string under `meta` (arch, sizes, depth, C_L, rho, beta, init, seed, dtype, deepntk version).
"""

from __future__ import annotations

import json
import numbers
import os

import numpy as np
from .architectures import Architecture, spec_from_meta
from ..base.errors import ParamsFileError, SpecError
from .files import json_entry, read_npz
from ..base.memory import require_memory
from .packed import LayerViews, pack_layers
from .results import write_npz
from ..base.validate import warn_if_unresolved

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
    return spec.parameter_count() * resolve_dtype(dtype).itemsize + 2 * spec.weight_layers * PER_ARRAY_OVERHEAD


class _PackedParameters(LayerViews):
    """What a network and an ensemble share: the spec and the packed, zero-padded arrays (engine/packed.py)
    the backends compute on, with per-layer views `weights`, `biases` (behind a leading E for an ensemble)."""

    spec: Architecture
    W: np.ndarray
    b: np.ndarray
    init: str

    def _store(self, spec, W, b, init, extra_meta):
        self.spec, self.W, self.b, self.init = spec, W, b, init
        self.extra_meta = dict(extra_meta or {})

    @property
    def dtype(self) -> np.dtype:
        return self.W.dtype

    @property
    def depth(self) -> int:
        return self.spec.depth

    @property
    def ntk_scale(self) -> float:
        """The spec's `ntk_scale`: 1/(L·C_L²) for the deep narrow networks, turning the NTK into the scaled NTK Θ̃
        (docs/ntk.md)."""
        return self.spec.ntk_scale


class Params(_PackedParameters):
    """All weights and biases of one network, with the spec they belong to.

    Stored packed (`W` (L, n, n[, f, f]), `b` (L, n), zero-padded: what the backends compute on, so an API call
    copies nothing); `weights` and `biases` give the per-layer arrays in PyTorch layout as views.

    Args:
        spec: the `MLP` or `CNN` they parametrize.
        weights: L arrays, `weights[l-1]` is W^l of shape `spec.weight_shape(l)`.
        biases: L arrays, `biases[l-1]` is b^l of shape `spec.bias_shape(l)`.
        init: how they were drawn ("paper", "kaiming-uniform", or "custom" for trained/loaded weights).
        seed: the integer seed of the draw, if any.
    """

    def __init__(self, spec, weights, biases, init: str = "custom", seed: int | None = None,
                 extra_meta: dict | None = None):
        check_spec(spec)
        check_shapes(spec, weights, biases)
        dtypes = {w.dtype for w in weights} | {b.dtype for b in biases}
        if len(dtypes) != 1:
            raise ParamsFileError(f"all arrays must share one dtype, got {sorted(str(d) for d in dtypes)}")
        W, b = pack_layers(spec, weights, biases, resolve_dtype(dtypes.pop()))
        self._store(spec, W, b, init, extra_meta)
        self.seed = seed

    @classmethod
    def from_packed(cls, spec, W, b, init: str = "custom", seed: int | None = None,
                    extra_meta: dict | None = None) -> "Params":
        """Params around packed arrays (kept, not copied), checked for shape, dtype and finite values."""
        check_spec(spec)
        check_packed(spec, W, b, ())
        return cls._around(spec, W, b, init, seed, extra_meta)

    @classmethod
    def _around(cls, spec, W, b, init, seed, extra_meta=None) -> "Params":
        params = cls.__new__(cls)
        params._store(spec, W, b, init, extra_meta)
        params.seed = seed
        return params

    def astype(self, dtype) -> "Params":
        dtype = resolve_dtype(dtype)
        return Params._around(self.spec, self.W.astype(dtype), self.b.astype(dtype), self.init, self.seed,
                              self.extra_meta)

    def with_arrays(self, weights, biases, init: str = "custom") -> "Params":
        """A copy holding other per-layer arrays of the same shapes (e.g. after a training step)."""
        return Params(self.spec, list(weights), list(biases), init=init, seed=self.seed,
                      extra_meta=self.extra_meta)

    def with_packed(self, W, b, init: str = "custom") -> "Params":
        """A copy holding other packed arrays of the same shapes (kept, not copied)."""
        return Params.from_packed(self.spec, W, b, init=init, seed=self.seed, extra_meta=self.extra_meta)

    def meta(self) -> dict:
        from ..base.version import __version__

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


class Ensemble(_PackedParameters):
    """E networks of one architecture and dtype, stacked on a leading axis: `W` (E, L, n, n[, f, f]), `b` (E, L, n).

    Every API function (`forward`, `loss_and_gradients`, `scaled_ntk`, `gradient_descent`) takes an ensemble
    and returns its results with a leading E axis, computed for all networks in one backend call. `ensemble[e]`
    is network e as `Params` (views: no copy). Build one with `init_params(spec, seeds=…)` or `stack_params`.
    """

    def __init__(self, spec, W, b, init: str = "custom", seeds=None, extra_meta: dict | None = None):
        check_spec(spec)
        if not isinstance(W, np.ndarray) or W.ndim < 1 or len(W) < 1:
            raise ParamsFileError(f"an ensemble needs W with a leading network axis, got {type(W).__name__}")
        check_packed(spec, W, b, (len(W),))
        seeds = (None,) * len(W) if seeds is None else tuple(seeds)
        if len(seeds) != len(W):
            raise ParamsFileError(f"{len(seeds)} seeds for {len(W)} networks")
        self._store(spec, W, b, init, extra_meta)
        self.seeds = seeds

    def __len__(self) -> int:
        return len(self.W)

    def __getitem__(self, e: int) -> Params:
        return Params._around(self.spec, self.W[e], self.b[e], self.init, self.seeds[e], self.extra_meta)

    def __iter__(self):
        return (self[e] for e in range(len(self)))

    def astype(self, dtype) -> "Ensemble":
        dtype = resolve_dtype(dtype)
        return Ensemble(self.spec, self.W.astype(dtype), self.b.astype(dtype), self.init, self.seeds,
                        self.extra_meta)

    def with_packed(self, W, b, init: str = "custom") -> "Ensemble":
        return Ensemble(self.spec, W, b, init=init, seeds=self.seeds, extra_meta=self.extra_meta)


def stack_params(networks) -> Ensemble:
    """One `Ensemble` from `Params` of the same architecture and dtype (different seeds, or one network at
    several training checkpoints); the arrays are copied into the stacked layout."""
    networks = list(networks)
    if not networks:
        raise SpecError("stack_params needs at least one Params")
    for params in networks:
        if not isinstance(params, Params):
            raise TypeError(f"stack_params takes deepntk.Params, got {type(params).__name__}")
    first = networks[0]
    for e, params in enumerate(networks[1:], start=1):
        if params.spec != first.spec:
            raise SpecError(f"network {e} is a {params.spec}, network 0 a {first.spec}: an ensemble holds one "
                            f"architecture")
        if params.dtype != first.dtype:
            raise SpecError(f"network {e} is {params.dtype}, network 0 {first.dtype}: an ensemble holds one dtype")
    inits = {params.init for params in networks}
    return Ensemble(first.spec, np.stack([p.W for p in networks]), np.stack([p.b for p in networks]),
                    init=inits.pop() if len(inits) == 1 else "custom", seeds=[p.seed for p in networks])


def check_spec(spec) -> None:
    """A spec whose parameters deepntk can hold: an architecture (TypeError otherwise) that fits the packed layout
    (its `check_storable`)."""
    if not isinstance(spec, Architecture):
        raise TypeError(f"the spec must be an architecture spec such as deepntk.MLP or deepntk.CNN, got "
                        f"{type(spec).__name__}")
    spec.check_storable()


def check_packed(spec, W, b, lead: tuple) -> None:
    """Raise ParamsFileError unless W, b are float arrays of the packed shapes of `spec` behind `lead`, all finite."""
    shapes = {"W": lead + (spec.weight_layers, spec.width, spec.width) + spec.packed_tail,
              "b": lead + (spec.weight_layers, spec.width)}
    arrays = {"W": W, "b": b}
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray):
            raise ParamsFileError(f"packed {name} must be a NumPy array, got {type(array).__name__}")
        if array.shape != shapes[name]:
            raise ParamsFileError(f"packed {name} has shape {array.shape}, expected {shapes[name]}")
        resolve_dtype(array.dtype)
        if not np.all(np.isfinite(array)):
            raise ParamsFileError(f"packed {name} contains NaN or infinite values")
    if W.dtype != b.dtype:
        raise ParamsFileError(f"W and b must share one dtype, got {W.dtype} and {b.dtype}")


def check_shapes(spec, weights, biases) -> None:
    """Raise ParamsFileError naming the first array whose presence or shape does not fit the spec."""
    if not isinstance(weights, (list, tuple)) or not isinstance(biases, (list, tuple)):
        raise TypeError(f"weights and biases must be lists of arrays, got {type(weights).__name__} and "
                        f"{type(biases).__name__}")
    if len(weights) != spec.weight_layers or len(biases) != spec.weight_layers:
        raise ParamsFileError(f"expected {spec.weight_layers} weight and bias arrays, got {len(weights)} and {len(biases)}")
    for layer in range(1, spec.weight_layers + 1):
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
    for layer in range(1, spec.weight_layers + 1):
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


def init_params(spec, init: str = "paper", seed: int = 0, dtype="float64", *, seeds=None):
    """Draw the parameters of `spec` on the host from an integer seed, or an `Ensemble` from several.

    Args:
        spec: an `MLP` or `CNN`.
        init: "paper" (docs/networks.md exactly) or "kaiming-uniform" (PyTorch's default for `nn.Linear` and
            `nn.Conv2d`: weights and biases ~ U(±1/√fan_in)).
        seed: integer seed; the same seed gives the same arrays on every backend and dtype (drawn in float64).
        dtype: "float64" or "float32". Warns (PrecisionWarning) where it cannot resolve the output at C_L.
        seeds: instead of `seed`, an iterable of seeds (e.g. `range(10)`): returns an `Ensemble` whose network
            e equals `init_params(spec, init, seeds[e], dtype)`.

    Raises:
        MemoryBudgetError: the parameters would not fit in the memory available (checked before drawing).
    """
    check_spec(spec)
    if init not in INITS:
        raise SpecError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    dtype = resolve_dtype(dtype)
    if seeds is not None:
        if seed != 0:
            raise SpecError("give seed (one network) or seeds (an ensemble), not both")
        seeds = [_check_seed(s) for s in seeds]
        if not seeds:
            raise SpecError("seeds must name at least one seed")
    else:
        seed = _check_seed(seed)
    count = 1 if seeds is None else len(seeds)
    # The stacked arrays, plus one network's float64 draws and their packed copy.
    require_memory(count * params_bytes(spec, dtype) + 2 * params_bytes(spec, np.float64),
                   f"{'a' if seeds is None else count} {spec.arch.upper()}{'' if seeds is None else 's'} of depth "
                   f"{spec.depth}")
    warn_if_unresolved(spec.carrier_scale, dtype)
    if seeds is None:
        W, b = _draw(spec, init, seed, dtype)
        return Params._around(spec, W, b, init, seed)
    W = np.empty((count, spec.weight_layers, spec.width, spec.width) + spec.packed_tail, dtype=dtype)
    b = np.empty((count, spec.weight_layers, spec.width), dtype=dtype)
    for e, one in enumerate(seeds):
        W[e], b[e] = _draw(spec, init, one, dtype)
    return Ensemble(spec, W, b, init=init, seeds=seeds)


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise SpecError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _draw(spec, init, seed, dtype):
    """Packed (W, b) of one network drawn from `seed` in float64, then cast."""
    rng = np.random.default_rng(seed)
    weights, biases = _kaiming_uniform(spec, rng) if init == "kaiming-uniform" else spec.paper_weights(rng)
    return pack_layers(spec, weights, biases, dtype)


def _kaiming_uniform(spec, rng):
    weights, biases = [], []
    for layer in range(1, spec.weight_layers + 1):
        bound = 1.0 / np.sqrt(spec.fan_in(layer))
        weights.append(rng.uniform(-bound, bound, size=spec.weight_shape(layer)))
        biases.append(rng.uniform(-bound, bound, size=spec.bias_shape(layer)))
    return weights, biases
