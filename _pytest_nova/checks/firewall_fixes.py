"""Fixes a person can paste: the firewall command for one failed probe, with real addresses and the host's OS.

A port-rule verdict says who could not reach whom; the fix names the receiving host, the sending host's address
and the command of the receiving host's OS family (firewalld on RHEL-like systems, ufw or nftables on
Debian-like ones). A probe that never ran (an SSH login problem) or a port nobody serves gets no firewall command:
the firewall is not what is wrong there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from _pytest_nova.checks.facts import Facts
from _pytest_nova.inventory import Inventory
from _pytest_nova.plan import PortRuleCheck
from _pytest_nova.verdicts import ERROR, FAILED, Verdict

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


def _rich_rule(src: str, port: int | None, proto: str) -> str:
    if proto == "icmp":
        match = "icmp-type name=echo-request"
    elif proto == "ipip":
        match = "protocol value=4"
    else:
        match = f"port port={port} protocol={proto}"
    return f"rule family=ipv4 source address={src} {match} accept"


def _firewalld(src: str, port: int | None, proto: str) -> str:
    return f"firewall-cmd --permanent --add-rich-rule='{_rich_rule(src, port, proto)}' && firewall-cmd --reload"


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


SOURCES = "{sources}"  # where a fix shared by many sources lists their addresses


def inbound_many(family: str | None, port: int | None, proto: str) -> str:
    """:func:`inbound_command` for many sources at once: a loop over the addresses that replace ``{sources}``."""
    loop = f"for a in {SOURCES}; do"
    nft = f"{loop} {_nft('$a', port, proto)}; done"
    firewalld = f'{loop} firewall-cmd --permanent --add-rich-rule="{_rich_rule("$a", port, proto)}"; done && ' \
                "firewall-cmd --reload"
    if family == RHEL:
        return firewalld
    if family == DEBIAN:
        if proto in ("tcp", "udp"):
            return f"{loop} ufw allow from $a to any port {port} proto {proto}; done (nftables without ufw: {nft})"
        return nft
    return f"{firewalld} (RHEL-like; Debian-like with nftables: {nft})"


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
    return _fixes(v, check, inv, family_of)[0]


def _fixes(v: Verdict, check: PortRuleCheck, inv: Inventory,
           family_of: Callable[[str], str | None]) -> tuple[str, str, str]:
    """The fix of one failed verdict; the fix for many sources and this verdict's source address, or empty.

    The second and third are given when the receiving host's firewall is the cause: ``{sources}`` stands for the
    addresses of every source it drops.
    """
    if v.outcome not in (FAILED, ERROR):
        return v.fix, "", ""
    source, target = v.source or "", v.target or ""
    port, proto = v.port, str(v.protocol)
    label = f"{port}/{proto}" if port is not None else proto
    names = {h.name: h.address for h in (*inv.nodes, *inv.workstations)}
    src_addr = names.get(source, source)
    dst_addr = next((t.address for t in check.targets if t.name == target), names.get(target, target))
    message = v.message
    if message.startswith("error: cannot probe from"):
        return (f"make {source} ({src_addr}) reachable over SSH from where the checks run, with python3 and sudo "
                "(see Observed); no firewall change: the probe never ran"), "", ""
    if message.startswith("error: no temporary listener"):
        return (f"let the check bind its temporary listener on {target} ({dst_addr}) {label}: the user needs "
                "passwordless sudo there and the port must be free (see Observed); no firewall change"), "", ""
    if message.startswith("name not resolved"):
        return f"make {dst_addr} resolvable on {source} (its DNS servers: {', '.join(inv.dns_servers)})", "", ""
    if message.startswith("refused: nothing listens"):
        return (f"start the service that serves {label} on {target} ({dst_addr}); the firewall let the packet "
                "through"), "", ""
    if message.startswith("filtered: blocked on"):
        return (f"on {source} ({src_addr}), let it send: {outbound_command(family_of(source), dst_addr, port, proto)}",
                "", "")
    if target == "proxy":
        return (f"allow tcp from {source} ({src_addr}) to the HTTP proxy {dst_addr}:{port} (network.httpProxy) "
                "on the proxy host" + ELSEWHERE), "", ""
    if check.requirement.area == "lb":
        return (f"allow {label} from {source} ({src_addr}) to the {target} balancer {dst_addr} on the balancer and "
                f"its host firewall, and let it forward to its backends" + ELSEWHERE), "", ""
    if target not in names:
        return v.fix, "", ""
    family = family_of(target)
    return (f"on {target} ({dst_addr}): {inbound_command(family, src_addr, port, proto)}" + ELSEWHERE,
            f"on {target} ({dst_addr}), from each source: {inbound_many(family, port, proto)}" + ELSEWHERE, src_addr)


def with_fixes(verdicts: list[Verdict], check: PortRuleCheck, inv: Inventory,
               family_of: Callable[[str], str | None]) -> list[Verdict]:
    """``verdicts`` with each failure's fix made concrete and its area that of its requirement.

    A failure the receiving host's firewall causes also carries the fix shared by every source it drops
    (``fix_shared``, with ``{sources}``) and its source's address (``fix_source``): the report makes one row of
    one destination dropping one port from many sources.
    """
    area = check.requirement.area
    out = []
    for v in verdicts:
        if v.outcome not in (FAILED, ERROR) and v.check == area:
            out.append(v)  # nothing to make concrete (most of 350,000 results: copying each cost seconds)
            continue
        fix, shared, source = _fixes(v, check, inv, family_of)
        out.append(replace(v, check=area, fix=fix, fix_shared=shared, fix_source=source))
    return out


def families(get_facts: Callable[[str], Facts]) -> Callable[[str], str | None]:
    """``family_of(host)`` from a facts getter (one probe run per host, only for hosts a failure names)."""
    from _pytest_nova.hosts import HostError

    memo: dict[str, str | None] = {}

    def family_of(host: str) -> str | None:
        if host not in memo:
            try:
                memo[host] = os_family(get_facts(host))
            except HostError:
                memo[host] = None
        return memo[host]

    return family_of
