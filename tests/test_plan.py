"""The plan: a pure, stable expansion of catalog × inventory, and what pytest collects from it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from _pytest_nova.builtin_kinds import KINDS
from _pytest_nova.catalog import load_catalog
from _pytest_nova.inventory import load_inventory
from _pytest_nova.kinds import build
from _pytest_nova.plan import DnsRecordCheck, EndpointCheck, InventoryCheck, Plan, PortRuleCheck, Target

REPO = Path(__file__).resolve().parents[1]
PROD = REPO / "inventories" / "example-prod.yaml"
CLOSED = REPO / "inventories" / "example-closed.yaml"
# What `-k` accepts, and what pytest-html shows unescaped (docs/architecture.md, DESIGN "Names and ids").
SAFE_ID = re.compile(r"^[A-Za-z0-9_:+\-./\[\]\\]+$")


def _plan(path: Path) -> Plan:
    return build(load_catalog(), load_inventory(path))


def _probes(plan: Plan) -> list[tuple[str | None, str, int | None, str | None]]:
    return [(c.source, t.name, c.port, c.protocol) for c in plan.of_type(PortRuleCheck)
            if c.area == "firewall" for t in c.targets]


def _port_check(plan: Plan, check_id: str) -> PortRuleCheck:
    return next(c for c in plan.of_type(PortRuleCheck) if c.id == check_id)


def test_plan_is_deterministic() -> None:
    assert _plan(PROD) == _plan(PROD)


def test_every_kind_and_area_is_planned_for_the_example() -> None:
    plan = _plan(PROD)
    # The inventory's own values (Nova Universe) are checked only in closed mode.
    assert {c.kind for c in plan.checks} == set(KINDS) - {"inventory_check"}
    assert {c.area for c in plan.checks} == {"dns", "external", "firewall", "os", "lb", "k8s"}
    closed = _plan(CLOSED)
    assert [c.id for c in closed.of_type(InventoryCheck)] == [
        "inventory:inv-universe-ipv4", "inventory:inv-universe-domain-distinct"]
    assert "nova-ctl:os-resolver-internal-nova-ctl" in {c.id for c in closed.checks}


@pytest.mark.parametrize("path", [PROD, CLOSED], ids=["prod", "closed"])
def test_ids_are_unique_and_k_selectable(path: Path) -> None:
    plan = _plan(path)
    for kind in KINDS:
        ids = [c.id for c in plan.checks if c.kind == kind]
        assert len(ids) == len(set(ids)), kind
    bad = [c.id for c in plan.checks if not SAFE_ID.match(c.id)]
    assert not bad


def test_each_probe_appears_once_even_where_rules_overlap() -> None:
    probes = _probes(_plan(PROD))
    assert len(probes) == len(set(probes))
    assert ("worker-1", "master-2", 2379, "tcp") in probes


def test_bidirectional_rules_go_both_ways_and_skip_self() -> None:
    plan = _plan(PROD)
    peer = _port_check(plan, "master-1:masters:2380/tcp")
    assert [t.name for t in peer.targets] == ["master-2", "master-3"]
    probes = set(_probes(plan))
    assert ("worker-1", "master-1", None, "icmp") in probes and ("master-1", "worker-1", None, "icmp") in probes


def test_ingress_rules_apply_to_workers_without_ingress_nodes() -> None:
    plan = _plan(CLOSED)
    check = _port_check(plan, "master-1:ingress:80/tcp")
    assert {t.name for t in check.targets} == {"worker-1", "worker-2"}


def test_workstations_and_nova_ctl_are_sources() -> None:
    plan = _plan(PROD)
    assert [t.name for t in _port_check(plan, "ops-1:masters:6443/tcp").targets] == ["master-1", "master-2",
                                                                                     "master-3"]
    ssh = _port_check(plan, "nova-ctl:nodes:22/tcp")
    assert len(ssh.targets) == 8


def test_closed_mode_checks_universe_names_and_no_internet() -> None:
    plan = _plan(CLOSED)
    names = {c.name for c in plan.of_type(EndpointCheck)}
    assert names == {f"{h}.universe.mycompany.local" for h in ("hub", "sun", "repo", "uploads")}
    dns = [c for c in plan.of_type(DnsRecordCheck) if c.name == "repo.universe.mycompany.local"]
    assert dns and all(c.allowed == ("10.20.0.10",) for c in dns)


def test_module_records_follow_the_inventory(tmp_path: Path) -> None:
    text = PROD.read_text().replace("modules: [opensearch, neuvector]", "modules: []")
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    names = {c.name for c in build(load_catalog(), load_inventory(path)).of_type(DnsRecordCheck)}
    full = {c.name for c in _plan(PROD).of_type(DnsRecordCheck)}
    assert full - names == {"nova-neuvector-ui.nova.mycompany.local", "nova-neuvector-api-docs.nova.mycompany.local",
                            "nova-logs-main.nova.mycompany.local"}


def _with_proxy(tmp_path: Path, proxy: str | None) -> Plan:
    """The example-prod plan with ``network.httpProxy`` replaced (None: removed)."""
    line = "  httpProxy: http://proxy.mycompany.local:3128"
    text = PROD.read_text()
    assert line in text
    new = "" if proxy is None else f"  httpProxy: {proxy}"
    path = tmp_path / "inv.yaml"
    path.write_text(text.replace(line, new))
    return build(load_catalog(), load_inventory(path))


def _proxy_rules(plan: Plan) -> list[PortRuleCheck]:
    return [c for c in plan.of_type(PortRuleCheck) if c.requirement.id == "fw-http-proxy"]


def test_proxy_rule_from_nova_ctl_and_every_node_only_with_http_proxy(tmp_path: Path) -> None:
    plan = _plan(PROD)  # httpProxy: http://proxy.mycompany.local:3128
    inv = load_inventory(PROD)
    rules = _proxy_rules(plan)
    assert [c.source for c in rules] == ["nova-ctl", *(n.name for n in inv.cluster_nodes)]
    assert [c.id for c in rules][:2] == ["nova-ctl:proxy:3128/tcp", "master-1:proxy:3128/tcp"]
    worker = _port_check(plan, "worker-1:proxy:3128/tcp")
    assert (worker.host, worker.target, worker.port, worker.protocol) == ("worker-1", "proxy", 3128, "tcp")
    assert worker.targets == (Target("proxy", "proxy.mycompany.local"),)
    assert worker.requirement.section == "3.1.5" and set(worker.phases) == {"preinstall", "postinstall"}
    assert all(SAFE_ID.match(c.id) for c in rules)
    # Not for workstations (the docs say "all platform nodes").
    assert not [c for c in rules if c.source == "ops-1"]

    assert _proxy_rules(_with_proxy(tmp_path, None)) == []
    assert _proxy_rules(_plan(CLOSED)) == []


def test_proxy_rule_takes_the_proxys_address_and_port(tmp_path: Path) -> None:
    rules = _proxy_rules(_with_proxy(tmp_path, "http://10.10.0.31:8080"))
    assert rules and {(c.port, c.targets) for c in rules} == {(8080, (Target("proxy", "10.10.0.31"),))}
    assert "worker-2:proxy:8080/tcp" in {c.id for c in rules}
    default = _proxy_rules(_with_proxy(tmp_path, "http://proxy.mycompany.local"))
    assert {c.port for c in default} == {80}


def _collect(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", f"--nova-inventory={PROD}", "--collect-only", "-q",
                           "-p", "no:randomly", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_collect_only_lists_every_area() -> None:
    serial = _collect()
    assert any("test_dns_record[nova-console.nova.mycompany.local:10.10.0.53]" in i for i in serial)
    assert any("[worker-1:masters:2379/tcp]" in i for i in serial)


def _unreachable_prod(folder: Path) -> Path:
    """The example inventory moved to TEST-NET-2 (RFC 5737): every login and probe times out, quickly."""
    text = re.sub(r"\b10\.\d+\.\d+\.(\d+)\b", r"198.51.100.\1", PROD.read_text())
    path = folder / "unreachable.yaml"
    path.write_text(text.replace(", connection: local}", "}"))
    return path


def _run(inventory: Path, results: Path, *args: str) -> tuple[dict[tuple[str, str, str], int], str]:
    """Run the packaged plan for real; (nodeid, requirement, outcome) -> records, and the terminal output."""
    # The outer session's xdist variables would make the inner pytest think it is a worker.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))}
    proc = subprocess.run([sys.executable, "-m", "pytest", f"--nova-inventory={inventory}", f"--nova-json={results}",
                           "--nova-connect-timeout=1", "--nova-timeout=1", "-p", "no:cacheprovider", "-v", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert results.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    records = json.loads(results.read_text())["results"]
    return Counter((r["nodeid"], r["requirement"], r["outcome"]) for r in records), proc.stdout


def test_a_run_under_n_2_runs_the_same_items_with_the_same_results_as_a_plain_run(tmp_path: Path) -> None:
    inventory = _unreachable_prod(tmp_path)
    plain, _ = _run(inventory, tmp_path / "plain.json", "-p", "no:xdist")
    parallel, out = _run(inventory, tmp_path / "n2.json", "-n", "2")
    assert len({nodeid for nodeid, _, _ in plain}) > 300  # every area of the example's plan
    assert parallel == plain
    # The items really ran on two xdist workers (``-v`` prefixes each with its worker), and nowhere else.
    ran = re.findall(r"^\[(gw[01])\] \[\s*\d+%\] \w+ (\S+::\S+)", out, re.MULTILINE)
    assert {worker for worker, _ in ran} == {"gw0", "gw1"}
    assert sorted(nodeid for _, nodeid in ran) == sorted({nodeid for nodeid, _, _ in plain})


def test_markers_select_by_area_and_phase() -> None:
    firewall = _collect("-m", "firewall and preinstall")
    assert firewall and all("test_firewall.py" in i for i in firewall)
    post = _collect("--nova-phase=postinstall", "-m", "lb")
    # The balancers' healthchecks, and (3.2 internal/external access) each balancer port probed from the hosts.
    assert post and all("test_lb.py" in i or ("test_firewall.py" in i and "-lb:" in i) for i in post)
    assert any("test_lb.py" in i for i in post) and any("test_port[ops-1:api-lb:6443/tcp]" in i for i in post)


MIXED = """\
cluster: {name: mixed, dnsBaseDomain: nova.mixed.local}
network: {mode: internet, dnsServers: [10.10.0.53]}
ssh: {user: nova-installer, identityFile: ~/.ssh/id_nova}
nodes:
  - {name: ctl, address: 10.10.0.5, roles: [nova-ctl, master], connection: local}
  - {name: m2, address: 10.10.0.6, roles: [master, infra]}
  - {name: m3, address: 10.10.0.7, roles: [master, worker]}
  - {name: w1, address: 10.10.0.8, roles: [worker, infra]}
  - {name: w2, address: 10.10.0.9, roles: [worker]}
