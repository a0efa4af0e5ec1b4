"""The acceptance report: verdict, terminal summary, results JSON, JUnit and the pytest-html report.

A synthetic suite drives the plugin without a lab: a tiny inventory, and a test module that judges hand-made
verdicts read from ``faults.json`` (check id -> the failures to report for it).
"""

from __future__ import annotations

import hashlib
import html as htmllib
import json
import re
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from _pytest_nova.model import Outcome
from _pytest_nova.report import html
from _pytest_nova.report.signoff import ACCEPTED, ACCEPTED_WITH_WAIVERS, NOT_ACCEPTED, decide
from _pytest_nova.verdicts import FAILED, PASSED, SKIPPED, USER_PROPERTY, Verdict, junit_properties
from _pytest_nova.waivers import Waiver, waive

INVENTORY = """\
cluster:
  name: lab1
  dnsBaseDomain: nova.example.local
network:
  mode: internet
  dnsServers: [10.10.0.53]
ssh:
  user: nova-installer
  identityFile: ~/.ssh/id_nova
nodes:
  - {name: nova-ctl, address: 10.10.0.5, roles: [nova-ctl], connection: local}
  - {name: master-1, address: 10.10.1.11, roles: [master]}
  - {name: worker-1, address: 10.10.1.41, roles: [worker]}
"""

SUITE = '''
import json
import pathlib

from _pytest_nova.plan import Check
from _pytest_nova.verdicts import Verdict

FAULTS = json.loads((pathlib.Path(__file__).parent / "faults.json").read_text())


def test_node(node_requirement: Check, nova) -> None:
    c, r = node_requirement, node_requirement.requirement
    faults = FAULTS.get(c.id) or [{"outcome": "passed", "observed": "as required"}]
    nova.judge([
        Verdict(r.area, r.id, r.section, f.get("outcome", "failed"), f["observed"], source=c.source,
                target=f.get("target"), checked=f"{r.id} on {c.source}", expected=r.summary, fix=r.fix)
        for f in faults
    ])
'''

SUDO = "worker-1:os-sudo-nopasswd"
SWAP = "master-1:k8s-swap-off"
FAULTS: dict[str, list[dict[str, str]]] = {
    SUDO: [{"observed": "sudo asks for a password <script>alert(1)</script>"}],
    SWAP: [{"observed": "swap is on: /dev/sda2", "target": "worker-1"}, {"observed": "swap on", "target": "nova-ctl"}],
}


def make_suite(pytester: pytest.Pytester, faults: dict[str, Any] | None = None) -> Path:
    """Write the inventory, the synthetic test module and its faults; returns the inventory path."""
    pytester.makefile(".yaml", inv=INVENTORY)
    pytester.makepyfile(test_synthetic=SUITE)
    # The synthetic faults exercise the report's mechanics, so every requirement gates here (advisories too);
    # the warning tests below turn strictness off with NOVA_STRICT=0.
    pytester.makeini("[pytest]\nnova_strict = true\n")
    (pytester.path / "faults.json").write_text(json.dumps(FAULTS if faults is None else faults))
    return pytester.path / "inv.yaml"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the synthetic suite with the inventory, the results JSON and JUnit XML."""
    return pytester.runpytest(
        "--nova-inventory=inv.yaml", "--nova-json=results.json", "--junitxml=junit.xml",
        "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning", *args,
    )


def report_data(path: Path) -> tuple[str, dict[str, Any]]:
    """The report's page text and the JSON blob pytest-html renders its tables from."""
    text = path.read_text(encoding="utf-8")
    blob = re.search(r'data-jsonblob="([^"]*)"', text)
    assert blob is not None
    return text, json.loads(htmllib.unescape(blob.group(1)))


def results(pytester: pytest.Pytester) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pytester.path / "results.json").read_text())
    return data


