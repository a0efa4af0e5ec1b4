"""Coverage: what a run did not prove, in the results JSON, the terminal's verdict line and the report."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from _pytest_nova.catalog import load_catalog
from _pytest_nova.coverage import NO_WORKSTATIONS, OTHER_PHASE, WORKSTATIONS_PART, coverage, plan_gaps
from _pytest_nova.inventory import load_inventory
from _pytest_nova.kinds import build
from _pytest_nova.model import Record
from tests.test_report import make_suite, report_data, results, run

ROOT = Path(__file__).resolve().parents[1]
# The requirements whose sources are "nodes and workstations" (docs 3.1.2-3.1.4 with the 3.1.6 rows).
WORKSTATION_RULES = {"fw-master-api", "fw-infra-ingress-http", "fw-infra-ingress-https", "fw-ingress-http",
                     "fw-ingress-https"}


def _without_workstations(tmp_path: Path) -> Path:
    text = (ROOT / "inventories" / "example-prod.yaml").read_text()
    assert "\nworkstations:" in text
    path = tmp_path / "inv.yaml"
    path.write_text(text.split("\nworkstations:")[0] + "\n")
    return path


def test_an_inventory_without_workstations_lists_the_workstation_rules(tmp_path: Path) -> None:
    cat = load_catalog()
    inv = load_inventory(_without_workstations(tmp_path))
    assert not inv.workstations
    gaps = {g.requirement: g for g in plan_gaps(cat, inv, build(cat, inv), "preinstall")}
    assert {r for r, g in gaps.items() if g.kind == "workstations"} == WORKSTATION_RULES
    assert all(gaps[r].reason == WORKSTATIONS_PART for r in WORKSTATION_RULES)  # checked from the nodes only
    # The 3.2 external column (the balancers reached from the workstations) is after installation.
    lb = {r for r, g in gaps.items() if r.startswith("lb-")}
    assert lb and all(gaps[r].reason == OTHER_PHASE["postinstall"] for r in lb)

    post = {g.requirement: g for g in plan_gaps(cat, inv, build(cat, inv), "postinstall")}
    external = [r.id for r in cat.by_area("lb") if r.external and not r.internal]
    assert all(post[r].reason == NO_WORKSTATIONS for r in external)
    assert "add `workstations:` to cover them" in NO_WORKSTATIONS


def test_the_example_inventory_with_workstations_has_no_workstation_gap() -> None:
    cat = load_catalog()
    inv = load_inventory(ROOT / "inventories" / "example-prod.yaml")
    assert inv.workstations
    gaps = plan_gaps(cat, inv, build(cat, inv), "all")
    assert not [g for g in gaps if g.kind in ("workstations", "phase")]


def test_unprovable_results_name_what_was_missing(tmp_path: Path) -> None:
    cat = load_catalog()
    inv = load_inventory(_without_workstations(tmp_path))
    rec: Record = {"nodeid": "t", "check": "firewall", "requirement": "fw-master-api", "section": "3.1.2",
                   "source": "worker-1", "target": "master-1", "port": 6443, "protocol": "tcp", "outcome": "skipped",
                   "message": "skipped: cannot be proven: master-1: sudo -n refused: ports below 1024 need root",
                   "severity": "required", "_unprovable": True}
    cov = coverage(cat, inv, build(cat, inv), "preinstall", deselected={}, reported={}, records=[rec, rec])
    gap = next(g for g in cov.not_covered if g.kind == "unprovable")
    assert cov.unprovable == 2 and gap.requirement == "fw-master-api"
    assert gap.reason.startswith("2 results could not be proven, e.g. master-1: sudo -n refused: ports below 1024")


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_deselection_and_workstations_are_in_the_json_the_verdict_line_and_the_report(
        pytester: pytest.Pytester, workers: list[str]) -> None:
    make_suite(pytester, faults={})
    result = run(pytester, "-k", "worker-1", "--html=report.html", "--self-contained-html", *workers)
    assert result.ret == pytest.ExitCode.OK
    cov = results(pytester)["coverage"]
    deselected = [g for g in cov["not_covered"] if "deselected (-k, -m)" in g["reason"]]
    assert cov["deselected"] > 0 and deselected and cov["unprovable"] == 0
    assert sum(int(g["reason"].split()[0]) for g in deselected) == cov["deselected"]
    assert {g["requirement"] for g in cov["not_covered"] if "no workstations" in g["reason"]} >= WORKSTATION_RULES
    n = len({g["requirement"] for g in cov["not_covered"]})
    result.stdout.fnmatch_lines([f"lab1: all * checks passed; {n} requirements not covered by this run"])
    page = (pytester.path / "report.html").read_text()
    assert f"Not covered by this run ({n} requirements)" in page and "add `workstations:` to cover them" in page
    assert page.index('id="nova-signoff"') < page.index('id="nova-coverage"') < page.index('id="nova-matrix"')
    assert html.unescape(report_data(pytester.path / "report.html")[1]["environment"]["Selection"]) == "-k 'worker-1'"

    if workers:
        return  # under xdist, what matters is that the workers' deselection reached the controller
    # Without -k nothing is deselected; the kinds the synthetic suite does not test are "not run".
    assert run(pytester).ret == pytest.ExitCode.OK
    cov = results(pytester)["coverage"]
    assert cov["deselected"] == 0 and not [g for g in cov["not_covered"] if "deselected" in g["reason"]]
    assert [g for g in cov["not_covered"] if "not run" in g["reason"]]
    assert json.dumps(cov).count("os-sudo-nopasswd") == 0  # its checks all ran
