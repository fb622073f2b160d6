"""Every citation of the repository's account of the math (docs/<page>.md#<section>) in the source resolves to
an existing page and heading, and no docstring cites a document that is not in the repository."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_FOLDERS = ("engine", "backends", "analytic", "cli")
OUTSIDE_CITATION = "SPEC" + " §"  # spelled in two parts, so this file does not cite it itself
CITATION = re.compile(r"docs/([a-z0-9-]+\.md)(#[a-z0-9-]+)?")


def source_files(folders=SOURCE_FOLDERS):
    for folder in folders:
        for base, _, names in os.walk(os.path.join(ROOT, folder)):
            for name in names:
                if name.endswith((".py", ".cu")):
                    yield os.path.join(base, name)


def anchors(page: str) -> set:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to hyphens."""
    slugs = set()
    with open(os.path.join(ROOT, "docs", page), encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#"):
                title = line.lstrip("#").strip().lower()
                slugs.add("#" + re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


def test_every_docs_citation_resolves():
    citations = []
    for path in source_files():
        with open(path, encoding="utf-8") as handle:
            citations += [(os.path.relpath(path, ROOT), page, anchor) for page, anchor in
                          CITATION.findall(handle.read())]
    assert len(citations) > 30
    for where, page, anchor in citations:
        assert os.path.isfile(os.path.join(ROOT, "docs", page)), f"{where} cites missing docs/{page}"
        if anchor:
            assert anchor in anchors(page), f"{where} cites docs/{page}{anchor}, which has no such heading"


def test_no_citation_of_documents_outside_the_repository():
    for path in source_files(SOURCE_FOLDERS + ("tests",)):
        with open(path, encoding="utf-8") as handle:
            assert OUTSIDE_CITATION not in handle.read(), f"{path} cites SPEC, which is not in the repository"
