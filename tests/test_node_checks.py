"""Node and name checks without a lab: the rules on hand-made facts, the probe script and DNS queries on loopback."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import dns.message
import dns.rcode
import dns.rrset
import pytest

from _pytest_nova.catalog import load_catalog
from _pytest_nova.checks import dns as dnscheck
from _pytest_nova.checks import endpoints
from _pytest_nova.checks import node as f
from _pytest_nova.checks import node_rules as r
from _pytest_nova.checks.facts import Facts
from _pytest_nova.hosts import HostError, Reason
from _pytest_nova.inventory import Inventory, load_inventory
from _pytest_nova.kinds import build
from _pytest_nova.plan import DnsRecordCheck
from _pytest_nova.remote_scripts import source
from _pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, Finding
from nova_lab import pki

REPO = Path(__file__).resolve().parents[1]
PROD = REPO / "inventories" / "example-prod.yaml"
CLOSED = REPO / "inventories" / "example-closed.yaml"
LOCAL = "127.0.0.1"
KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIJexamplekeyblob"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(PROD)


def ctx(inv: Inventory, host: str = "master-1", peers: dict[str, Any] | None = None) -> r.Context:
    return r.Context(inv, host, "nova-installer", KEY, "", lambda: dict(peers or {}))


def good_facts() -> dict[str, Any]:
    """What a healthy node reports."""
    return {
        "hostname": "master-1",
        "account": {"exists": True, "shell": "/bin/bash", "home": "/home/nova-installer", "home_is_dir": True,
                    "ssh_dir": {"mode": "0700", "owner": "nova-installer", "type": "dir"},
                    "authorized_keys": {"mode": "0600", "owner": "nova-installer", "type": "file"},
                    "authorized_keys_path": "/home/nova-installer/.ssh/authorized_keys", "keys": ["other", KEY]},
        "stat": {"/etc/sudoers.d/99-nova-installer-user": {"mode": "0440", "owner": "root", "uid": 0, "gid": 0,
                                                           "group": "root", "type": "file"},
                 "/home/nova-installer": {"mode": "0700", "owner": "nova-installer", "type": "dir"},
                 "~/.ssh/id_nova": {"mode": "0600", "owner": "root", "type": "file"}},
        "sudo": {"rc": 0, "err": ""},
        "extra": {"sudo_rights": {"rc": 0, "err": "", "out": "User nova-installer may run the following commands on "
                                  "master-1:\n    (ALL) NOPASSWD: ALL\n"}},
        "resolver": {"resolv_conf": ["10.10.0.53", "10.10.0.54"]},
        "swaps": [],
        "sysctl": {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"},
        "read": {"/sys/class/dmi/id/product_uuid": {"text": "AAAA-1\n"},
                 "/etc/sudoers.d/99-nova-installer-user": {"text": "nova-installer ALL=(ALL) NOPASSWD:ALL\n"}},
        "sockets": {"/run/containerd/containerd.sock": {"ok": True}},
        "http": {"http://127.0.0.1:10248/healthz": {"status": 200, "body": "ok"}},
        "binaries": {b: {"found": True, "rc": 0, "version": f"{b} v1.30", "path": f"/usr/bin/{b}"}
                     for b in ("kubelet", "kubeadm", "kubectl")},
        "dirs": {"/etc/cni/net.d": {"entries": ["10-cilium.conflist"]}},
        "names": {"nova-console.nova.mycompany.local": {"status": "ok", "addresses": ["10.10.1.21"]}},
        "endpoints": {"hub.nova-platform.io:443": {"status": "ok", "tls": "TLSv1.3", "issuer": "CA", "address": "x"}},
    }


def judge(inv: Inventory, req_id: str, facts: dict[str, Any], **kw: Any) -> Finding:
    return r.judge_requirement(load_catalog().get(req_id), cast(Facts, facts), ctx(inv, **kw))


OS_K8S_PRE = ["os-user-exists", "os-sudoers-file", "os-sudo-nopasswd", "os-ssh-dir", "os-authorized-keys-mode",
              "os-authorized-keys-has-key", "k8s-swap-off", "k8s-ip-forward", "k8s-br-netfilter",
              "k8s-container-runtime-active", "k8s-kubelet-active", "k8s-packages-installed", "k8s-cni-configured"]


def test_every_node_check_of_the_catalog_has_a_rule() -> None:
    checks = {r.check for r in load_catalog().requirements if r.area in ("os", "k8s") and r.scope != "cluster"}
    assert checks <= set(r.RULES), checks - set(r.RULES)


@pytest.mark.parametrize("req_id", OS_K8S_PRE)
def test_healthy_facts_pass(inv: Inventory, req_id: str) -> None:
    got = judge(inv, req_id, good_facts())
    assert got.outcome == PASSED, got.message


def _with(path: str, value: Any) -> dict[str, Any]:
    facts = good_facts()
    node: Any = facts
    keys = path.split("/")
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return facts


BROKEN = [
    ("os-user-exists", "account/shell", "/bin/sh", "login shell is /bin/sh, not /bin/bash", "usermod -s /bin/bash"),
    ("os-user-exists", "account/home_is_dir", False, "home directory /home/nova-installer does not exist",
     "mkhomedir_helper nova-installer"),
    ("os-user-exists", "account", {"exists": False}, "user nova-installer does not exist", "useradd -m -s /bin/bash"),
    ("os-sudoers-file", "stat/\x00", None, "/etc/sudoers.d/99-nova-installer-user is missing",
     "echo 'nova-installer ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/99-nova-installer-user"),
    ("os-sudo-nopasswd", "extra/sudo_rights", {"rc": 1, "out": "", "err": "sudo: a password is required\n"},
     "sudo -n -l failed: a password is required: no rule lets nova-installer run commands without a password",
     "NOPASSWD:ALL"),
    ("os-ssh-dir", "account/ssh_dir", {"mode": "0775", "owner": "nova-installer", "type": "dir"},
     "/home/nova-installer/.ssh has mode 0775, owner nova-installer: writable by group; sshd (StrictModes)",
     "chmod go-w /home/nova-installer/.ssh"),
    ("os-ssh-dir", "account/ssh_dir", {"mode": "0700", "owner": "admin", "type": "dir"},
     "owned by admin, not nova-installer or root", "chown nova-installer: /home/nova-installer/.ssh"),
    ("os-authorized-keys-mode", "account/authorized_keys", {"mode": "0644", "owner": "root", "type": "file"},
     "authorized_keys has mode 0644, owner root; expected mode 0600, owner nova-installer", "chmod 600"),
    ("os-authorized-keys-has-key", "account/keys", ["other"], "holds 1 keys, none of them the public key",
     "ssh-copy-id -i ~/.ssh/id_nova.pub nova-installer@10.10.1.11"),
    ("k8s-swap-off", "swaps", ["/swapfile"], "swap is on: /swapfile", "swapoff -a"),
    ("k8s-ip-forward", "sysctl/net.ipv4.ip_forward", "0", "net.ipv4.ip_forward = 0", "sysctl -w net.ipv4.ip_forward=1"),
    ("k8s-br-netfilter", "sysctl/net.bridge.bridge-nf-call-iptables", None, "br_netfilter is not loaded",
     "modprobe br_netfilter"),
    ("k8s-container-runtime-active", "sockets", {}, "no CRI socket answers", "systemctl enable --now containerd"),
    ("k8s-kubelet-active", "http", {"http://127.0.0.1:10248/healthz": {"error": "Connection refused"}},
     "Connection refused (the kubelet is not running)", "systemctl enable --now kubelet"),
    ("k8s-packages-installed", "binaries/kubeadm", {"found": False}, "not installed: kubeadm", "install the missing"),
    ("k8s-cni-configured", "dirs/\x00", None, "/etc/cni/net.d: not gathered", "CNI pods"),
]


@pytest.mark.parametrize(("req_id", "path", "value", "message", "fix"), BROKEN,
                         ids=[f"{b[0]}-{b[1].replace('/', '.')}" for b in BROKEN])
def test_each_fault_fails_with_what_to_fix(inv: Inventory, req_id: str, path: str, value: Any, message: str,
                                           fix: str) -> None:
    if path.endswith("\x00"):
        facts = good_facts()
        facts[path.split("/")[0]] = {}
        if req_id == "os-sudoers-file":
            facts["stat"] = {"/etc/sudoers.d/99-nova-installer-user": {"error": "No such file", "errno": 2}}
    else:
        facts = _with(path, value)
    req = load_catalog().get(req_id)
    c = ctx(inv)
    finding = r.judge_requirement(req, cast(Facts, facts), c)
    assert finding.outcome == FAILED
    assert message in finding.message
    assert fix in (finding.fix or c.fill(req.fix))


def test_sudoers_modes_as_sudo_reads_them(inv: Inventory) -> None:
    """sudo 1.9 (tried in the lab): 0664 root:root is read; 0664 with another group, 0666, another owner are not."""
    path = "/etc/sudoers.d/99-nova-installer-user"

    def stat(mode: str, uid: int = 0, gid: int = 0) -> Finding:
        st = {"mode": mode, "owner": "root" if uid == 0 else "admin", "uid": uid, "gid": gid,
              "group": "root" if gid == 0 else "admin", "type": "file"}
        return judge(inv, "os-sudoers-file", _with("stat", {path: st}))

    assert stat("0664").outcome == stat("0644").outcome == stat("0440").outcome == PASSED
    group = stat("0664", gid=1001)
    assert group.outcome == FAILED and "group writable by gid 1001 (admin), not root's group" in group.message
    assert stat("0640", gid=1001).outcome == PASSED  # a group that cannot write does not matter
    world = stat("0666")
    assert world.outcome == FAILED and "world writable, so sudo ignores it" in world.message
    assert world.fix == f"chown root:root {path} && chmod 0440 {path}"
    assert "owned by uid 1001 (admin), should be 0" in stat("0440", uid=1001).message
    denied = judge(inv, "os-sudoers-file", _with("stat", {path: {"error": "Permission denied", "errno": 13}}))
    assert denied.outcome == ERROR and "sudo -n was refused" in denied.message


def test_sudoers_file_is_advice_when_the_rights_come_from_elsewhere(inv: Inventory) -> None:
    path = "/etc/sudoers.d/99-nova-installer-user"
    missing = judge(inv, "os-sudoers-file", _with("stat", {path: {"error": "No such file", "errno": 2}}))
    assert missing.outcome == FAILED and missing.message == (
        f"{path} is missing; sudo grants NOPASSWD: ALL through another file")
    assert load_catalog().get("os-sudoers-file").severity == "advisory"
    other = judge(inv, "os-sudoers-file", _with("read", {path: {"text": "nova-installer ALL=(ALL) ALL\n"}}))
    assert other.outcome == FAILED and "but no line 'nova-installer ALL=(ALL) NOPASSWD:ALL'" in other.message
    spelled = judge(inv, "os-sudoers-file", _with("read", {path: {"text": "nova-installer ALL = (ALL : ALL) "
                                                                          "NOPASSWD: ALL\n"}}))
    assert spelled.outcome == PASSED


def test_effective_rights_in_any_spelling_and_narrower_grants(inv: Inventory) -> None:
    def rights(out: str, rc: int = 0, err: str = "") -> Finding:
        head = "Matching Defaults entries for nova-installer on x:\n    env_reset\n\n" \
               "User nova-installer may run the following commands on x:\n"
        return judge(inv, "os-sudo-nopasswd", _with("extra/sudo_rights", {"rc": rc, "out": head + out, "err": err}))

    for full in ("    (ALL : ALL) NOPASSWD: ALL\n", "    (ALL) NOPASSWD: SETENV: ALL\n",
                 "    (ALL) ALL\n    (ALL:ALL) NOPASSWD: ALL\n"):
        assert rights(full).outcome == PASSED, full
    narrow = rights("    (ALL) NOPASSWD: /usr/bin/true, /usr/bin/id\n")
    assert narrow.outcome == FAILED
    assert narrow.message == ("sudo grants nova-installer only: (ALL) NOPASSWD: /usr/bin/true, /usr/bin/id; the docs "
                              "ask for (ALL) NOPASSWD: ALL (any command as any user without a password)")
    assert rights("    (root) NOPASSWD: ALL\n").outcome == FAILED
    assert rights("    (ALL) NOPASSWD: ALL, !/bin/su\n").outcome == FAILED
    assert rights("    (ALL) PASSWD: ALL\n").outcome == FAILED
    ignored = rights("    (ALL) NOPASSWD: /usr/bin/id\n",
                     err="sudo: /etc/sudoers.d/99-nova-installer-user is world writable\n")
    assert "(sudo ignores /etc/sudoers.d/99-nova-installer-user is world writable)" in ignored.message
    missing = judge(inv, "os-sudo-nopasswd", {k: v for k, v in good_facts().items() if k != "extra"})
    assert missing.outcome == FAILED and missing.message == "sudo -n -l was not run"


def test_docs_literal_modes_pass(inv: Inventory) -> None:
    """What the docs' own commands leave under umask 022 is what sudo and sshd accept: it passes."""
    path = "/etc/sudoers.d/99-nova-installer-user"
    facts = _with("stat", {path: {"mode": "0644", "owner": "root", "uid": 0, "gid": 0, "type": "file"},
                           "/home/nova-installer": {"mode": "0755", "owner": "nova-installer", "type": "dir"}})
    facts["account"]["ssh_dir"] = {"mode": "0755", "owner": "nova-installer", "type": "dir"}
    for req_id in ("os-sudoers-file", "os-ssh-dir"):
        assert judge(inv, req_id, facts).outcome == PASSED, req_id
    # authorized_keys keeps the exact mode the docs state.
    facts["account"]["authorized_keys"] = {"mode": "0644", "owner": "nova-installer", "type": "file"}
    assert judge(inv, "os-authorized-keys-mode", facts).outcome == FAILED


