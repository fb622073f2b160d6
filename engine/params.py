"""Parameters: drawn once on the host (so every backend sees identical weights), saved and loaded as `.npz`.

File contract: arrays `W1 … WL` (MLP, shape (out, in), PyTorch `nn.Linear` layout) or `w1 … wL` (CNN, shape
(out_ch, in_ch, f, f), PyTorch `Conv2d` layout), `b1 … bL` (shape (out,)), and a JSON string under `meta`
(arch, sizes, depth, C_L, rho, beta, init, seed, dtype, deepntk version).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace

import numpy as np

from deepntk.engine.errors import ParamsFileError, SpecError
from deepntk.engine.results import write_npz
from deepntk.engine.spec import CNN, MLP, spec_from_meta

INITS = ("paper", "kaiming-uniform")
DTYPES = {"float64": np.float64, "float32": np.float32}


def resolve_dtype(dtype) -> np.dtype:
    """Accept 'float32'/'float64' or a NumPy float dtype; reject everything else."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise SpecError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise SpecError(f"dtype must be float32 or float64, got {dtype!r}")
    return resolved


def weight_key(spec, layer: int) -> str:
    """Name of layer `layer`'s (1-based) weight array in a params file."""
    return f"{'w' if spec.arch == 'cnn' else 'W'}{layer}"


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

    spec: MLP | CNN
    weights: list
    biases: list
    init: str = "custom"
    seed: int | None = None
    extra_meta: dict = field(default_factory=dict)

    def __post_init__(self):
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
        """1/(L·C_L²), the factor that turns the NTK into the scaled NTK Θ̃ (paper §3.2)."""
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
            arrays[weight_key(self.spec, layer)] = w
            arrays[f"b{layer}"] = b
        arrays["meta"] = np.array(json.dumps(self.meta()))
        write_npz(os.fspath(path), **arrays)


def check_shapes(spec, weights, biases) -> None:
    """Raise ParamsFileError naming the first array whose presence or shape does not fit the spec."""
    if len(weights) != spec.depth or len(biases) != spec.depth:
        raise ParamsFileError(f"expected {spec.depth} weight and bias arrays, got {len(weights)} and {len(biases)}")
    for layer in range(1, spec.depth + 1):
        for key, array, shape in ((weight_key(spec, layer), weights[layer - 1], spec.weight_shape(layer)),
                                  (f"b{layer}", biases[layer - 1], spec.bias_shape(layer))):
            if not isinstance(array, np.ndarray):
                raise ParamsFileError(f"{key} must be a NumPy array, got {type(array).__name__}")
            if array.shape != shape:
                raise ParamsFileError(f"{key} has shape {array.shape}, expected {shape}")
            if not np.all(np.isfinite(array)):
                raise ParamsFileError(f"{key} contains NaN or infinite values")


