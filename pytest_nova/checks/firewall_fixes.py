"""Fixes a person can paste: the firewall command for one failed probe, with real addresses and the host's OS.

A port-rule verdict says who could not reach whom; the fix names the receiving host, the sending host's address
and the command of the receiving host's OS family (firewalld on RHEL-like systems, ufw or nftables on
Debian-like ones). A probe that never ran (an SSH login problem) or a port nobody serves gets no firewall command:
the firewall is not what is wrong there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pytest_nova.checks.facts import Facts
from pytest_nova.inventory import Inventory
from pytest_nova.plan import PortRuleCheck
from pytest_nova.verdicts import ERROR, FAILED, Verdict

RHEL, DEBIAN = "rhel", "debian"
ELSEWHERE = "; open the same on any network firewall or security group in between"


def os_family(facts: Facts | None) -> str | None:
    """``rhel`` or ``debian`` from a host's /etc/os-release facts (ID, ID_LIKE); None when unknown."""
    release = (facts or {}).get("os_release") or {}
    words = f"{release.get('id', '')} {release.get('id_like', '')}".lower().split()
    if any(w in ("rhel", "fedora", "centos", "rocky", "almalinux", "ol", "redos") for w in words):
        return RHEL
    if any(w in ("debian", "ubuntu", "astra") for w in words):
        return DEBIAN
    return None


def _firewalld(src: str, port: int | None, proto: str) -> str:
    if proto == "icmp":
        match = "icmp-type name=echo-request"
    elif proto == "ipip":
        match = "protocol value=4"
    else:
        match = f"port port={port} protocol={proto}"
    return (f"firewall-cmd --permanent --add-rich-rule='rule family=ipv4 source address={src} {match} accept' "
            "&& firewall-cmd --reload")


def _nft(src: str, port: int | None, proto: str, chain: str = "input") -> str:
    side = "saddr" if chain == "input" else "daddr"
    if proto == "icmp":
        match = "icmp type echo-request"
    elif proto == "ipip":
        match = "ip protocol 4"
    else:
        match = f"{proto} dport {port}"
    return f"nft insert rule inet filter {chain} ip {side} {src} {match} accept"


def inbound_command(family: str | None, src: str, port: int | None, proto: str) -> str:
    """The command that lets ``src`` in on ``port``/``proto``, for the receiving host's OS family."""
    if family == RHEL:
        return _firewalld(src, port, proto)
    if family == DEBIAN:
        if proto in ("tcp", "udp"):
            return f"ufw allow from {src} to any port {port} proto {proto} (nftables without ufw: " \
                   f"{_nft(src, port, proto)})"
        return _nft(src, port, proto)
    return f"{_firewalld(src, port, proto)} (RHEL-like; Debian-like with nftables: {_nft(src, port, proto)})"


def outbound_command(family: str | None, dst: str, port: int | None, proto: str) -> str:
    """The command that lets the sending host out to ``dst`` (its own firewall drops the packets)."""
    nft = _nft(dst, port, proto, chain="output")
    if family == RHEL:
        what = {"icmp": "-p icmp --icmp-type echo-request", "ipip": "-p 4"}.get(proto, f"-p {proto} --dport {port}")
        return (f"firewall-cmd --permanent --direct --add-rule ipv4 filter OUTPUT 0 -d {dst} {what} -j ACCEPT "
                "&& firewall-cmd --reload")
    if family == DEBIAN and proto in ("tcp", "udp"):
        return f"ufw allow out to {dst} port {port} proto {proto} (nftables without ufw: {nft})"
    return nft


def port_rule_fix(v: Verdict, check: PortRuleCheck, inv: Inventory, family_of: Callable[[str], str | None]) -> str:
    """The fix for one failed port-rule verdict; ``family_of(host)`` gives an inventory host's OS family."""
    if v.outcome not in (FAILED, ERROR):
        return v.fix
    source, target = v.source or "", v.target or ""
    port, proto = v.port, str(v.protocol)
    label = f"{port}/{proto}" if port is not None else proto
    names = {h.name: h.address for h in (*inv.nodes, *inv.workstations)}
    src_addr = names.get(source, source)
    dst_addr = next((t.address for t in check.targets if t.name == target), names.get(target, target))
    message = v.message
    if message.startswith("error: cannot probe from"):
        return (f"make {source} ({src_addr}) reachable over SSH from where the checks run, with python3 and sudo "
                "(see Observed); no firewall change: the probe never ran")
    if message.startswith("error: no temporary listener"):
        return (f"let the check bind its temporary listener on {target} ({dst_addr}) {label}: the user needs "
                "passwordless sudo there and the port must be free (see Observed); no firewall change")
    if message.startswith("name not resolved"):
        return f"make {dst_addr} resolvable on {source} (its DNS servers: {', '.join(inv.dns_servers)})"
    if message.startswith("refused: nothing listens"):
        return (f"start the service that serves {label} on {target} ({dst_addr}); the firewall let the packet "
                "through")
    if message.startswith("filtered: blocked on"):
        return f"on {source} ({src_addr}), let it send: {outbound_command(family_of(source), dst_addr, port, proto)}"
    if target == "proxy":
        return (f"allow tcp from {source} ({src_addr}) to the HTTP proxy {dst_addr}:{port} (network.httpProxy) "
                "on the proxy host" + ELSEWHERE)
    if check.requirement.area == "lb":
        return (f"allow {label} from {source} ({src_addr}) to the {target} balancer {dst_addr} on the balancer and "
                f"its host firewall, and let it forward to its backends" + ELSEWHERE)
    if target not in names:
        return v.fix
    return f"on {target} ({dst_addr}): {inbound_command(family_of(target), src_addr, port, proto)}" + ELSEWHERE


def with_fixes(verdicts: list[Verdict], check: PortRuleCheck, inv: Inventory,
               family_of: Callable[[str], str | None]) -> list[Verdict]:
    """``verdicts`` with each failure's fix made concrete and its area that of its requirement."""
    area = check.requirement.area
    return [replace(v, check=area, fix=port_rule_fix(v, check, inv, family_of)) for v in verdicts]


def families(get_facts: Callable[[str], Facts]) -> Callable[[str], str | None]:
    """``family_of(host)`` from a facts getter (one probe run per host, only for hosts a failure names)."""
    from pytest_nova.hosts import HostError

    memo: dict[str, str | None] = {}

    def family_of(host: str) -> str | None:
        if host not in memo:
            try:
                memo[host] = os_family(get_facts(host))
            except HostError:
                memo[host] = None
        return memo[host]

    return family_of
