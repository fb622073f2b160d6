"""The README's Python snippets run verbatim as scripts, in a fresh folder, with
this interpreter; the README stays a front door (≤ 200 lines) that names no developer's folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNIPPET_DOCUMENTS = ("README.md",)  # docs/ pages' blocks: tests/test_docs_code_blocks.py


def read(document: str) -> str:
    with open(os.path.join(ROOT, document), encoding="utf-8") as handle:
        return handle.read()


def python_snippets(document: str) -> list[str]:
    """Every ```python block of a document, as written there."""
    return re.findall(r"^```python\n(.*?)^```$", read(document), flags=re.DOTALL | re.MULTILINE)


SNIPPETS = [(document, index) for document in SNIPPET_DOCUMENTS for index in range(len(python_snippets(document)))]


def test_the_readme_has_a_python_snippet():
    snippets = python_snippets("README.md")
    assert snippets and all("import deepntk" in snippet for snippet in snippets)


def test_the_readme_is_a_front_door():
    text = read("README.md")
    assert len(text.splitlines()) <= 200, "README.md is longer than 200 lines: move detail into docs/"
    assert "<!-- setup:run -->" in text and "<!-- setup:test -->" in text  # .ci/run reads these
    for document in ("README.md", *(os.path.join("docs", page) for page in os.listdir(os.path.join(ROOT, "docs"))
                                    if page.endswith(".md"))):
        assert "shared/data" not in read(document), f"{document} names a developer's data folder: use $DEEPNTK_DATA"


@pytest.mark.parametrize("document, index", SNIPPETS)
def test_the_python_snippet_runs_as_a_script(tmp_path, document, index):
    """As a new user runs it: pasted into a file and run. A snippet that starts a real LocalCluster (through
    deepntk.gram) has workers that re-run the script: its `if __name__ == "__main__":` guard makes that work."""
    snippet = python_snippets(document)[index]
    if "deepntk.gram(" in snippet:
        pytest.importorskip("distributed", reason="the snippet's deepntk.gram needs the distributed extra (Dask)")
        pytest.importorskip("zarr", reason="the snippet's deepntk.gram needs the distributed extra (Zarr)")
    script = tmp_path / "snippet.py"
    script.write_text(snippet, encoding="utf-8")
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