def test_writable_home_fails_ssh_dir(inv: Inventory) -> None:
    facts = good_facts()
    facts["stat"]["/home/nova-installer"] = {"mode": "0777", "owner": "nova-installer", "type": "dir"}
    bad = judge(inv, "os-ssh-dir", facts)
    assert bad.outcome == FAILED
    assert bad.message.startswith("home /home/nova-installer has mode 0777, owner nova-installer: writable by group "
                                  "and others; sshd (StrictModes)")
    assert bad.fix == "chown nova-installer: /home/nova-installer && chmod go-w /home/nova-installer"


def test_no_fix_chmods_a_directory_to_600() -> None:
    for req in load_catalog().requirements:
        assert "chmod 600 ~<user>/.ssh " not in req.fix + " ", req.id
        assert "chmod 700" not in req.fix or ".ssh" not in req.fix or req.id == "os-ssh-dir", req.id


def test_private_key_mode_on_nova_ctl(inv: Inventory) -> None:
    ok = judge(inv, "os-private-key", _with("stat", {"/root/.ssh/id_nova": {"mode": "0400", "owner": "root",
                                                                            "type": "file"}}), host="nova-ctl")
    assert ok.outcome == PASSED
    bad = judge(inv, "os-private-key", _with("stat", {"/root/.ssh/id_nova": {"mode": "0644", "owner": "root",
                                                                             "type": "file"}}), host="nova-ctl")
    assert bad.outcome == FAILED and bad.fix == "chmod 600 /root/.ssh/id_nova"
    group = judge(inv, "os-private-key", _with("stat", {"/root/.ssh/id_nova": {"mode": "0640", "owner": "root",
                                                                               "type": "file"}}), host="nova-ctl")
    assert group.outcome == FAILED and "group or others can access" in group.message


