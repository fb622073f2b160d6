"""MkDocs hooks: the pages' links work on the site as they do on GitHub, and the docstrings' citations and
object names become links.

- Links. The pages read well on GitHub too, where a link may name any file or folder of the repository
  (`../README.md`, `../examples/fit.py`, `results/fig3/`). On the site CHANGELOG.md is the page changelog.md,
  docs/README.md is the home page, every other repository file outside docs/ that a page links to is served
  under repo/ (Markdown files as pages outside the nav, their own links rebased), and a linked folder gets a
  page listing it, as GitHub shows one. A link to something that does not exist stays a warning.
- Lists. On GitHub a list may start right under a paragraph line; Python-Markdown needs a blank line there, so
  one is added before the page is converted.
- Citations. Docstrings cite the mathematics as `docs/<page>.md#<section>` (they are read in editors and on
  GitHub too). On the site each citation links to its page and section; one that names a page or heading the
  site lacks is a warning, which `mkdocs build --strict` turns into a failed build.
- Object names. A code span naming a deepntk object (`deepntk.engine.gram.gram`) becomes a cross-reference that
  mkdocs-autorefs resolves to the object's entry in the API reference, where it has one (names the reference
  leaves out stay plain code).
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import sys

from markdown.extensions.toc import slugify
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, InclusionLevel

log = logging.getLogger("mkdocs.hooks.citations")

CITATION = re.compile(r'(?<![\w/"=#.-])docs/([a-z0-9-]+\.md)(#[a-z0-9-]+)?')
DOTTED_NAME = re.compile(r"<code>(deepntk(?:\.[A-Za-z_]\w*)+)</code>")
LIST_ITEM = re.compile(r"^(?:[-*+]|\d+\.)[ \t]")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_anchors_cache: dict = {}

REPOSITORY_PAGES = {"CHANGELOG.md": "changelog.md"}  # repository files outside docs/ that are pages of the nav
SERVED = "repo/"  # where the other repository files the pages link to are served
# docs/README.md indexes docs/ for readers of the repository; on the site the home page does.
SITE_EQUIVALENTS = {"docs/README.md": "index.md"}
LINK = re.compile(r"(\]\(\s*<?)([^)\s>]+)(>?(?:\s+\"[^\"]*\")?\s*\))|^(\s*\[[^\]]+\]:\s*<?)(\S+?)(>?(?:\s.*)?)$",
                  flags=re.MULTILINE)


FOLDER_PAGE = "index.md"


def folder_listing(root: str, folder: str) -> str:
    """A page listing a repository folder's files and folders, as GitHub shows a folder."""
    names = sorted(n for n in os.listdir(os.path.join(root, folder)) if not n.startswith((".", "__")))
    lines = [f"# {folder}/", ""]
    for name in names:
        lines.append(f"- [{name}/]({name}/)" if os.path.isdir(os.path.join(root, folder, name)) else
                     f"- [{name}]({name})")
    return "\n".join(lines) + "\n"


def repository_root(config) -> str:
    return os.path.dirname(os.path.abspath(config.config_file_path))


def repository_path(src_uri: str) -> str:
    """The repository path of a site file: docs/<uri>, or the file outside docs/ it was generated from."""
    for source, uri in REPOSITORY_PAGES.items():
        if src_uri == uri:
            return source
    return src_uri[len(SERVED):] if src_uri.startswith(SERVED) else "docs/" + src_uri


def site_uri(path: str):
    """Where a repository path is on the site (None: a path outside the repository)."""
    if path.startswith("../") or path == "..":
        return None
    if path in SITE_EQUIVALENTS:
        return SITE_EQUIVALENTS[path]
    if path.startswith("docs/"):
        return path[len("docs/"):]
    return REPOSITORY_PAGES.get(path, SERVED + path)


def _rebased(markdown: str, src_uri: str, root: str, found=None) -> str:
    """`markdown` of the site file `src_uri` with each relative link to a repository file outside docs/ pointed
    at that file's place on the site; `found` collects those files' repository paths."""
    here = os.path.dirname(repository_path(src_uri))

    def rebase(match):
        before, target, after = (match.group(1, 2, 3) if match.group(2) is not None else match.group(4, 5, 6))
        address, hash_, anchor = target.partition("#")
        if not address or re.match(r"^[a-z][a-z0-9+.-]*:", address) or address.startswith("/"):
            return match.group(0)
        path = os.path.normpath(os.path.join(here, address))
        uri = site_uri(path)
        if uri is not None and os.path.isdir(os.path.join(root, path)):
            uri = posixpath.join(uri, FOLDER_PAGE)  # a folder: GitHub lists it, the site has a page listing it
            if found is not None and path != ".":
                found.add(path + "/")
        elif uri is None or not os.path.isfile(os.path.join(root, path)):
            return match.group(0)  # nothing there: mkdocs judges the link
        elif found is not None and not path.startswith("docs/"):
            found.add(path)
        relative = os.path.relpath(uri, os.path.dirname(src_uri) or ".")
        return before + relative + hash_ + anchor + after

    pieces, fenced = [], False
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        pieces.append(line if fenced else LINK.sub(rebase, line))
    return "\n".join(pieces)


def on_files(files, config, **kwargs):
    """Add CHANGELOG.md as changelog.md, and each repository file or folder that a page links to and the site
    lacks (a folder as a page listing it; its files with it)."""
    root = repository_root(config)
    for source, uri in REPOSITORY_PAGES.items():
        if os.path.isfile(os.path.join(root, source)) and files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=os.path.join(root, source)))
    pages = [f for f in files if f.src_uri.endswith(".md")]
    wanted: list = []
    while pages or wanted:
        if pages:
            page = pages.pop()
            found: set = set()
            _rebased(page.content_string, page.src_uri, root, found)
            wanted += sorted(found)
            continue
        path = wanted.pop()
        if path.endswith("/"):
            uri = posixpath.join(site_uri(path.rstrip("/")), FOLDER_PAGE)
            if files.get_file_from_path(uri) is None:
                listing = folder_listing(root, path.rstrip("/"))
                added = File.generated(config, uri, content=listing, inclusion=InclusionLevel.NOT_IN_NAV)
                files.append(added)
                pages.append(added)
            continue
        uri = site_uri(path)
        if files.get_file_from_path(uri) is None and not path.startswith("docs/"):
            added = File.generated(config, uri, abs_src_path=os.path.join(root, path),
                                   inclusion=InclusionLevel.NOT_IN_NAV)
            files.append(added)
            if uri.endswith(".md"):
                pages.append(added)
    return files


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
    """Links to repository files rebased to the site; a blank line before a list that starts right under a
    paragraph line, outside fenced code."""
    markdown = _rebased(markdown, page.file.src_uri, repository_root(config))
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
