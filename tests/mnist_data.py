"""Where the tests find real MNIST: the folder deepntk itself reads ($DEEPNTK_DATA, else the per-user cache
folder), never a path beside the checkout. Tests that need it skip, naming $DEEPNTK_DATA, when it is absent."""

from __future__ import annotations

import os

import pytest

from deepntk.engine.experiments.datasets import MNIST_FILES, mnist_folder


def mnist_data_dir() -> str:
    return mnist_folder(None)


def has_mnist(folder: str) -> bool:
    """All four canonical files, gzip-compressed as the mirror serves them (the MD5s are of those)."""
    return all(os.path.isfile(os.path.join(folder, base + ".gz")) for base, _ in MNIST_FILES.values())


needs_mnist = pytest.mark.skipif(not has_mnist(mnist_data_dir()),
                                 reason=f"no MNIST IDX files in {mnist_data_dir()!r}: set $DEEPNTK_DATA to a "
                                        f"folder holding them")
