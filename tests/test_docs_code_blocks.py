"""Every ```python block of the docs site (docs/**/*.md) runs as a reader would run it: pasted into a script in a
fresh folder and run with this interpreter, exit status 0 and no traceback.

(README.md's blocks are run by tests/test_readme.py.) A block that needs something the install may lack, or that
is not meant to run, says so in an HTML comment on the line right above it, which the site does not show:

    <!-- docs-test: needs MNIST -->            skipped, naming $DEEPNTK_DATA, where MNIST's IDX files are absent
    <!-- docs-test: needs distributed -->      skipped where the extra's libraries are missing (also: numba, plot, symbolic)
    <!-- docs-test: slow -->                   run only with `-m slow`
    <!-- docs-test: not run (why) -->          never run; reported as skipped with its reason

Several go in one comment, separated by commas: `<!-- docs-test: needs MNIST, slow -->`. A block that shows a
repository file by a snippet line (`--8<-- "examples/fit.py"`, pymdownx.snippets, paths from the repository
root) runs that file as the site shows it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from mnist_data import has_mnist, mnist_data_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
TIMEOUT_S = 300

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", flags=re.DOTALL | re.MULTILINE)
SNIPPET = re.compile(r'^[ \t]*-+8<-+[ \t]+"([^"]+)"[ \t]*$', flags=re.MULTILINE)
MARKER = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->[ \t]*$")
# What a `needs` marker names: the modules its extra installs.
EXTRAS = {"distributed": ("distributed", "zarr"), "numba": ("numba",), "plot": ("matplotlib",),
          "symbolic": ("sympy",)}


@dataclass(frozen=True)
class Block:
    page: str  # relative to docs/
    line: int  # of the opening fence
    code: str
    markers: tuple

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def markdown_pages() -> list[str]:
    pages = []
    for base, folders, names in os.walk(DOCS):
        folders[:] = sorted(f for f in folders if f != "results")
        pages += [os.path.relpath(os.path.join(base, n), DOCS) for n in sorted(names) if n.endswith(".md")]
    return pages


def expand_snippets(code: str) -> str:
    """`code` as the site shows it: each snippet line replaced by the file it names."""
    def read(match):
        with open(os.path.join(ROOT, match.group(1)), encoding="utf-8") as handle:
            return handle.read().rstrip("\n")

    return SNIPPET.sub(read, code)


def python_blocks() -> list[Block]:
    """Every ```python (or ```py) block of the pages, with the markers of the comment right above it."""
    blocks = []
    for page in markdown_pages():
        with open(os.path.join(DOCS, page), encoding="utf-8") as handle:
            text = handle.read()
        for fence in FENCE.finditer(text):
            if fence.group(1) not in ("python", "py"):
                continue
            line = text.count("\n", 0, fence.start()) + 1
            above = text[:fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = MARKER.match(above)
            markers = tuple(m.strip() for m in marker.group(1).split(",")) if marker else ()
            blocks.append(Block(page, line, expand_snippets(fence.group(2)), markers))
    return blocks


def why_skipped(block: Block) -> str | None:
    """The reason `block` cannot run here, or None; an unknown marker is an error, so a typo never hides a block."""
    for marker in block.markers:
        if marker == "slow":
            continue
        if marker.startswith("not run"):
            return f"{block.name} is marked {marker!r}"
        if marker == "needs MNIST":
            if not has_mnist(mnist_data_dir()):
                return f"{block.name} needs MNIST: no IDX files in {mnist_data_dir()!r}; set $DEEPNTK_DATA"
            continue
        if marker.startswith("needs ") and marker[6:] in EXTRAS:
            missing = [m for m in EXTRAS[marker[6:]] if importlib.util.find_spec(m) is None]
            if missing:
                return f"{block.name} needs the {marker[6:]} extra ({', '.join(missing)} missing)"
            continue
        raise ValueError(f"{block.name}: unknown docs-test marker {marker!r}")
    return None


def run_as_script(code: str, folder) -> subprocess.CompletedProcess:
    """`code` written to a script in `folder` (empty) and run there with this interpreter."""
    script = os.path.join(folder, "block.py")
    with open(script, "w", encoding="utf-8") as handle:
        handle.write(code)
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, script], cwd=folder, capture_output=True, text=True, timeout=TIMEOUT_S,
                          env=env)


def failure(run: subprocess.CompletedProcess) -> str | None:
    """Why a run counts as failed (non-zero exit, or a traceback printed even with exit 0), or None."""
    if run.returncode != 0:
        return f"exit status {run.returncode}:\n{run.stderr[-3000:]}"
    if "Traceback (most recent call last)" in run.stderr:
        return f"a traceback on stderr:\n{run.stderr[-3000:]}"
    return None


BLOCKS = python_blocks()


def test_the_docs_have_runnable_python_blocks():
    """The tutorials, the home page and the plugin guide carry code; most of it must run here."""
    pages = {block.page for block in BLOCKS}
    assert {"index.md", "backends.md", "tutorials/fig3.md", "tutorials/big-gram.md"} <= pages, sorted(pages)
    never = [block.name for block in BLOCKS if any(m.startswith("not run") for m in block.markers)]
    assert len(never) <= len(BLOCKS) // 4, f"{len(never)} of {len(BLOCKS)} blocks are marked not run: {never}"


def test_every_marker_is_known_and_sits_above_a_python_block():
    for block in BLOCKS:
        why_skipped(block)  # raises on an unknown marker
    fenced_lines = {(block.page, block.line - 1) for block in BLOCKS}
    for page in markdown_pages():
        with open(os.path.join(DOCS, page), encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if MARKER.match(line.rstrip("\n")):
                    assert (page, number) in fenced_lines, f"docs/{page}:{number}: a docs-test marker above no ```python block"


def test_a_block_that_fails_is_reported(tmp_path):
    """The check itself can fail: an exception, or a traceback printed by a script that then exits 0."""
    assert "ZeroDivisionError" in failure(run_as_script("1 / 0\n", tmp_path))
    swallowed = "import traceback\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.print_exc()\n"
    assert "a traceback" in failure(run_as_script(swallowed, tmp_path))
    assert failure(run_as_script("print('fine')\n", tmp_path)) is None


@pytest.mark.parametrize("block", [pytest.param(block, id=block.name,
                                                marks=[pytest.mark.slow] if "slow" in block.markers else [])
                                   for block in BLOCKS])
def test_docs_python_block_runs_as_a_script(block, tmp_path):
    reason = why_skipped(block)
    if reason:
        pytest.skip(reason)
    problem = failure(run_as_script(block.code, tmp_path))
    assert problem is None, f"docs/{block.name}: {problem}"
