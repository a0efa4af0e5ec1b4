"""The lab itself: real logins, real DNS, real TLS, each fault observed on and off, and a clean teardown."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from nova_lab import DEBIAN_PACKAGES, REGISTRY, Lab, LabError, LabSpec, faults
from nova_lab.addresses import LAB_RANGE, MAX_LABS, plan, subnet
from nova_lab.dns import FALLBACK_RECORDS, platform_records
from nova_lab.kubeapi import route
from tests.lab_fixtures import FaultFactory, boot, lab_name, ssh_argv

lab_test = pytest.mark.lab


def py(lab: Lab, host: str, code: str, check: bool = True) -> str:
    """Run a Python snippet as root inside ``host``; returns its stdout."""
    return lab.exec(host, [sys.executable, "-c", textwrap.dedent(code)], check=check).stdout.strip()


def query(lab: Lab, host: str, name: str, server: str) -> str:
    """``rcode addr,addr`` of an A query for ``name`` sent from ``host`` to ``server``."""
    return py(lab, host, f"""
        import dns.message, dns.query, dns.rcode
        r = dns.query.udp(dns.message.make_query({name!r}, "A"), {server!r}, timeout=3)
        print(dns.rcode.to_text(r.rcode()), ",".join(sorted(x.address for a in r.answer for x in a)))
    """)


def query_many(lab: Lab, host: str, names: list[str], server: str) -> list[str]:
    """``query`` for many names in one process."""
    return py(lab, host, f"""
        import dns.message, dns.query, dns.rcode
        for name in {names!r}:
            r = dns.query.udp(dns.message.make_query(name, "A"), {server!r}, timeout=3)
            addrs = ",".join(sorted(x.address for a in r.answer for x in a))
            print((dns.rcode.to_text(r.rcode()) + " " + addrs).strip())
    """).splitlines()


def tcp(lab: Lab, host: str, addr: str, port: int) -> str:
    """``open``, ``refused`` or ``timeout`` for a TCP connect from ``host``."""
    return py(lab, host, f"""
        import socket
        try:
            socket.create_connection(({addr!r}, {port}), 2).close(); print("open")
        except ConnectionRefusedError: print("refused")
        except OSError: print("timeout")
    """)


def udp_echo(lab: Lab, host: str, addr: str, port: int) -> bool:
    """Whether a UDP datagram to ``addr:port`` from ``host`` comes back."""
    return py(lab, host, f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
        try:
            s.sendto(b"x", ({addr!r}, {port})); s.recvfrom(16); print("yes")
        except OSError: print("no")
    """) == "yes"


def ping(lab: Lab, host: str, addr: str) -> bool:
    """One echo request over an unprivileged ICMP socket (ping_group_range allows it)."""
    return py(lab, host, f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); s.settimeout(1.5)
        try:
            s.sendto(b"\\x08\\x00\\x00\\x00\\x00\\x01\\x00\\x01", ({addr!r}, 0)); s.recvfrom(64); print("yes")
        except OSError: print("no")
    """) == "yes"


def tls(lab: Lab, host: str, name: str, port: int, addr: str | None = None) -> str:
    """``ok <issuer CN>`` or ``fail <reason>`` for a verified TLS handshake with the host's trust store."""
    return py(lab, host, f"""
        import socket, ssl
        ctx = ssl.create_default_context()
        try:
            s = ctx.wrap_socket(socket.create_connection(({addr or name!r}, {port}), 3), server_hostname={name!r})
            print("ok", dict(x[0] for x in s.getpeercert()["issuer"])["commonName"])
        except ssl.SSLError as e: print("fail", e.reason)
        except OSError as e: print("fail", type(e).__name__)
    """)


def kubectl(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lab.runner_cmd(["kubectl", f"--kubeconfig={lab.kubeconfig_path}", *args]),
                          capture_output=True, text=True, timeout=60, check=False)


# --- pure parts: no root needed -------------------------------------------------------------------------