workstations:
  - {name: ops, address: 10.30.0.7}
"""
_SELECT = {"masters": "master", "infra": "infra", "ingress": "ingress", "workers": "worker"}


def _brute_force_probes(path: Path) -> set[tuple[str, str, int | None, str]]:
    """What the port rules must probe, by definition: every selected source to every other selected target."""
    inv = load_inventory(path)

    def select(sel: str) -> list[str]:
        if sel == "nodes":
            return [n.name for n in inv.nodes if set(n.roles) - {"nova-ctl"}]
        if sel == "nova-ctl":
            return [n.name for n in inv.nodes if "nova-ctl" in n.roles]
        if sel == "workstations":
            return [w.name for w in inv.workstations]
        found = [n.name for n in inv.nodes if _SELECT[sel] in n.roles]
        return found or ([n.name for n in inv.nodes if "worker" in n.roles] if sel == "ingress" else [])

    probes = set()
    for r in load_catalog().by_area("firewall"):
        if "proxy" in r.targets:
            continue
        ways = [(r.sources, r.targets)] + ([(r.targets, r.sources)] if r.bidirectional else [])
        for srcs, dsts in ways:
            probes |= {(s, d, r.port, str(r.protocol)) for ss in srcs for s in select(ss) for ds in dsts
                       for d in select(ds) if s != d}
    return probes


@pytest.mark.parametrize("text", [MIXED, None], ids=["mixed-roles-no-ingress", "prod"])
def test_port_rules_probe_exactly_the_brute_force_pairs_once(tmp_path: Path, text: str | None) -> None:
    path = PROD
    if text is not None:
        path = tmp_path / "inv.yaml"
        path.write_text(text)
    plan = build(load_catalog(), load_inventory(path))
    probes = [p for p in _probes(plan) if p[1] != "proxy"]
    assert len(probes) == len(set(probes))
    assert set(probes) == {p for p in _brute_force_probes(path) if p[0] is not None}


def test_targets_are_shared_and_roles_indexed(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(MIXED)
    inv = load_inventory(path)
    assert [h.name for h in inv.with_role("master")] == ["ctl", "m2", "m3"]
    assert [h.name for h in inv.with_role("ingress")] == ["m3", "w1", "w2"]  # no ingress node: the workers
    assert inv.cluster_nodes is inv.cluster_nodes  # computed once
    plan = build(load_catalog(), inv)
    m3 = {id(t) for c in plan.of_type(PortRuleCheck) for t in c.targets if t.name == "m3"}
    assert len(m3) == 1  # one Target object per host, whatever the number of rules reaching it
