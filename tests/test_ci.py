"""CI installs what the lab needs: the Debian package list of .ci/install-deps covers the lab's."""

from __future__ import annotations

import re
from pathlib import Path

from nova_lab import DEBIAN_PACKAGES

REPO = Path(__file__).resolve().parents[1]


def test_ci_installs_every_debian_package_the_lab_needs() -> None:
    text = (REPO / ".ci" / "install-deps").read_text()
    match = re.search(r"packages=\(([^)]*)\)", text)
    assert match, "install-deps lists its packages as packages=(...)"
    listed = set(match.group(1).split())
    assert set(DEBIAN_PACKAGES) <= listed, sorted(set(DEBIAN_PACKAGES) - listed)
    assert {"chromium", "chromium-driver"} <= listed, "the browser test of the report needs them"


def test_ci_proves_the_install_from_built_wheels() -> None:
    run = (REPO / ".ci" / "run").read_text()
    assert "-e ./lab" in run and ".ci/install-check" in run
    check = (REPO / ".ci" / "install-check").read_text()
    for step in ("pip wheel", "python3 -m venv", "unset PYTHONPATH", "unzip -l", "nova-lab\" up", "-n auto",
                 "nova verdict: ACCEPTED", "trap cleanup EXIT", "5) echo"):
        assert step in check, step
