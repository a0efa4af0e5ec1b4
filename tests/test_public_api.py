"""The public API: what a site plugin imports comes from ``pytest_nova`` itself, the implementation lives apart in
``_pytest_nova``, and the package checks at run time with exceptions, not ``assert`` (which ``python -O`` removes)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest_nova

REPO = Path(__file__).resolve().parent.parent
PUBLIC, INTERNAL = REPO / "pytest_nova", REPO / "_pytest_nova"
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
PLUGINS = sorted((REPO / "tests" / "data" / "site_plugin").glob("*.py")) + sorted((REPO / "examples").rglob("*.py"))


NOVA = ("pytest_nova", "_pytest_nova")


def _nova_imports(source: str) -> list[str]:
    """The modules of pytest_nova and _pytest_nova a source imports from."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in NOVA:
            found.append(node.module)
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in NOVA]
    return found


def _python_blocks() -> list[tuple[str, str]]:
    return [(f"{doc.name}:{doc.read_text()[:m.start()].count(chr(10)) + 1}", m.group(1))
            for doc in DOCS for m in re.finditer(r"^```python\n(.*?)^```", doc.read_text(), re.S | re.M)]


def test_the_example_plugin_and_every_doc_snippet_import_only_the_public_api() -> None:
    sources = [(str(p.relative_to(REPO)), p.read_text()) for p in PLUGINS] + _python_blocks()
    assert len(sources) >= 4 and any(where.startswith("examples/") for where, _ in sources)
    private = {where: mods for where, text in sources if (mods := [m for m in _nova_imports(text)
                                                                   if m != "pytest_nova"])}
    assert private == {}
    used = {alias.name for _, text in sources for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.ImportFrom) and node.module == "pytest_nova" for alias in node.names}
    assert used and used <= set(pytest_nova.__all__)


def test_the_public_package_holds_only_its_api_and_entry_points() -> None:
    public = sorted(str(p.relative_to(PUBLIC)) for p in PUBLIC.rglob("*.py") if "suites" not in p.parts)
    assert public == ["__init__.py", "ansible/__init__.py", "ansible/__main__.py", "hookspecs.py"]
    # Public modules re-export; the code they run lives in the internal package.
    for path in PUBLIC.rglob("*.py"):
        if "suites" not in path.parts:
            defined = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
            assert path.name == "hookspecs.py" or defined == [], path
    entry = re.search(r'^nova = "([\w.]+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert entry and entry.group(1) == "_pytest_nova.plugin"


def test_every_public_name_exists() -> None:
    assert [n for n in pytest_nova.__all__ if not hasattr(pytest_nova, n)] == []
    for name in ("HostError", "Reason", "Outcome", "Hosts", "RemoteHost", "Result", "RunCache", "once", "NodeFact",
                 "NodeRule", "node_verdicts", "REQUIRED", "OPTIONAL"):
        assert name in pytest_nova.__all__


# Catching a site test's own failed assert is what turns it into the Observed of its record.
CATCHES_TEST_ASSERTIONS = {"site_tests.py"}


def test_no_assert_is_a_runtime_check_in_the_package() -> None:
    asserts, catches = [], []
    for path in (*PUBLIC.rglob("*.py"), *INTERNAL.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Assert):
                asserts.append(where)
            if isinstance(node, ast.ExceptHandler) and node.type is not None and path.name not in \
                    CATCHES_TEST_ASSERTIONS and "AssertionError" in ast.unparse(node.type):
                catches.append(where)
    assert (asserts, catches) == ([], [])


def test_the_walk_through_shows_the_example_plugin_and_its_node_catalog_as_they_are() -> None:
    text = (REPO / "docs" / "extending.md").read_text()
    plugin = REPO / "tests" / "data" / "site_plugin"
    assert f"```python\n{(plugin / 'site_plugin.py').read_text()}```" in text
    assert f"```yaml\n{(plugin / 'catalog' / 'site_node.yaml').read_text()}```" in text
