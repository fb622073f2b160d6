"""MkDocs hooks: lists as GitHub shows them, and links for the docstrings' citations `docs/<page>.md#<section>` and the dotted names `deepntk.…` in code
spans become links on the rendered site.

The pages are written to read well on GitHub too, where a list may start right under a paragraph line;
Python-Markdown needs a blank line there, so one is added before the page is converted.

Docstrings cite the mathematics as repository paths (they are read in editors and on GitHub too). On the site
each citation links to its page and section; one that names a page or heading the site lacks is a warning, which
`mkdocs build --strict` turns into a failed build. A code span naming a deepntk object (`deepntk.engine.gram.gram`)
becomes a cross-reference that mkdocs-autorefs resolves to the object's entry in the API reference, where it has
one (optional: names of objects the reference leaves out stay plain code).
"""

from __future__ import annotations

import logging
import os
import re
import sys

from markdown.extensions.toc import slugify
from mkdocs.plugins import event_priority

log = logging.getLogger("mkdocs.hooks.citations")

CITATION = re.compile(r'(?<![\w/"=#.-])docs/([a-z0-9-]+\.md)(#[a-z0-9-]+)?')
DOTTED_NAME = re.compile(r"<code>(deepntk(?:\.[A-Za-z_]\w*)+)</code>")
LIST_ITEM = re.compile(r"^(?:[-*+]|\d+\.)[ \t]")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_anchors_cache: dict = {}


def page_anchors(path: str) -> set:
    """The heading ids of a Markdown page, as the toc extension makes them (without the `_1` of duplicates)."""
    if path not in _anchors_cache:
        anchors, fenced = set(), False
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.lstrip().startswith("```"):
                    fenced = not fenced
                match = None if fenced else HEADING.match(line)
                if match:
                    title = re.sub(r"`([^`]*)`", r"\1", match.group(1))
                    anchors.add(slugify(title, "-"))
        _anchors_cache[path] = anchors
    return _anchors_cache[path]


@event_priority(100)  # before mkdocstrings copies the search path
def on_config(config, **kwargs):
    """Drop the console scripts' folder from the module search path: run as `mkdocs …`, Python puts the script's
    folder (a virtual environment's bin/) first, and mkdocstrings would take the `deepntk` command there for the
    package."""
    scripts = os.path.dirname(os.path.abspath(sys.argv[0]))
    sys.path[:] = [path for path in sys.path
                   if not (os.path.abspath(path or ".") == scripts and os.path.isfile(os.path.join(scripts, "deepntk")))]
    return config


def on_page_markdown(markdown, page, config, files, **kwargs):
    """A blank line before a list that starts right under a paragraph line, outside fenced code."""
    lines, fenced, previous = [], False, ""
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif (not fenced and LIST_ITEM.match(line) and previous.strip() and not LIST_ITEM.match(previous)
              and not previous[:1].isspace()):
            lines.append("")
        lines.append(line)
        previous = line
    return "\n".join(lines)


def _split_outside_links(html: str):
    """Pieces of `html`, each with whether it lies inside an <a> element (those are left alone)."""
    position = 0
    for match in re.finditer(r"<a\b.*?</a>", html, flags=re.DOTALL):
        yield html[position:match.start()], False
        yield match.group(0), True
        position = match.end()
    yield html[position:], False


def on_page_content(html, page, config, files, **kwargs):
    docs_dir = config["docs_dir"]

    def link(match):
        name, anchor = match.group(1), match.group(2) or ""
        target = files.get_file_from_path(name)
        if target is None:
            log.warning("%s: cites docs/%s, which is not a page of the site", page.file.src_uri, name)
            return match.group(0)
        if anchor and anchor[1:] not in page_anchors(os.path.join(docs_dir, name)):
            log.warning("%s: cites docs/%s%s, which has no such heading", page.file.src_uri, name, anchor)
            return match.group(0)
        href = target.url_relative_to(page.file) + anchor
        return f'<a href="{href}">{match.group(0)}</a>'

    def cross_reference(match):
        return f'<autoref identifier="{match.group(1)}" optional>{match.group(0)}</autoref>'

    return "".join(piece if inside else DOTTED_NAME.sub(cross_reference, CITATION.sub(link, piece))
                   for piece, inside in _split_outside_links(html))