def test_closed_mode_resolver_and_universe_ca() -> None:
    closed = load_inventory(CLOSED)
    ok = judge(closed, "os-resolver-internal", _with("resolver", {"resolv_conf": ["10.10.0.53"]}))
    assert ok.outcome == PASSED
    public = judge(closed, "os-resolver-internal", _with("resolver", {"resolv_conf": ["10.10.0.53", "8.8.8.8"]}))
    assert public.outcome == FAILED and "8.8.8.8, a public resolver" in public.message
    behind = judge(closed, "os-resolver-internal",
                   _with("resolver", {"resolv_conf": ["127.0.0.53"], "upstream": ["10.9.9.9"]}))
    assert behind.outcome == FAILED and "systemd-resolved upstream uses 10.9.9.9" in behind.message
    hub = "hub.universe.mycompany.local:443"
    trusted = judge(closed, "os-universe-ca", _with("endpoints", {hub: {"status": "ok", "issuer": "U"}}))
    assert trusted.outcome == PASSED
    untrusted = judge(closed, "os-universe-ca", _with("endpoints", {hub: {"status": "untrusted", "error": "x"}}))
    assert untrusted.outcome == FAILED and untrusted.message.startswith("TLS not trusted")
    named = _with("endpoints", {hub: {"status": "untrusted", "error": "x", "handshake": True, "cert": _rogue_cert()}})
    named["os_release"] = {"id": "debian"}
    got = judge(closed, "os-universe-ca", named)
    assert "presents a chain issued by O=Rogue, CN=Rogue CA" in got.message and "update-ca-certificates" in got.fix
    # The endpoint check passes the same facts: reaching it is what docs 2.1 asks, and the two never contradict.
    assert endpoints.judge_endpoint(cast(Facts, named), "hub.universe.mycompany.local", 443).outcome == PASSED
    broken = _with("endpoints", {hub: {"status": "untrusted", "error": "x", "handshake": False}})
    assert judge(closed, "os-universe-ca", broken).outcome == SKIPPED
    assert endpoints.judge_endpoint(cast(Facts, broken), "hub.universe.mycompany.local", 443).outcome == FAILED
    down = judge(closed, "os-universe-ca", _with("endpoints", {hub: {"status": "refused", "error": "x"}}))
    assert down.outcome == SKIPPED and "refused" in down.message