def test_address_plan_stays_in_the_benchmark_range() -> None:
    for index in (0, MAX_LABS - 1):
        hosts = plan(LabSpec(workers=250), index)
        addrs = [ipaddress.ip_address(h.address) for h in hosts]
        assert all(a in LAB_RANGE and a in subnet(index) for a in addrs)
        assert len(set(addrs)) == len(addrs) == len({h.mac for h in hosts}) == len({h.name for h in hosts})
    assert not subnet(0).overlaps(subnet(1))


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="proxy"):
        LabSpec(mode="closed", proxy=True).validate()
    with pytest.raises(ValueError, match="name"):
        LabSpec(name="bad name").validate()


def test_platform_records_cover_the_docs() -> None:
    assert set(platform_records(("opensearch", "neuvector"))) >= {n for n, _ in FALLBACK_RECORDS}
    assert "nova-logs-main" not in platform_records(())


def test_fault_registry_resolves_and_rejects() -> None:
    assert set(faults.KINDS) <= set(REGISTRY)
    f = faults.resolve("fw-drop", port=10250, source="infra")
    assert f.kind == "fw-drop" and f["port"] == "10250" and f["protocol"] == "tcp"
    assert f.key == "fw-drop:destination=master-1,port=10250,protocol=tcp,source=infra"
    assert faults.resolve(f) is f
    with pytest.raises(ValueError, match="unknown parameter"):
        faults.get("sshd-down", port=1)
    with pytest.raises(ValueError, match="unknown fault"):
        faults.resolve("no-such-fault")


def test_fw_drop_rules_match_sources_in_the_destination() -> None:
    hosts = plan(LabSpec(), 0)
    rules = faults.nft_rules([faults.get("fw-drop", protocol="udp", port=4789, source="infra",
                                         destination="masters")], hosts, {})
    assert sorted(rules) == ["master-1", "master-2", "master-3"]
    assert rules["master-1"] == ["ip saddr { 198.18.2.11, 198.18.2.12 } udp dport 4789 drop"]


def test_kube_api_table_and_list_shapes() -> None:
    cluster = [{"name": "m1", "address": "198.18.1.11", "roles": ["master"]},
               {"name": "w1", "address": "198.18.4.11", "roles": ["worker"]}]
    code, body = route("/api/v1/nodes", "application/json", cluster, {"w1"}, set(), "x:6443")
    assert code == 200 and body["kind"] == "NodeList"
    ready = {n["metadata"]["name"]: n["status"]["conditions"][-1]["status"] for n in body["items"]}
    assert ready == {"m1": "True", "w1": "Unknown"}
    code, table = route("/api/v1/nodes", "application/json;as=Table;v=v1;g=meta.k8s.io", cluster, set(), {"w1"}, "")
    assert [r["cells"][:3] for r in table["rows"]] == [["m1", "Ready", "master"]]


def test_debian_packages_listed() -> None:
    assert {"openssh-server", "dnsmasq-base", "nftables", "sudo", "iproute2", "openssl"} <= set(DEBIAN_PACKAGES)


# --- the running lab ------------------------------------------------------------------------------------


@lab_test
def test_inventory_is_format_v1(lab: Lab) -> None:
    inv = yaml.safe_load(lab.inventory_path.read_text())
    assert inv["cluster"] == {"name": "lab", "dnsBaseDomain": "nova.lab.local", "modules": ["opensearch", "neuvector"]}
    assert inv["network"]["dnsServers"] == [lab.hosts["dns-1"].address, lab.hosts["dns-2"].address]
    assert inv["ssh"]["hostKeyPolicy"] == "strict" and inv["ssh"]["user"] == "nova-installer"
    assert inv["nodes"][0] == {"name": "nova-ctl", "address": lab.hosts["nova-ctl"].address,
                               "roles": ["nova-ctl"], "connection": "local"}
    assert len(inv["nodes"]) == 1 + 3 + 2 + 1 + 3 and inv["workstations"][0]["name"] == "ops-1"
    assert (lab.state_dir / "id_nova").stat().st_mode & 0o777 == 0o600
    from _pytest_nova.inventory import load_inventory

    load_inventory(lab.inventory_path)


@lab_test
def test_ssh_login_and_passwordless_sudo_from_the_runner(lab: Lab) -> None:
    before = lab.sshd_logins("worker-1")
    out = subprocess.run(ssh_argv(lab, "worker-1", "hostname; sudo -n true && echo sudo-ok"),
                         capture_output=True, text=True, timeout=30, check=True).stdout.split()
    assert out == ["worker-1", "sudo-ok"]
    assert lab.sshd_logins("worker-1") == before + 1


