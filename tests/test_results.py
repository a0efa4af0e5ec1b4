"""The results JSON (format v1), written by the controller, also under xdist and when checks fail."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest

from tests.test_inventory import GOOD

SUITE = '''
from _pytest_nova.plan import Check
from _pytest_nova.verdicts import Verdict


def test_node(node_requirement: Check, nova) -> None:
    r = node_requirement.requirement
    ok = not node_requirement.host.startswith("worker") or r.id != "os-user-exists"
    nova.judge([Verdict(check=r.area, requirement=r.id, section=r.section, source=node_requirement.host,
                        outcome="passed" if ok else "failed", message="ok" if ok else "shell is /bin/sh",
                        checked="the shell", expected="/bin/bash", fix="usermod -s /bin/bash nova-installer")])


def test_dns(dns_record: Check, nova) -> None:
    if dns_record.name.startswith("nova-console"):
        raise RuntimeError("resolver exploded")
    nova.judge([Verdict(check="dns", requirement=dns_record.requirement.id, section="1", target=dns_record.name,
                        outcome="passed", message="ok")])
'''


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makefile(".yaml", inv=GOOD)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--nova-inventory=inv.yaml", "--nova-json=out/results.json", *args)
    return result, json.loads((pytester.path / "out" / "results.json").read_text())


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_results_json_records_every_assertion(pytester: pytest.Pytester, xdist: list[str]) -> None:
    result, data = _run(pytester, *xdist)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert data["schema"] == "pytest-nova/results/v1"
    assert data["cluster"] == "prod"
    assert data["inventory"]["path"] == "inv.yaml" and len(data["inventory"]["sha256"]) == 64
    assert data["catalog"].startswith("nova-")
    assert data["started"] <= data["finished"]
    records = data["results"]
    keys = {"nodeid", "check", "requirement", "section", "source", "target", "port", "protocol", "outcome",
            "message", "severity"}
    assert all(set(r) == keys for r in records)
    failed = [r for r in records if r["outcome"] == "failed"]
    assert [(r["source"], r["requirement"]) for r in failed] == [("worker-1", "os-user-exists")]
    assert failed[0]["message"] == "shell is /bin/sh"
    errors = [r for r in records if r["outcome"] == "error"]
    assert len(errors) == 1 and "resolver exploded" in errors[0]["message"]
    summary = data["summary"]
    assert set(summary) == {"passed", "failed", "skipped", "error", "waived", "warning"}
    assert sum(summary.values()) == len(records)
    assert summary["failed"] == 1


def test_failure_reads_checked_expected_observed_fix(pytester: pytest.Pytester) -> None:
    result, _ = _run(pytester)
    result.stdout.fnmatch_lines([
        "*Checked:  the shell",
        "*Expected: /bin/bash (docs account 1)",
        "*Observed: shell is /bin/sh",
        "*Fix:      usermod -s /bin/bash nova-installer",
    ])
    assert "def test_node" not in result.stdout.str(), "an expected failure shows no traceback"


def test_the_spool_carries_checked_expected_fix_and_unprovable_as_fields_not_into_the_json(tmp_path: Any) -> None:
    from _pytest_nova.results import CHECK_PROPERTY, Collector
    from _pytest_nova.verdicts import FAILED, PASSED, SKIPPED, Verdict, attach

    props: list[tuple[str, object]] = [(CHECK_PROPERTY, {"check": "firewall", "requirement": "fw-x"})]
    v = partial(Verdict, "firewall", "fw-x", "3.1", source="a", port=1, protocol="tcp")
    attach(props, [v(FAILED, "filtered", target="b", checked="a -> b 1/tcp", expected="1/tcp open", fix="nft add rule"),
                   v(SKIPPED, "no answer", target="c", unprovable=True),
                   v(PASSED, "open", target="d", checked="a -> d")], "t.py::t")
    report = pytest.TestReport("t.py::t", ("t.py", 1, "t"), {}, "failed", "E failed", "call", user_properties=props)
    collector = Collector()
    collector.add(report)
    failed, skipped = collector.records(passed=False)
    assert (failed["_checked"], failed["_expected"], failed["_fix"]) == ("a -> b 1/tcp", "1/tcp open", "nft add rule")
    assert failed["message"] == "filtered" and "_unprovable" not in failed
    assert skipped.get("_unprovable") is True
    collector.write(tmp_path / "r.json", {"schema": "pytest-nova/results/v1"})
    written = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [r["target"] for r in written] == ["b", "c", "d"]
    assert all(not k.startswith("_") for r in written for k in r)
    collector.close()


def test_the_spool_appends_after_a_read_back(tmp_path: Any) -> None:
    from _pytest_nova.model import Outcome
    from _pytest_nova.results import CHECK_PROPERTY, Collector
    from _pytest_nova.verdicts import FAILED, PASSED, Verdict, attach

    collector = Collector()

    def add(nodeid: str, target: str, outcome: Outcome) -> None:
        props: list[tuple[str, object]] = [(CHECK_PROPERTY, {"check": "firewall", "requirement": "fw-x"})]
        attach(props, [Verdict("firewall", "fw-x", "3.1", outcome, "m", source="a", target=target)], nodeid)
        collector.add(pytest.TestReport(nodeid, ("t.py", 1, "t"), {}, "passed", None, "call", user_properties=props))

    add("t.py::t[2]", "c", PASSED)
    add("t.py::t[1]", "b", FAILED)
    # Read back in test id order: the last read is of the first item written, far from the spool's end.
    assert [r["target"] for r in collector.records()] == ["b", "c"]
    add("t.py::t[3]", "d", FAILED)
    assert [r["target"] for r in collector.records()] == ["b", "c", "d"]
    assert [r["target"] for r in collector.records(passed=False)] == ["b", "d"]
    collector.write(tmp_path / "r.json", {"schema": "pytest-nova/results/v1"})
    assert [r["target"] for r in json.loads((tmp_path / "r.json").read_text())["results"]] == ["b", "c", "d"]
    collector.close()