def test_uniqueness_compares_with_reachable_peers(inv: Inventory) -> None:
    twin = {"hostname": "master-1", "read": {"/sys/class/dmi/id/product_uuid": {"text": "aaaa-1"}}}
    other = {"hostname": "master-2", "read": {"/sys/class/dmi/id/product_uuid": {"text": "bbbb-2"}}}
    peers = {"master-2": other, "master-3": twin, "worker-1": HostError("worker-1", "ssh: refused")}
    host = judge(inv, "k8s-hostname-unique", good_facts(), peers=peers)
    assert host.outcome == FAILED and host.message.startswith("hostname master-1 is also the hostname of master-3")
    assert "not compared: worker-1" in host.message
    uuid = judge(inv, "k8s-product-uuid-unique", good_facts(), peers=peers)
    assert uuid.outcome == FAILED and "aaaa-1 is also the product_uuid of master-3" in uuid.message
    alone = judge(inv, "k8s-hostname-unique", good_facts(), peers={"master-2": other})
    assert alone.outcome == PASSED
    no_dmi = _with("read", {"/sys/class/dmi/id/product_uuid": {"error": "No such file", "errno": 2}})
    assert judge(inv, "k8s-product-uuid-unique", no_dmi).outcome == SKIPPED


def test_names_on_node(inv: Inventory) -> None:
    facts = good_facts()
    facts["names"]["bad.nova.mycompany.local"] = {"status": "ok", "addresses": ["10.10.1.41"]}
    facts["names"]["gone.nova.mycompany.local"] = {"status": "unresolved", "error": "Name or service not known"}
    ok = dnscheck.judge_name(cast(Facts, facts), "nova-console.nova.mycompany.local", ["10.10.1.21"])
    assert ok.outcome == PASSED
    wrong = dnscheck.judge_name(cast(Facts, facts), "bad.nova.mycompany.local", ["10.10.1.21", "10.10.1.101"])
    assert wrong.outcome == FAILED and "10.10.1.41, not an allowed address" in wrong.message
    gone = dnscheck.judge_name(cast(Facts, facts), "gone.nova.mycompany.local", ["10.10.1.21"])
    assert gone.message.startswith("name not resolved: gone.nova.mycompany.local")


