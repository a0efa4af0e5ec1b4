"""End to end in a lab: a faulty lab's report is NOT ACCEPTED with each fault and its fix; the same run with a
waiver for each fault is ACCEPTED WITH WAIVERS and exits 0.

One small lab (1 master, 1 infra, 1 ingress, 1 worker) of its own, always torn down.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nova_lab import Lab, LabSpec
from tests.lab_fixtures import booted, lab_name, run_suite

pytestmark = pytest.mark.lab
OS = "pytest_nova/suites/test_os.py"
# The faults, and the checks each one fails (requirement, node).
FAULTS = {
    # The missing drop-in itself (os-sudoers-file) is advisory: a warning, not a failure.
    ("sudoers-missing", "worker-1"): {("os-sudo-nopasswd", "worker-1")},
    ("wrong-shell", "master-1"): {("os-user-exists", "master-1")},
}
FIXES = {"os-sudo-nopasswd": "NOPASSWD:ALL", "os-user-exists": "/bin/bash"}


@pytest.fixture(scope="module")
def report_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    yield from booted(LabSpec(name=lab_name("r", pytestconfig), masters=1, infra=1, ingress=1, workers=1))


def _failed(results: dict[str, Any], outcome: str) -> set[tuple[str, str]]:
    return {(r["requirement"], r["source"]) for r in results["results"] if r["outcome"] == outcome}


def _run_faulty(lab: Lab, *args: str) -> tuple[int, dict[str, Any], str, str]:
    report = lab.state_dir / "report.html"
    with lab.fault("sudoers-missing", host="worker-1"), lab.fault("wrong-shell", host="master-1"):
        rc, results, output = run_suite(lab, OS, "-n", "2", f"--html={report}", "--self-contained-html", *args)
    return rc, results, output, report.read_text(encoding="utf-8")


def _waivers(path: Path) -> Path:
    entries = [
        {"requirement": req, "node": node, "justification": f"accepted for the acceptance test ({req})",
         "approver": "Acceptance board", "expires": "2999-12-31"}
        for failing in FAULTS.values() for req, node in sorted(failing)
    ]
    path.write_text(json.dumps({"waivers": entries}, indent=1))  # JSON is YAML
    return path


def test_faulty_lab_is_not_accepted_then_accepted_with_waivers(report_lab: Lab) -> None:
    expected = set().union(*FAULTS.values())

    rc, results, output, page = _run_faulty(report_lab)
    assert rc == 1, output[-3000:]
    assert results["verdict"] == "NOT ACCEPTED"
    assert _failed(results, "failed") == expected, output[-3000:]
    assert 'id="nova-verdict">NOT ACCEPTED<' in page
    problems = re.search(r'<div class="nova" id="nova-problems">(.*?)</div>', page, re.S)
    assert problems is not None
    text = html.unescape(problems.group(1))
    for req, fix_phrase in FIXES.items():
        assert req in text and fix_phrase in text, (req, text[:2000])

    waivers = _waivers(report_lab.state_dir / "waivers.yaml")
    rc, results, output, page = _run_faulty(report_lab, f"--nova-waivers={waivers}")
    assert rc == 0, output[-3000:]
    assert results["verdict"] == "ACCEPTED WITH WAIVERS"
    assert _failed(results, "waived") == expected and not _failed(results, "failed")
    assert {w["status"] for w in results["waivers"]} == {"applied"}
    assert 'id="nova-verdict">ACCEPTED WITH WAIVERS<' in page and "Acceptance board" in page
    assert "nova verdict: ACCEPTED WITH WAIVERS" in output
