"""The package as users install it, checked without building it (CI builds the wheel, runs `twine check` and a
command from a clean environment: .ci/run): every subpackage of the source tree is declared, the CUDA source
ships as package data, and the metadata a package index shows is there."""

from __future__ import annotations

import os

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_PACKAGED = {"tests", "docs", "examples", "build", "dist"}


def pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)


def source_packages() -> set[str]:
    """Every folder of the source tree with an __init__.py, as its import name (the root is `deepntk`)."""
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in NOT_PACKAGED and not d.startswith((".", "__")) and
                   not d.endswith(".egg-info")]
        if "__init__.py" in files:
            relative = os.path.relpath(folder, ROOT)
            found.add("deepntk" if relative == "." else "deepntk." + relative.replace(os.sep, "."))
    return found


def test_every_subpackage_is_declared():
    declared = set(pyproject()["tool"]["setuptools"]["packages"])
    assert "deepntk.base" in source_packages()
    assert source_packages() - declared == set(), "pyproject.toml [tool.setuptools] packages misses these"


def test_every_non_python_source_ships_as_package_data():
    package_data = pyproject()["tool"]["setuptools"]["package-data"]
    for folder, _, files in os.walk(os.path.join(ROOT, "backends")):
        for name in files:
            if name.endswith(".cu"):
                assert "*.cu" in package_data.get("deepntk.backends", []), f"backends/{name} is not package data"


def test_the_metadata_an_index_shows():
    project = pyproject()["project"]
    assert project["license"] == "MIT" and "LICENSE" in project["license-files"]
    assert os.path.isfile(os.path.join(ROOT, "LICENSE"))
    assert project["readme"] == "README.md" and project["keywords"] and project["authors"]
    classifiers = set(project["classifiers"])
    assert {"Programming Language :: Python :: 3", "Intended Audience :: Science/Research"} <= classifiers
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in classifiers)
    # PEP 639: setuptools refuses a license classifier beside the license expression.
    assert not any(c.startswith("License ::") for c in classifiers)
    minimum = project["requires-python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {minimum}" in classifiers
