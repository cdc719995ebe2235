"""The docs say what is true: every figure in docs/performance.md is the one its bench stored
in bench/results/, and every `file::function` the README names exists.

A table row quotes one figure in its second cell and names where it comes from in its
last: `` `bench_train.json` `train.ratio` `` (the file under bench/results/, then the key
path inside its ``figures``). The figure must equal the stored value rounded to the
decimals the row shows.
"""

import ast
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "performance.md"
RESULTS = REPO / "bench" / "results"
SOURCE = re.compile(r"`([\w.-]+\.json)`\s*`([^`]+)`")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def quoted_figures():
    rows = []
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = SOURCE.search(cells[-1]) if len(cells) >= 3 else None
        if match:
            rows.append((number, cells[1], match.group(1), match.group(2)))
    return rows


def lookup(figures, path):
    value = figures
    for key in path.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def test_performance_doc_quotes_stored_figures():
    rows = quoted_figures()
    assert rows, f"{DOC} quotes no stored figure"
    problems = []
    for line, shown, file, path in rows:
        result = json.loads((RESULTS / file).read_text(encoding="utf-8"))
        for key in ("date", "commit", "machine", "command"):
            assert result.get(key), f"{file} lacks its {key}"
        stored = lookup(result["figures"], path)
        match = NUMBER.search(shown)
        if match is None:
            problems.append(f"line {line}: no number in {shown!r}")
            continue
        text = match.group(0).replace(",", "")
        decimals = len(text.split(".")[1]) if "." in text else 0
        if abs(float(stored) - float(text)) > 0.5 * 10**-decimals + 1e-12:
            problems.append(f"line {line}: shows {text}, {file} {path} holds {stored}")
    assert not problems, "\n".join(problems)


REFERENCE = re.compile(r"`([\w/]+\.py)::([\w.]+)`")


def defined_names(path):
    """Every top-level function and class of a file, and each class's methods as
    ``Class.method``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(f"{node.name}.{item.name}" for item in node.body
                         if isinstance(item, ast.FunctionDef))
    return names


def test_readme_points_at_functions_that_exist():
    """The chapter table's ``file::function`` references name real definitions."""
    refs = REFERENCE.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(refs) >= 15, "README.md's chapter table lost its file::function references"
    missing = [f"{file}::{name}" for file, name in refs
               if not (REPO / file).is_file() or name not in defined_names(REPO / file)]
    assert not missing, f"README.md names what does not exist: {missing}"