@pytest.mark.parametrize(("status", "cause", "fix"), [
    ("unresolved", "name not resolved", "add an A record for hub.nova-platform.io"),
    ("refused", "refused", "allow outbound HTTPS"),
    ("filtered", "filtered (timed out)", "allow outbound HTTPS"),
    ("untrusted", "TLS handshake failed", "allow outbound HTTPS"),  # not even an unverified handshake
    ("proxy-refused", "refused by the proxy", "allow CONNECT to hub.nova-platform.io:443 on the proxy"),
])
def test_endpoint_failure_names_its_cause(inv: Inventory, status: str, cause: str, fix: str) -> None:
    facts = _with("endpoints", {"hub.nova-platform.io:443": {"status": status, "error": "detail",
                                                             "handshake": False}})
    got = endpoints.judge_endpoint(cast(Facts, facts), "hub.nova-platform.io", 443)
    assert got.outcome == FAILED and got.message.startswith(f"{cause}: hub.nova-platform.io:443")
    req = load_catalog().get("ext-image-registry-hub")
    assert fix in endpoints.endpoint_fix(got.message, "hub.nova-platform.io", 443, ctx(inv), req.fix)


def test_probe_params_cover_the_hosts_checks(inv: Inventory) -> None:
    plan = build(load_catalog(), inv)
    mine = [c for c in plan.checks if c.host == "worker-2"]
    params: dict[str, Any] = r.needs_of(mine, r.Context(inv, "worker-2", "admin"))
    assert "/etc/sudoers.d/99-admin-user" in params["stat"]
    assert "/etc/sudoers.d/99-admin-user" in params["read"]
    assert params["facts"] == ["sudo_rights"]  # sudo -n -l, a registered fact of the same run
    assert ["hub.nova-platform.io", 443] in params["endpoints"]
    assert ["sun.nova-platform.io", 8140] in params["endpoints"]
    assert "nova-console.nova.mycompany.local" in params["names"]
    assert {"net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"} <= set(params["sysctls"])