def load_params(path) -> Params:
    """Read a params `.npz` file, checking every array against the spec stored in its `meta`."""
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ParamsFileError(f"params file {path!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ParamsFileError(f"cannot read params file {path!r} as .npz: {exc}") from None
    with archive:
        if "meta" not in archive.files:
            raise ParamsFileError(f"{path!r} has no 'meta' entry (not a deepntk params file)")
        try:
            meta = json.loads(str(archive["meta"]))
        except json.JSONDecodeError as exc:
            raise ParamsFileError(f"{path!r}: 'meta' is not valid JSON: {exc}") from None
        try:
            spec = spec_from_meta(meta)
        except (SpecError, TypeError) as exc:
            raise ParamsFileError(f"{path!r}: invalid architecture in 'meta': {exc}") from None
        weights, biases = [], []
        for layer in range(1, spec.depth + 1):
            for key, target in ((weight_key(spec, layer), weights), (f"b{layer}", biases)):
                if key not in archive.files:
                    raise ParamsFileError(f"{path!r} is missing array {key}")
                target.append(archive[key])
    known = set(spec.to_meta()) | {"init", "seed", "dtype", "deepntk_version"}
    extra = {k: v for k, v in meta.items() if k not in known}
    return Params(spec, weights, biases, init=meta.get("init", "custom"), seed=meta.get("seed"), extra_meta=extra)


def init_params(spec, init: str = "paper", seed: int = 0, dtype="float64") -> Params:
    """Draw the parameters of `spec` on the host from an integer seed.

    Args:
        spec: an `MLP` or `CNN`.
        init: "paper" (SPEC §MLP / §CNN exactly) or "kaiming-uniform" (PyTorch's default for `nn.Linear` and
            `nn.Conv2d`: weights and biases ~ U(±1/√fan_in)).
        seed: integer seed; the same seed gives the same arrays on every backend and dtype (drawn in float64).
        dtype: "float64" or "float32".
    """
    if init not in INITS:
        raise SpecError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError(f"seed must be a non-negative integer, got {seed!r}")
    dtype = resolve_dtype(dtype)
    rng = np.random.default_rng(int(seed))
    if init == "kaiming-uniform":
        weights, biases = _kaiming_uniform(spec, rng)
    elif spec.arch == "mlp":
        weights, biases = _paper_mlp(spec, rng)
    else:
        weights, biases = _paper_cnn(spec, rng)
    return Params(spec, [w.astype(dtype) for w in weights], [b.astype(dtype) for b in biases],
                  init=init, seed=int(seed))


def _kaiming_uniform(spec, rng):
    weights, biases = [], []
    for layer in range(1, spec.depth + 1):
        bound = 1.0 / np.sqrt(spec.fan_in(layer))
        weights.append(rng.uniform(-bound, bound, size=spec.weight_shape(layer)))
        biases.append(rng.uniform(-bound, bound, size=spec.bias_shape(layer)))
    return weights, biases


def _paper_mlp(spec: MLP, rng):
    """SPEC §MLP: carriers pass x and C_L·1 through, one random unit per layer reads the input carriers."""
    d_in, k, n, L, C = spec.d_in, spec.d_out, spec.width, spec.depth, float(spec.C_L)
    random_unit = d_in
    u_std = spec.rho / np.sqrt(d_in)
    v_std = C * spec.beta
    weights, biases = [], []

    first_w = np.zeros((n, d_in))
    first_w[:d_in] = C * np.eye(d_in)
    first_w[random_unit] = rng.normal(0.0, u_std, size=d_in)
    first_b = np.zeros(n)
    first_b[random_unit] = rng.normal(0.0, v_std)
    first_b[d_in + 1:] = C
    weights.append(first_w)
    biases.append(first_b)

    for _ in range(2, L):
        w = np.zeros((n, n))
        w[:d_in, :d_in] = np.eye(d_in)
        w[random_unit, :d_in] = rng.normal(0.0, u_std, size=d_in)
        w[d_in + 1:, d_in + 1:] = np.eye(k)
        b = np.zeros(n)
        b[random_unit] = rng.normal(0.0, v_std)
        weights.append(w)
        biases.append(b)

    last_w = np.zeros((k, n))
    last_w[:, d_in + 1:] = np.eye(k)
    weights.append(last_w)
    biases.append(np.full(k, -C))
    return weights, biases


def _paper_cnn(spec: CNN, rng):
    """SPEC §CNN: identity filters ι on the carriers, a random filter from the input carriers."""
    c, k, n, L, f, C = spec.in_channels, spec.outputs, spec.width, spec.depth, spec.filter_size, float(spec.C_L)
    random_channel = c
    centre = f // 2
    u_std = spec.rho * np.sqrt(spec.tap_variance)
    v_std = C * spec.beta
    weights, biases = [], []

    first_w = np.zeros((n, c, f, f))
    first_w[np.arange(c), np.arange(c), centre, centre] = C
    first_w[random_channel] = rng.normal(0.0, u_std, size=(c, f, f))
    first_b = np.zeros(n)
    first_b[random_channel] = rng.normal(0.0, v_std)
    first_b[c + 1:] = C
    weights.append(first_w)
    biases.append(first_b)

    carriers = np.r_[np.arange(c), np.arange(c + 1, n)]
    for _ in range(2, L):
        w = np.zeros((n, n, f, f))
        w[carriers, carriers, centre, centre] = 1.0
        w[random_channel, :c] = rng.normal(0.0, u_std, size=(c, f, f))
        b = np.zeros(n)
        b[random_channel] = rng.normal(0.0, v_std)
        weights.append(w)
        biases.append(b)

    last_w = np.zeros((k, n, f, f))
    last_w[np.arange(k), c + 1 + np.arange(k), centre, centre] = 1.0
    weights.append(last_w)
    biases.append(np.full(k, -C))
    return weights, biases
