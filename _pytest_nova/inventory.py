"""The inventory (format v1): the user's description of the cluster, validated into typed objects."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import cast
from urllib.parse import unquote, urlsplit

from _pytest_nova import secrets
from _pytest_nova.errors import quote
from _pytest_nova.yamlsource import Document, KeyPath, format_path, load

ROLES = ("nova-ctl", "master", "infra", "ingress", "worker")
MODES = ("internet", "closed")
# Where the cluster names are served (docs 3.2: 53 on the infra balancer "in internal or hybrid DNS mode").
DNS_MODES = ("external", "internal", "hybrid")
MODULES = ("opensearch", "neuvector")
BALANCERS = ("api", "infra", "ingress")
HOST_KEY_POLICIES = ("strict", "accept-new")
CONNECTIONS = ("ssh", "paramiko", "local")

# Nova Universe: "does not support IPv6" (docs 2.1). Nodes: the firewall rules every node must pass include
# IP-in-IP (protocol 4) between all nodes (docs 3.1), and IP-in-IP carries IPv4; the docs give no IPv6 setup.
_V4_UNIVERSE = "Nova Universe supports IPv4 only (docs 2.1); write its IPv4 address"
_V4_NODES = (
    "nodes, balancers and workstations need IPv4 addresses: the nodes talk IP-in-IP (protocol 4, docs 3.1), "
    "which carries IPv4 only; write the host's IPv4 address"
)
_NOT_A_HOST: tuple[tuple[Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool], str], ...] = (
    (lambda ip: ip.is_unspecified, "the unspecified address"),
    (lambda ip: ip.is_loopback, "a loopback address"),
    (lambda ip: ip == ipaddress.IPv4Address("255.255.255.255"), "the broadcast address"),
    (lambda ip: ip.is_multicast, "a multicast address"),
)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Matched whole (fullmatch): "$" would also accept a trailing line break.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DOMAIN = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{1,63}")
# Hosts (nodes and workstations) one run supports: the plan's port rules grow with their square; measured in
# docs/scaling.md (the collection of the largest stays under 60 s and 2 GB).
MAX_HOSTS = 4000
_TOP_KEYS = ("cluster", "network", "universe", "ssh", "loadBalancers", "nodes", "workstations", "kubeconfig")


@dataclass(frozen=True)
class Host:
    """A machine the checks connect to or probe from: a node or a workstation."""

    name: str
    address: str
    roles: tuple[str, ...] = ()
    connection: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    ssh_options: tuple[str, ...] = ()  # OpenSSH "Key=Value" options after ssh.options (sshOptions)

    def has(self, role: str) -> bool:
        """Whether the host carries ``role``."""
        return role in self.roles


@dataclass(frozen=True)
class Universe:
    """The Nova Universe server used in closed mode."""

    dns_base_domain: str
    address: str
    ca_file: str | None


@dataclass(frozen=True)
class Ssh:
    """How nova-ctl (and these checks) log in to the nodes."""

    user: str
    identity_file: str
    port: int
    known_hosts_file: str | None
    host_key_policy: str
    options: tuple[str, ...] = ()  # OpenSSH "Key=Value" options for every ssh login (a jump host...)


@dataclass(frozen=True)
class Inventory:
    """A validated inventory."""

    path: Path
    sha256: str
    name: str
    dns_base_domain: str
    modules: tuple[str, ...]
    mode: str
    dns_servers: tuple[str, ...]
    dns_mode: str  # DNS_MODES; given as network.dnsMode, else derived from dnsServers
    http_proxy: str | None
    no_proxy: tuple[str, ...]
    universe: Universe | None
    ssh: Ssh
    balancers: dict[str, str]
    nodes: tuple[Host, ...]
    workstations: tuple[Host, ...]
    kubeconfig: str | None

    def with_role(self, role: str) -> tuple[Host, ...]:
        """Nodes carrying ``role``; ingress falls back to workers when no node has it (docs 3.1.4)."""
        found = self._by_role.get(role, ())
        if not found and role == "ingress":
            return self.with_role("worker")
        return found

    @cached_property
    def _by_role(self) -> dict[str, tuple[Host, ...]]:
        # Built once: the plan asks for roles per rule, and a scan per call made it quadratic in the nodes.
        index: dict[str, list[Host]] = {}
        for n in self.nodes:
            for role in dict.fromkeys(n.roles):
                index.setdefault(role, []).append(n)
        return {role: tuple(hosts) for role, hosts in index.items()}

    @cached_property
    def cluster_nodes(self) -> tuple[Host, ...]:
        """The Kubernetes nodes: every node except a pure nova-ctl host."""
        return tuple(n for n in self.nodes if set(n.roles) - {"nova-ctl"})

    @property
    def nova_ctl(self) -> Host | None:
        """The management host, if the inventory names one."""
        return next((n for n in self.nodes if n.has("nova-ctl")), None)

    @property
    def has_ingress_nodes(self) -> bool:
        """Whether dedicated ingress nodes exist (else workers take their rules)."""
        return any(n.has("ingress") for n in self.nodes)

    def host(self, name: str) -> Host:
        """The node or workstation called ``name``."""
        for h in (*self.nodes, *self.workstations):
            if h.name == name:
                return h
        raise KeyError(name)

    def resolve_file(self, value: str) -> Path:
        """A path from the inventory: ``~`` expanded, relative paths taken from the inventory's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path.parent / p)


