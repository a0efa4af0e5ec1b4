"""Waivers: the file format, its one-line errors, and how waived failures reach JUnit, the JSON and the exit code."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import pytest

from _pytest_nova.errors import SourceError
from _pytest_nova.report.signoff import ACCEPTED_WITH_WAIVERS, NOT_ACCEPTED
from _pytest_nova.waivers import load_waivers, usage
from tests.test_report import SUDO, SWAP, make_suite, results, run

REQS = {"os-sudo-nopasswd", "k8s-swap-off"}
HOSTS = {"nova-ctl", "master-1", "worker-1"}

GOOD = """\
waivers:
  - requirement: os-sudo-nopasswd
    node: worker-*
    justification: sudo asks for a password by policy; the installer enters it
    approver: J. Smith, head of operations
    expires: 2999-12-31
  - requirement: k8s-swap-off
    justification: swap stays on until the hypervisor migration
    approver: A. Jones
    expires: "2000-01-01"
"""

BOTH_SWAP = """\
  - requirement: k8s-swap-off
    node: worker-1
    justification: worker-1 swap accepted
    approver: A. Jones
    expires: 2999-12-31
  - requirement: k8s-swap-off
    node: nova-ctl
    justification: nova-ctl swap accepted
    approver: A. Jones
    expires: 2999-12-31
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return path


def test_good_file_splits_active_and_expired(tmp_path: Path) -> None:
    w = load_waivers(write(tmp_path, GOOD), requirements=REQS, hosts=HOSTS, on=date(2026, 11, 21))
    assert [x.requirement for x in w.active] == ["os-sudo-nopasswd"]
    assert [(x.requirement, x.expires, x.line) for x in w.expired] == [("k8s-swap-off", date(2000, 1, 1), 7)]
    sudo = w.active[0]
    assert sudo.matches({"requirement": "os-sudo-nopasswd", "source": "worker-7", "target": None})
    assert not sudo.matches({"requirement": "os-sudo-nopasswd", "source": "master-1"})
    assert w.find({"requirement": "os-sudo-nopasswd", "source": "worker-1", "outcome": "failed"}) is sudo
    # Errors are never waived: nothing was observed to accept.
    assert w.find({"requirement": "os-sudo-nopasswd", "source": "worker-1", "outcome": "error"}) is None
    # The expired waiver is reported with the failures it would have covered.
    use = usage(w, [{"requirement": "k8s-swap-off", "source": "master-1", "outcome": "failed"}])
    assert [(u.status, u.count) for u in use] == [("unused", 0), ("expired", 1)]


def _broken(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_broken("node: worker-*", "nodes: worker-*"),
         "w.yaml:3: waivers[0].nodes: unknown key (expected one of: requirement, node, justification, approver, "
         "expires)"),
        (_broken("    approver: A. Jones\n", ""), "w.yaml:7: waivers[1]: missing required key 'approver'"),
        (_broken("requirement: k8s-swap-off", "requirement: k8s-swapoff"),
         "w.yaml:7: waivers[1].requirement: unknown requirement 'k8s-swapoff'"),
        (_broken("node: worker-*", "node: worker-9"),
         "w.yaml:3: waivers[0].node: 'worker-9' is not a node, workstation or load balancer of the inventory"),
        (_broken('"2000-01-01"', "next year"), "w.yaml:10: waivers[1].expires: expected a date YYYY-MM-DD, got "
                                              "'next year'"),
        (_broken("approver: A. Jones", 'approver: ""'), "w.yaml:9: waivers[1].approver: expected non-empty text"),
        (_broken("    node: worker-*\n", "").replace("k8s-swap-off", "os-sudo-nopasswd"),
         "w.yaml:6: waivers[1]: duplicate waiver for os-sudo-nopasswd (also at line 2)"),
        ("- requirement: x\n", "w.yaml:1: a waivers file is a mapping with a 'waivers' list"),
        ("waivers: {a: 1}\n", "w.yaml:1: waivers: expected a list of waivers"),
        ("waivers: [\n", "w.yaml:2: invalid YAML: *"),
    ],
    ids=["unknown-key", "missing-key", "unknown-requirement", "unknown-node", "bad-date", "empty-text", "duplicate",
         "not-mapping", "not-list", "yaml-syntax"],
)
def test_broken_file_gives_one_located_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SourceError) as exc:
        load_waivers(path, requirements=REQS, hosts=HOSTS)
    assert str(exc.value).removeprefix(str(tmp_path) + "/") == message or (
        message.endswith("*") and str(exc.value).removeprefix(str(tmp_path) + "/").startswith(message[:-1]))


