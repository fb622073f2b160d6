"""Numbers that cannot rot: every number README.md, docs/performance.md and docs/depth-study.md quote about a run
is followed by a marker naming the results file it was read from, and equals that file's value as rounded in the
text.

The convention (also stated in docs/performance.md#how-the-numbers-are-kept):

    98.77%<!-- from: docs/results/table1-predict-full-mlp/results.json rows.0.regression_accuracy * 100 -->

- The quoted number is the one right before the marker; a unit of up to eight characters (`%`, ` s`, ` ms`, `×`,
  `**`) may stand between them. It may be written 60,000 or 5.71·10⁻² or 1.5e-3.
- The expression after the file is a key path (`.` between keys; a list is indexed by position, `rows.0`, or by
  the first entry whose fields match, `timings[workload=mlp-gram-N16,implementation=numba]`, or by all of them,
  `runs{init=kaiming-uniform}`), optionally inside `mean(…)`, `min(…)` or `max(…)` (over a list), joined by
  ` * ` and ` / ` with other paths or constants.
- The check is rounding-aware: the file's value rounded to the digits written must give the written number.
- The folder of every quoted file is named, beside the numbers, in a `deepntk … docs/results/<folder>` command
  that makes it, and a folder's manifest.json or run.json command is part of that printed command.
- In a table, a column that holds one marker holds one after every number of every row.
"""

from __future__ import annotations

import json
import os
import re
import statistics

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUOTING_DOCUMENTS = ("README.md", "docs/performance.md", "docs/depth-study.md")

SUPERSCRIPTS = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")
NUMBER = r"[−-]?\d[\d,]*(?:\.\d+)?(?:·10[⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+|e[−+-]?\d+)?"
QUOTED = re.compile(rf"(?P<number>{NUMBER})(?P<unit>[^\d<|]{{0,8}}?)<!-- from: (?P<file>\S+) (?P<expr>[^>]+?) -->")
MARKER = re.compile(r"<!-- from: [^>]*-->")
SEGMENT = re.compile(r"(?:[^.\[{]|\[[^\]]*\]|\{[^}]*\})+")
SELECTOR = re.compile(r"^(?P<key>[^\[\]]*)\[(?P<fields>[^\]]+)\]$")


def read(document: str) -> str:
    with open(os.path.join(ROOT, document), encoding="utf-8") as handle:
        return handle.read()