class _Reader:
    """Walks a YAML document, checking types and keys, raising errors that name file, line and key."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def fail(self, path: KeyPath, message: str) -> Exception:
        return self.doc.error(path, message)

    def mapping(self, value: object, path: KeyPath, allowed: dict[str, bool]) -> dict[str, object]:
        """Check ``value`` is a mapping with only ``allowed`` keys (True = required)."""
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key (expected one of: {', '.join(allowed)})")
        for key, required in allowed.items():
            if required and key in value and value[key] is None:  # e.g. a TODO line left empty
                raise self.fail((*path, key), "no value given; fill it in")
            if required and value.get(key) is None:
                raise self.fail(path, f"missing required key '{key}'")
        return value

    def string(self, value: object, path: KeyPath, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {_kind(value)}")
        if pattern and not pattern.fullmatch(value):
            raise self.fail(path, f"{quote(value)} is not a valid {what}")
        return value

    def choice(self, value: object, path: KeyPath, options: tuple[str, ...], what: str) -> str:
        if value not in options:
            raise self.fail(path, f"unknown {what} {quote(value)} (expected one of: {', '.join(options)})")
        return str(value)

    def port(self, value: object, path: KeyPath) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise self.fail(path, f"expected a port number 1-65535, got {quote(value)}")
        return value

    def address(self, value: object, path: KeyPath, *, v4_only: bool = False, why_v4: str = _V4_UNIVERSE) -> str:
        text = self.string(value, path)
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise self.fail(path, f"{quote(text)} is not an IP address; write the host's IPv4 address") from None
        if v4_only and ip.version != 4:
            raise self.fail(path, f"{quote(text)} is IPv6; {why_v4}")
        for test, what in _NOT_A_HOST:
            if test(ip):
                raise self.fail(path, f"{ip} is {what}, not a host's address; write the address other hosts reach")
        return str(ip)

    def host_address(self, value: object, path: KeyPath) -> str:
        """A node's, workstation's or balancer's address: IPv4 (see :data:`_V4_NODES`)."""
        return self.address(value, path, v4_only=True, why_v4=_V4_NODES)

    def strings(self, value: object, path: KeyPath, check: Callable[[object, KeyPath], str]) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_kind(value)}")
        return tuple(check(item, (*path, i)) for i, item in enumerate(value))


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return quote(value)


_HOST_KEYS = {
    "name": True, "address": True, "connection": False, "user": False, "port": False, "identityFile": False,
    "sshOptions": False,
}
# OpenSSH options the inventory sets through keys of its own ("use ..."), or that pytest-nova sets itself (""):
# given in ssh.options they would be ignored, since ssh keeps an option's first value.
OWN_SSH_OPTIONS = {
    "user": "the user key", "port": "the port key", "identityfile": "the identityFile key",
    "hostname": "the node's address", "stricthostkeychecking": "ssh.hostKeyPolicy",
    "userknownhostsfile": "ssh.knownHostsFile", "connecttimeout": "--nova-connect-timeout", "batchmode": "",
    "controlmaster": "", "controlpath": "", "controlpersist": "", "passwordauthentication": "",
    "identitiesonly": "", "serveraliveinterval": "", "serveralivecountmax": "", "loglevel": "", "kexalgorithms": "",
}
_SSH_OPTION = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:=|\s+)(\S.*)$")


