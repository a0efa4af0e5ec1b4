"""Scale: records streamed to disk, the JSON byte-identical to v1's writer, lean JUnit, identical items under xdist."""

from __future__ import annotations

import gc
import json
import shutil
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, cast

import pytest

from _pytest_nova.model import Outcome
from _pytest_nova.plugin import GC_THRESHOLDS
from _pytest_nova.results import CHECK_PROPERTY, Collector, pack, public, summarize
from _pytest_nova.verdicts import COUNTS_PROPERTY, USER_PROPERTY, Verdict, attach, compact

REPO = Path(__file__).resolve().parents[1]
PROD = REPO / "inventories" / "example-prod.yaml"

META = {"check": "firewall", "requirement": "fw-bgp", "section": "3.1.6", "source": "worker-1", "target": "nodes",
        "port": 179, "protocol": "tcp", "fix": "open 179/tcp", "summary": "BGP", "kind": "port_rule"}


def _report(nodeid: str, verdicts: list[Verdict]) -> pytest.TestReport:
    props: list[tuple[str, object]] = [(CHECK_PROPERTY, META)]
    attach(props, verdicts, nodeid)
    failed = any(v.outcome == "failed" for v in verdicts)
    location = ("pytest_nova/suites/test_firewall.py", 1, "test_port")
    return pytest.TestReport(nodeid, location, {}, "failed" if failed else "passed",
                             "E  failed" if failed else None, "call", user_properties=props)


def _verdict(i: int, outcome: str = "passed", **kw: Any) -> Verdict:
    return Verdict("firewall", "fw-bgp", "3.1.6", Outcome(outcome), kw.pop("message", "open"), source="worker-1",
                   target=f"node-{i}", port=179, protocol="tcp", checked="worker-1 reaches", expected="179/tcp open",
                   fix="nft add rule inet filter input tcp dport 179 accept", **kw)


def _old_writer(head: dict[str, Any], extra: dict[str, Any], records: list[Any]) -> bytes:
    """The results JSON as v1's writer made it: the whole document in memory, ``json.dumps(indent=1)``."""
    data = {**head, "summary": summarize(records),
            **{k: v for k, v in extra.items() if k not in ("schema", "summary", "results")},
            "results": [public(r) for r in records]}
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode()


HEAD = {"schema": "pytest-nova/results/v1", "cluster": "prod", "inventory": {"path": "inv.yaml", "sha256": "ab"},
        "catalog": "nova-1", "started": "2026-11-30T00:00:00Z", "finished": "2026-11-30T00:01:00Z"}


def test_streamed_json_is_byte_identical_to_the_v1_writer(tmp_path: Path) -> None:
    c = Collector()
    reports = [
        _report("suites/t.py::test_port[b]", [_verdict(1), _verdict(2, "failed", message="filtered: «нет ответа»")]),
        _report("suites/t.py::test_port[a]", [_verdict(3, "skipped", message='no "listener"\n2nd line')]),
        _report("suites/t.py::test_port[c]", [_verdict(4)]),
    ]
    for r in reports:
        c.add(r)
    c.add(_report("suites/t.py::test_port[c]", [_verdict(5, "error")]))  # a later report of an item replaces it
    extra = {"verdict": "NOT ACCEPTED", "waivers": [{"requirement": "fw-bgp", "results": 0}]}
    c.write(tmp_path / "r.json", HEAD, extra)
    expected = [r for rep in (reports[1], reports[0]) for k, r in rep.user_properties if k == USER_PROPERTY]
    expected += [v for k, v in _report("suites/t.py::test_port[c]", [_verdict(5, "error")]).user_properties
                 if k == USER_PROPERTY]
    assert (tmp_path / "r.json").read_bytes() == _old_writer(HEAD, extra, expected)
    assert [r["target"] for r in c.records()] == ["node-3", "node-1", "node-2", "node-5"]
    assert [r["target"] for r in c.records(passed=False)] == ["node-3", "node-2", "node-5"]
    assert next(iter(c.records(passed=False)))["_fix"].startswith("nft add rule")  # private keys kept for the report
    assert summarize(c.records()) == {"passed": 1, "failed": 1, "skipped": 1, "error": 1, "waived": 0, "warning": 0}

    empty = Collector()
    empty.write(tmp_path / "e.json", HEAD, extra)
    assert (tmp_path / "e.json").read_bytes() == _old_writer(HEAD, extra, [])