class _Hosts:
    """A stand-in for Hosts whose every host fails to log in."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.access = type("A", (), {"connect_timeout": 5.0})()

    def __getitem__(self, name: str) -> Any:
        raise HostError(name, "ssh: connection timed out after 5 s (is 10.10.1.12:22 reachable?)", Reason.TIMEOUT)


def test_unreachable_host_fails_each_check_with_the_cause(inv: Inventory, tmp_path: Path) -> None:
    plan = build(load_catalog(), inv)
    mine = [c for c in plan.checks if c.host == "master-2"]
    nf = f.NodeFacts(_Hosts(inv), tmp_path, 2.0, 60.0, mine)  # type: ignore[arg-type]
    for check in mine:
        verdicts = nf.verdicts(check)
        assert verdicts and all(v.outcome == ERROR for v in verdicts)
        assert verdicts[0].message == "master-2: ssh: connection timed out after 5 s (is 10.10.1.12:22 reachable?)"
        assert "reachable over SSH" in verdicts[0].fix
    assert json.loads((tmp_path / "facts-master-2.json").read_text())["error"][0] == "master-2"


# ---- the probe script, run here with this machine's python3


def run_probe(params: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    script = source(f.PROBE)
    boot = "import sys;exec(compile(sys.stdin.buffer.read(int(sys.argv[1])),sys.argv[2],'exec'))"
    proc = subprocess.run([sys.executable, "-c", boot, str(len(script)), "nova-node_facts"],
                          input=script + json.dumps(params).encode() + b"\n", capture_output=True, timeout=30,
                          env={**os.environ, **(env or {})}, check=True)
    out: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return out


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    folder = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca(folder, "ca", "Probe Test CA")
    leaf = pki.make_cert(folder, "leaf", ca, ["localhost", LOCAL])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    srv = socket.create_server((LOCAL, 0))
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], ca.cert
    stop.set()
    t.join()
    srv.close()


def _proxy_403() -> tuple[socket.socket, int]:
    srv = socket.create_server((LOCAL, 0))

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_probe_endpoint_causes(tls: tuple[int, Path]) -> None:
    port, ca = tls
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        closed = s.getsockname()[1]
    params = {"user": "root", "timeout": 2, "endpoints": [["localhost", port], [LOCAL, closed],
                                                          ["name.invalid", 443]]}
    untrusted = run_probe(params)["endpoints"]
    assert untrusted[f"localhost:{port}"]["status"] == "untrusted"
    assert untrusted[f"{LOCAL}:{closed}"]["status"] == "refused"
    assert untrusted["name.invalid:443"]["status"] == "unresolved"
    trusted = run_probe(params, env={"SSL_CERT_FILE": str(ca)})["endpoints"]
    assert trusted[f"localhost:{port}"]["status"] == "ok"
    assert trusted[f"localhost:{port}"]["issuer"] == "Probe Test CA"


def test_probe_loads_the_trust_store_once_and_shares_it_between_endpoint_threads(tls: tuple[int, Path]) -> None:
    from _pytest_nova.probes import node_facts

    port, ca = tls
    params = {"user": "root", "timeout": 2, "endpoints": [["localhost", port], [LOCAL, port]]}
    trusted = run_probe(params, env={"SSL_CERT_FILE": str(ca)})["endpoints"]
    assert [trusted[f"{name}:{port}"]["status"] for name in ("localhost", LOCAL)] == ["ok", "ok"]
    untrusted = run_probe(params)["endpoints"]
    for name in ("localhost", LOCAL):
        assert untrusted[f"{name}:{port}"]["status"] == "untrusted" and untrusted[f"{name}:{port}"]["cert"]
    for store in ("dir", "all"):
        assert node_facts.tls_context(store) is node_facts.tls_context(store)
        assert node_facts.tls_context(store).verify_mode == ssl.CERT_REQUIRED
    assert node_facts.tls_context("none").verify_mode == ssl.CERT_NONE


_ONE_ENDPOINT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from _pytest_nova.probes import node_facts as nf
got = nf.endpoint("localhost", int(sys.argv[2]), None, [], 2.0)
print(json.dumps([got["status"], sorted(nf._CONTEXTS), nf.tls_context("dir").cert_store_stats()["x509_ca"]]))
"""