def _host(r: _Reader, raw: object, path: KeyPath, *, node: bool) -> Host:
    keys = {**_HOST_KEYS, "roles": True} if node else _HOST_KEYS
    m = r.mapping(raw, path, keys)
    roles: tuple[str, ...] = ()
    if node:
        roles = r.strings(m["roles"], (*path, "roles"), lambda v, p: cast(str, v))  # each checked just below
        if not roles:
            raise r.fail((*path, "roles"), "a node needs at least one role (" + ", ".join(ROLES) + ")")
        for role in roles:
            r.choice(role, (*path, "roles"), ROLES, "role")
    connection = m.get("connection")
    if connection is not None:
        connection = r.string(connection, (*path, "connection"))
        if connection not in CONNECTIONS and "://" not in connection:
            raise r.fail(
                (*path, "connection"),
                f"unknown connection {connection!r} (expected ssh, paramiko, local or a testinfra host URL)",
            )
    return Host(
        name=r.string(m["name"], (*path, "name"), _NAME, "name (letters, digits, '-', '_', '.')"),
        address=r.host_address(m["address"], (*path, "address")),
        roles=roles,
        connection=connection,
        user=r.string(m["user"], (*path, "user")) if m.get("user") is not None else None,
        port=r.port(m["port"], (*path, "port")) if m.get("port") is not None else None,
        identity_file=r.string(m["identityFile"], (*path, "identityFile")) if m.get("identityFile") else None,
        ssh_options=_ssh_options(r, m.get("sshOptions"), (*path, "sshOptions"), connection),
    )


def _ssh_options(r: _Reader, value: object, path: KeyPath, connection: str | None = "ssh") -> tuple[str, ...]:
    """``ssh.options`` or a host's ``sshOptions``: OpenSSH ``Key=Value`` strings the ssh client is given."""
    if value is None:
        return ()
    options = r.strings(value, path, r.string)
    if options and connection not in (None, "ssh") and not str(connection).startswith("ssh://"):
        raise r.fail(path, f"OpenSSH options apply to ssh connections only; this host's connection is {connection}")
    for i, option in enumerate(options):
        m = _SSH_OPTION.match(option.strip())
        if m is None or any(c in option for c in "\n\r\0"):
            raise r.fail((*path, i), f"{quote(option)} is not an OpenSSH option; write Key=Value, e.g. "
                                     "ProxyJump=ops@10.10.0.2")
        own = OWN_SSH_OPTIONS.get(m.group(1).lower())
        if own is not None:
            instead = f"use {own}" if own else "pytest-nova sets it itself"
            raise r.fail((*path, i), f"{m.group(1)} cannot be given here: {instead}")
    return tuple(o.strip() for o in options)


def _unique(r: _Reader, hosts: Iterator[tuple[KeyPath, Host]], balancers: dict[str, str]) -> None:
    names: dict[str, tuple[KeyPath, str]] = {}  # by the name in lower case: Kubernetes node names are
    addresses: dict[str, KeyPath] = {}
    for path, h in hosts:
        folded = h.name.lower()
        if folded in names:
            other, spelled = names[folded]
            if spelled != h.name:
                raise r.fail((*path, "name"), f"{quote(h.name)} differs only in case from {quote(spelled)} at "
                             f"{_at(r, other)}; Kubernetes names nodes in lower case, so both would be one node: "
                             "give each host its own name")
            raise r.fail((*path, "name"), f"duplicate name {quote(h.name)} (also at {_at(r, other)})")
        if h.address in addresses:
            raise r.fail((*path, "address"), f"duplicate address {h.address} (also at {_at(r, addresses[h.address])})")
        names[folded], addresses[h.address] = (path, h.name), path
    for role, address in balancers.items():
        if address in addresses:
            raise r.fail(
                ("loadBalancers", role, "address"),
                f"{address} is also the address of {_at(r, addresses[address])}; a balancer is a host of its own "
                "(docs 3.2): write the balancer's address",
            )


def _at(r: _Reader, path: KeyPath) -> str:
    return f"{format_path(path)}, line {r.doc.line(path)}"


