"""The floors of docs/backends.md#floors hold: `lint-imports` checks the contract in pyproject.toml (floors, the
engine's experiments above its core, analytic alone, no import cycles) and breaks on an upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lint_imports(cwd: str, env=None) -> subprocess.CompletedProcess:
    executable = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    if executable is None:
        pytest.skip("import-linter is not installed (pip install 'deepntk[test]')")
    return subprocess.run([executable, "--no-cache"], cwd=cwd, capture_output=True, text=True, env=env)


def test_the_import_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """A copy of the package in which one backend imports the engine core: the contract must say so."""
    copy = tmp_path / "deepntk"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "tests", "docs",
                                                               "*.egg-info", "deepntk-results"))
    base = copy / "backends" / "base.py"
    base.write_text(base.read_text() + "\nfrom ..engine import rules  # noqa: E402,F401  (an upward import)\n")
    result = lint_imports(str(copy), env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0, result.stdout[-3000:]
    assert "deepntk.backends.base -> deepntk.engine.rules" in result.stdout, result.stdout[-3000:]