def test_broken_file_ends_the_run_with_one_line(pytester: pytest.Pytester) -> None:
    make_suite(pytester)
    pytester.makefile(".yaml", w=_broken("requirement: k8s-swap-off", "requirement: nope"))
    result = run(pytester, "--nova-waivers=w.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --nova-waivers: w.yaml:7: waivers[1].requirement: unknown requirement 'nope'"])
    assert "Traceback" not in result.stderr.str()


def test_waived_faults_are_accepted_with_waivers_and_exit_0(pytester: pytest.Pytester) -> None:
    """Every fault waived: WAIVED in the terminal, skipped in JUnit, 'waived' in the JSON, exit code 0."""
    make_suite(pytester)
    sudo = GOOD.split("  - requirement: k8s-swap-off")[0]
    unused = sudo.removeprefix("waivers:\n").replace("worker-*", "master-1")
    pytester.makefile(".yaml", w=sudo + BOTH_SWAP + unused)
    result = run(pytester, "--nova-waivers=w.yaml", "-n", "2")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines([
        "*= nova verdict: ACCEPTED WITH WAIVERS =*",
        "waived: os-sudo-nopasswd on worker-[*]: 1 result(s): sudo asks for a password by policy*J. Smith*",
        "waived: k8s-swap-off on nova-ctl: 1 result(s): nova-ctl swap accepted*",
        "unused waiver: w.yaml:17: os-sudo-nopasswd on master-1 matched no failure",
    ])
    assert "2 waived" in result.stdout.lines[-1] and "failed" not in result.stdout.lines[-1]
    data = results(pytester)
    assert data["verdict"] == ACCEPTED_WITH_WAIVERS and data["summary"]["failed"] == 0
    waived = [r for r in data["results"] if r["outcome"] == "waived"]
    assert len(waived) == 3 and all("approved by" in r["message"] for r in waived)
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    skipped = cases[f"test_node[{SUDO}]"].find("skipped")
    assert skipped is not None and "sudo asks for a password by policy" in skipped.get("message", "")


def test_partly_waived_item_stays_failed(pytester: pytest.Pytester) -> None:
    make_suite(pytester)
    # Only the nova-ctl swap record is waived; the worker-1 one still fails.
    pytester.makefile(".yaml", w="waivers:\n" + BOTH_SWAP.split("  - requirement: k8s-swap-off\n    node: nova-ctl")[0]
                      .replace("worker-1", "nova-ctl", 1))
    result = run(pytester, "--nova-waivers=w.yaml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*nova waivers*", "1 of 2 failures waived: waived: worker-1 swap accepted*",
                                 "*= nova verdict: NOT ACCEPTED =*"])
    swap = {r["target"]: r["outcome"] for r in results(pytester)["results"] if r["nodeid"].endswith(f"[{SWAP}]")}
    assert swap == {"worker-1": "failed", "nova-ctl": "waived"}


def test_expired_waiver_does_not_apply_and_is_reported(pytester: pytest.Pytester) -> None:
    make_suite(pytester, faults={SWAP: [{"observed": "swap on", "target": "worker-1"}]})
    pytester.makefile(".yaml", w=GOOD)
    result = run(pytester, "--nova-waivers=w.yaml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*= nova verdict: NOT ACCEPTED =*",
        "unused waiver: w.yaml:2: os-sudo-nopasswd on worker-[*] matched no failure",
        "expired waiver, not applied: w.yaml:7: k8s-swap-off expired 2000-01-01 (1 failure(s) it would cover)",
    ])
    data = results(pytester)
    assert data["verdict"] == NOT_ACCEPTED
    assert [(w["requirement"], w["status"], w["results"]) for w in data["waivers"]] == [
        ("os-sudo-nopasswd", "unused", 0), ("k8s-swap-off", "expired", 1)]


def test_errors_are_not_waived(pytester: pytest.Pytester) -> None:
    make_suite(pytester, faults={SUDO: [{"outcome": "error", "observed": "worker-1: ssh: connection timed out"}]})
    pytester.makefile(".yaml", w=GOOD)
    result = run(pytester, "--nova-waivers=w.yaml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert [r["outcome"] for r in results(pytester)["results"] if r["nodeid"].endswith(f"[{SUDO}]")] == ["error"]
    assert json.loads((pytester.path / "results.json").read_text())["verdict"] == NOT_ACCEPTED


def test_example_file_is_valid_for_the_example_inventory() -> None:
    from _pytest_nova.catalog import load_catalog
    from _pytest_nova.inventory import load_inventory

    repo = Path(__file__).resolve().parents[1]
    inv = load_inventory(repo / "inventories" / "example-prod.yaml")
    w = load_waivers(repo / "examples" / "waivers.yaml", requirements={r.id for r in load_catalog().requirements},
                     hosts={h.name for h in (*inv.nodes, *inv.workstations)} | set(inv.balancers))
    assert [(x.requirement, x.node) for x in w.items] == [("os-sudo-nopasswd", "worker-2"), ("k8s-swap-off", None)]