def test_probe_verifies_against_the_hashed_directory_without_parsing_the_bundle(tls: tuple[int, Path],
                                                                                tmp_path: Path) -> None:
    port, ca = tls
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca)], capture_output=True, text=True,
                            check=True).stdout.strip()
    (tmp_path / f"{digest}.0").symlink_to(ca)
    bundle = ssl.get_default_verify_paths().openssl_cafile  # the system's: well over one CA
    env = {**os.environ, "SSL_CERT_DIR": str(tmp_path), "SSL_CERT_FILE": bundle}
    out = subprocess.run([sys.executable, "-c", _ONE_ENDPOINT, str(Path(__file__).resolve().parents[1]), str(port)],
                         capture_output=True, text=True, env=env, timeout=30, check=True)
    status, contexts, loaded = json.loads(out.stdout)
    # Verified by the directory alone, which read the one CA the chain names; the bundle was never parsed.
    assert (status, contexts, loaded) == ("ok", ["dir"], 1)


def test_probe_goes_through_the_proxy() -> None:
    srv, port = _proxy_403()
    try:
        got = run_probe({"user": "root", "timeout": 2, "endpoints": [["hub.nova-platform.io", 443]],
                         "proxy": {"host": LOCAL, "port": port}, "no_proxy": [".mycompany.local"]})
    finally:
        srv.close()
    ep = got["endpoints"]["hub.nova-platform.io:443"]
    assert ep["status"] == "proxy-refused" and "403" in ep["error"]


def test_probe_reads_account_and_kernel_facts_without_changing_anything(tmp_path: Path) -> None:
    user = os.environ.get("USER") or "root"
    got = run_probe({"user": user, "timeout": 1, "sysctls": ["net.ipv4.ip_forward", "no.such.key"],
                     "stat": [str(tmp_path / "missing")], "dirs": [str(tmp_path)], "names": ["localhost"]})
    assert got["account"]["exists"] is True and got["account"]["shell"]
    assert got["sysctl"]["net.ipv4.ip_forward"] in ("0", "1") and got["sysctl"]["no.such.key"] is None
    assert got["stat"][str(tmp_path / "missing")]["errno"] == 2
    assert got["names"]["localhost"]["status"] == "ok"
    assert got["hostname"] == socket.gethostname()
    assert list(tmp_path.iterdir()) == []


# ---- DNS queries straight to a server


@pytest.fixture
def dns_server() -> Iterator[int]:
    """A UDP DNS server on loopback: one record, NXDOMAIN for the rest, silence for 'slow.'."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCAL, 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            q = dns.message.from_wire(data)
            name = q.question[0].name.to_text()
            if name.startswith("slow."):
                continue
            r = dns.message.make_response(q)
            if name == "nova-console.nova.mycompany.local.":
                r.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "10.10.1.21", "10.10.1.41"))
            else:
                r.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(r.to_wire(), peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join()
    sock.close()


def test_dns_answers_are_told_apart(dns_server: int) -> None:
    ok = dnscheck.query_a("nova-console.nova.mycompany.local", LOCAL, 1.0, port=dns_server)
    assert ok == dnscheck.Answer("ok", ("10.10.1.21", "10.10.1.41"))
    assert dnscheck.query_a("nova-oauth.nova.mycompany.local", LOCAL, 1.0, port=dns_server).status == "nxdomain"
    assert dnscheck.query_a("slow.nova.mycompany.local", LOCAL, 0.3, port=dns_server).status == "timeout"
    judged = dnscheck.judge_record(ok, "nova-console.nova.mycompany.local", LOCAL, ["10.10.1.21", "10.10.1.101"])
    assert judged.outcome == FAILED and "10.10.1.41 is not an allowed address" in judged.message
    assert dnscheck.judge_record(ok, "x", LOCAL, ["10.10.1.21", "10.10.1.41"]).outcome == PASSED
    nx = dnscheck.judge_record(dnscheck.Answer("nxdomain"), "nova-oauth.x", "10.10.0.53", ["10.10.1.21"])
    assert "NXDOMAIN" in nx.message and nx.fix == "add an A record nova-oauth.x -> 10.10.1.21 on 10.10.0.53"


def test_dns_record_verdict(tmp_path: Path, dns_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = load_inventory(PROD)
    check = build(load_catalog(), inv).of_type(DnsRecordCheck)[0]
    real = dnscheck.query_a
    monkeypatch.setattr(dnscheck, "query_a", lambda n, s, t, port=53: real(n, LOCAL, t, port=dns_server))
    names = dnscheck.NameChecks(tmp_path, 1.0, [check])
    [v] = names.verdicts(check)
    assert (v.check, v.source, v.target) == ("dns", check.server, check.name)
    assert v.outcome == FAILED and "NXDOMAIN" in v.message


def test_fix_texts_name_the_node_for_kubectl_and_its_address_for_ssh(inv: Inventory) -> None:
    cni = load_catalog().get("k8s-cni-configured")
    address = inv.host("master-1").address
    assert "spec.nodeName=master-1)" in ctx(inv).fill(cni.fix)
    assert f"nova-installer@{address}" in ctx(inv).fill("ssh-copy-id -i <ssh.identityFile>.pub <user>@<node>")


def test_node_fixes_have_no_placeholder_left(inv: Inventory) -> None:
    """Every node requirement's fix, filled for a real host, names real values only."""
    import re

    closed = load_inventory(CLOSED)
    for req in load_catalog().requirements:
        if req.area in ("os", "k8s", "external") and req.scope in ("nodes", "nova-ctl", "hosts"):
            for i in (inv, closed):
                if req.params.get("mode") in ("internet", "closed") and req.params["mode"] != i.mode:
                    continue
                filled = ctx(i).fill(req.fix)
                assert not re.search(r"<[a-zA-Z. ]+>", filled), (req.id, filled)


