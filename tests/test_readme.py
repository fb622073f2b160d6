"""The README's Python snippet runs verbatim as a script, in a fresh folder, with this interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_python_snippets() -> list[str]:
    """Every ```python block of README.md, as written there."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        return re.findall(r"^```python\n(.*?)^```$", handle.read(), flags=re.DOTALL | re.MULTILINE)


def test_the_readme_has_a_python_snippet():
    snippets = readme_python_snippets()
    assert snippets and all("import deepntk" in snippet for snippet in snippets)


@pytest.mark.parametrize("index", range(len(readme_python_snippets())))
def test_the_readme_python_snippet_runs_as_a_script(tmp_path, index):
    """As a new user runs it: pasted into a file and run (its deepntk.gram starts a real LocalCluster, whose
    workers re-run the script: the snippet's `if __name__ == "__main__":` guard is what makes that work)."""
    pytest.importorskip("distributed", reason="the snippet's deepntk.gram needs the distributed extra (Dask)")
    pytest.importorskip("zarr", reason="the snippet's deepntk.gram needs the distributed extra (Zarr)")
    script = tmp_path / "snippet.py"
    script.write_text(readme_python_snippets()[index], encoding="utf-8")
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
