"""A site's own testinfra tests run on the inventory's nodes, in one run with the plan, judged like its checks.

One small lab (1 master, 1 infra, 1 ingress, 2 workers) with one real fault that only a site test demands:
worker-2 forwards no IPv4 (the plan's check of it is advisory). The site tests are ``examples/site_tests/``,
copied outside the repository and run from there, as a site keeps its own.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _pytest_nova.inventory import load_inventory
from nova_lab import Lab, LabSpec
from tests.lab_fixtures import REPO, booted, lab_name, run_suite

pytestmark = pytest.mark.lab
EXAMPLE = REPO / "examples" / "site_tests"
FAULTY = "worker-2"
ADVISORY_MESSAGE = "chronyd is not listening on 127.0.0.1:323/udp"
Key = tuple[str, str]  # (test function, node)


@pytest.fixture(scope="module")
def site_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """The module's lab, with IPv4 forwarding off on worker-2."""
    boot = booted(LabSpec(name=lab_name("st", pytestconfig), masters=1, infra=1, ingress=1, workers=2))
    lab = next(boot)
    try:
        lab.apply("ip-forward-off", host=FAULTY)
        yield lab
    finally:
        boot.close()  # type: ignore[attr-defined]  # a generator: closing it tears the lab down


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the repository holding ``site_tests/``, the example's tests."""
    where = tmp_path_factory.mktemp("site")
    shutil.copytree(EXAMPLE, where / "site_tests", ignore=shutil.ignore_patterns("__pycache__"))
    return where


def expected(lab: Lab) -> dict[Key, tuple[str, str, str]]:
    """(test, node) -> (check, requirement, outcome) of every site test on the faulty lab."""
    inv = load_inventory(lab.inventory_path)
    nodes = sorted(n.name for n in inv.nodes)
    cluster = [n for n in nodes if n != "nova-ctl"]
    out: dict[Key, tuple[str, str, str]] = {("test_python3", n): ("site", "test_python3", "passed") for n in nodes}
    for test, check, requirement in (("test_hostname", "site", "site-hostname"), ("test_sshd", "site", "site-sshd"),
                                     ("test_sudoers", "os", "site-sudoers"),
                                     ("test_ip_forward", "site", "site-ip-forward")):
        out |= {(test, n): (check, requirement, "passed") for n in cluster}
    out[("test_ip_forward", FAULTY)] = ("site", "site-ip-forward", "failed")
    out[("test_time_sync", "master-1")] = ("site", "site-chrony", "warning")
    return out


def site_records(data: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    """The site tests' records by (test, node); each (test, node) has exactly one."""
    out: dict[Key, dict[str, Any]] = {}
    for r in data["results"]:
        m = re.fullmatch(r"site_tests/test_site\.py::(\w+)\[([\w-]+)\]", r["nodeid"])
        if m:
            key = (m.group(1), m.group(2))
            assert key not in out, f"two records for {key}"
            out[key] = r
    return out


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "n2"])
def test_plan_and_site_tests_in_one_run(site_lab: Lab, site_dir: Path, workers: tuple[str, ...]) -> None:
    hosts = ["master-1", "infra-1", "ingress-1", "worker-1", "worker-2"]
    before = {h: site_lab.sshd_logins(h) for h in hosts}
    rc, data, out = run_suite(site_lab, *workers, "--pyargs", "pytest_nova.suites", "site_tests/", cwd=site_dir)
    assert rc == 1, out[-3000:]
    # The plan's facts, probes and listeners and every site test on a node shared one login, on either worker.
    assert {h: site_lab.sshd_logins(h) - n for h, n in before.items()} == dict.fromkeys(hosts, 1)

    records = site_records(data)
    assert {k: (r["check"], r["requirement"], r["outcome"]) for k, r in records.items()} == expected(site_lab)
    failed = records[("test_ip_forward", FAULTY)]
    assert failed["target"] == FAULTY and failed["section"] == "site 2.1" and failed["severity"] == "required"
    assert failed["message"] == "net.ipv4.ip_forward = 0"
    warning = records[("test_time_sync", "master-1")]
    assert warning["severity"] == "advisory" and warning["message"] == ADVISORY_MESSAGE

    # NOT ACCEPTED because of worker-2's site test alone: the plan passes (its own ip_forward check is advisory).
    gating = [r for r in data["results"] if r["outcome"] in ("failed", "error")]
    assert gating == [failed]
    plan = [r for r in data["results"] if not r["nodeid"].startswith("site_tests/")]
    assert plan and {r["outcome"] for r in plan} <= {"passed", "warning", "skipped"}
    assert data["verdict"] == "NOT ACCEPTED"
    assert ("Checked:  site test test_ip_forward on worker-2\nExpected: IPv4 forwarding is on (docs site 2.1)\n"
            "Observed: net.ipv4.ip_forward = 0\nFix:      sysctl -w net.ipv4.ip_forward=1") in out
    assert "Traceback" not in out


def test_site_tests_alone_with_an_unreachable_node_a_noisy_shell_a_waiver_and_strict(
        site_lab: Lab, site_dir: Path, tmp_path: Path) -> None:
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text("waivers:\n  - requirement: site-ip-forward\n    node: worker-2\n"
                       "    justification: the installer switches forwarding on\n    approver: J. Smith\n"
                       "    expires: 2099-12-31\n")
    junit, report = tmp_path / "junit.xml", tmp_path / "report.html"
    # master-1's shell prints a banner on stdout and stderr: testinfra's parsers still see only the commands' output.
    with site_lab.fault("sshd-down", host="worker-1"), site_lab.fault("noisy-shell", host="master-1"):
        rc, data, out = run_suite(site_lab, "site_tests/", f"--nova-waivers={waivers}", "--nova-strict",
                                  f"--junitxml={junit}", f"--html={report}", "--self-contained-html", cwd=site_dir)
    assert rc == 1, out[-3000:]
    assert {r["nodeid"].split("/")[0] for r in data["results"]} == {"site_tests"}  # only the site's tests ran
    records = site_records(data)
    outcomes = {k: r["outcome"] for k, r in records.items()}
    want = {k: v[2] for k, v in expected(site_lab).items()}
    # worker-1 cannot be reached: each of its site tests errors once, with the node's one-line cause.
    want |= {k: "error" for k in want if k[1] == "worker-1"}
    want[("test_ip_forward", FAULTY)] = "waived"
    want[("test_time_sync", "master-1")] = "failed"  # --nova-strict: the advisory gates
    assert outcomes == want
    address = load_inventory(site_lab.inventory_path).host("worker-1").address
    cause = f"worker-1: ssh: connection refused by {address}:22 (is sshd running?)"
    assert {r["message"] for k, r in records.items() if k[1] == "worker-1"} == {cause}
    assert f"{cause}; 5 checks not run" in out
    assert data["verdict"] == "NOT ACCEPTED" and "Traceback" not in out
    assert [w["status"] for w in data["waivers"]] == ["applied"]
    assert 'name="nova_failure" value="failed: master-1: ' + ADVISORY_MESSAGE in junit.read_text()
    html = report.read_text()
    assert "<th>site</th>" in html and "<th>OS account</th>" in html  # the area x role table
    to_fix = html.split('id="nova-problems"', 1)[1].split("</div>", 1)[0]
    assert "<b>site-chrony</b>" in to_fix and "<b>site-hostname</b>" in to_fix  # failed (strict), error (worker-1)
    assert "net.ipv4.ip_forward = 0" not in to_fix  # worker-2's failure is waived