def test_vendor_addresses_against_the_documented_list(inv: Inventory) -> None:
    documented = r.documented_ips()
    assert set(documented) == {"hub.nova-platform.io", "storage.cloud.croc.ru", "access.nova-platform.io",
                               "code.nova-platform.io", "sun.nova-platform.io"}
    names = {n: {"status": "ok", "addresses": ["217.73.57.4"]} for n in documented}
    ok = judge(inv, "ext-documented-ips", _with("names", names))
    assert ok.outcome == PASSED
    names["hub.nova-platform.io"] = {"status": "ok", "addresses": ["217.73.57.4", "203.0.113.9"]}
    off = judge(inv, "ext-documented-ips", _with("names", names))
    assert off.outcome == FAILED
    assert "hub.nova-platform.io -> 203.0.113.9 (docs: 217.73.63.211/32" in off.message
    assert "a firewall allow-list built from the docs' IP column would block these addresses" in off.message
    none = judge(inv, "ext-documented-ips", _with("names", {}))
    assert none.outcome == SKIPPED
    assert load_catalog().get("ext-documented-ips").severity == "advisory"


def _rogue_cert() -> str:
    """A DER certificate issued by "O=Rogue, CN=Rogue CA", base64, made with openssl."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", f"{d}/k", "-out", f"{d}/c", "-subj", "/O=Rogue/CN=Rogue CA", "-days", "1",
                        "-outform", "DER"], check=True, capture_output=True, timeout=30)
        with open(f"{d}/c", "rb") as fh:
            return base64.b64encode(fh.read()).decode()


def test_reaching_an_endpoint_and_trusting_its_chain_are_two_results(inv: Inventory) -> None:
    cert = _rogue_cert()
    untrusted = {"status": "untrusted", "error": "unable to get local issuer certificate", "handshake": True,
                 "tls": "TLSv1.3", "cert": cert, "address": "10.0.0.9"}
    facts = _with("endpoints", {"hub.nova-platform.io:443": untrusted})
    reached = endpoints.judge_endpoint(cast(Facts, facts), "hub.nova-platform.io", 443, "ext-tls-trusted")
    assert reached.outcome == PASSED
    assert reached.message == ("TCP and TLS handshake to hub.nova-platform.io:443 at 10.0.0.9 (TLSv1.3); the chain, "
                               "issued by O=Rogue, CN=Rogue CA, does not verify with the node's trust store; "
                               "ext-tls-trusted (advisory) names the CA to install")
    trust = judge(inv, "ext-tls-trusted", facts)
    assert trust.outcome == FAILED and trust.message == (
        "the node's trust store does not verify the chain of hub.nova-platform.io:443 (issued by O=Rogue, CN=Rogue CA) "
        "through the "
        "proxy (if the issuer is the proxy's own CA, it intercepts TLS)")  # this inventory sets network.httpProxy
    assert load_catalog().get("ext-tls-trusted").severity == "advisory"
    assert judge(inv, "ext-tls-trusted", good_facts()).outcome == PASSED
    nothing = _with("endpoints", {})
    assert judge(inv, "ext-tls-trusted", nothing).outcome == SKIPPED
