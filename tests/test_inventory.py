"""The inventory format v1: valid files load, broken ones end the run with one line naming file, line and key."""

from __future__ import annotations

import fnmatch
import textwrap
from pathlib import Path

import pytest

from _pytest_nova.catalog import load_catalog
from _pytest_nova.errors import SourceError
from _pytest_nova.inventory import load_inventory
from _pytest_nova.kinds import build

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
cluster:
  name: prod
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
  - {name: infra-1, address: 10.10.1.21, roles: [infra]}
  - {name: worker-1, address: 10.10.1.41, roles: [worker]}
"""

CLOSED_HEAD = GOOD.replace("mode: internet", "mode: closed")
UNIVERSE = "universe:\n  dnsBaseDomain: universe.example.local\n  address: 10.20.0.10\n"


def _broken(old: str, new: str, base: str = GOOD) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


# (file text, the one line the user must see)
BROKEN = {
    "unknown-role": (_broken("roles: [master]", "roles: [mastr]"),
                     "inv.yaml:12: nodes[1].roles: unknown role 'mastr' (expected one of: nova-ctl, master, infra, "
                     "ingress, worker)"),
    "missing-domain": (_broken("  dnsBaseDomain: nova.example.local\n", ""),
                       "inv.yaml:1: cluster: missing required key 'dnsBaseDomain'"),
    "unknown-top-key": (GOOD + "nodez: []\n", "inv.yaml:15: nodez: unknown key (expected one of: *"),
    "duplicate-name": (_broken("name: infra-1", "name: master-1"),
                       "inv.yaml:13: nodes[2].name: duplicate name 'master-1' (also at nodes[1], line 12)"),
    "duplicate-address": (_broken("10.10.1.21", "10.10.1.11"),
                          "inv.yaml:13: nodes[2].address: duplicate address 10.10.1.11 (also at nodes[1], line 12)"),
    "universe-same-domain": (CLOSED_HEAD + UNIVERSE.replace("universe.example.local", "nova.example.local"),
                             "inv.yaml:16: universe.dnsBaseDomain: 'nova.example.local' equals cluster.dnsBaseDomain;"
                             " Universe needs its own domain (docs 2.4)"),
    "universe-ipv6": (CLOSED_HEAD + UNIVERSE.replace("10.20.0.10", "fd00::10"),
                      "inv.yaml:17: universe.address: 'fd00::10' is IPv6; Nova Universe supports IPv4 only (docs 2.1); "
                      "write its IPv4 address"),
    "closed-public-dns": (_broken("[10.10.0.53]", "[10.10.0.53, 8.8.8.8]", CLOSED_HEAD) + UNIVERSE,
                          "inv.yaml:6: network.dnsServers[1]: 8.8.8.8 is a public resolver; closed mode needs an "
                          "internal DNS server (docs 2.1)"),
    "closed-without-universe": (CLOSED_HEAD,
                                "inv.yaml:5: network.mode: closed mode needs a 'universe' section (docs 2.1)"),
    "bad-port": (_broken("  identityFile: ~/.ssh/id_nova\n", "  identityFile: ~/.ssh/id_nova\n  port: 70000\n"),
                 "inv.yaml:10: ssh.port: expected a port number 1-65535, got 70000"),
    "bad-yaml": (_broken("roles: [master]}", "roles: [master}"), "inv.yaml:12: invalid YAML: *"),
    "bad-address": (_broken("10.10.1.41", "10.10.1.400"),
                    "inv.yaml:14: nodes[3].address: '10.10.1.400' is not an IP address; write the host's IPv4 address"),
    "unknown-mode": (_broken("mode: internet", "mode: offline"),
                     "inv.yaml:5: network.mode: unknown network mode 'offline' (expected one of: internet, closed)"),
    "bad-host-key-policy": (_broken("  user: nova-installer\n", "  user: nova-installer\n  hostKeyPolicy: no\n"),
                            "inv.yaml:9: ssh.hostKeyPolicy: unknown host key policy False (expected one of: "
                            "strict, accept-new)"),
    "node-without-roles": (_broken("roles: [worker]", "roles: []"),
                           "inv.yaml:14: nodes[3].roles: a node needs at least one role *"),
    "two-nova-ctl": (_broken("roles: [worker]", "roles: [nova-ctl]"),
                     "inv.yaml:14: nodes[3].roles: only one node may have the nova-ctl role"),
    "no-master": (_broken("roles: [master]", "roles: [worker]"),
                  "inv.yaml:10: nodes: no node has the master role; a cluster needs at least one master"),
    "unknown-node-key": (_broken("roles: [infra]}", "roles: [infra], sudo: true}"),
                         "inv.yaml:13: nodes[2].sudo: unknown key (expected one of: *"),
    "unknown-module": (_broken("  name: prod\n", "  name: prod\n  modules: [opensearch, istio]\n"),
                       "inv.yaml:3: cluster.modules[1]: unknown module 'istio' "
                       "(expected one of: opensearch, neuvector)"),
    "unknown-dns-mode": (_broken("  dnsServers: [10.10.0.53]\n", "  dnsServers: [10.10.0.53]\n  dnsMode: inside\n"),
                         "inv.yaml:7: network.dnsMode: unknown DNS mode 'inside' (expected one of: external, "
                         "internal, hybrid)"),
    "bad-proxy": (_broken("  dnsServers: [10.10.0.53]\n", "  dnsServers: [10.10.0.53]\n  httpProxy: proxy:3128\n"),
                  "inv.yaml:7: network.httpProxy: 'proxy:3128' is not a proxy URL; write http://host:port"),
    "duplicate-key": (_broken("  name: prod\n", "  name: prod\n  name: test\n"),
                      "inv.yaml:3: cluster.name: duplicate key; keep only one of them"),
    "empty": ("# nothing yet\n", "inv.yaml:1: the inventory is empty"),
    "bad-ssh-option": (_broken("  user: nova-installer\n", "  user: nova-installer\n  options: [ProxyJump]\n"),
                       "inv.yaml:9: ssh.options[0]: 'ProxyJump' is not an OpenSSH option; write Key=Value, e.g. "
                       "ProxyJump=ops@10.10.0.2"),
    "unknown-connection": (_broken("connection: local", "connection: telnet"),
                           "inv.yaml:11: nodes[0].connection: unknown connection 'telnet' (expected ssh, paramiko, "
                           "local or a testinfra host URL)"),
}


@pytest.mark.parametrize("text,expected", list(BROKEN.values()), ids=list(BROKEN))
def test_broken_inventory_gives_one_clear_line(pytester: pytest.Pytester, text: str, expected: str) -> None:
    pytester.makefile(".yaml", inv=text)
    result = pytester.runpytest("--nova-inventory=inv.yaml", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # Brackets in key paths are literal; only '*' is a wildcard here.
    result.stderr.fnmatch_lines([f"ERROR: {expected}".replace("[", "[[]")])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_missing_inventory_file_is_named(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--nova-inventory=absent.yaml", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: absent.yaml: cannot read file: No such file or directory"])


def test_good_inventory_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(GOOD)
    inv = load_inventory(path)
    assert [n.name for n in inv.cluster_nodes] == ["master-1", "infra-1", "worker-1"]
    assert inv.nova_ctl is not None and inv.nova_ctl.connection == "local"
    assert inv.ssh.port == 22 and inv.ssh.host_key_policy == "strict"
    assert inv.with_role("ingress") == inv.with_role("worker"), "ingress rules fall back to workers (docs 3.1.4)"
    assert not inv.has_ingress_nodes
    assert len(inv.sha256) == 64


@pytest.mark.parametrize("name", ["example-prod.yaml", "example-closed.yaml"])
def test_shipped_examples_are_valid(name: str) -> None:
    inv = load_inventory(REPO / "inventories" / name)
    assert inv.cluster_nodes
    if inv.mode == "closed":
        assert inv.universe is not None and inv.universe.dns_base_domain != inv.dns_base_domain


def test_per_node_overrides_are_kept() -> None:
    inv = load_inventory(REPO / "inventories" / "example-prod.yaml")
    worker = inv.host("worker-2")
    assert (worker.user, worker.port) == ("admin", 2222)
    assert inv.host("worker-1").user is None


@pytest.mark.parametrize(("servers", "dns_mode", "expected"), [
    ("[10.10.0.53]", None, "external"),  # not given: derived from dnsServers, as before the key existed
    ("[10.10.1.21]", None, "internal"),  # an infra node among the DNS servers
    ("[10.10.0.53]", "hybrid", "hybrid"),  # given: taken as is
    ("[10.10.1.21]", "external", "external"),
])
def test_dns_mode_decides_the_53_checks(tmp_path: Path, servers: str, dns_mode: str | None, expected: str) -> None:
    text = _broken("[10.10.0.53]", servers + (f"\n  dnsMode: {dns_mode}" if dns_mode else ""))
    path = tmp_path / "inv.yaml"
    path.write_text(text + "loadBalancers:\n  infra: {address: 10.10.1.101}\n")
    inv = load_inventory(path)
    assert inv.dns_mode == expected
    ids = {c.id for c in build(load_catalog(), inv).checks if c.kind == "balancer_check" and c.port == 53}
    if expected == "external":
        assert ids == set()
    else:
        assert ids == {f"infra:53/{p}:{t}" for p in ("udp", "tcp") for t in ("infra", "infra-1")}


def test_error_object_carries_location(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(textwrap.dedent(BROKEN["unknown-role"][0]))
    with pytest.raises(SourceError) as info:
        load_inventory(path)
    assert (info.value.line, info.value.key) == (12, "nodes[1].roles")


def test_ssh_options_load_per_inventory_and_per_node(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(_broken("  user: nova-installer\n", "  user: nova-installer\n  options: [Compression=yes]\n")
                    .replace("roles: [worker]}", "roles: [worker], sshOptions: ['ProxyCommand ssh -W %h:%p j']}"))
    inv = load_inventory(path)
    assert inv.ssh.options == ("Compression=yes",)
    assert inv.host("worker-1").ssh_options == ("ProxyCommand ssh -W %h:%p j",)
    assert inv.host("master-1").ssh_options == () and load_inventory(REPO / "inventories" / "example-prod.yaml"
                                                                     ).ssh.options == ()


@pytest.mark.parametrize(("options", "expected"), [
    ("[ProxyJump]", "ssh.options[0]: 'ProxyJump' is not an OpenSSH option; write Key=Value, e.g. "
                     "ProxyJump=ops@10.10.0.2"),
    ("['=x']", "ssh.options[0]: '=x' is not an OpenSSH option; write Key=Value*"),
    ("[Compression=yes, StrictHostKeyChecking=no]",
     "ssh.options[1]: StrictHostKeyChecking cannot be given here: use ssh.hostKeyPolicy"),
    ("[user=root]", "ssh.options[0]: user cannot be given here: use the user key"),
    ("[ControlPath=/tmp/x]", "ssh.options[0]: ControlPath cannot be given here: pytest-nova sets it itself"),
    ("[\"ProxyCommand=a\\nb\"]", "ssh.options[0]: 'ProxyCommand=a\\nb' is not an OpenSSH option*"),
    ("ProxyJump=x", "ssh.options: expected a list, got 'ProxyJump=x'"),
    ("['']", "ssh.options[0]: expected a non-empty string, got ''"),
])
def test_bad_ssh_options_name_file_line_and_key(tmp_path: Path, options: str, expected: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(_broken("  user: nova-installer\n", f"  user: nova-installer\n  options: {options}\n"))
    with pytest.raises(SourceError) as info:
        load_inventory(path)
    assert fnmatch.fnmatchcase(str(info.value), f"{path}:9: {expected}".replace("[", "[[]")), str(info.value)


def test_node_ssh_options_need_an_ssh_connection(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(_broken("connection: local}", "connection: local, sshOptions: [ProxyJump=j]}"))
    with pytest.raises(SourceError, match=r"inv.yaml:11: nodes\[0\].sshOptions: OpenSSH options apply to ssh "
                                          r"connections only; this host's connection is local"):
        load_inventory(path)