def test_faulty_run_is_not_accepted_and_shows_each_fault_with_its_fix(pytester: pytest.Pytester) -> None:
    inv = make_suite(pytester)
    result = run(pytester, "--html=report.html", "--self-contained-html")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*= nova verdict: NOT ACCEPTED =*", "lab1: 3 failed: fix them and run again*"])

    data = results(pytester)
    assert data["schema"] == "pytest-nova/results/v1"
    assert data["verdict"] == NOT_ACCEPTED
    assert data["summary"]["failed"] == 3 and data["summary"]["waived"] == 0
    assert list(data)[-1] == "results"  # extensions come before the long list
    assert not any(k.startswith("_") for r in data["results"] for k in r)

    page, blob = report_data(pytester.path / "report.html")
    assert "<title id=\"head-title\">Nova acceptance report: lab1: NOT ACCEPTED</title>" in page
    assert 'id="nova-verdict">NOT ACCEPTED<' in page
    assert 'id="nova-matrix"' in page and 'id="nova-problems"' in page
    # The fix of each failed requirement is listed at the top, escaped.
    assert "swapoff -a &amp;&amp;" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    env = blob["environment"]
    assert env["Cluster"] == "lab1"
    assert env["Inventory sha256"] == hashlib.sha256(inv.read_bytes()).hexdigest()
    assert env["Phase"] == "preinstall" and "@" in env["Operator"] and env["Finished"].endswith("Z")
    tests = {t["testId"]: t for runs in blob["tests"].values() for t in runs}
    sudo = tests[f"test_synthetic.py::test_node[{SUDO}]"]
    assert sudo["result"] == "Failed"
    assert '<td class="col-requirement">os-sudo-nopasswd</td>' in sudo["resultsTableRow"]
    assert '<td class="col-source">worker-1</td>' in sudo["resultsTableRow"]
    for label in ("Checked", "Expected", "Observed", "Fix"):
        assert f"<th>{label}</th>" in sudo["log"]
    assert "&lt;script&gt;" in sudo["log"] and "\n" not in sudo["log"].split("</div>")[0]


def test_clean_run_is_accepted(pytester: pytest.Pytester) -> None:
    make_suite(pytester, faults={})
    result = run(pytester, "--html=report.html", "--self-contained-html")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*= nova verdict: ACCEPTED =*", "lab1: all * checks passed*"])
    assert results(pytester)["verdict"] == ACCEPTED
    page, _ = report_data(pytester.path / "report.html")
    assert 'id="nova-verdict">ACCEPTED<' in page and 'id="nova-problems"' not in page


def test_collect_only_prints_the_plan_without_a_verdict_or_results(pytester: pytest.Pytester) -> None:
    make_suite(pytester)
    result = run(pytester, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"test_synthetic.py::test_node[[]{SUDO}[]]"])
    assert "verdict" not in result.stdout.str() and "ACCEPTED" not in result.stdout.str()
    assert not (pytester.path / "results.json").exists()


