"""Every module path that README.md, docs/ or a catalog file names exists in the repository.

A path (``_pytest_nova/checks/node.py``, ``checks/facts.py``, ``../pytest_nova/hookspecs.py``) must be a file of
the repository, relative to its root, to ``_pytest_nova/``, to the naming file's folder, or as the tail of a
repository path; a bare file name (``plan.py``) must be the name of some file; a dotted name
(``_pytest_nova.runcache.once``) must import, up to its last attribute.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "_pytest_nova/catalog").glob("*.yaml"))]
PATH = re.compile(r"(?<![\w./-])([\w./-]+\.py)\b")
DOTTED = re.compile(r"\bpytest_nova(?:\.\w+)+")
SKIP_DIRS = {".git", ".venv", "__pycache__", "build", "dist"}


def _python_files() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py") if not SKIP_DIRS & set(p.parts)}


FILES = _python_files()
NAMES = {p.rsplit("/", 1)[-1] for p in FILES}


def path_exists(ref: str, doc: Path) -> bool:
    """Whether ``ref``, as written in ``doc``, names a file of the repository."""
    if "/" not in ref:
        return ref in NAMES
    beside = (doc.parent / ref).resolve()
    if beside.is_file() and ROOT in beside.parents:
        return True
    ref = ref.removeprefix("./")
    return ref in FILES or f"_pytest_nova/{ref}" in FILES or any(p.endswith("/" + ref) for p in FILES)


def dotted_exists(name: str) -> bool:
    """Whether ``name`` is an importable module, or an attribute of one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def stale(doc: Path) -> list[str]:
    """``file:line: name`` of each module path in ``doc`` that does not exist."""
    out = []
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        where = f"{doc.relative_to(ROOT)}:{n}"
        out += [f"{where}: {m.group(1)}" for m in PATH.finditer(line) if not path_exists(m.group(1), doc)]
        out += [f"{where}: {m.group(0)}" for m in DOTTED.finditer(line) if not dotted_exists(m.group(0))]
    return out


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_named_module_paths_exist(doc: Path) -> None:
    assert stale(doc) == []


def test_a_stale_path_is_found() -> None:
    doc = ROOT / "docs" / "architecture.md"
    assert path_exists("checks/facts.py", doc) and not path_exists("pytest_nova/facts.py", doc)
    assert path_exists("../pytest_nova/hookspecs.py", doc) and not path_exists("nosuch_module.py", doc)
    assert dotted_exists("_pytest_nova.runcache.once") and not dotted_exists("_pytest_nova.runcache.gone")
    assert not dotted_exists("pytest_nova.no_such_module")
