"""Rounds towards ACCEPTED in a lab: a run with planted faults, then a clean run against it as the baseline.

One small lab (1 master, 1 infra, 1 ingress, 2 workers) of its own, always torn down, checked through an inventory
without workstations. The faulty run: worker-1's firewall drops 8472/udp from every other node, and worker-1 has no
sudoers drop-in. It shows one problem and one fix for the dropped port however many sources it drops, the
observation every node shares (the lab's vendor addresses are not the docs' list) once, and the workstation rules
under "Not covered by this run". The clean run with ``--nova-baseline`` names every fault as fixed and none new.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _pytest_nova.baseline import when
from nova_lab import Lab, LabSpec
from tests.lab_fixtures import booted, lab_name, run_suite
from tests.test_coverage import WORKSTATION_RULES
from tests.test_print import CHROMIUM, PNG, print_pdf

pytestmark = pytest.mark.lab
SUITES = ("pytest_nova/suites/test_firewall.py", "pytest_nova/suites/test_os.py", "pytest_nova/suites/test_external.py")
DROPPED = "fw-vxlan-8472"


@pytest.fixture(scope="module")
def progress_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    yield from booted(LabSpec(name=lab_name("p", pytestconfig), masters=1, infra=1, ingress=1, workers=2))


def _no_workstations(lab: Lab) -> Path:
    text = lab.inventory_path.read_text()
    path = lab.state_dir / "no-workstations.yaml"
    path.write_text(re.sub(r"(?m)^workstations:\n(  - .*\n)*", "workstations: []\n", text))
    return path


def _run(lab: Lab, inv: Path, out: Path, *args: str) -> tuple[int, dict[str, Any], str, str]:
    report = out.with_suffix(".html")
    rc, _, output = run_suite(lab, *SUITES, f"--nova-inventory={inv}", f"--nova-json={out}", f"--html={report}",
                              "--self-contained-html", *args)
    return rc, json.loads(out.read_text()), output, report.read_text(encoding="utf-8")


def _section(page: str, div: str) -> str:
    m = re.search(rf'<div class="nova" id="{div}">(.*?)</table></div>', page, re.S)
    assert m is not None, div
    return html.unescape(m.group(1))


def test_faults_then_a_clean_run_against_them_as_the_baseline(progress_lab: Lab) -> None:
    lab = progress_lab
    inv = _no_workstations(lab)
    first = lab.state_dir / "first.json"
    nodes = [h for h in lab.hosts.values() if h.kind == "node"]
    sources = [h for h in nodes if h.name != "worker-1"]
    with lab.fault("fw-drop", port=8472, protocol="udp", source="nodes", destination="worker-1"), \
            lab.fault("sudoers-missing", host="worker-1"):
        rc, data, output, page = _run(lab, inv, first)
    assert rc == 1, output[-3000:]
    failing = {(r["requirement"], r["source"], r["target"], r["port"], r["protocol"]) for r in data["results"]
               if r["outcome"] in ("failed", "error")}
    # (The missing drop-in itself, os-sudoers-file, is advisory: a warning.)
    assert {f[0] for f in failing} == {DROPPED, "os-sudo-nopasswd"}, output[-3000:]
    dropped = sorted(f[1] for f in failing if f[0] == DROPPED)
    assert dropped == sorted(h.name for h in sources)

    # One problem, one fix for every source the destination drops, and each observation once.
    problems = _section(page, "nova-problems")
    assert problems.count(DROPPED) == 1 and f"(one fix for {len(sources)} sources)" in problems
    fix = problems.split(DROPPED)[1]
    assert "from each source: for a in " in fix and all(h.address in fix for h in sources)
    assert problems.count("filtered: no answer within") == 1
    output_lines = output.splitlines()
    assert f"  {DROPPED} (docs 3.1.5): {len(sources)} result(s)" in output_lines, output[-3000:]
    warnings = _section(page, "nova-warnings")
    everyone = [li for li in re.findall(r"<li>(.*?)</li>", warnings, re.S) if f"{len(nodes) + 1} places" in li]
    assert everyone, warnings[:3000]  # one observation for every node and nova-ctl, listed once
    assert warnings.count("ext-documented-ips") == 1

    # The inventory lists no workstations: the workstation rules are not covered, and the verdict line says so.
    gaps = data["coverage"]["not_covered"]
    assert {g["requirement"] for g in gaps if "no workstations" in g["reason"]} == WORKSTATION_RULES
    assert "add `workstations:` to cover them" in _section(page, "nova-coverage")
    n = len({g["requirement"] for g in gaps})
    assert f"; {n} requirements not covered by this run" in output

    # Every fault fixed: the clean run against the first as its baseline.
    rc, data, output, page = _run(lab, inv, lab.state_dir / "second.json", f"--nova-baseline={first}")
    assert rc == 0, output[-3000:]
    line = f"since the run of {when(json.loads(first.read_text())['started'])}: {len(failing)} fixed, 0 new, " \
           "0 still failing"
    assert line in output.splitlines(), output[-3000:]
    assert data["baseline"]["fixed"] == len(failing) and data["baseline"]["new"] == 0
    assert data["baseline"]["still_failing"] == 0 and data["baseline"]["not_checked"] == 0
    fixed = _section(page, "nova-baseline")
    assert f"Fixed ({len(failing)})" in fixed and "New failures" not in fixed and DROPPED in fixed
    print("\n".join(line for line in output.splitlines() if line.startswith(("lab:", "since the run", "="))))
    if os.environ.get("NOVA_UPDATE_SCREENSHOT") and os.path.exists(CHROMIUM) and shutil.which("pdftoppm"):
        _print_first_page(lab, inv, first)


def _print_first_page(lab: Lab, inv: Path, first: Path) -> None:
    """docs/report-print.png: the printed first page of a round where one fault was fixed and one remains."""
    with lab.fault("fw-drop", port=8472, protocol="udp", source="nodes", destination="worker-1"):
        _run(lab, inv, lab.state_dir / "third.json", f"--nova-baseline={first}")
    pdf = lab.state_dir / "third.pdf"
    print_pdf(lab.state_dir / "third.html", pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                    str(PNG.with_suffix(""))], check=True, timeout=60)
