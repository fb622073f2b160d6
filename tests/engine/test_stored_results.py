"""A resumable study's stored units (a depth, a width: `results.write_stored_result`, `files.read_stored_result`):
what is read back, what belongs to another configuration, and damage named in one error."""

from dataclasses import dataclass

import numpy as np
import pytest

from deepntk.base.errors import FileFormatError
from deepntk.engine.files import read_stored_result
from deepntk.engine.results import write_npz, write_stored_result

KEY = {"study": "width", "depth": 3}


@dataclass
class Unit:
    width: int


def build(summary, arrays):
    """As the studies build their results: the summary's fields as keyword arguments (a TypeError if damaged)."""
    return Unit(**summary).width, arrays["kernels"]


def test_a_stored_unit_reads_back_only_for_its_configuration(tmp_path):
    path = str(tmp_path / "width-64.npz")
    assert read_stored_result(path, KEY, "stored width result", ("kernels",), build) is None  # nothing there yet
    kernels = np.arange(6.0).reshape(2, 3)
    write_stored_result(path, KEY, {"width": 64}, kernels=kernels)
    width, read = read_stored_result(path, KEY, "stored width result", ("kernels",), build)
    assert width == 64 and np.array_equal(read, kernels)
    assert read_stored_result(path, {**KEY, "depth": 4}, "stored width result", ("kernels",), build) is None


@pytest.mark.parametrize("arrays, summary, words", [
    ({}, {"width": 64}, "is missing kernels"),
    ({"kernels": np.ones(2)}, {"breadth": 64}, "has a damaged summary"),
])
def test_a_damaged_stored_unit_is_one_named_error(tmp_path, arrays, summary, words):
    path = str(tmp_path / "width-64.npz")
    write_stored_result(path, KEY, summary, **arrays)
    with pytest.raises(FileFormatError, match=words) as error:
        read_stored_result(path, KEY, "stored width result", ("kernels",), build)
    assert "width-64.npz" in str(error.value)


def test_a_file_without_its_key_is_one_named_error(tmp_path):
    path = str(tmp_path / "width-64.npz")
    write_npz(path, kernels=np.ones(2))
    with pytest.raises(FileFormatError, match="has no 'key' entry"):
        read_stored_result(path, KEY, "stored width result", ("kernels",), build)
