"""docs/privacy.md: every promise has its mechanism and its tests, and every test it names exists.

An auditor follows the page from a promise to `file::test` and runs it; a renamed or deleted test
would leave a promise pointing at nothing, so each name is checked here against the test files
(parsed, never imported: names inside classes and parametrized tests count as written)."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "privacy.md"
PROMISES = 10
# `tests/…/test_x.py::test_a`, then `::test_b` continuing the same file, or a bare `tests/…/file.py`
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::([\w\[\]-]+))?`")


def references() -> list[tuple[str, str | None]]:
    """(file, test or None) for every test reference, in order; a bare `::test` belongs to the file before it."""
    found: list[tuple[str, str | None]] = []
    current: str | None = None
    for m in REFERENCE.finditer(DOC.read_text()):
        path, test = m.group(1), m.group(2)
        if path is None and test is None:
            continue
        if path is not None:
            current = path
        assert current is not None, f"`::{test}` names no file before it"
        found.append((current, test.split("[")[0] if test else None))
    return found


@cache
def defined_tests(path: str) -> frozenset[str]:
    """The tests ``path`` defines, with those of a conformance suite it subclasses (``from .x_suite import``)."""
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    names = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and (node.module or "").endswith("_suite"):
            names |= defined_tests(str(Path(path).parent / f"{node.module}.py"))
    return frozenset(names)


def test_every_test_the_privacy_page_names_exists():
    refs = references()
    assert len(refs) > 50, "the page names its tests as `file::test`"
    missing = []
    for path, test in refs:
        if not (ROOT / path).is_file():
            missing.append(path)
        elif test is not None and test not in defined_tests(path):
            missing.append(f"{path}::{test}")
    assert not missing, f"docs/privacy.md names tests that do not exist: {sorted(set(missing))}"


def test_every_promise_has_a_mechanism_and_a_test():
    sections = re.split(r"^## (?=\d+\. )", DOC.read_text(), flags=re.M)[1:]
    assert [int(s.split(".")[0]) for s in sections] == list(range(1, PROMISES + 1))
    for section in sections:
        title = section.splitlines()[0]
        assert "| mechanism | where |" in section, f"no mechanism table: {title}"
        assert "| test | what it shows |" in section, f"no test table: {title}"
        assert re.search(r"`tests/[\w/]+\.py", section), f"no test named: {title}"
