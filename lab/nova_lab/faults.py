"""Faults as data: each is a kind plus parameters; the lab applies and reverts them.

Declarative kinds (DNS data, nftables rules, server flags) are recomputed from the set of active faults, so
applying twice or reverting what is not on changes nothing. Host-editing kinds (sudoers, modes, shell,
resolv.conf, sshd) record what they changed in ``faults.json`` and put it back on revert.

    lab.apply(get("fw-drop", port="2379", source="workers", destination="master-1"))
    with lab.fault("sshd-down", host="worker-2"): ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nova_lab.addresses import Host


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` (a key of KINDS) and its parameters as sorted (name, value) pairs."""

    kind: str
    params: tuple[tuple[str, str], ...] = ()

    def __getitem__(self, key: str) -> str:
        return dict(self.params)[key]

    @property
    def key(self) -> str:
        """A stable id, e.g. ``fw-drop:destination=master-1,port=2379,protocol=tcp,source=workers``."""
        return self.kind + (":" + ",".join(f"{k}={v}" for k, v in self.params) if self.params else "")


@dataclass(frozen=True)
class Kind:
    """What a fault kind does, and its parameters with their defaults."""

    help: str
    defaults: tuple[tuple[str, str], ...]


KINDS: dict[str, Kind] = {
    "dns-missing-record": Kind("remove a record from both DNS servers", (("record", "nova-console"),)),
    "dns-wrong-target": Kind("point a record at a non-infra address (a host name or an address)",
                             (("record", "nova-console"), ("target", "worker-1"))),
    "fw-drop": Kind("nftables drop in the destination's input chain; source/destination are a host or a role "
                    "(masters, infra, ingress, workers, nodes, nova-ctl, workstations); protocol tcp|udp|icmp",
                    (("destination", "master-1"), ("port", "2379"), ("protocol", "tcp"), ("source", "workers"))),
    "fw-lossy": Kind("nftables random loss in the destination's input chain, as a congested network loses packets: "
                     "percent of the TCP (not ssh), UDP, ICMP echo and IPIP packets from the source are dropped",
                     (("destination", "nodes"), ("percent", "10"), ("source", "nodes"))),
    "sudoers-missing": Kind("remove /etc/sudoers.d/99-nova-installer-user on a host", (("host", "worker-1"),)),
    "sudo-limited": Kind("the sudoers drop-in grants NOPASSWD for a few commands only (/usr/bin/true, /usr/bin/id)",
                         (("host", "worker-1"),)),
    "sudo-elsewhere": Kind("NOPASSWD:ALL comes from cloud-init's /etc/sudoers.d/90-cloud-init-users; the docs' drop-in "
                           "is gone", (("host", "worker-1"),)),
    "wrong-mode": Kind("chmod a file on a host", (("host", "worker-1"), ("mode", "0644"),
                                                 ("path", "/home/nova-installer/.ssh/authorized_keys"))),
    "wrong-shell": Kind("give nova-installer another login shell on a host",
                        (("host", "worker-1"), ("shell", "/bin/sh"))),
    "endpoint-unreachable": Kind("drop a node's traffic at the vendor, Universe and proxy hosts",
                                 (("host", "worker-1"),)),
    "universe-ca-missing": Kind("a host's trust store lacks the Nova Universe root CA (the others keep it)",
                                (("host", "worker-1"),)),
    "untrusted-ca": Kind("the vendor and/or Universe server presents a certificate of an untrusted CA",
                         (("server", "all"),)),
    "healthcheck-503": Kind("a master or infra/ingress node answers 503 on its health path (installed mode)",
                            (("host", "infra-1"),)),
    "tls-terminating-api-lb": Kind("the api balancer terminates TLS with its own certificate", ()),
    "node-notready": Kind("the API reports a node NotReady (installed mode)", (("node", "worker-1"),)),
    "node-missing": Kind("the API omits a node (installed mode)", (("node", "worker-1"),)),
    "fw-reject": Kind("nftables reject in the destination's input chain (tcp: a TCP reset, udp/icmp: ICMP port "
                      "unreachable); parameters as fw-drop",
                      (("destination", "master-1"), ("port", "2379"), ("protocol", "tcp"), ("source", "workers"))),
    "sshd-down": Kind("stop sshd on a host", (("host", "worker-1"),)),
    "noisy-shell": Kind("nova-installer's ~/.bashrc prints a banner on stdout and stderr, also for ssh commands",
                        (("host", "worker-1"), ("text", "*** authorized use only ***"))),
    "sshd-limits": Kind("restart a host's sshd with few sessions per connection and few unauthenticated "
                        "connections", (("host", "worker-1"), ("max_sessions", "1"), ("max_startups", "2"))),
    "no-icmp": Kind("an ordinary user cannot send ICMP on a host: ping_group_range excludes everyone and the "
                    "ping binary is hidden", (("host", "worker-1"),)),
    "public-resolver": Kind("a host's resolv.conf points at a public resolver",
                            (("host", "worker-1"), ("nameserver", "8.8.8.8"))),
    "proxy-deny": Kind("the HTTP proxy answers CONNECT to the vendor names with 403 Forbidden (proxy mode)", ()),
    "cni-missing": Kind("remove the CNI network config of a node (installed mode)", (("host", "worker-1"),)),
    "kubelet-down": Kind("kubelet's healthz (127.0.0.1:10248) refuses connections on a node (installed mode)",
                         (("host", "worker-1"),)),
    "docs-literal": Kind("re-prepare the installation account with the docs' own commands, word for word, under "
                         "umask 022: the sudoers drop-in by cat << EOF (0644), ~/.ssh by a plain mkdir (0755), the "
                         "key appended to authorized_keys and chmod 600 on it", (("host", "worker-1"),)),
    "ip-forward-off": Kind("net.ipv4.ip_forward = 0 in a host's network namespace (an advisory k8s check fails)",
                           (("host", "worker-1"),)),
    "dns53-down": Kind("an infra node's DNS (53 udp and tcp) does not answer: nftables drop in the node "
                       "(installed mode)", (("host", "infra-1"),)),
}