def load(path: str):
    """A quoted file: JSON (Infinity allowed, as the results files write it)."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return json.load(handle)


def lookup(data, path: str):
    """The value at a key path: `a.0.b`; `timings[workload=x,implementation=numba].median` (the first entry of a
    list whose fields match); `runs{init=kaiming-uniform}.final_test_accuracy` (every matching entry: a list)."""
    if not path:
        return data
    part = SEGMENT.match(path)[0]  # a selector's values may hold dots: lr=0.001
    rest = path[len(part) + 1:]
    every = re.fullmatch(r"(?P<key>[^{}]*)\{(?P<fields>[^}]+)\}", part)
    selector = SELECTOR.match(part)
    if every or selector:
        match = every or selector
        entries = data[match["key"]] if match["key"] else data
        wanted = dict(field.split("=", 1) for field in match["fields"].split(","))
        matches = [entry for entry in entries if all(str(entry.get(k)) == v for k, v in wanted.items())]
        if not matches:
            raise KeyError(f"no entry of {part!r} has {wanted}")
        if every:
            return [lookup(entry, rest) for entry in matches]
        return lookup(matches[0], rest)
    return lookup(data[int(part)] if isinstance(data, list) else data[part], rest)


def evaluate(expression: str, data) -> float:
    """`term (op term)*` with ops ` * ` and ` / `; a term is a constant, a key path, or mean/min/max(path)."""
    tokens = expression.split()
    if len(tokens) % 2 == 0 or any(op not in ("*", "/") for op in tokens[1::2]):
        raise ValueError(f"malformed expression {expression!r}")

    def term(token):
        reduce = re.fullmatch(r"(mean|min|max)\((.+)\)", token)
        if reduce:
            values = lookup(data, reduce[2])
            return {"mean": statistics.fmean, "min": min, "max": max}[reduce[1]](values)
        try:
            return float(token)
        except ValueError:
            return float(lookup(data, token))

    value = term(tokens[0])
    for op, token in zip(tokens[1::2], tokens[2::2]):
        value = value * term(token) if op == "*" else value / term(token)
    return value


def written_number(text: str) -> tuple[float, int, int]:
    """(mantissa, decimals written, power of ten) of a number as the text writes it."""
    text = text.replace("−", "-").replace(",", "")
    exponent = 0
    if "·10" in text:
        text, power = text.split("·10")
        exponent = int(power.translate(SUPERSCRIPTS))
    elif "e" in text:
        text, power = text.split("e")
        exponent = int(power)
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(text), decimals, exponent


def rounding_agrees(written: str, value: float) -> bool:
    """True when `value`, rounded to the digits of `written`, is `written`."""
    mantissa, decimals, exponent = written_number(written)
    scaled = value / 10.0 ** exponent
    return abs(scaled - mantissa) <= 0.5 * 10.0 ** -decimals * (1 + 1e-9) + 1e-12


def mismatches(text: str) -> list[str]:
    """Every quoted number of `text` that its file does not give, with what the file gives."""
    wrong = []
    for quote in QUOTED.finditer(text):
        value = evaluate(quote["expr"], load(quote["file"]))
        if not rounding_agrees(quote["number"], value):
            wrong.append(f"{quote['number']}{quote['unit']} but {quote['file']} {quote['expr']} = {value!r}")
    return wrong


def quotes(document: str) -> list[re.Match]:
    return list(QUOTED.finditer(read(document)))


def test_the_documents_quote_numbers_from_results_files():
    for document in QUOTING_DOCUMENTS:
        assert len(quotes(document)) >= 10, f"{document} quotes fewer than 10 numbers from results files"
        assert all(q["file"].startswith("docs/results/") for q in quotes(document))


def test_every_marker_follows_a_number():
    for document in QUOTING_DOCUMENTS:
        text = read(document)
        assert len(MARKER.findall(text)) == len(quotes(document)), \
            f"{document}: a marker `<!-- from: … -->` does not follow a number (or is malformed)"


@pytest.mark.parametrize("document", QUOTING_DOCUMENTS)
def test_every_quoted_number_is_its_files_value(document):
    assert mismatches(read(document)) == []


@pytest.mark.parametrize("document", QUOTING_DOCUMENTS)
def test_every_quoted_folder_is_made_by_a_command_printed_beside_it(document):
    text = read(document)
    commands = re.findall(r"deepntk [^`\n]*", re.sub(r"\\\n\s*", " ", text))  # continued lines joined
    for folder in sorted({os.path.dirname(q["file"]) for q in quotes(document)}):
        printed = [c for c in commands if re.search(rf"{re.escape(folder)}(/|\s|$)", c)]
        assert printed, f"{document} quotes {folder} but prints no `deepntk … {folder}` command that makes it"
        quoted = sorted({q["file"] for q in quotes(document) if os.path.dirname(q["file"]) == folder})
        records = [os.path.join(folder, name) for name in ("run.json", "manifest.json")
                   if os.path.exists(os.path.join(ROOT, folder, name))]
        records += [path for path in quoted if "command" in load(path)]  # e.g. `gram --report`'s file
        for record in records:
            recorded = load(record)["command"].split()
            assert any(all(word in c.split() for word in recorded) for c in printed), \
                f"{record} was made by `deepntk {' '.join(recorded)}`, not by {printed}"
        if not records:  # a file that records no command (`deepntk bench -o FILE`): a printed command writes it
            for path in quoted:
                assert any(re.search(rf"(-o|--output|--report) {re.escape(path)}(\s|$)", c) for c in printed), \
                    f"{document} quotes {path}, which records no command, and prints none that writes it"


@pytest.mark.parametrize("document", QUOTING_DOCUMENTS)
def test_a_quoted_column_quotes_every_number_in_it(document):
    """A table column with one marker has a marker after each of its numbers, so no hand-typed number hides
    among quoted ones."""
    tables = re.findall(r"(?:^\|.*\|\n)+", read(document), flags=re.MULTILINE)
    for table in tables:
        rows = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in table.splitlines()]
        body = [row for row in rows[2:] if len(row) == len(rows[0])]
        for column in range(len(rows[0])):
            cells = [row[column] for row in body]
            if not any(MARKER.search(cell) for cell in cells):
                continue
            for cell in cells:
                bare = QUOTED.sub("", cell)
                assert not re.search(r"\d", MARKER.sub("", bare)), \
                    f"{document}, column {rows[0][column]!r}: {cell!r} has a number without a marker"


def test_a_number_edited_by_hand_is_caught():
    """The check can fail: each quoted number, moved by one unit of its last written digit, is reported."""
    text = read("README.md")
    quoted = quotes("README.md")
    assert quoted
    for quote in quoted:
        number = quote["number"]
        digits = [i for i, ch in enumerate(number) if ch.isdigit() and number[:i].count("·") == 0]
        last = digits[-1]
        edited = number[:last] + str((int(number[last]) + 5) % 10) + number[last + 1:]
        start, end = quote.span("number")
        assert mismatches(text[:start] + edited + text[end:]), f"an edit of {number} to {edited} went unnoticed"


def test_rounding_is_judged_at_the_digits_written():
    assert rounding_agrees("98.77", 98.77000000000001)
    assert rounding_agrees("98.8", 98.77) and not rounding_agrees("98.7", 98.77)
    assert rounding_agrees("60,000", 60000) and not rounding_agrees("60,000", 60001)
    assert rounding_agrees("5.71·10⁻²", 0.05713) and not rounding_agrees("5.71·10⁻²", 0.0572)
    assert rounding_agrees("−0.48", -0.4808) and not rounding_agrees("−0.48", 0.4808)


def test_a_bench_results_file_records_the_date_and_versions_beside_its_numbers(tmp_path):
    """A performance table states its date and the peers' versions: `deepntk bench -o` writes them."""
    import time

    from click.testing import CliRunner

    from deepntk.cli.main import cli

    output = tmp_path / "bench.json"
    run = CliRunner().invoke(cli, ["bench", "--quick", "--backends", "numpy", "--peers", "none", "--workloads",
                                   "mlp-gram-N16", "--repeats", "1", "--quiet", "-o", str(output)])
    assert run.exit_code == 0, run.output
    report = json.loads(output.read_text())
    assert report["environment"]["time"].startswith(time.strftime("%Y-"))
    assert report["environment"]["libraries"]["numpy"] and report["environment"]["deepntk"]
    assert report["machine"]["cpus"] >= 1
