"""Datasets: MNIST from IDX files in any folder (plain or .gz), and the toy data of the paper's Fig. 3.

MNIST is looked for in `data_dir`, else $DEEPNTK_DATA, else the user's cache folder ($XDG_CACHE_HOME or
~/.cache)/deepntk/mnist. Missing files are downloaded there from the canonical mirror with MD5 verification
when the network allows, so later runs find them; otherwise the error says where to put them. When only the
test files are present (e.g. a folder holding just the 10,000-image test set), a seeded split of them gives
the training and test sets.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import urllib.request
from dataclasses import dataclass

import numpy as np

from ..architectures import average_pool
from ...base.errors import InputError, option
from ...base.validate import mark_package_inputs

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "train-images": ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train-labels": ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test-images": ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
    "test-labels": ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
}
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(InputError):
    """A dataset file that is missing, corrupt, or inconsistent."""


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed), validating its magic number and size."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: corrupt IDX header (type 0x{code:02x}, {ndim} dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{path}: IDX header says {shape} ({expected} bytes of data) but the file holds "
                        f"{len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
    """Write an IDX file (uint8 or float64 arrays; gzip when the name ends in .gz). For tests and exports."""
    array = np.asarray(array)
    code = {np.dtype(np.uint8): 0x08, np.dtype(">f8"): 0x0E, np.dtype(np.float64): 0x0E}[array.dtype]
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.astype(">f8" if code == 0x0E else np.uint8).tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(payload)


def _find(folder: str, base: str):
    for name in (base, base + ".gz"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def _download(folder: str, base: str, md5: str) -> str:
    url = MIRROR + base + ".gz"
    target = os.path.join(folder, base + ".gz")
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            payload = response.read()
    except Exception as exc:  # no network, DNS failure, HTTP error: all mean "not available here"
        raise DataError(f"MNIST file {base} is not in {folder!r} and could not be downloaded from {url} "
                        f"({type(exc).__name__}); put {base}[.gz] there, or name the folder that holds it with "
                        f"{option('data_dir', None)} or DEEPNTK_DATA") from None
    if hashlib.md5(payload).hexdigest() != md5:
        raise DataError(f"downloaded {url} has the wrong MD5 checksum; not saved")
    os.makedirs(folder, exist_ok=True)
    with open(target, "wb") as handle:
        handle.write(payload)
    return target


def default_data_dir() -> str:
    """The per-user folder MNIST is downloaded to and read from by default: ($XDG_CACHE_HOME or ~/.cache)/deepntk/
    mnist, the cache convention deepntk's compiled kernels follow too (docs/experiments.md#mnist)."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "deepntk", "mnist")


def mnist_folder(data_dir: str | None) -> str:
    """Where MNIST is read from (and downloaded to): `data_dir`, else $DEEPNTK_DATA, else `default_data_dir()`."""
    return os.fspath(data_dir) if data_dir else os.environ.get("DEEPNTK_DATA") or default_data_dir()