def parse(doc: Document) -> Inventory:
    """Validate a parsed inventory document."""
    r = _Reader(doc)
    if not isinstance(doc.data, dict) or not set(doc.data) & set(_TOP_KEYS):
        # Quoting a file that is not an inventory (a shadow file given by mistake) could print its secrets.
        raise doc.error((), "not a pytest-nova inventory: it has none of the top-level keys "
                            f"{', '.join(_TOP_KEYS)}; is this the right file?")
    top = r.mapping(
        doc.data,
        (),
        {
            "cluster": True,
            "network": True,
            "universe": False,
            "ssh": True,
            "loadBalancers": False,
            "nodes": True,
            "workstations": False,
            "kubeconfig": False,
        },
    )
    cluster = r.mapping(top["cluster"], ("cluster",), {"name": True, "dnsBaseDomain": True, "modules": False})
    name = r.string(cluster["name"], ("cluster", "name"), _NAME, "cluster name")
    domain = r.string(cluster["dnsBaseDomain"], ("cluster", "dnsBaseDomain"), _DOMAIN, "DNS domain").lower()
    modules = r.strings(
        cluster.get("modules") or [], ("cluster", "modules"), lambda v, p: r.choice(v, p, MODULES, "module")
    )

    net = r.mapping(
        top["network"],
        ("network",),
        {"mode": True, "dnsServers": True, "dnsMode": False, "httpProxy": False, "noProxy": False},
    )
    mode = r.choice(net["mode"], ("network", "mode"), MODES, "network mode")
    dns_servers = r.strings(net["dnsServers"], ("network", "dnsServers"), r.address)
    if not dns_servers:
        raise r.fail(("network", "dnsServers"), "list at least one DNS server the nodes use")
    for i, server in enumerate(dns_servers):
        if server in dns_servers[:i]:
            first = dns_servers.index(server)
            raise r.fail(("network", "dnsServers", i),
                         f"{server} is listed twice (also at network.dnsServers[{first}]); list each DNS server once")
    dns_mode = net.get("dnsMode")
    if dns_mode is not None:
        dns_mode = r.choice(dns_mode, ("network", "dnsMode"), DNS_MODES, "DNS mode")
    proxy = net.get("httpProxy")
    if proxy is not None:
        proxy = _proxy_url(r, r.string(proxy, ("network", "httpProxy")))
    no_proxy = r.strings(net.get("noProxy") or [], ("network", "noProxy"), r.string)

    universe = None
    if top.get("universe") is not None:
        u = r.mapping(top["universe"], ("universe",), {"dnsBaseDomain": True, "address": True, "caFile": False})
        u_domain = r.string(u["dnsBaseDomain"], ("universe", "dnsBaseDomain"), _DOMAIN, "DNS domain").lower()
        if u_domain == domain:
            raise r.fail(
                ("universe", "dnsBaseDomain"),
                f"'{u_domain}' equals cluster.dnsBaseDomain; Universe needs its own domain (docs 2.4)",
            )
        universe = Universe(
            u_domain,
            r.address(u["address"], ("universe", "address"), v4_only=True),
            r.string(u["caFile"], ("universe", "caFile")) if u.get("caFile") else None,
        )
    if mode == "closed":
        if universe is None:
            raise r.fail(("network", "mode"), "closed mode needs a 'universe' section (docs 2.1)")
        for i, server in enumerate(dns_servers):
            if ipaddress.ip_address(server).is_global:
                raise r.fail(
                    ("network", "dnsServers", i),
                    f"{server} is a public resolver; closed mode needs an internal DNS server (docs 2.1)",
                )

    s = r.mapping(
        top["ssh"],
        ("ssh",),
        {"user": True, "identityFile": True, "port": False, "knownHostsFile": False, "hostKeyPolicy": False,
         "options": False},
    )
    ssh = Ssh(
        user=r.string(s["user"], ("ssh", "user")),
        identity_file=r.string(s["identityFile"], ("ssh", "identityFile")),
        port=r.port(s["port"], ("ssh", "port")) if s.get("port") is not None else 22,
        known_hosts_file=r.string(s["knownHostsFile"], ("ssh", "knownHostsFile")) if s.get("knownHostsFile") else None,
        host_key_policy=r.choice(
            s.get("hostKeyPolicy", "strict"), ("ssh", "hostKeyPolicy"), HOST_KEY_POLICIES, "host key policy"
        ),
        options=_ssh_options(r, s.get("options"), ("ssh", "options")),
    )

    balancers: dict[str, str] = {}
    lbs = r.mapping(top.get("loadBalancers") or {}, ("loadBalancers",), dict.fromkeys(BALANCERS, False))
    for key, value in lbs.items():
        lb = r.mapping(value, ("loadBalancers", key), {"address": True})
        balancers[key] = r.host_address(lb["address"], ("loadBalancers", key, "address"))

    raw_nodes = top["nodes"]
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise r.fail(("nodes",), "expected a non-empty list of nodes")
    raw_ws = top.get("workstations") or []
    hosts = len(raw_nodes) + (len(raw_ws) if isinstance(raw_ws, list) else 0)
    if hosts > MAX_HOSTS:
        raise r.fail(("nodes",), f"{hosts} nodes and workstations; one run supports at most {MAX_HOSTS} (the plan's "
                     "port rules grow with the square of the hosts, docs/scaling.md): check the cluster in parts")
    nodes = tuple(_host(r, raw, ("nodes", i), node=True) for i, raw in enumerate(raw_nodes))
    if not isinstance(raw_ws, list):
        raise r.fail(("workstations",), f"expected a list, got {_kind(raw_ws)}")
    workstations = tuple(_host(r, raw, ("workstations", i), node=False) for i, raw in enumerate(raw_ws))
    _unique(
        r,
        iter(
            [
                *((("nodes", i), n) for i, n in enumerate(nodes)),
                *((("workstations", i), w) for i, w in enumerate(workstations)),
            ]
        ),
        balancers,
    )
    ctl = [i for i, n in enumerate(nodes) if n.has("nova-ctl")]
    if len(ctl) > 1:
        raise r.fail(("nodes", ctl[1], "roles"), "only one node may have the nova-ctl role")
    if not ctl:
        raise r.fail(
            ("nodes",),
            "no node has the nova-ctl role; add the host the installer runs on, usually this machine: "
            "{name: nova-ctl, address: <its IPv4>, roles: [nova-ctl], connection: local}",
        )
    if not any(n.has("master") for n in nodes):
        raise r.fail(("nodes",), "no node has the master role; a cluster needs at least one master")

    if dns_mode is None:
        # Not given: internal when the nodes resolve through the infra nodes or the infra balancer.
        cluster_dns = {n.address for n in nodes if n.has("infra")} | {balancers.get("infra", "")}
        dns_mode = "internal" if set(dns_servers) & cluster_dns else "external"

    kubeconfig = top.get("kubeconfig")
    return Inventory(
        path=doc.path,
        sha256=doc.sha256 or hashlib.sha256(doc.path.read_bytes()).hexdigest(),
        name=name,
        dns_base_domain=domain,
        modules=modules,
        mode=mode,
        dns_servers=dns_servers,
        dns_mode=dns_mode,
        http_proxy=proxy,
        no_proxy=no_proxy,
        universe=universe,
        ssh=ssh,
        balancers=balancers,
        nodes=nodes,
        workstations=workstations,
        kubeconfig=r.string(kubeconfig, ("kubeconfig",)) if kubeconfig is not None else None,
    )


