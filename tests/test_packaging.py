"""Two distributions from one repository: pytest-nova (the checks, with the suites) and nova-lab (the lab)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_the_runtime_package_imports_nothing_from_the_lab() -> None:
    modules = sorted(p for package in ("pytest_nova", "_pytest_nova") for p in (REPO / package).rglob("*.py"))
    assert len(modules) > 60
    offenders = {str(p.relative_to(REPO)): m for p in modules for m in _imports(p) if m.split(".")[0] == "nova_lab"}
    assert not offenders


def test_console_scripts_come_from_their_own_distribution() -> None:
    runtime = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lab = tomllib.loads((REPO / "lab" / "pyproject.toml").read_text())["project"]
    assert "nova-lab" not in runtime["scripts"] and lab["scripts"]["nova-lab"] == "nova_lab.cli:main"
    assert runtime["scripts"]["nova-inventory-from-ansible"] == "pytest_nova.ansible:main"
    assert any(d.startswith("pytest-nova") for d in lab["dependencies"])


def test_the_runtime_wheel_ships_the_suites_and_no_lab(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(tmp_path), str(REPO)],
                   check=True, timeout=300, capture_output=True)
    (wheel,) = tmp_path.glob("pytest_nova-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("pytest_nova/suites/__init__.py", "pytest_nova/suites/test_firewall.py",
                    "_pytest_nova/catalog/firewall.yaml", "_pytest_nova/probes/portprobe.py", "pytest_nova/py.typed",
                    "_pytest_nova/py.typed", "_pytest_nova/plugin.py"):
        assert shipped in names, shipped
    assert not [n for n in names if "nova_lab" in n or "/lab/" in n or n.startswith("tests/")]