def test_reports_packed_by_a_worker_give_the_same_json_and_keep_only_what_did_not_pass(tmp_path: Path) -> None:
    def reports() -> list[pytest.TestReport]:
        return [_report("suites/t.py::test_port[b]", [_verdict(1), _verdict(2, "failed", message="filtered: «x»"),
                                                      _verdict(6)]),
                _report("suites/t.py::test_port[a]", [_verdict(3, "skipped", message='no "listener"\n2nd line')]),
                _report("suites/t.py::test_port[c]", [_verdict(4)])]

    plain, packed = Collector(), Collector()
    for r in reports():
        plain.add(r)
    for r in reports():
        r.user_properties = pack(r.user_properties, {"worker-1": "worker"})
        # What crosses from the worker: one string and the records that did not pass, no passed record.
        assert [cast(dict[str, Any], v)["outcome"] for k, v in r.user_properties if k == USER_PROPERTY] == (
            ["failed"] if "[b]" in r.nodeid else ["skipped"] if "[a]" in r.nodeid else [])
        packed.add(r)
        assert compact(r.user_properties)[-1] == (COUNTS_PROPERTY, dict(r.user_properties)[COUNTS_PROPERTY])
    plain.write(tmp_path / "plain.json", HEAD)
    packed.write(tmp_path / "packed.json", HEAD)
    assert (tmp_path / "packed.json").read_bytes() == (tmp_path / "plain.json").read_bytes()
    assert list(packed.records(passed=False)) == list(plain.records(passed=False))
    assert summarize(packed.records()) == summarize(plain.records())
    plain.roles = {"worker-1": "worker"}  # what ResultsWriter sets from the inventory
    recounted = Collector()
    recounted.roles = plain.roles
    for r in reports():
        recounted.add(r)
    # The area × role table's counts, without reading a record back: the same from packed reports and from records.
    assert packed.cells() == recounted.cells() == {("firewall", "worker", "passed"): 3,
                                                   ("firewall", "worker", "failed"): 1,
                                                   ("firewall", "worker", "skipped"): 1}


def test_collector_memory_stays_flat_in_the_number_of_records() -> None:
    c = Collector()
    reports = [_report(f"suites/t.py::test_port[{i}]", [_verdict(j) for j in range(500)]) for i in range(40)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for r in reports:
            c.add(r)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    in_records = sum(len(json.dumps(v)) for r in reports for _, v in r.user_properties)
    assert len(c) == 20_000
    # 20,000 records (~10 MB as text, several times that as dicts) leave a few kB: one index entry per item.
    assert held < 200_000 < in_records
    assert not [v for v in vars(c).values() if isinstance(v, list)]


SUITE = '''
from _pytest_nova.plan import Check
from _pytest_nova.verdicts import Verdict


def _judge(check: Check, nova) -> None:
    r = check.requirement
    targets = [t.name for t in check.targets] or [check.target or check.name or "-"]
    bad = check.id.startswith("worker-1:nodes:179/")
    nova.judge([Verdict(check=r.area, requirement=r.id, section=r.section, source=check.source, target=t,
                        port=check.port, protocol=check.protocol, outcome="failed" if bad else "passed",
                        message=f"filtered: {t} gave no answer within 2.0 s" if bad else "ok",
                        checked=f"{check.source} reaches {t} on {check.port}/{check.protocol}",
                        expected=f"{check.port}/{check.protocol} open", fix=f"open {check.port} on {t}")
                for t in targets])


def test_port(port_rule: Check, nova) -> None:
    _judge(port_rule, nova)


def test_node(node_requirement: Check, nova) -> None:
    _judge(node_requirement, nova)


def test_name(dns_record: Check, nova) -> None:
    _judge(dns_record, nova)
'''


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any], ET.Element]:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(f"--nova-inventory={PROD}", "--nova-json=results.json",
                                           "--junitxml=junit.xml", "-p", "no:randomly", *args)
    junit = ET.parse(pytester.path / "junit.xml").getroot()
    return result, json.loads((pytester.path / "results.json").read_text()), junit


