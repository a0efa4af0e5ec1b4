"""Grouped observations and fixes: a shared Observed text once with its places, one fix for many sources."""

from __future__ import annotations

import json

import pytest

from _pytest_nova.checks.firewall_fixes import DEBIAN, RHEL, SOURCES, inbound_many, with_fixes
from _pytest_nova.model import Record
from _pytest_nova.plan import PortRuleCheck, Target
from _pytest_nova.report.groups import problems
from _pytest_nova.verdicts import FAILED, Verdict
from tests.test_fixes import INV, PLAN, _addr
from tests.test_report import make_suite, results, run


def _drops_to(target: str) -> list[Record]:
    """worker-3-style: ``target`` drops 8472/udp from every other node: one failed record per source."""
    records: list[Record] = []
    for check in PLAN.of_type(PortRuleCheck):
        if check.port != 8472 or not any(t.name == target for t in check.targets):
            continue
        v = Verdict("firewall", check.requirement.id, check.requirement.section, FAILED,
                    "filtered: no answer within 2.0 s (nor on a second, slower try)", source=check.source,
                    target=target, port=8472, protocol="udp", fix=check.requirement.fix)
        (fixed,) = with_fixes([v], check, INV, lambda h: RHEL)
        records.append(fixed.record(f"t::test_port[{check.id}]"))
    return records


def test_one_destination_dropping_one_port_from_many_sources_is_one_problem_with_one_fix() -> None:
    records = _drops_to("worker-1")
    sources = [r["source"] for r in records]
    assert len(records) >= 4 and len({r.get("_fix") for r in records}) == len(records)  # one command per source
    (p,) = problems(records, (FAILED,))
    assert p.count == len(records) and p.shared and len(p.sources) == len(records)
    (obs,) = p.observations.values()  # one observation, every place
    assert obs.places == [f"{s} -> worker-1 8472/udp" for s in sources]
    addrs = " ".join(_addr(str(s)) for s in sources)
    assert p.fix.startswith(f"on worker-1 ({_addr('worker-1')}), from each source: for a in {addrs}; do "
                            'firewall-cmd --permanent --add-rich-rule="rule family=ipv4 source address=$a port '
                            'port=8472 protocol=udp accept"; done && firewall-cmd --reload')
    # A single source keeps its own command.
    (one,) = problems(records[:1], (FAILED,))
    assert not one.shared and one.fix == records[0].get("_fix")


def test_shared_fixes_per_os_family() -> None:
    assert inbound_many(DEBIAN, 8472, "udp") == (
        f"for a in {SOURCES}; do ufw allow from $a to any port 8472 proto udp; done (nftables without ufw: "
        f"for a in {SOURCES}; do nft insert rule inet filter input ip saddr $a udp dport 8472 accept; done)")
    assert inbound_many(DEBIAN, None, "icmp") == (
        f"for a in {SOURCES}; do nft insert rule inet filter input ip saddr $a icmp type echo-request accept; done")
    assert "RHEL-like; Debian-like with nftables" in inbound_many(None, 2379, "tcp")


def test_errors_and_other_causes_get_no_shared_fix() -> None:
    check = next(c for c in PLAN.of_type(PortRuleCheck) if c.port == 2379)
    target: Target = check.targets[0]
    v = Verdict("firewall", check.requirement.id, check.requirement.section, FAILED,
                f"refused: nothing listens on {target.name} 2379/tcp", source=check.source, target=target.name,
                port=2379, protocol="tcp")
    (fixed,) = with_fixes([v], check, INV, lambda h: RHEL)
    assert fixed.fix.startswith("start the service") and not fixed.fix_shared and "_fix_shared" not in fixed.record("t")


SHARED = "vendor addresses differ from docs 2:\nregistry.example resolves to 192.0.2.7\nexpected one of 10.1.1.1"


@pytest.mark.parametrize("strict", ["1", "0"])
def test_an_observation_on_every_node_appears_once(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                   strict: str) -> None:
    """As a failure (strict) and as an advisory warning: once in the report and in the terminal."""
    monkeypatch.setenv("NOVA_STRICT", strict)
    nodes = ("nova-ctl", "master-1", "worker-1")
    make_suite(pytester, faults={f"{n}:ext-documented-ips": [{"observed": SHARED}] for n in nodes})
    result = run(pytester, "--html=report.html", "--self-contained-html")
    assert result.ret == (pytest.ExitCode.TESTS_FAILED if strict == "1" else pytest.ExitCode.OK)
    page = (pytester.path / "report.html").read_text()
    section = page.split('id="nova-problems"' if strict == "1" else 'id="nova-warnings"')[1].split("</table>")[0]
    assert section.count("registry.example resolves to 192.0.2.7") == 1
    assert "3 places: master-1, nova-ctl, worker-1" in section or "3 places: nova-ctl, master-1, worker-1" in section
    one_line = SHARED.replace("\n", " | ")
    out = result.stdout.str()
    assert out.count(one_line) == 1, out
    if strict == "1":
        result.stdout.fnmatch_lines(["to fix: 1 problem, 3 result(s)", "  ext-documented-ips (docs 2): 3 result(s)",
                                     f"    {one_line}: at *", "    fix: add the addresses*"])
    else:
        result.stdout.fnmatch_lines([f"  warning: ext-documented-ips (docs 2): 3 result(s) at master-1, nova-ctl, "
                                     f"worker-1: {one_line}"])
    # The JSON keeps every record.
    assert len([r for r in results(pytester)["results"] if r["requirement"] == "ext-documented-ips"]) == 3
    assert json.dumps(results(pytester)).count("192.0.2.7") == 3
