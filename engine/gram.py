"""Grams larger than memory, tiled into a Zarr store by Dask workers (`deepntk gram`, `deepntk.gram`).

One task per tile of the Gram (upper tiles only for a symmetric Gram); each task reads its rows and columns of
the inputs from the store, computes the tile with one of the package's kernels, writes it into its own chunk
(tile boundaries are chunk boundaries, so no locks), then records the tile's CRC-32 in its own chunk of the
`done` array. The store also records the kernel's whole configuration and the inputs' digests, so a run can
be resumed after any crash (client, worker, machine): tiles without a record are recomputed, recorded tiles
are re-read and checked against their CRC (a damaged chunk is recomputed), and a store made for another
configuration is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from ..base.errors import FileFormatError, InputError, option
from ..base.memory import require_disk
from ..base.validate import warns_once_per_cause

# The closed forms' kinds, each a method of the spec: the wide MLP's NTK Θ^L (its limit kernel) and NNGP Σ^L.
CLOSED_FORMS = {"limit": "limit_kernel", "expected": "expected_kernel", "wide-ntk": "limit_kernel",
                "wide-nngp": "nngp_kernel"}
WIDE_KERNELS = ("wide-ntk", "wide-nngp")
KERNELS = ("limit", "expected", "ntk") + WIDE_KERNELS
STORE_FORMAT = 1


class GramStoreError(FileFormatError):
    """A Gram store that is missing, damaged, or made for another configuration."""


def digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(str(array.shape).encode() + str(array.dtype).encode() + array.tobytes()).hexdigest()


@dataclass(frozen=True)
class GramKernel:
    """Which kernel a Gram holds, with everything its value depends on.

    Attributes:
        kind: "limit" (Θ̃^∞; Θ^L for the wide MLP), "expected" (E Θ̃ at the spec's depth and C_L), "ntk" (the
            scaled NTK of the network in `params_path`), or "wide-ntk" / "wide-nngp" (the wide MLP's
            infinite-width NTK Θ^L / NNGP Σ^L at the spec's depth and scales; docs/limit-kernels.md).
        spec: the architecture's metadata (`spec.to_meta()`).
        params_path, params_digest: the params file of an "ntk" kernel and the SHA-256 of its bytes.
        backend: the backend that computes the tiles (the NTK, or the closed forms' costly pieces); part of
            the configuration for "ntk" only, since the closed forms agree across backends to rounding.
    """

    kind: str
    spec: dict
    params_path: str | None = None
    params_digest: str | None = None
    backend: str | None = None

    def __post_init__(self):
        if self.kind not in KERNELS:
            raise InputError(f"unknown kernel {self.kind!r}; choose one of {', '.join(KERNELS)}")
        if (self.kind == "ntk") != (self.params_path is not None):
            raise InputError("the ntk kernel needs a params file, and only it takes one")
        if self.kind in WIDE_KERNELS and self.spec.get("arch") != "wide-mlp":
            raise InputError(f"the {self.kind} kernel is the wide MLP's (arch wide-mlp), not the "
                             f"{self.spec.get('arch')}'s")

    @classmethod
    def for_spec(cls, kind: str, spec, params_path=None, backend=None) -> "GramKernel":
        if params_path is not None:
            from .params import load_params

            spec = load_params(params_path).spec
            with open(params_path, "rb") as handle:
                return cls(kind, spec.to_meta(), os.path.abspath(params_path), hashlib.sha256(handle.read()).hexdigest(),
                           backend)
        return cls(kind, spec.to_meta(), backend=backend)

    def architecture(self):
        from .architectures import spec_from_meta

        return spec_from_meta(self.spec)

    @property
    def value_shape(self) -> tuple:
        """Each entry: the scalar factor of I_k for the closed forms, the k×k block for the NTK."""
        k = self.architecture().outputs
        return (k, k) if self.kind == "ntk" else ()

    def config(self) -> dict:
        """What the Gram's values depend on (the params file by content, not by path)."""
        config = asdict(self)
        config.pop("params_path")
        if self.kind != "ntk":
            config.pop("backend")
        if self.kind in WIDE_KERNELS:  # the infinite-width kernels do not depend on the width
            config["spec"] = {key: value for key, value in self.spec.items() if key != "width"}
        return config

    def block(self, A: np.ndarray, B: np.ndarray | None) -> np.ndarray:
        """The kernel between input blocks as the user gives them (B None: A with itself)."""
        if self.kind == "ntk":
            from .api import scaled_ntk

            return scaled_ntk(_params(self.params_path, self.params_digest), A, B, backend=self.backend)
        spec = self.architecture()
        A = spec.prepare_inputs(A)
        B = None if B is None else spec.prepare_inputs(B)
        return closed_form(self.kind, spec)(A, B, backend=self.backend)

    def flops_per_pair(self) -> float:
        """Floating-point operations one entry costs, roughly (arc-cosine evaluations ≈ 40 FLOPs each)."""
        spec = self.architecture()
        if self.kind == "ntk":
            n, k = spec.width, spec.outputs
            return spec.weight_layers * (2 * n + 2 * k * k * n + 2 * k * k) * spec.inner_size**2
        if spec.arch == "wide-mlp":
            # The input dot product, then the depth map's table (≈ 70 FLOPs with its log and arccos), or with
            # σ_b² > 0 the recursion (≈ 60 FLOPs a layer).
            return 2.0 * spec.d_in + (70.0 if spec.sigma_b2 == 0 else 60.0 * spec.depth)
        evaluations = spec.inner_size**4 * (2 if self.kind == "expected" else 1)
        return 40.0 * evaluations + 2.0 * int(np.prod(spec.input_shape))


def closed_form(kind: str, spec):
    """The spec's method `(A, B, backend=) → (N1, N2)` that computes the closed-form kernel `kind` (a key of
    CLOSED_FORMS) on prepared inputs: what the Gram's tiles and `deepntk predict` run.

    Raises:
        InputError: `kind` is not a closed form of this spec (the wide kernels are the wide MLP's only).
    """
    if kind not in CLOSED_FORMS:
        raise InputError(f"unknown closed-form kernel {kind!r}; choose one of {', '.join(CLOSED_FORMS)}")
    if kind in WIDE_KERNELS and spec.arch != "wide-mlp":
        raise InputError(f"the {kind} kernel is the wide MLP's (arch wide-mlp), not the {spec.arch}'s")
    return getattr(spec, CLOSED_FORMS[kind])


@functools.lru_cache(maxsize=4)
def _params(path: str, expected_digest: str):
    """A worker's copy of the params of an "ntk" Gram, read once per process and checked against the digest."""
    from .params import load_params

    with open(path, "rb") as handle:
        if hashlib.sha256(handle.read()).hexdigest() != expected_digest:
            raise GramStoreError(f"params file {path!r} changed since the Gram store was made")
    return load_params(path)


def tile_slice(index: int, tile: int, count: int) -> slice:
    """Rows (or columns) of tile `index` among `count`, in tiles of side `tile`."""
    return slice(index * tile, min(count, (index + 1) * tile))


def tile_slices(count: int, tile: int) -> list[slice]:
    return [tile_slice(index, tile, count) for index in range(-(-count // tile))]


def choose_tile(n1: int, n2: int, requested: int | None) -> int:
    """The tile side: as requested, else 2048 (tasks of a second or more at the kernels' rates), halved for small
    Grams until there are at least 4 tiles to share among workers, doubled while the graph would exceed 10⁴
    tasks."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, (int, np.integer)) or requested < 1:
            raise InputError(f"tile must be a positive integer, got {requested!r}")
        return int(requested)
    tile = 2048
    while tile > 64 and -(-n1 // tile) * -(-n2 // tile) < 4 and tile > max(n1, n2) // 2:
        tile //= 2
    while -(-n1 // tile) * -(-n2 // tile) > 10_000:
        tile *= 2
    return tile


@dataclass
class GramStore:
    """A Gram in a Zarr store on disk: its configuration, which tiles are complete, and a mirroring reader."""

    path: str
    config: dict
    group: object = field(repr=False)
    _seen_complete: bool = field(default=False, repr=False, compare=False)

    @functools.cached_property
    def shape(self) -> tuple:
        # Fixed when the store is created; reading it opens the array's metadata (milliseconds), and the solvers
        # ask for it on every tile of every product.
        return tuple(self.group["gram"].shape)

    @property
    def symmetric(self) -> bool:
        return bool(self.config["symmetric"])

    @property
    def tile(self) -> int:
        return int(self.config["tile"])

    def tiles(self) -> list[tuple[int, int]]:
        """Every tile (i, j) the Gram needs: the upper ones (j ≥ i) for a symmetric Gram."""
        n1, n2 = -(-self.shape[0] // self.tile), -(-self.shape[1] // self.tile)
        return [(i, j) for i in range(n1) for j in range(n2) if not self.symmetric or j >= i]

    def recorded(self) -> np.ndarray:
        """The CRC-32 of each tile as recorded when it was written, −1 where none is."""
        return self.group["done"][:]

    def complete_tiles(self, verify: bool = True) -> set:
        """Tiles recorded as written whose chunk reads back with the recorded CRC (all recorded ones without
        `verify`)."""
        record = self.recorded()
        good = set()
        for i, j in self.tiles():
            if record[i, j] < 0:
                continue
            if not verify or self._tile_crc(i, j) == record[i, j]:
                good.add((i, j))
        return good

    def _tile_crc(self, i: int, j: int) -> int:
        rows, cols = self.slices(i, j)
        try:
            return tile_crc(self.group["gram"][rows, cols])
        except Exception:  # a chunk that no longer decodes is simply not complete
            return -2

    def _in_upper_tiles(self, rows, cols) -> bool:
        """Whether plain slices `rows`, `cols` lie in stored (upper or diagonal) tiles only: read as they are, not
        entry by entry through the mirror."""
        if not (isinstance(rows, slice) and isinstance(cols, slice) and rows.step in (None, 1)
                and cols.step in (None, 1)):
            return False
        first_row, last_row, _ = rows.indices(self.shape[0])
        first_col, last_col, _ = cols.indices(self.shape[1])
        if last_row <= first_row or last_col <= first_col:
            return False
        return (last_row - 1) // self.tile <= first_col // self.tile

    def slices(self, i: int, j: int) -> tuple[slice, slice]:
        """The rows and columns of tile (i, j)."""
        return tile_slice(i, self.tile, self.shape[0]), tile_slice(j, self.tile, self.shape[1])

    def entries(self, i: int, j: int) -> int:
        """Gram entries (input pairs) in tile (i, j)."""
        rows, cols = self.slices(i, j)
        return (rows.stop - rows.start) * (cols.stop - cols.start)

    @property
    def complete(self) -> bool:
        # A written tile's record is only ever overwritten with another CRC, so a store once seen complete stays
        # complete: readers that ask before every tile read the record (one Zarr chunk per tile) once, not per tile.
        if not self._seen_complete:
            record = self.recorded()
            self._seen_complete = all(record[i, j] >= 0 for i, j in self.tiles())
        return self._seen_complete

    def read(self, rows=slice(None), cols=slice(None)) -> np.ndarray:
        """Gram entries as a NumPy array; for a symmetric Gram the lower tiles are read from their mirror."""
        if not self.complete:
            missing = sum(1 for i, j in self.tiles() if self.recorded()[i, j] < 0)
            raise GramStoreError(f"Gram store {self.path!r} is incomplete ({missing} tiles missing); complete it with {option('resume')}")
        gram = self.group["gram"]
        if not self.symmetric or self._in_upper_tiles(rows, cols):
            return gram[rows, cols]
        rows = np.arange(self.shape[0])[rows]
        cols = np.arange(self.shape[1])[cols]
        out = gram.get_orthogonal_selection((rows, cols))
        lower = (rows[:, None] // self.tile) > (cols[None, :] // self.tile)
        if lower.any():
            mirrored = gram.get_orthogonal_selection((cols, rows))
            mirrored = np.swapaxes(mirrored, 0, 1)
            if mirrored.ndim == 4:
                mirrored = mirrored.transpose(0, 1, 3, 2)
            out = np.where(lower.reshape(lower.shape + (1,) * (out.ndim - 2)), mirrored, out)
        return out


def tile_crc(block: np.ndarray) -> int:
    # The array's own buffer, not a bytes copy of it (32 MiB for a 2048² tile).
    return zlib.crc32(np.ascontiguousarray(block, dtype=np.float64))


def open_store(path) -> GramStore:
    """Open an existing Gram store for reading (or resuming)."""
    import zarr

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise GramStoreError(f"Gram store {path!r} does not exist")
    try:
        group = zarr.open_group(path, mode="r+")
        config = dict(group.attrs["deepntk"])
        group["gram"], group["done"], group["x1"]
    except Exception as exc:
        raise GramStoreError(f"{path!r} is not a deepntk Gram store ({type(exc).__name__}: {exc})") from None
    if config.get("format") != STORE_FORMAT:
        raise GramStoreError(f"Gram store {path!r} has format {config.get('format')!r}, expected {STORE_FORMAT}")
    return GramStore(path, config, group)


def chunk_bytes(kernel: GramKernel, tile: int) -> int:
    """Bytes one stored tile occupies on disk: a full tile×tile chunk of float64 values, uncompressed (Zarr stores
    the edge tiles' chunks at full size too)."""
    return tile * tile * int(np.prod(kernel.value_shape, dtype=np.int64)) * 8


def create_store(path, kernel: GramKernel, X1: np.ndarray, X2: np.ndarray | None, tile: int,
                 resume: bool) -> GramStore:
    """A new store for this Gram, or the existing one when `resume` and its configuration matches."""
    import zarr

    path = os.fspath(path)
    n1, n2 = len(X1), len(X1) if X2 is None else len(X2)
    config = {"format": STORE_FORMAT, "kernel": kernel.config(), "shape": [n1, n2] + list(kernel.value_shape),
              "tile": tile, "symmetric": X2 is None, "x1": digest(X1), "x2": None if X2 is None else digest(X2)}
    if os.path.exists(path):
        if not resume:
            raise GramStoreError(f"Gram store {path!r} already exists; pass {option('resume')} to complete it, or "
                                 f"choose another path")
        store = open_store(path)
        # JSON round trip: the stored configuration is JSON, so compare like with like.
        wanted = json.loads(json.dumps(config))
        if store.config != wanted:
            from .results import describe_differences

            raise GramStoreError(f"Gram store {path!r} was made for another configuration (differs in: "
                                 f"{describe_differences(store.config, wanted)}); choose another path")
        return store
    # Built beside its final name and renamed into place, so a store that exists is always whole.
    building = f"{path}.building-{os.getpid()}"
    group = zarr.open_group(building, mode="w")
    value_chunks = tuple(kernel.value_shape)
    # Uncompressed: float64 kernel values are mantissa noise to a compressor. Zarr's default (Zstandard, level 0)
    # kept 94% of the bytes of the wide NTK's 2048² MNIST tiles and took 0.07 s of each tile's 0.41 s (CPU time).
    group.create_array("gram", shape=(n1, n2) + value_chunks, chunks=(tile, tile) + value_chunks, dtype="f8",
                       fill_value=np.nan, compressors=None)
    group.create_array("done", shape=(-(-n1 // tile), -(-n2 // tile)), chunks=(1, 1), dtype="i8", fill_value=-1)
    for name, X in (("x1", X1), ("x2", X2)):
        if X is not None:
            array = group.create_array(name, shape=X.shape, chunks=(tile,) + X.shape[1:], dtype="f8")
            array[...] = X
    group.attrs["deepntk"] = config
    os.replace(building, path)
    return open_store(path)


def compute_tile(path: str, kernel: GramKernel, i: int, j: int) -> tuple:
    """One task: read tile (i, j)'s inputs from the store, compute it, write its chunk, then record its CRC.

    Returns (i, j, seconds, bytes written, (process id, wall-clock start))."""
    import zarr

    from .clusters import threads_per_worker

    started = time.perf_counter()
    wall_start = time.time()
    threads_per_worker()
    group = zarr.open_group(path, mode="r+")
    config = group.attrs["deepntk"]
    tile, symmetric = config["tile"], config["symmetric"]
    n1, n2 = config["shape"][:2]
    rows, cols = tile_slice(i, tile, n1), tile_slice(j, tile, n2)
    A = group["x1"][rows]
    diagonal = symmetric and i == j
    B = None if diagonal else (group["x1"] if symmetric else group["x2"])[cols]
    block = np.asarray(kernel.block(A, B), dtype=np.float64)
    group["gram"][rows, cols] = block
    group["done"][i, j] = tile_crc(block)
    return i, j, time.perf_counter() - started, block.nbytes, (os.getpid(), wall_start)


@dataclass
class GramReport:
    """What a `gram` run did."""

    store: GramStore
    tiles: int
    computed: int
    reused: int
    seconds: float
    bytes_written: int
    flops: float
    task_seconds: float = 0.0
    task_spans: list = field(default_factory=list)
    pairs: int = 0

    def scheduling_overhead(self) -> float:
        """The share of each worker's span (its first task's start to its last task's end) spent between its
        tasks: Dask's cost per task, without the idle tail of an uneven last round."""
        spans = {}
        for pid, start, seconds in self.task_spans:
            first, last, busy = spans.get(pid, (start, start + seconds, 0.0))
            spans[pid] = (min(first, start), max(last, start + seconds), busy + seconds)
        total = sum(last - first for first, last, _ in spans.values())
        return max(0.0, 1.0 - sum(busy for _, _, busy in spans.values()) / total) if total > 0 else 0.0

    @property
    def gflops(self) -> float:
        return self.flops / max(self.seconds, 1e-12) / 1e9

    def summary(self) -> dict:
        """What the run did, as `deepntk gram --report` writes it (docs/files.md#gram-stores-deepntk-gram): the
        store's path, shape and tile side, the tiles computed and already complete, the wall seconds of the tiles'
        computation, the bytes written, the FLOPs (`GramKernel.flops_per_pair`'s estimate) and GFLOP/s, the input
        pairs computed (the upper tiles' only, for a symmetric Gram) and per second, and the kernel's
        configuration."""
        return {"store": os.path.abspath(self.store.path), "shape": list(self.store.shape[:2]),
                "tile": self.store.tile, "tiles": self.tiles, "computed": self.computed, "reused": self.reused,
                "seconds": self.seconds, "bytes_written": self.bytes_written, "flops": self.flops,
                "gflops": self.gflops, "pairs": self.pairs,
                "pairs_per_second": self.pairs / max(self.seconds, 1e-12),
                "kernel": self.store.config["kernel"]}


@warns_once_per_cause
def gram(kernel: GramKernel, X1, X2=None, *, store, tile: int | None = None, client=None, cluster="local",
         workers: int | None = None, resume: bool = False, verify: bool = True, on_tile=None) -> GramReport:
    """Compute the Gram of `kernel` between X1 and X2 (X2 None: X1 with itself, upper tiles only) into the Zarr
    store at `store`, one Dask task per tile.

    Args:
        kernel: a `GramKernel` (`GramKernel.for_spec("limit", spec)`, …).
        X1, X2: inputs as the architecture takes them ((N, d_in) or (N, c, d, d)).
        store: the store's folder (`.zarr`).
        tile: the tile side (default: chosen so a graph holds ≲ 10⁴ tasks).
        client: a `distributed.Client` to use; else one is started from `cluster` ("local", "tcp://host:port",
            "slurm", "pbs", "local-cuda"; see `deepntk.engine.clusters`).
        resume: complete an existing store made with the same configuration.
        verify: on resume, re-read every recorded tile and recompute those whose CRC does not match.
        on_tile: called with (done, total): first, before any tile is computed, with the tiles an earlier run
            completed (0 in a new store), then as tiles complete (a progress display starts from the first call,
            so its rate counts this run's tiles only).
    """
    from ..base.validate import check_input_sets

    if client is None and cluster in ("local", "local-cuda"):
        from .clusters import check_main_guard

        check_main_guard()  # before the store exists, so the corrected script starts afresh
    spec = kernel.architecture()
    A, B = check_input_sets({"X1": X1, "X2": X2}, spec, pool=False)
    tile = choose_tile(len(A), len(A) if B is None else len(B), tile)
    resuming = os.path.exists(store)
    if not resuming:  # refused before the store exists, so a retry on a larger disk starts afresh
        rows, cols = -(-len(A) // tile), -(-(len(A) if B is None else len(B)) // tile)
        require_disk(store, chunk_bytes(kernel, tile) * (rows * (rows + 1) // 2 if B is None else rows * cols),
                     f"the Gram store {os.fspath(store)!r}")
    gram_store = create_store(store, kernel, A, B, tile, resume)
    complete = gram_store.complete_tiles(verify)
    todo = [t for t in gram_store.tiles() if t not in complete]
    if resuming:  # only the tiles not yet written need room
        require_disk(store, chunk_bytes(kernel, tile) * len(todo),
                     f"the {len(todo)} tiles left of {os.fspath(store)!r}")
    total = len(gram_store.tiles())
    reused = total - len(todo)
    started = time.perf_counter()
    written, busy, spans = 0, 0.0, []
    if on_tile:
        on_tile(reused, total)
    if todo:
        from .clusters import dask_client

        with dask_client(client, cluster, workers) as active:
            from distributed import as_completed

            # The workers of a running cluster (tcp://…) have their own working directories: the store by its
            # absolute path.
            where = os.path.abspath(gram_store.path)
            futures = [active.submit(compute_tile, where, kernel, i, j, pure=False) for i, j in todo]
            for done, future in enumerate(as_completed(futures), start=1):
                _, _, seconds, nbytes, (pid, wall_start) = future.result()
                written += nbytes
                busy += seconds
                spans.append((pid, wall_start, seconds))
                if on_tile:
                    on_tile(reused + done, total)
    seconds = time.perf_counter() - started
    pairs = sum(gram_store.entries(i, j) for i, j in todo)
    return GramReport(gram_store, total, len(todo), reused, seconds, written, pairs * kernel.flops_per_pair(), busy,
                      spans, pairs)