def _proxy_url(r: _Reader, raw: str) -> str:
    """``network.httpProxy`` checked, ``${VAR}`` taken from the environment, its password masked.

    Parsed as curl and urllib do: the host part ends at the first ``/``, so a ``/`` or ``@`` in the user or
    password must be percent-encoded. Whatever stands between ``://`` and the last ``@`` is treated as a secret
    before anything is checked, so no refusal prints it. The password is registered as a secret and never
    kept: the checks only need the proxy's host and port.
    """
    at = ("network", "httpProxy")

    def env(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            raise r.fail(at, f"environment variable {m.group(1)} is not set; export it before running pytest")
        secrets.register(value)
        return value

    url = _ENV_REF.sub(env, raw)
    scheme, sep, rest = url.partition("://")
    userinfo, has_user, after = rest.rpartition("@")
    if sep and has_user:
        user, colon, password = userinfo.partition(":")
        for secret in (password, unquote(password)):
            secrets.register(secret)
        plain = not any(c in userinfo for c in "/?#@")
        masked = ("***" if not plain else f"{user}:***" if colon else user)
        shown = f"{scheme}://{masked}@{after}"
    else:
        shown = url
    shown = quote(shown)
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if (has_user and "@" not in authority) or authority.count("@") > 1:
        raise r.fail(at, f"{shown}: its user or password holds '/', '?', '#' or '@', which end the host part of a "
                         "URL; percent-encode them (/ as %2F, @ as %40), as curl and other proxy clients expect")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise r.fail(at, f"{shown} has an invalid port; write http://host:port with a port 1-65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise r.fail(at, f"{shown} is not a proxy URL; write http://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise r.fail(at, f"{shown} has a path; a proxy URL is http://host:port")
    return secrets.mask_url(url)


def load_inventory(path: Path) -> Inventory:
    """Read and validate the inventory at ``path``."""
    doc = load(path)
    if doc.data is None:
        raise doc.error((), "the inventory is empty")
    return parse(doc)