def test_xdist_workers_run_the_same_items_and_junit_carries_failures_only(pytester: pytest.Pytester) -> None:
    serial, data, junit = _run(pytester)
    parallel, pdata, pjunit = _run(pytester, "-n", "2")
    assert serial.ret == parallel.ret == pytest.ExitCode.TESTS_FAILED
    # What the workers actually ran: every record, item by item, equals the serial run's.
    ran = [(r["nodeid"], r["target"], r["outcome"]) for r in data["results"]]
    assert ran and ran == [(r["nodeid"], r["target"], r["outcome"]) for r in pdata["results"]]
    assert data["summary"] == pdata["summary"] and data["summary"]["failed"] == 7  # worker-1 to 7 other nodes, BGP
    cases = sorted(tc.get("name", "") for tc in junit.iter("testcase"))
    assert cases == sorted(tc.get("name", "") for tc in pjunit.iter("testcase"))
    assert len(cases) == len({r["nodeid"] for r in data["results"]})  # one testcase per item

    for root in (junit, pjunit):
        props = [(p.get("name"), p.get("value") or "") for p in root.iter("property")]
        assert not [v for n, v in props if n == USER_PROPERTY]  # no record carried as a property
        failures = [v for n, v in props if n == "nova_failure"]
        assert len(failures) == 7
        master3 = next(v for v in failures if "-> master-3 179/tcp" in v)
        assert master3.splitlines() == [
            "failed: worker-1 -> master-3 179/tcp: filtered: master-3 gave no answer within 2.0 s",
            "Checked:  worker-1 reaches master-3 on 179/tcp",
            "Expected: 179/tcp open (docs 3.1.5)",
            "Observed: filtered: master-3 gave no answer within 2.0 s",
            "Fix:      open 179 on master-3",
        ]
        case = next(tc for tc in root.iter("testcase") if tc.get("name", "").endswith("[worker-1:nodes:179/tcp]"))
        failure = case.find("failure")
        assert failure is not None and "Fix:      open 179 on master-3" in (failure.text or "")


def _inventory(nodes: int) -> str:
    rows = "".join(f"  - {{name: worker-{i}, address: 10.11.{i // 250}.{i % 250 + 1}, roles: [worker]}}\n"
                   for i in range(nodes - 3))
    return ("cluster: {name: big, dnsBaseDomain: nova.big.local}\nnetwork: {mode: internet, dnsServers: [10.10.0.53]}\n"
            "ssh: {user: nova-installer, identityFile: ~/.ssh/id_nova}\nnodes:\n"
            "  - {name: nova-ctl, address: 10.10.1.5, roles: [nova-ctl], connection: local}\n"
            "  - {name: master-1, address: 10.10.1.11, roles: [master]}\n"
            "  - {name: infra-1, address: 10.10.1.21, roles: [infra]}\n" + rows)


LIMIT_TEST = """
import resource


def test_limit() -> None:
    print("NOFILE", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


@pytest.mark.parametrize(("hard", "raised"), [(None, True), (600, False)], ids=["hard-limit-enough", "hard-too-low"])
def test_open_files_limit_is_raised_for_a_large_inventory(tmp_path: Path, hard: int | None, raised: bool) -> None:
    import resource
    import subprocess
    import sys

    (tmp_path / "inv.yaml").write_text(_inventory(300))  # needs 4 * 300 + 512 = 1,712 open files
    (tmp_path / "test_limit.py").write_text(LIMIT_TEST)
    limit = hard or resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if limit != resource.RLIM_INFINITY and limit < 1712 and raised:
        pytest.fail(f"this machine's hard limit of open files ({limit}) is below what the test needs")

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, limit))

    proc = subprocess.run([sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", "--nova-inventory=inv.yaml",
                           "test_limit.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          preexec_fn=low_soft_limit, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    soft = int(proc.stdout.split("NOFILE ")[1].split()[0])
    warning = "nova: warning: open files limited to 600 (ulimit -n), below the 1712 this inventory may need"
    if raised:
        assert soft >= 1712 and "nova: warning" not in proc.stdout
    else:
        assert soft == 600 and warning in proc.stdout


def test_a_run_with_an_inventory_paces_the_garbage_collector_and_leaves_it_as_it_was(
    pytester: pytest.Pytester,
) -> None:
    shutil.copy(Path(__file__).resolve().parents[1] / "inventories" / "example-prod.yaml", pytester.path / "prod.yaml")
    pytester.makepyfile(test_seen="""
        import gc, json, pathlib

        def test_record():
            pathlib.Path("seen.json").write_text(json.dumps(gc.get_threshold()))
    """)
    before = gc.get_threshold()
    assert before != GC_THRESHOLDS
    result = pytester.runpytest_inprocess("--nova-inventory=prod.yaml", "test_seen.py", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert tuple(json.loads((pytester.path / "seen.json").read_text())) == GC_THRESHOLDS
    assert gc.get_threshold() == before
    # Without an inventory, pytest-nova leaves the collector alone.
    result = pytester.runpytest_inprocess("test_seen.py", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert json.loads((pytester.path / "seen.json").read_text()) == list(before)