DNS_KINDS = ("dns-missing-record", "dns-wrong-target")
NFT_KINDS = ("fw-drop", "fw-reject", "fw-lossy", "endpoint-unreachable", "kubelet-down", "dns53-down")
FLAG_KINDS = ("untrusted-ca", "healthcheck-503", "tls-terminating-api-lb", "node-notready", "node-missing",
              "proxy-deny")
HOST_KINDS = ("sudoers-missing", "sudo-limited", "sudo-elsewhere", "universe-ca-missing",
              "wrong-mode", "wrong-shell", "sshd-down", "public-resolver", "cni-missing",
              "noisy-shell", "sshd-limits", "no-icmp", "docs-literal", "ip-forward-off")


def get(kind: str, **params: object) -> Fault:
    """Fault ``kind`` with its default parameters overridden by ``params``."""
    if kind not in KINDS:
        raise ValueError(f"unknown fault {kind!r}; known: {', '.join(sorted(KINDS))}")
    values = dict(KINDS[kind].defaults)
    for k, v in params.items():
        if k not in values:
            raise ValueError(f"fault {kind}: unknown parameter {k!r} (has: {', '.join(values) or 'none'})")
        values[k] = str(v)
    return Fault(kind, tuple(sorted(values.items())))


# Named variants worth a name of their own; every kind is also registered under its own name.
REGISTRY: dict[str, Fault] = {name: get(name) for name in KINDS}
REGISTRY.update({
    "fw-drop-etcd": get("fw-drop", port=2379, protocol="tcp", source="workers", destination="masters"),
    "fw-drop-ssh": get("fw-drop", port=22, protocol="tcp", source="nova-ctl", destination="worker-1"),
    "fw-drop-vxlan": get("fw-drop", port=4789, protocol="udp", source="nodes", destination="worker-1"),
    "fw-drop-icmp": get("fw-drop", port=0, protocol="icmp", source="nodes", destination="worker-1"),
    # 0757: writable by others, which sshd's StrictModes refuses (0755 is fine, see docs-literal). Debian's sshd
    # accepts a group-writable ~/.ssh when the group is the user's own, upstream OpenSSH does not.
    "wrong-mode-ssh-dir": get("wrong-mode", path="/home/nova-installer/.ssh", mode="0757"),
    "fw-reject-etcd": get("fw-reject", port=2379, protocol="tcp", source="workers", destination="master-2"),
    "fw-reject-vxlan": get("fw-reject", port=8472, protocol="udp", source="nodes", destination="worker-2"),
})


def resolve(fault: Fault | str, **params: object) -> Fault:
    """A Fault from a registry name (with overrides) or a Fault as is."""
    if isinstance(fault, Fault):
        return fault
    if fault not in REGISTRY:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(REGISTRY))}")
    base = REGISTRY[fault]
    return get(base.kind, **{**dict(base.params), **params})