def test_environment_table_keeps_ci_and_extra_metadata_out(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_suite(pytester, faults={})
    monkeypatch.setenv("BUILD_URL", "https://ci.example/job/1")
    result = run(pytester, "--html=report.html", "--metadata", "api_token", "s3cr3t")
    assert result.ret == pytest.ExitCode.OK
    page, blob = report_data(pytester.path / "report.html")
    assert "s3cr3t" not in page and "ci.example" not in page
    assert {"Cluster", "Inventory", "Inventory sha256", "dnsBaseDomain", "Mode", "Catalog (docs version)",
            "pytest-nova", "Phase", "Started", "Finished", "Operator"} <= set(blob["environment"])


def test_other_failures_block_acceptance(pytester: pytest.Pytester) -> None:
    make_suite(pytester, faults={})
    pytester.makepyfile(test_own="def test_own_check():\n    assert False\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert results(pytester)["verdict"] == NOT_ACCEPTED
    result.stdout.fnmatch_lines(["lab1: 1 other test failure: fix them and run again*"])


def junit_ids(path: Path) -> list[tuple[str, str, str]]:
    """(classname, name, outcome) of every test case."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        out.append((case.get("classname", ""), case.get("name", ""), kinds[0] if kinds else "passed"))
    return sorted(out)


def test_junit_and_json_are_the_same_under_xdist(pytester: pytest.Pytester) -> None:
    make_suite(pytester)
    assert run(pytester).ret == pytest.ExitCode.TESTS_FAILED
    serial_junit, serial_json = junit_ids(pytester.path / "junit.xml"), results(pytester)
    assert run(pytester, "-n", "2").ret == pytest.ExitCode.TESTS_FAILED
    xdist_json = results(pytester)
    assert junit_ids(pytester.path / "junit.xml") == serial_junit
    assert (SUDO.join(("test_node[", "]")), "failure") in {(n, o) for _, n, o in serial_junit}
    assert xdist_json["results"] == serial_json["results"] and xdist_json["verdict"] == serial_json["verdict"]


def test_explain_parts_come_from_the_record_fields_and_keep_multi_line_observations() -> None:
    v = Verdict(check="os", requirement="os-x", section="1", outcome=FAILED, message="line one\nline two",
                checked="a", expected="b", fix="do x")
    record = v.record("t.py::t")
    assert (record["_checked"], record["_expected"], record["_fix"]) == ("a", "b", "do x")
    assert "_explain" not in record and "_unprovable" not in record
    assert html.explain_parts(record) == {"Checked": "a", "Expected": "b (docs 1)",
                                          "Observed": "line one\nline two", "Fix": "do x"}
    # Nothing is parsed back out of text: a message that looks like labels stays the observation.
    tricky = Verdict(check="os", requirement="os-x", section="1", outcome=FAILED, message="Fix: not a fix",
                     checked="", expected="", fix="")
    assert html.explain_parts(tricky.record("t.py::t")) == {"Observed": "Fix: not a fix"}
    # A waived record shows what was observed, not the waiver's reason appended to its message.
    w = Waiver(0, 3, "os-x", None, "accepted", "J. Smith", date(2099, 1, 1))
    assert html.explain_parts(waive(record, w))["Observed"] == "line one\nline two"
    assert html.esc("a<b>\nc") == "a&lt;b&gt;&#10;c"


def test_html_detail_and_problems_show_checked_expected_fix_from_the_fields() -> None:
    v = Verdict(check="os", requirement="os-sudo", section="account 2", outcome=FAILED, message="sudo asks <pw>",
                source="worker-1", checked="sudo -n true on worker-1", expected="passwordless sudo",
                fix="echo 'u ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/u")
    record = v.record("t.py::t")
    detail = html.detail_html([record])
    for text in ("sudo -n true on worker-1", "passwordless sudo (docs account 2)", "sudo asks &lt;pw&gt;",
                 "echo &#x27;u ALL=(ALL) NOPASSWD:ALL&#x27; &gt; /etc/sudoers.d/u"):
        assert f"<td>{text}</td>" in detail
    problems = html.problems_html([record])
    assert "passwordless sudo (docs account 2)" in problems and "/etc/sudoers.d/u</td>" in problems
    # JUnit gets the same four parts as text, rendered from the fields.
    (prop,) = junit_properties([(USER_PROPERTY, record)])
    assert prop[1] == ("failed: worker-1: sudo asks <pw>\nChecked:  sudo -n true on worker-1\n"
                       "Expected: passwordless sudo (docs account 2)\nObserved: sudo asks <pw>\n"
                       "Fix:      echo 'u ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/u")


def test_matrix_counts_by_area_and_first_role() -> None:
    roles = {"m1": "master", "w1": "worker"}
    recs: list[dict[str, Any]] = [
        {"check": "os", "source": "w1", "outcome": "failed"},
        {"check": "os", "source": "w1", "outcome": "passed"},
        {"check": "firewall", "source": "m1", "target": "w1", "outcome": "waived"},
        {"check": "dns", "source": None, "target": "console.nova.local", "outcome": "passed"},
    ]
    table = html.matrix_html(recs, roles)
    row_os = re.search(r"<tr><th>OS account</th>(.*?)</tr>", table)
    assert row_os is not None
    assert 'c-failed"><span class="n-failed">1 failed</span><br><span class="n-passed">1 passed' in row_os.group(1)
    assert "<th>cluster-wide</th>" in table and 'c-waived"><span class="n-waived">1 waived' in table


@pytest.mark.parametrize(
    ("outcomes", "verdict"),
    [
        (["passed", "passed"], ACCEPTED),
        (["passed", "waived"], ACCEPTED_WITH_WAIVERS),
        (["waived", "failed"], NOT_ACCEPTED),
        (["passed", "error"], NOT_ACCEPTED),
        ([], NOT_ACCEPTED),
    ],
)
def test_verdict(outcomes: list[str], verdict: str) -> None:
    assert decide([{"outcome": o} for o in outcomes], []).verdict == verdict


def test_interrupted_run_is_not_accepted() -> None:
    assert decide([{"outcome": "passed"}], [], complete=False).verdict == NOT_ACCEPTED


def test_only_advisories_failing_is_accepted_with_warnings(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """k8s-swap-off is advisory: its failures are warnings in the JSON, terminal, report and JUnit, exit 0."""
    monkeypatch.setenv("NOVA_STRICT", "0")
    make_suite(pytester, faults={SWAP: FAULTS[SWAP]})
    result = run(pytester, "--html=report.html", "--self-contained-html")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "*= nova verdict: ACCEPTED =*",
        "lab1: every required check passed (* passed); 2 advisory warnings (not gating)*",
        "advisory warnings (not gating; --nova-strict makes them fail): 2",
        "  warning: k8s-swap-off (docs k8s-basics): 1 result(s) at master-1 -> worker-1: swap is on: /dev/sda2",
        "  warning: k8s-swap-off (docs k8s-basics): 1 result(s) at master-1 -> nova-ctl: swap on",
    ])
    data = results(pytester)
    assert data["verdict"] == ACCEPTED
    assert data["summary"]["warning"] == 2 and data["summary"]["failed"] == 0
    swap = [r for r in data["results"] if r["nodeid"].endswith(f"[{SWAP}]")]
    assert {(r["outcome"], r["severity"]) for r in swap} == {("warning", "advisory")}
    assert {r["severity"] for r in data["results"] if r["requirement"] == "os-sudo-nopasswd"} == {"required"}
    page, _ = report_data(pytester.path / "report.html")
    assert 'id="nova-warnings"' in page and 'id="nova-problems"' not in page
    assert "swap is on: /dev/sda2" in page.split('id="nova-warnings"')[1]
    case = next(c for c in ET.parse(pytester.path / "junit.xml").iter("testcase") if SWAP in c.get("name", ""))
    assert case.find("failure") is None and case.find("error") is None
    warnings = [p.get("value") for p in case.iter("property") if p.get("name") == "nova_warning"]
    assert warnings == ["k8s-swap-off [master-1 -> worker-1]: swap is on: /dev/sda2",
                        "k8s-swap-off [master-1 -> nova-ctl]: swap on"]


@pytest.mark.parametrize("how", ["option", "env", "ini"])
def test_strict_makes_advisories_gate(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setenv("NOVA_STRICT", "1" if how == "env" else "0")
    make_suite(pytester, faults={SWAP: FAULTS[SWAP]})
    if how == "ini":
        monkeypatch.delenv("NOVA_STRICT")
    result = run(pytester, *(["--nova-strict"] if how == "option" else []))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*= nova verdict: NOT ACCEPTED =*", "lab1: 2 failed: fix them and run again*"])
    data = results(pytester)
    assert data["summary"]["warning"] == 0 and data["summary"]["failed"] == 2


def test_bad_strict_environment_is_one_line(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVA_STRICT", "maybe")
    make_suite(pytester, faults={})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: NOVA_STRICT: 'maybe' is not one of *"])


def test_the_verdict_counts_what_was_proven_and_what_could_not_be() -> None:
    from _pytest_nova.report.signoff import decide

    def rec(outcome: str, message: str) -> dict[str, object]:
        return {"outcome": outcome, "message": message}

    records = [rec("passed", "open")] * 3 + [rec("skipped", "skipped: cannot be proven: held by the kernel"),
                                             rec("skipped", "not applicable in internet mode")]
    outcome = decide(records, [], unprovable=1)
    assert outcome.verdict == "ACCEPTED"
    assert outcome.reason == ("all 3 checks passed; 3 proven, 1 could not be proven (skipped; --nova-require-proof "
                              "makes them fail); 1 not applicable (skipped)")


def test_require_proof_fails_only_what_could_not_be_proven() -> None:
    from _pytest_nova.verdicts import require_proof, unprovable

    def v(outcome: Outcome, message: str, proof: bool = False) -> Verdict:
        return Verdict(check="firewall", requirement="fw-x", section="3.1", outcome=outcome, message=message,
                       unprovable=proof)

    got = require_proof([v(SKIPPED, "skipped: cannot be proven: no answer", True), v(SKIPPED, "not applicable"),
                         v(PASSED, "open")])
    assert [g.outcome for g in got] == ["failed", "skipped", "passed"]
    assert got[0].message == "not proven (--nova-require-proof): skipped: cannot be proven: no answer"
    # Recognised by the field, not by the words: the same text without the field is not unprovable.
    assert require_proof([v(SKIPPED, "skipped: cannot be proven: x")])[0].outcome == SKIPPED
    assert unprovable(v(SKIPPED, "held by the kernel", True).record("t"))
    assert not unprovable(v(SKIPPED, "skipped: cannot be proven: x").record("t"))
