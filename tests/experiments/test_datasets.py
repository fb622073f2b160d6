"""IDX reading and MNIST preparation (synthetic files, plus the real test set when present)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from deepntk.engine.experiments.datasets import DataError, load_mnist, read_idx, toy_dataset, write_idx

from mnist_data import mnist_data_dir, needs_mnist

SHARED_MNIST = mnist_data_dir()


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path, name):
    data = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    write_idx(str(tmp_path / name), data)
    assert np.array_equal(read_idx(str(tmp_path / name)), data)


def test_corrupt_idx_files_are_named(tmp_path):
    (tmp_path / "magic").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(str(tmp_path / "magic"))
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(DataError, match=r"says \(5,\)"):
        read_idx(str(tmp_path / "short"))
    (tmp_path / "type").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01a")
    with pytest.raises(DataError, match="corrupt IDX header"):
        read_idx(str(tmp_path / "type"))
    (tmp_path / "x.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(str(tmp_path / "x.gz"))


def fake_mnist(folder, n=60, mismatch=False):
    rng = np.random.default_rng(1)
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
    labels = np.arange(n, dtype=np.uint8) % 10
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte"), labels[: n - 1] if mismatch else labels)


def test_seeded_split_when_only_test_files_exist(tmp_path):
    fake_mnist(str(tmp_path))
    d = load_mnist(str(tmp_path), test_fraction=0.25, download=False)
    assert d.X_train.shape == (45, 784) and d.X_test.shape == (15, 784) and "split them 45/15" in d.note
    assert d.Y_train.shape == (45, 10) and np.all(d.Y_train.sum(axis=1) == 1)
    assert 0.0 <= d.X_train.min() and d.X_train.max() <= 1.0
    binary = load_mnist(str(tmp_path), task="binary", layout="image", shift=0.01, download=False)
    assert binary.X_train.shape[1:] == (1, 28, 28) and set(np.unique(binary.Y_train)) <= {0.0, 1.0}
    assert binary.X_train.min() >= 0.01
    pooled = load_mnist(str(tmp_path), pool=4, download=False)
    assert pooled.X_train.shape[1] == 49
    again = load_mnist(str(tmp_path), test_fraction=0.25, download=False)
    assert np.array_equal(again.X_train, d.X_train)


def test_label_count_mismatch_and_missing_files(tmp_path, monkeypatch):
    fake_mnist(str(tmp_path), mismatch=True)
    with pytest.raises(DataError, match="60 images but 59 labels"):
        load_mnist(str(tmp_path), download=False)
    monkeypatch.delenv("DEEPNTK_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(DataError, match="no MNIST test files .* in '.*empty-cache/deepntk/mnist'; put them there"):
        load_mnist(None, download=False)


def test_the_data_folder_is_the_argument_then_deepntk_data_then_the_user_cache(tmp_path, monkeypatch):
    """Without --data-dir and $DEEPNTK_DATA, MNIST is read from (and downloaded to) the per-user cache folder."""
    from deepntk.engine.experiments.datasets import default_data_dir, mnist_folder

    monkeypatch.delenv("DEEPNTK_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "deepntk" / "mnist"
    assert default_data_dir() == str(cache) == mnist_folder(None)
    os.makedirs(cache)
    fake_mnist(str(cache))
    assert load_mnist(download=False).X_train.shape == (50, 784)
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == os.path.join(os.path.expanduser("~"), ".cache", "deepntk", "mnist")
    monkeypatch.setenv("DEEPNTK_DATA", str(tmp_path / "elsewhere"))
    assert mnist_folder(None) == str(tmp_path / "elsewhere") and mnist_folder(str(tmp_path)) == str(tmp_path)


def test_missing_files_without_network_say_where_to_put_them(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="put t10k-images-idx3-ubyte\\[.gz\\] there, or name the folder that holds "
                                        "it with data_dir or DEEPNTK_DATA"):
        load_mnist(str(tmp_path))


@needs_mnist
def test_real_mnist_is_the_canonical_set(tmp_path):
    """The shared files are the canonical MNIST: the MD5s deepntk checks downloads against, 60,000 + 10,000
    images, every class present in both splits; only the test files present → the seeded 8333/1667 split."""
    import hashlib
    import shutil

    from deepntk.engine.experiments.datasets import MNIST_FILES

    for base, md5 in MNIST_FILES.values():
        with open(os.path.join(SHARED_MNIST, base + ".gz"), "rb") as handle:
            assert hashlib.md5(handle.read()).hexdigest() == md5, base
    d = load_mnist(SHARED_MNIST, download=False)
    assert (len(d.X_train), len(d.X_test)) == (60000, 10000) and d.note == "MNIST's training and test files"
    assert SHARED_MNIST not in d.note  # results files name no machine's folder
    assert np.bincount(d.labels_train).min() > 5000 and np.bincount(d.labels_test).min() > 800
    assert d.X_train.min() == 0.0 and d.X_train.max() == 1.0
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(os.path.join(SHARED_MNIST, name), tmp_path / name)
    split = load_mnist(str(tmp_path), download=False)
    assert (len(split.X_train), len(split.X_test)) == (8333, 1667) and "split them 8333/1667" in split.note


def test_toy_dataset():
    d = toy_dataset()
    assert d.X_train.shape == (200, 2) and np.allclose(d.Y_train[:, 0], d.X_train[:, 0] * d.X_train[:, 1])


def test_idx_files_with_a_valid_header_and_no_images_are_refused(tmp_path):
    write_idx(str(tmp_path / "t10k-images-idx3-ubyte"), np.zeros((0, 28, 28), dtype=np.uint8))
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte"), np.zeros((0,), dtype=np.uint8))
    with pytest.raises(DataError, match="hold no images"):
        load_mnist(str(tmp_path), download=False)


def test_a_download_goes_to_the_user_cache_where_the_next_run_finds_it(tmp_path, monkeypatch):
    """The mirror is replaced by a local one serving gzip IDX files (with their MD5s): the files land in the
    cache folder, and a second load reads them there without the network."""
    import gzip
    import hashlib
    import io
    import urllib.request

    from deepntk.engine.experiments import datasets

    source = tmp_path / "mirror"
    os.makedirs(source)
    fake_mnist(str(source))
    with open(source / "t10k-labels-idx1-ubyte", "rb") as handle:
        payloads = {"t10k-labels-idx1-ubyte.gz": gzip.compress(handle.read())}
    payloads["t10k-images-idx3-ubyte.gz"] = (source / "t10k-images-idx3-ubyte.gz").read_bytes()
    files = {key: (base, hashlib.md5(payloads[base + ".gz"]).hexdigest() if base + ".gz" in payloads else md5)
             for key, (base, md5) in datasets.MNIST_FILES.items()}
    monkeypatch.setattr(datasets, "MNIST_FILES", files)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payloads[url.rsplit("/", 1)[1]]))
    monkeypatch.delenv("DEEPNTK_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = load_mnist()
    cache = tmp_path / "cache" / "deepntk" / "mnist"
    assert sorted(os.listdir(cache)) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    monkeypatch.setattr(urllib.request, "urlopen", None)  # no network the second time
    assert np.array_equal(load_mnist().X_train, first.X_train)