def read_mnist_pair(folder: str, split: str, download: bool = True):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of 'train' or 'test', or None if absent and not fetched."""
    arrays = []
    for part in ("images", "labels"):
        base, md5 = MNIST_FILES[f"{split}-{part}"]
        path = _find(folder, base)
        if path is None:
            if not download:
                return None
            path = _download(folder, base, md5)
        arrays.append(read_idx(path))
    images, labels = arrays
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"MNIST {split}: expected images (N, rows, cols) and labels (N,), got {images.shape} and "
                        f"{labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"MNIST {split} in {folder!r}: the files hold no images")
    if labels.max(initial=0) > 9:
        raise DataError(f"MNIST {split}: labels outside 0…9")
    return images, labels


@dataclass
class Dataset:
    """Inputs and targets for training and testing; `labels` keep the class of each point."""

    name: str
    X_train: np.ndarray
    Y_train: np.ndarray
    labels_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    labels_test: np.ndarray
    note: str = ""


def load_mnist(data_dir: str | None = None, *, task: str = "digits", layout: str = "flat", pool: int = 1,
               shift: float = 0.0,
               train_size: int | None = None, test_size: int | None = None, split_seed: int = 0,
               test_fraction: float = 1 / 6, download: bool = True) -> Dataset:
    """MNIST as the paper uses it (docs/experiments.md#mnist).

    Args:
        task: "digits" (10 classes, one-hot targets) or "binary" (0 vs 1, scalar targets 0/1).
        layout: "flat" (N, 784) for the MLP or "image" (N, 1, 28, 28) for the CNN (whose spec pools 4×4).
        pool: average-pool the images pool×pool first (e.g. 4: 7×7, 49 inputs for a small MLP).
        shift: ε added to every pixel (pixels are in [0, 1]; the theory wants x > 0).
        train_size, test_size: keep the first n points (after a seeded shuffle) of each set.
        split_seed, test_fraction: used only when just the test files exist: a seeded split of them.
    """
    if task not in ("digits", "binary"):
        raise DataError(f"task must be 'digits' or 'binary', got {task!r}")
    folder = mnist_folder(data_dir)
    rng = np.random.default_rng(split_seed)
    test = read_mnist_pair(folder, "test", download)
    if test is None:
        raise DataError(f"no MNIST test files ({MNIST_FILES['test-images'][0]}[.gz], "
                        f"{MNIST_FILES['test-labels'][0]}[.gz]) in {folder!r}; put them there, or name the folder that "
                        f"holds them with {option('data_dir', None)} or DEEPNTK_DATA")
    train = read_mnist_pair(folder, "train", download=False)
    # Which data a run read, without the folder: results files travel (docs/results/ is published), paths do not.
    note = "MNIST's training and test files"
    if train is None:
        images, labels = test
        order = rng.permutation(len(labels))
        n_test = int(round(len(labels) * test_fraction))
        train = images[order[n_test:]], labels[order[n_test:]]
        test = images[order[:n_test]], labels[order[:n_test]]
        note = (f"only MNIST's test files were found: split them {len(order) - n_test}/{n_test} with seed "
                f"{split_seed}")

    def prepare(images, labels, size):
        if task == "binary":
            keep = labels <= 1
            images, labels = images[keep], labels[keep]
        order = np.random.default_rng(split_seed + 1).permutation(len(labels))[:size]
        images, labels = images[order], labels[order]
        X = average_pool(images.astype(np.float64) / 255.0, pool) + shift
        X = X.reshape(len(X), -1) if layout == "flat" else X[:, None]
        mark_package_inputs(X)  # MNIST's zero pixels are the paper's setting: no warning about them
        Y = labels.astype(np.float64)[:, None] if task == "binary" else np.eye(10)[labels]
        return X, Y, labels

    Xtr, Ytr, ltr = prepare(*train, train_size)
    Xte, Yte, lte = prepare(*test, test_size)
    return Dataset(f"mnist-{task}", Xtr, Ytr, ltr, Xte, Yte, lte, note)


def toy_dataset(points: int = 200) -> Dataset:
    """Fig. 3: the arc points (cos γ, sin γ) with target y = x₁x₂, and x₀ = (1/√2, 1/√2) as the test point."""
    from ...analytic import fig3_inputs, fig3_target

    x0, X, _ = fig3_inputs(points)
    return Dataset("toy", X, fig3_target(X), np.zeros(points, dtype=int), x0, fig3_target(x0), np.zeros(1, dtype=int))


DATASETS = ("mnist", "mnist-binary", "toy")


def load_dataset(name: str, arch_class, *, pool: int = 1, data_dir=None, train_size=None, test_size=None,
                 split_seed: int = 0) -> Dataset:
    """A built-in dataset laid out for `arch_class` (flat vectors for the MLP, images for the CNN, whose spec
    pools its own inputs; `pool` pools flat inputs here)."""
    if name == "toy":
        return toy_dataset()
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    layout = arch_class.dataset_layout
    return load_mnist(data_dir, task="binary" if name == "mnist-binary" else "digits", layout=layout,
                      pool=pool if layout == "flat" else 1, train_size=train_size, test_size=test_size,
                      split_seed=split_seed)


def store_targets(store, name: str, split: str, data_dir=None) -> tuple[np.ndarray, str]:
    """The targets of the images a Gram store's rows hold, with the dataset's note: the first N images of `split`
    ("train" or "test") of the built-in dataset `name` after its seeded shuffle, as `deepntk gram --dataset NAME
    --subset N` writes them (docs/scaling.md#solving-with-grams-that-do-not-fit-in-memory).

    The images are laid out for the store's architecture (flat inputs pooled to the store's size) and compared
    with the store's inputs by their digest, so targets are never paired with other images.

    Raises:
        DataError: the store's rows are not those images.
    """
    from ..architectures import architecture
    from ..gram import digest

    rows, inputs = store.shape[0], store.group["x1"].shape
    cls = architecture(store.config["kernel"]["spec"]["arch"])
    pool = 1
    if cls.dataset_layout == "flat":  # MNIST's 28×28 pixels average-pooled to the store's d_in = side²
        side = math.isqrt(inputs[1])
        if side and side * side == inputs[1] and 28 % side == 0:
            pool = 28 // side
    data = load_dataset(name, cls, pool=pool, data_dir=data_dir, **{f"{split}_size": rows})
    X, Y = (data.X_train, data.Y_train) if split == "train" else (data.X_test, data.Y_test)
    if len(X) != rows or digest(np.ascontiguousarray(X, dtype=np.float64)) != store.config["x1"]:
        words = "training" if split == "train" else "test"
        raise DataError(f"Gram store {store.path!r}: its {rows} rows are not the first {rows} {words} images of "
                        f"{name} (what deepntk gram --dataset {name} writes); pass their targets with "
                        f"{option('y_train' if split == 'train' else 'y_test', None)}")
    return Y, data.note