ROLE_ALIASES = {"master": "master", "masters": "master", "infra": "infra", "ingress": "ingress",
                "worker": "worker", "workers": "worker"}


def select(who: str, hosts: Sequence[Host]) -> list[Host]:
    """Hosts named by ``who``: a host name, a role, ``nodes``, ``nova-ctl`` or ``workstations``."""
    by_name = {h.name: h for h in hosts}
    if who in by_name:
        return [by_name[who]]
    if who in ROLE_ALIASES:
        return [h for h in hosts if ROLE_ALIASES[who] in h.roles]
    if who in ("nodes", "all"):
        return [h for h in hosts if h.kind == "node"]
    if who == "workstations":
        return [h for h in hosts if h.kind == "workstation"]
    raise ValueError(f"{who!r} is neither a lab host nor a role")


def target_address(target: str, hosts: Sequence[Host]) -> str:
    """An address given as such or as a host name."""
    for h in hosts:
        if h.name == target:
            return h.address
    return target


def dns_records(base: Mapping[str, Sequence[str]], active: Sequence[Fault], domain: str,
                hosts: Sequence[Host]) -> dict[str, list[str]]:
    """The records the DNS servers serve with the active DNS faults applied."""
    out = {k: list(v) for k, v in base.items()}
    for f in active:
        if f.kind not in DNS_KINDS:
            continue
        name = f["record"] if "." in f["record"] else f"{f['record']}.{domain}"
        if f.kind == "dns-missing-record":
            out.pop(name, None)
        else:
            out[name] = [target_address(f["target"], hosts)]
    return out


def nft_rules(active: Sequence[Fault], hosts: Sequence[Host], base: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Nftables input-chain rules per host name: the lab's ``base`` rules plus the active faults'."""
    rules: dict[str, list[str]] = {k: list(v) for k, v in base.items()}
    for f in active:
        if f.kind in ("fw-drop", "fw-reject"):
            src = ", ".join(h.address for h in select(f["source"], hosts))
            proto = f["protocol"]
            if proto == "icmp":
                match = "icmp type echo-request"
            elif proto in ("tcp", "udp"):
                match = f"{proto} dport {int(f['port'])}"
            else:
                raise ValueError(f"{f.kind}: protocol {proto!r} is not tcp, udp or icmp")
            verdict = "drop"
            if f.kind == "fw-reject":
                verdict = "reject with tcp reset" if proto == "tcp" else "reject with icmp type port-unreachable"
            for dst in select(f["destination"], hosts):
                rules.setdefault(dst.name, []).append(f"ip saddr {{ {src} }} {match} {verdict}")
        elif f.kind == "fw-lossy":
            src = ", ".join(h.address for h in select(f["source"], hosts))
            lose = f"numgen random mod 100 < {int(f['percent'])} drop"
            for dst in select(f["destination"], hosts):
                rules.setdefault(dst.name, []).extend(
                    f"ip saddr {{ {src} }} {match} {lose}"
                    for match in ("tcp sport != 22 tcp dport != 22", "meta l4proto udp",
                                  "icmp type { echo-request, echo-reply }", "ip protocol ipip"))
        elif f.kind == "kubelet-down":
            for h in select(f["host"], hosts):
                rules.setdefault(h.name, []).append("iif lo tcp dport 10248 reject with tcp reset")
        elif f.kind == "dns53-down":
            for h in select(f["host"], hosts):
                rules.setdefault(h.name, []).extend(["udp dport 53 drop", "tcp dport 53 drop"])
        elif f.kind == "endpoint-unreachable":
            src = ", ".join(h.address for h in select(f["host"], hosts))
            for h in hosts:
                if h.name in ("vendor", "universe", "proxy"):
                    rules.setdefault(h.name, []).append(f"ip saddr {{ {src} }} drop")
    return rules


def flags(active: Sequence[Fault], servers: Sequence[str]) -> set[str]:
    """Names of the flag files the servers should see, for the active faults."""
    out: set[str] = set()
    for f in active:
        if f.kind == "untrusted-ca":
            out |= {f"untrusted-ca-{s}" for s in servers if f["server"] in ("all", s)}
        elif f.kind == "healthcheck-503":
            out.add(f"health503-{f['host']}")
        elif f.kind == "tls-terminating-api-lb":
            out.add("tls-terminate-api")
        elif f.kind == "node-notready":
            out.add(f"notready-{f['node']}")
        elif f.kind == "node-missing":
            out.add(f"missing-{f['node']}")
        elif f.kind == "proxy-deny":
            out.add("proxy-deny")
    return out