@lab_test
def test_account_as_the_docs_say(lab: Lab) -> None:
    out = lab.exec("master-2", "getent passwd nova-installer | cut -d: -f7; cat /etc/sudoers.d/99-nova-installer-user;"
                   " stat -c %a /etc/sudoers.d/99-nova-installer-user /home/nova-installer/.ssh"
                   " /home/nova-installer/.ssh/authorized_keys; hostname").stdout.split("\n")
    assert out[:6] == ["/bin/bash", "nova-installer ALL=(ALL) NOPASSWD:ALL", "440", "700", "600", "master-2"]
    uuids = {lab.exec(h, "cat /sys/class/dmi/id/product_uuid").stdout for h in ("master-1", "worker-1", "ops-1")}
    assert len(uuids) == 3


@lab_test
def test_node_sysctls(lab: Lab) -> None:
    out = lab.exec("worker-2", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ping_group_range").stdout
    assert out.split() == ["1", "0", "2147483647"]
    assert ping(lab, "worker-2", lab.hosts["master-1"].address)


@lab_test
def test_dns_records_via_both_servers(lab: Lab) -> None:
    infra = ",".join(sorted(lab.hosts[h].address for h in ("infra-1", "infra-2")))
    vendor = lab.hosts["vendor"].address
    names = [f"{r}.nova.lab.local" for r, _ in FALLBACK_RECORDS] + ["hub.nova-platform.io", "example.com"]
    want = [f"NOERROR {infra}"] * len(FALLBACK_RECORDS) + [f"NOERROR {vendor}", "NXDOMAIN"]
    for server in ("dns-1", "dns-2"):
        assert query_many(lab, "worker-3", names, lab.hosts[server].address) == want


@lab_test
def test_vendor_tls_verifies_against_the_node_trust_store(lab: Lab) -> None:
    assert tls(lab, "master-1", "hub.nova-platform.io", 443) == "ok Nova Lab CA"
    assert tls(lab, "master-1", "sun.nova-platform.io", 8140) == "ok Nova Lab CA"
    runner = subprocess.run(lab.runner_cmd(["curl", "-sS", "https://storage.cloud.croc.ru/"]),
                            capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(runner.stdout)["service"] == "vendor"


@lab_test
def test_fault_dns(lab: Lab, fault: FaultFactory) -> None:
    dns1 = lab.hosts["dns-1"].address
    with lab.fault("dns-missing-record", record="nova-oauth"):
        for server in ("dns-1", "dns-2"):
            assert query(lab, "worker-1", "nova-oauth.nova.lab.local", lab.hosts[server].address) == "NXDOMAIN"
    assert query(lab, "worker-1", "nova-oauth.nova.lab.local", dns1).startswith("NOERROR 198.18.")
    fault("dns-wrong-target", record="nova-console", target="worker-2")
    assert query(lab, "worker-1", "nova-console.nova.lab.local", dns1) == f"NOERROR {lab.hosts['worker-2'].address}"


@lab_test
def test_fault_fw_drop_tcp_udp_icmp(installed_lab: Lab, fault: FaultFactory) -> None:
    lab = installed_lab
    m1, m2 = lab.hosts["master-1"].address, lab.hosts["master-2"].address
    assert tcp(lab, "worker-1", m1, 2379) == "open"
    with lab.fault("fw-drop", port=2379, protocol="tcp", source="workers", destination="master-1"):
        assert tcp(lab, "worker-1", m1, 2379) == "timeout"
        assert tcp(lab, "worker-1", m2, 2379) == "open"
        assert tcp(lab, "infra-1", m1, 2379) == "open"
    assert tcp(lab, "worker-1", m1, 2379) == "open"
    assert udp_echo(lab, "worker-1", m1, 8472)
    assert not udp_echo(lab, "worker-1", m1, 4789)  # a kernel VXLAN device holds 4789: it answers nothing
    kernel = lab.exec("master-1", "ip -d link show nova-vxlan; nft list table inet novalab-kube").stdout
    assert "dstport 4789" in kernel and "ct state invalid" in kernel
    fault("fw-drop", port=8472, protocol="udp", source="worker-1", destination="master-1")
    fault("fw-drop", port=0, protocol="icmp", source="worker-1", destination="master-1")
    assert not udp_echo(lab, "worker-1", m1, 8472)
    assert udp_echo(lab, "worker-1", m2, 8472)
    assert not ping(lab, "worker-1", m1)
    assert ping(lab, "worker-2", m1)


@lab_test
def test_fault_sshd_down(lab: Lab) -> None:
    w2 = lab.hosts["worker-2"].address
    with lab.fault("sshd-down", host="worker-2"):
        assert tcp(lab, "worker-1", w2, 22) == "refused"
        assert lab.exec("worker-2", "hostname").stdout.strip() == "worker-2"  # the host lives on
    assert tcp(lab, "worker-1", w2, 22) == "open"
    subprocess.run(ssh_argv(lab, "worker-2", "true"), timeout=30, check=True)


@lab_test
def test_fault_account(lab: Lab, fault: FaultFactory) -> None:
    fault("sudoers-missing", host="worker-3")
    fault("wrong-mode", host="worker-3")
    fault("wrong-shell", host="worker-3")
    ssh = subprocess.run(ssh_argv(lab, "worker-3", "sudo -n true; echo rc=$?; stat -c %a .ssh/authorized_keys"),
                         capture_output=True, text=True, timeout=30, check=False)
    assert ssh.stdout.split() == ["rc=1", "644"]
    assert lab.exec("worker-3", "getent passwd nova-installer").stdout.strip().endswith(":/bin/sh")
    assert lab.exec("worker-2", "getent passwd nova-installer").stdout.strip().endswith(":/bin/bash")


@lab_test
def test_fault_account_reverts(lab: Lab) -> None:
    for name in ("sudoers-missing", "wrong-mode", "wrong-shell", "public-resolver"):
        f = lab.apply(name, host="ops-1")
        lab.apply(f)  # idempotent
        lab.revert(f)
        lab.revert(f)
    out = lab.exec("ops-1", "stat -c %a /etc/sudoers.d/99-nova-installer-user"
                   " /home/nova-installer/.ssh/authorized_keys; getent passwd nova-installer | cut -d: -f7;"
                   " grep -c 198.18 /etc/resolv.conf").stdout.split()
    assert out == ["440", "600", "/bin/bash", "2"]
    assert lab.active_faults() == []


@lab_test
def test_fault_public_resolver(lab: Lab, fault: FaultFactory) -> None:
    fault("public-resolver", host="infra-2")
    assert lab.exec("infra-2", "cat /etc/resolv.conf").stdout == "nameserver 8.8.8.8\n"


@lab_test
def test_fault_endpoint_unreachable_and_untrusted_ca(lab: Lab, fault: FaultFactory) -> None:
    vendor = lab.hosts["vendor"].address
    fault("endpoint-unreachable", host="worker-1")
    assert tcp(lab, "worker-1", vendor, 443) == "timeout"
    assert tcp(lab, "worker-2", vendor, 443) == "open"
    fault("untrusted-ca")
    assert tls(lab, "worker-2", "code.nova-platform.io", 443) == "fail CERTIFICATE_VERIFY_FAILED"


@lab_test
def test_installed_mode(installed_lab: Lab, fault: FaultFactory) -> None:
    lab = installed_lab
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    nodes = [h for h in lab.hosts.values() if h.kind == "node"]
    res = kubectl(lab, "get", "nodes", "--no-headers")
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split()[1] for line in res.stdout.splitlines()}
    assert rows == {h.name: "Ready" for h in nodes}
    fault("node-notready", node="worker-2")
    fault("node-missing", node="worker-3")
    rows = {ln.split()[0]: ln.split()[1] for ln in kubectl(lab, "get", "nodes", "--no-headers").stdout.splitlines()}
    assert rows["worker-2"] == "NotReady" and "worker-3" not in rows and len(rows) == len(nodes) - 1
    pods = json.loads(kubectl(lab, "get", "pods", "-n", "kube-system", "-o", "json").stdout)["items"]
    assert pods and {p["status"]["phase"] for p in pods} == {"Running"}


@lab_test
def test_installed_listeners_and_balancers(installed_lab: Lab, fault: FaultFactory) -> None:
    lab = installed_lab
    out = lab.exec("worker-1", "curl -s 127.0.0.1:10248/healthz; echo;"
                   " test -S /run/containerd/containerd.sock && echo sock")
    assert out.stdout.split() == ["ok", "sock"]
    api, infra_lb = lab.hosts["lb-api"].address, lab.hosts["lb-infra"].address
    health = f"curl -s -o /dev/null -w %{{http_code}} https://{api}:6443/readyz"
    assert lab.exec("ops-1", health).stdout == "200"
    assert lab.exec("ops-1", f"curl -s http://{infra_lb}/healthz").stdout == "ok"
    assert query(lab, "worker-1", "nova-console.nova.lab.local", infra_lb).startswith("NOERROR")
    fault("healthcheck-503", host="infra-1")
    assert lab.exec("ops-1", f"curl -s -o /dev/null -w %{{http_code}} http://{lab.hosts['infra-1'].address}/healthz"
                    ).stdout == "503"
    fault("tls-terminating-api-lb")
    issuer = lab.exec("ops-1", f"openssl s_client -connect {api}:6443 </dev/null 2>/dev/null | grep ^subject=").stdout
    assert "nova-api-lb" in issuer


@lab_test
def test_ports_before_installation_are_closed(lab: Lab) -> None:
    assert not lab.installed
    assert tcp(lab, "worker-1", lab.hosts["master-1"].address, 6443) == "refused"


@lab_test
def test_closed_mode_universe(closed_lab: Lab) -> None:
    lab = closed_lab
    inv = yaml.safe_load(lab.inventory_path.read_text())
    assert inv["network"]["mode"] == "closed"
    assert inv["universe"] == {"dnsBaseDomain": "universe.lab.local", "address": lab.hosts["universe"].address}
    dns1 = lab.hosts["dns-1"].address
    for name in ("hub", "sun", "repo", "uploads"):
        assert query(lab, "worker-1", f"{name}.universe.lab.local", dns1) == f"NOERROR {lab.hosts['universe'].address}"
        assert tls(lab, "worker-1", f"{name}.universe.lab.local", 443) == "ok Nova Universe CA"
    assert query(lab, "worker-1", "hub.nova-platform.io", dns1) == "NXDOMAIN"
    ca = lab.exec("worker-1", "curl -sS https://repo.universe.lab.local/ca/ca.crt").stdout
    assert ca.startswith("-----BEGIN CERTIFICATE-----")


@lab_test
def test_proxy_mode_and_teardown_leaves_nothing(pytestconfig: pytest.Config) -> None:
    lab = boot(LabSpec(name=lab_name("p", pytestconfig), masters=1, infra=1, ingress=0, workers=1, proxy=True))
    try:
        proxy = yaml.safe_load(lab.inventory_path.read_text())["network"]["httpProxy"]
        vendor = lab.hosts["vendor"].address
        assert tcp(lab, "worker-1", vendor, 443) == "timeout"
        out = lab.exec("worker-1", f"curl -sS -x {proxy} https://hub.nova-platform.io/", check=False)
        assert json.loads(out.stdout)["service"] == "vendor", out.stderr
        netns = {lab.netns(h) for h in lab.hosts}
        pids = [int(r["pid"]) for r in lab.records.read() if r["kind"] == "pid"]
        links = [r["name"] for r in lab.records.read() if r["kind"] == "link"]
        state = lab.state_dir
    finally:
        t0 = time.monotonic()
        # From a fresh process, from the records alone.
        subprocess.run([sys.executable, "-m", "nova_lab.cli", "down", "--name", lab.name],
                       timeout=60, check=True)
        assert time.monotonic() - t0 < 15
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    assert not netns & {line.split()[0] for line in listed.splitlines() if line.strip()}
    shown = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=10).stdout
    assert not [ln for ln in links if f" {ln}:" in shown or f" {ln}@" in shown]
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists() and "zombie" not in
                (Path(f"/proc/{pid}/status").read_text())]
    assert not state.exists()
    assert not any(Path("/etc/netns").glob(f"{lab.name}-*"))


@lab_test
def test_unknown_host_is_one_clear_error(lab: Lab) -> None:
    with pytest.raises(LabError, match="no host 'nope'"):
        lab.exec("nope", "true")
    with pytest.raises(LabError, match="no host"):
        lab.apply("sshd-down", host="nope")
