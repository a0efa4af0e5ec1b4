"""Node and name checks in the lab: all pass on a clean lab; each real fault fails exactly its checks.

Two small labs (1 master, 1 infra, 1 ingress, 1 worker), internet and closed mode, for the whole module and
always torn down. pytest runs inside nova-ctl's namespace, like a user's run; the results JSON is the evidence.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nova_lab import Lab, LabSpec
from tests.lab_fixtures import booted, lab_name, run_suite

pytestmark = pytest.mark.lab
SUITES = tuple(f"pytest_nova/suites/test_{s}.py" for s in ("dns", "external", "os", "k8s_nodes"))
NODES = ("master-1", "infra-1", "ingress-1", "worker-1")
HOSTS = ("nova-ctl", *NODES)
VENDOR = (
    "hub.nova-platform.io:443",
    "storage.cloud.croc.ru:443",
    "access.nova-platform.io:443",
    "code.nova-platform.io:443",
    "sun.nova-platform.io:8140",
)
UNIVERSE = tuple(f"{n}.universe.lab.local:443" for n in ("hub", "sun", "repo", "uploads"))
DNS, EXT, OS, K8S = (f"pytest_nova/suites/test_{s}.py" for s in ("dns", "external", "os", "k8s_nodes"))


def _lab(pytestconfig: pytest.Config, prefix: str, mode: str) -> Iterator[Lab]:
    yield from booted(
        LabSpec(name=lab_name(prefix, pytestconfig), masters=1, infra=1, ingress=1, workers=1, mode=mode)
    )


@pytest.fixture(scope="module")
def nodes_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    yield from _lab(pytestconfig, "nd", "internet")


@pytest.fixture(scope="module")
def closed_nodes_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    yield from _lab(pytestconfig, "nc", "closed")


def _bad(results: dict[str, Any]) -> dict[str, str]:
    """Failed or errored records: node id -> their messages."""
    out: dict[str, str] = {}
    for r in results.get("results", []):
        if r["outcome"] in ("failed", "error"):
            out[r["nodeid"]] = (out.get(r["nodeid"], "") + " | " + r["message"]).strip(" |")
    return out


def _dns_ids(lab: Lab, fqdn: str) -> set[str]:
    servers = (lab.hosts["dns-1"].address, lab.hosts["dns-2"].address)
    return {f"{DNS}::test_dns_record[{fqdn}:{s}]" for s in servers} | {f"{DNS}::test_dns_on_node[{h}]" for h in HOSTS}


def test_clean_lab_passes_every_node_and_name_check(nodes_lab: Lab) -> None:
    before = {host: nodes_lab.sshd_logins(host) for host in NODES}
    rc, results, output = run_suite(nodes_lab, *SUITES, "-n", "2")
    assert rc == 0, output[-3000:]
    records = results["results"]
    assert {r["check"] for r in records} == {"dns", "external", "os", "k8s"}
    assert not _bad(results)
    ids = {r["nodeid"] for r in records}
    assert {
        f"{OS}::test_os[worker-1:os-sudoers-file]",
        f"{OS}::test_os[nova-ctl:os-private-key]",
        f"{EXT}::test_endpoint[master-1:sun.nova-platform.io:8140]",
        f"{K8S}::test_k8s_node[infra-1:k8s-product-uuid-unique]",
    } <= ids
    # One login per node for the whole run, however many checks read the facts and whichever worker asks.
    assert {host: nodes_lab.sshd_logins(host) - n for host, n in before.items()} == dict.fromkeys(NODES, 1)


def _expect(lab: Lab, fault: str) -> dict[str, str]:
    """Node id -> a phrase its failure message must hold, for each check ``fault`` must fail (and no other)."""
    if fault == "dns-missing-record":
        return dict.fromkeys(_dns_ids(lab, "nova-console.nova.lab.local"), "nova-console.nova.lab.local")
    if fault == "dns-wrong-target":
        return dict.fromkeys(_dns_ids(lab, "nova-oauth.nova.lab.local"), "not an allowed address")
    if fault == "sudoers-missing":
        # The missing drop-in itself is advisory (a warning): the rights are what the docs demand.
        return {f"{OS}::test_os[worker-1:os-sudo-nopasswd]": "sudo -n -l failed: a password is required"}
    if fault == "wrong-mode":
        return {f"{OS}::test_os[infra-1:os-authorized-keys-mode]": "authorized_keys has mode 0644"}
    if fault == "wrong-shell":
        return {f"{OS}::test_os[master-1:os-user-exists]": "login shell is /bin/sh, not /bin/bash"}
    if fault == "endpoint-unreachable":
        return {f"{EXT}::test_endpoint[master-1:{e}]": "filtered (timed out)" for e in VENDOR}
    raise AssertionError(fault)


FAULTS = [
    pytest.param("dns-missing-record", {"record": "nova-console"}, (DNS,), id="dns-missing-record"),
    pytest.param("dns-wrong-target", {"record": "nova-oauth", "target": "worker-1"}, (DNS,), id="dns-wrong-target"),
    pytest.param("sudoers-missing", {"host": "worker-1"}, (OS,), id="sudoers-missing"),
    pytest.param("wrong-mode", {"host": "infra-1"}, (OS,), id="authorized-keys-0644"),
    pytest.param("wrong-shell", {"host": "master-1"}, (OS,), id="wrong-shell"),
    pytest.param("endpoint-unreachable", {"host": "master-1"}, (EXT,), id="endpoint-unreachable"),
]


@pytest.mark.parametrize(("fault", "params", "suites"), FAULTS)
def test_fault_fails_exactly_its_checks(
    nodes_lab: Lab, fault: str, params: dict[str, str], suites: tuple[str, ...]
) -> None:
    with nodes_lab.fault(fault, **params):
        rc, results, output = run_suite(nodes_lab, *suites, "-n", "2")
    assert rc == 1, output[-3000:]
    bad = _bad(results)
    expected = _expect(nodes_lab, fault)
    assert set(bad) == set(expected), output[-3000:]
    for nodeid, phrase in expected.items():
        assert phrase in bad[nodeid], (nodeid, bad[nodeid])


def test_sudo_rights_decide_and_the_drop_in_follows_sudos_own_rule(nodes_lab: Lab) -> None:
    """One run: worker-1 may run only two commands without a password; infra-1 has NOPASSWD:ALL from cloud-init's
    drop-in and no docs' drop-in; master-1's drop-in is 0664 root:root, which sudo reads."""
    planted = [nodes_lab.apply("sudo-limited", host="worker-1"), nodes_lab.apply("sudo-elsewhere", host="infra-1"),
               nodes_lab.apply("wrong-mode", host="master-1", path="/etc/sudoers.d/99-nova-installer-user",
                               mode="0664")]
    try:
        rc, results, output = run_suite(nodes_lab, OS)
    finally:
        for f in planted:
            nodes_lab.revert(f)
    assert rc == 1, output[-3000:]
    assert _bad(results) == {f"{OS}::test_os[worker-1:os-sudo-nopasswd]": (
        "sudo grants nova-installer only: (ALL) NOPASSWD: /usr/bin/true, /usr/bin/id; the docs ask for (ALL) "
        "NOPASSWD: ALL (any command as any user without a password)")}
    warned = {r["nodeid"]: r["message"] for r in results["results"] if r["outcome"] == "warning"}
    assert warned == {f"{OS}::test_os[infra-1:os-sudoers-file]": "/etc/sudoers.d/99-nova-installer-user is missing; "
                      "sudo grants NOPASSWD: ALL through another file"}
    passed = {r["nodeid"]: r["message"] for r in results["results"] if r["outcome"] == "passed"}
    assert passed[f"{OS}::test_os[master-1:os-sudoers-file]"].startswith(
        "/etc/sudoers.d/99-nova-installer-user has mode 0664, owner root:root, which sudo accepts")
    assert passed[f"{OS}::test_os[infra-1:os-sudo-nopasswd]"] == \
        "sudo -n -l: nova-installer may run (ALL) NOPASSWD: ALL"


def test_unreachable_host_fails_its_checks_within_one_timeout(nodes_lab: Lab) -> None:
    t0 = time.monotonic()
    rc, results, output = run_suite(nodes_lab, *SUITES, "-n", "2")
    clean = time.monotonic() - t0
    assert rc == 0, output[-3000:]
    # nova-ctl's SSH packets to worker-1 are dropped: the login times out (5 s), it does not hang.
    with nodes_lab.fault("fw-drop-ssh"):
        t0 = time.monotonic()
        rc, results, output = run_suite(nodes_lab, *SUITES, "-n", "2")
        broken = time.monotonic() - t0
    assert rc == 1, output[-3000:]
    bad = _bad(results)
    mine = {r["nodeid"] for r in results["results"] if r["source"] == "worker-1" and r["severity"] == "required"}
    assert mine and set(bad) == mine, sorted(set(bad) ^ mine)[:10]
    assert all(m.startswith("worker-1: ssh: connection timed out after 5 s") for m in bad.values()), bad
    # Advisories that could not be checked are warnings saying so; the required errors already block.
    advisory = [r for r in results["results"] if r["source"] == "worker-1" and r["severity"] == "advisory"]
    assert advisory and all(r["outcome"] == "warning" and r["message"].startswith(
        "could not be checked: worker-1: ssh: connection timed out after 5 s") for r in advisory), advisory
    assert "Traceback" not in output
    # The others are not held up by more than the one login timeout (plus this busy machine's noise).
    assert broken < clean + 5 + 10, (clean, broken)


def test_sshd_down_is_one_clear_error_per_check(nodes_lab: Lab) -> None:
    with nodes_lab.fault("sshd-down", host="ingress-1"):
        rc, results, _ = run_suite(nodes_lab, OS, K8S, "-n", "2")
    assert rc == 1
    bad = _bad(results)
    assert bad and all(k.split("[")[1].startswith("ingress-1:") for k in bad), sorted(bad)
    assert set(bad.values()) == {
        f"ingress-1: ssh: connection refused by {nodes_lab.hosts['ingress-1'].address}:22 (is sshd running?)"
    }
    errors = [r for r in results["results"] if r["outcome"] == "error"]
    mine = [r for r in results["results"] if r["source"] == "ingress-1"]
    assert len(errors) == len([r for r in mine if r["severity"] == "required"])
    assert {r["outcome"] for r in mine if r["severity"] == "advisory"} == {"warning"}


def test_closed_mode_clean_then_public_resolver_and_untrusted_universe(closed_nodes_lab: Lab) -> None:
    lab = closed_nodes_lab
    rc, results, output = run_suite(lab, *SUITES, "-n", "2")
    assert rc == 0, output[-3000:]
    ids = {r["nodeid"] for r in results["results"]}
    assert f"{OS}::test_os[worker-1:os-resolver-internal]" in ids
    assert f"{DNS}::test_dns_record[hub.universe.lab.local:{lab.hosts['dns-1'].address}]" in ids

    with lab.fault("public-resolver", host="worker-1"):
        rc, results, output = run_suite(lab, OS, "-k", "resolver or universe-ca")
    bad = _bad(results)
    assert set(bad) == {f"{OS}::test_os[worker-1:os-resolver-internal]"}, bad
    assert "8.8.8.8, a public resolver" in bad[f"{OS}::test_os[worker-1:os-resolver-internal]"]

    with lab.fault("untrusted-ca", server="universe"):
        rc, results, output = run_suite(lab, OS, EXT, "-n", "2")
    # Access is what docs 2.1 demands and it works: the endpoints pass; trusting the Universe CA is a
    # recommendation of universe 2.7, an advisory warning on every host, naming who issued the chain.
    assert rc == 0 and not _bad(results), output[-3000:]
    passed = {r["nodeid"]: r["message"] for r in results["results"] if r["outcome"] == "passed"}
    assert all("the chain, issued by O=Nova Lab, CN=Untrusted Rogue CA, does not verify with the node's trust "
               "store" in passed[f"{EXT}::test_endpoint[{h}:{e}]"] for h in HOSTS for e in UNIVERSE)
    warned = {r["nodeid"]: r["message"] for r in results["results"] if r["outcome"] == "warning"}
    assert set(warned) == ({f"{OS}::test_os[{h}:os-universe-ca]" for h in NODES}
                           | {f"{OS}::test_os[nova-ctl:os-universe-ca-nova-ctl]"}), sorted(warned)
    assert all(m.startswith("TLS not trusted: hub.universe.lab.local:443 presents a chain issued by O=Nova Lab, "
                            "CN=Untrusted Rogue CA") for m in warned.values())


def test_a_node_without_the_universe_ca_reaches_universe_and_is_warned(closed_nodes_lab: Lab) -> None:
    """One run: worker-1 lacks the Universe CA (required endpoints pass, the advisory trust check warns); infra-1
    cannot reach Universe at all (its endpoints fail, its trust check is skipped: the two never contradict)."""
    lab = closed_nodes_lab
    planted = [lab.apply("universe-ca-missing", host="worker-1"), lab.apply("endpoint-unreachable", host="infra-1")]
    try:
        rc, results, output = run_suite(lab, OS, EXT)
    finally:
        for f in planted:
            lab.revert(f)
    assert rc == 1, output[-3000:]
    bad = _bad(results)
    assert set(bad) == {f"{EXT}::test_endpoint[infra-1:{e}]" for e in UNIVERSE}, sorted(bad)
    assert all(m.startswith("filtered (timed out)") for m in bad.values())
    by_id = {r["nodeid"]: r for r in results["results"]}
    for e in UNIVERSE:
        mine = by_id[f"{EXT}::test_endpoint[worker-1:{e}]"]
        assert mine["outcome"] == "passed" and "issued by O=Nova Lab, CN=Nova Universe CA, does not verify with the " \
            "node's trust store; os-universe-ca (advisory) names the CA to install" in mine["message"]
    warned = {r["nodeid"]: r["message"] for r in results["results"] if r["outcome"] == "warning"}
    assert set(warned) == {f"{OS}::test_os[worker-1:os-universe-ca]"}
    assert warned[f"{OS}::test_os[worker-1:os-universe-ca]"].startswith(
        "TLS not trusted: hub.universe.lab.local:443 presents a chain issued by O=Nova Lab, CN=Nova Universe CA")
    assert by_id[f"{OS}::test_os[infra-1:os-universe-ca]"]["outcome"] == "skipped"


def test_an_untrusted_vendor_chain_is_an_advisory_warning_per_host(nodes_lab: Lab) -> None:
    with nodes_lab.fault("untrusted-ca"):
        rc, results, output = run_suite(nodes_lab, EXT, "-n", "2")
    assert rc == 0 and not _bad(results), output[-3000:]
    # (ext-documented-ips warns too: the lab's vendor names resolve to lab addresses, not docs 2's list.)
    warned = {r["nodeid"]: r["message"] for r in results["results"]
              if r["outcome"] == "warning" and r["requirement"] != "ext-documented-ips"}
    assert set(warned) == {f"{EXT}::test_vendor_addresses[{h}:ext-tls-trusted]" for h in HOSTS}, sorted(warned)
    chains = ", ".join(sorted(VENDOR))
    assert set(warned.values()) == {f"the node's trust store does not verify the chain of {chains} (issued by O=Nova "
                                    "Lab, CN=Untrusted Rogue CA)"}


@pytest.fixture(scope="module")
def proxy_nodes_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """A 1/1/0/1 lab in proxy mode: the vendor host accepts only the HTTP proxy."""
    yield from booted(
        LabSpec(name=lab_name("np", pytestconfig), masters=1, infra=1, ingress=0, workers=1, proxy=True)
    )


_DIRECT = (
    "import socket, sys\n"
    "try:\n    socket.create_connection((sys.argv[1], 443), 2)\n    print('connected')\n"
    "except OSError as exc:\n    print(type(exc).__name__)\n"
)


def test_proxy_mode_endpoints_go_through_the_proxy_and_proxy_deny_fails_exactly_them(proxy_nodes_lab: Lab) -> None:
    lab = proxy_nodes_lab
    proxy = f"{lab.hosts['proxy'].address}:3128"
    hosts = ("nova-ctl", "master-1", "infra-1", "worker-1")
    endpoints = {f"{EXT}::test_endpoint[{h}:{e}]" for h in hosts for e in VENDOR}
    # Without the proxy the vendor host is out of reach: a direct connection gets no answer.
    vendor = lab.hosts["vendor"].address
    assert lab.exec("worker-1", [sys.executable, "-c", _DIRECT, vendor]).stdout.strip() == "TimeoutError"

    rc, results, output = run_suite(lab, EXT, "-n", "2")
    assert rc == 0, output[-3000:]
    records = {r["nodeid"]: r for r in results["results"] if "::test_endpoint[" in r["nodeid"]}
    assert set(records) == endpoints
    # The lab's vendor names resolve to the lab's vendor host, outside docs 2's IP list: an advisory warning that
    # names the allow-list consequence (and that the proxy's own allow-list is the one that matters here).
    documented = [r for r in results["results"] if r["requirement"] == "ext-documented-ips"]
    assert len(documented) == len(hosts) and {r["outcome"] for r in documented} == {"warning"}
    assert all("would block these addresses" in r["message"] and "HTTP proxy" in r["message"] for r in documented)
    assert all(r["outcome"] == "passed" and f"via proxy {proxy} verified" in r["message"] for r in records.values())

    with lab.fault("proxy-deny"):
        rc, results, output = run_suite(lab, *SUITES, "-n", "2")
    assert rc == 1, output[-3000:]
    bad = _bad(results)
    assert set(bad) == endpoints, sorted(set(bad) ^ endpoints)
    assert all(
        m.startswith("refused by the proxy: ") and f"(via proxy {proxy}): HTTP/1.1 403 Forbidden" in m
        for m in bad.values()
    ), bad
    assert f"Fix:      allow CONNECT to hub.nova-platform.io:443 on the proxy http://{proxy}" in output
    # Reverted: the same checks pass again.
    rc, results, output = run_suite(lab, EXT, "-k", "worker-1")
    assert rc == 0 and not _bad(results) and results["results"], output[-3000:]
