"""Fixes a person can paste: real addresses, the receiving host's OS family, no firewall command where the
firewall is not the problem."""

from __future__ import annotations

import functools
import re

import pytest

from _pytest_nova.catalog import load_catalog
from _pytest_nova.checks.firewall_fixes import DEBIAN, RHEL, os_family, port_rule_fix, with_fixes
from _pytest_nova.inventory import load_inventory
from _pytest_nova.kinds import build
from _pytest_nova.plan import PortRuleCheck
from _pytest_nova.verdicts import FAILED, PASSED, Verdict
from tests.test_plan import PROD

INV = load_inventory(PROD)
PLAN = build(load_catalog(), INV)


def _check(check_id: str) -> PortRuleCheck:
    return next(c for c in PLAN.of_type(PortRuleCheck) if c.id == check_id)


def _failed(check: PortRuleCheck, target: str, message: str = "filtered: no answer within 2.0 s") -> Verdict:
    r = check.requirement
    return Verdict("firewall", r.id, r.section, FAILED, message, source=check.source, target=target,
                   port=check.port, protocol=check.protocol, fix=r.fix)


def _addr(name: str) -> str:
    return INV.host(name).address


@pytest.mark.parametrize(("release", "family"), [
    ({"id": "rhel", "id_like": "fedora"}, RHEL), ({"id": "rocky", "id_like": "rhel centos fedora"}, RHEL),
    ({"id": "debian"}, DEBIAN), ({"id": "ubuntu", "id_like": "debian"}, DEBIAN), ({"id": "alpine"}, None), ({}, None),
])
def test_os_family_from_os_release(release: dict[str, str], family: str | None) -> None:
    assert os_family({"os_release": release}) == family


def test_firewalld_command_names_the_real_source_on_rhel() -> None:
    check = _check("worker-1:masters:2379/tcp")
    fix = port_rule_fix(_failed(check, "master-2"), check, INV, lambda h: RHEL)
    assert fix.startswith(f"on master-2 ({_addr('master-2')}): firewall-cmd --permanent --add-rich-rule='rule "
                          f"family=ipv4 source address={_addr('worker-1')} port port=2379 protocol=tcp accept' && "
                          "firewall-cmd --reload")


def test_debian_gets_ufw_and_nft() -> None:
    check = _check("worker-1:masters:2379/tcp")
    fix = port_rule_fix(_failed(check, "master-2"), check, INV, lambda h: DEBIAN)
    src = _addr("worker-1")
    assert f"ufw allow from {src} to any port 2379 proto tcp" in fix
    assert f"nft insert rule inet filter input ip saddr {src} tcp dport 2379 accept" in fix
    assert "firewall-cmd" not in fix


def test_icmp_and_ipip_commands() -> None:
    icmp = next(c for c in PLAN.of_type(PortRuleCheck) if c.protocol == "icmp")
    target = icmp.targets[0].name
    assert "icmp-type name=echo-request" in port_rule_fix(_failed(icmp, target), icmp, INV, lambda h: RHEL)
    assert "icmp type echo-request accept" in port_rule_fix(_failed(icmp, target), icmp, INV, lambda h: DEBIAN)
    ipip = next(c for c in PLAN.of_type(PortRuleCheck) if c.protocol == "ipip")
    assert "ip protocol 4 accept" in port_rule_fix(_failed(ipip, ipip.targets[0].name), ipip, INV, lambda h: DEBIAN)


def test_no_firewall_command_where_the_firewall_is_not_the_problem() -> None:
    check = _check("nova-ctl:nodes:22/tcp")
    ssh = _failed(check, "worker-1", "error: cannot probe from nova-ctl: nova-ctl: ssh: Permission denied (publickey)")
    ssh = Verdict(**{**ssh.__dict__, "outcome": "error"})
    fix = port_rule_fix(ssh, check, INV, lambda h: RHEL)
    assert "SSH" in fix and "firewall-cmd" not in fix and "nft" not in fix
    refused = port_rule_fix(_failed(check, "worker-1", "refused: nothing listens on worker-1 22/tcp (…)"), check,
                            INV, lambda h: RHEL)
    assert "start the service" in refused and "firewall-cmd" not in refused


def test_balancer_reach_fix_names_the_balancer() -> None:
    check = _check("ops-1:api-lb:6443/tcp")
    fix = port_rule_fix(_failed(check, "api"), check, INV, lambda h: RHEL)
    assert fix.startswith(f"allow 6443/tcp from ops-1 ({_addr('ops-1')}) to the api balancer {INV.balancers['api']}")
    assert with_fixes([_failed(check, "api")], check, INV, lambda h: None)[0].check == "lb"


def _const(family: str | None, host: str) -> str | None:
    return family


def test_every_port_rule_fix_is_concrete() -> None:
    """No <placeholder> left in any failed port rule's fix, for every rule and target of the example plan."""
    for check in (c for c in PLAN.of_type(PortRuleCheck)):
        for t in check.targets:
            for family in (RHEL, DEBIAN, None):
                fix = port_rule_fix(_failed(check, t.name), check, INV, functools.partial(_const, family))
                assert not re.search(r"<[^>]+>", fix), (check.id, fix)
                assert "chmod" not in fix


def test_passed_verdict_keeps_its_empty_fix() -> None:
    check = _check("worker-1:masters:2379/tcp")
    ok = Verdict("firewall", "x", "3.1", PASSED, "open", source="worker-1", target="master-2")
    assert port_rule_fix(ok, check, INV, lambda h: RHEL) == ""
