"""The plan: a pure expansion of catalog × inventory into checks, one per pytest item.

Nothing here touches the network, so every pytest-xdist worker computes the same items in the same order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar
from urllib.parse import urlsplit

from _pytest_nova.catalog import Catalog, Requirement
from _pytest_nova.inventory import Host, Inventory

RUNNER = "runner"
BOTH_PHASES = ("preinstall", "postinstall")
_ROLE_OF_SELECTOR = {"masters": "master", "infra": "infra", "ingress": "ingress", "workers": "worker"}
# Cluster-scope k8s checks that assert one thing per inventory node rather than one thing per cluster.
PER_NODE_CLUSTER_CHECKS = frozenset({"node_ready", "node_roles"})


@dataclass(frozen=True, slots=True)
class Target:
    """A destination a check reaches: an inventory host, a balancer, or a named address."""

    name: str
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One pytest item: a requirement applied to the hosts, names or ports it concerns.

    Each kind of check is a subclass naming its ``kind`` (the suite's test argument); the fields here are where
    it applies, as a result record names it.
    """

    kind: ClassVar[str] = ""
    id: str
    requirement: Requirement
    phases: tuple[str, ...]
    host: str | None = None  # where it executes (its facts or probes come from there); None: the runner
    source: str | None = None
    target: str | None = None
    port: int | None = None
    protocol: str | None = None

    @property
    def area(self) -> str:
        """The marker area: dns, external, firewall, os, lb, k8s, inventory, or a site plugin's."""
        return self.requirement.area

    @property
    def group(self) -> str:
        """The pytest-xdist group: one worker holds one host's connection."""
        return self.host or RUNNER

    @property
    def allowed_phases(self) -> frozenset[str]:
        """The phases its requirements name: the only ones it may be collected in."""
        return frozenset(self.requirement.phases)


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsRecordCheck(Check):
    """A name asked directly at one DNS server of the inventory (docs 1, closed mode 2.1)."""

    kind: ClassVar[str] = "dns_record"
    name: str
    server: str  # the DNS server's address
    allowed: tuple[str, ...]  # addresses the name may resolve to


@dataclass(frozen=True, slots=True, kw_only=True)
class NamesOnNodeCheck(Check):
    """Every platform name resolved through one node's own resolver."""

    kind: ClassVar[str] = "dns_on_node"
    records: tuple[tuple[str, Requirement], ...] = field(default=(), compare=False)

    @property
    def allowed_phases(self) -> frozenset[str]:
        """The phases of any of its names' requirements."""
        return frozenset(p for _, r in self.records for p in r.phases) | frozenset(self.requirement.phases)


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointCheck(Check):
    """A node's TCP connect and TLS handshake to one vendor or Universe endpoint (docs 2, 2.1)."""

    kind: ClassVar[str] = "endpoint"
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeCheck(Check):
    """One catalog requirement judged from one host's facts (os, k8s, per-host external)."""

    kind: ClassVar[str] = "node_requirement"


@dataclass(frozen=True, slots=True, kw_only=True)
class PortRuleCheck(Check):
    """One port rule from one source host to each of its destinations (docs 3.1; the 3.2 balancer reach)."""

    kind: ClassVar[str] = "port_rule"
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancerCheck(Check):
    """A healthcheck through a balancer or at one backend (docs 3.2, after installation)."""

    kind: ClassVar[str] = "balancer_check"
    balancer: str  # the balancer's address
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterNodeCheck(Check):
    """A cluster requirement asserted once per inventory node (Ready, roles)."""

    kind: ClassVar[str] = "cluster_node"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterCheck(Check):
    """A cluster requirement asserted once per cluster (versions, kube-system pods)."""

    kind: ClassVar[str] = "cluster_check"


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryCheck(Check):
    """An inventory value the docs constrain, judged on the runner."""

    kind: ClassVar[str] = "inventory_check"


C = TypeVar("C", bound=Check)


@dataclass(frozen=True)
class Plan:
    """All checks, in a stable order."""

    checks: tuple[Check, ...]

    def of_kind(self, kind: str, phase: str) -> list[Check]:
        """Checks of one kind that belong to ``phase`` (``all`` takes every phase)."""
        return [c for c in self.checks if c.kind == kind and (phase == "all" or phase in c.phases)]

    def of_type(self, check_type: type[C], phase: str = "all") -> list[C]:
        """Checks of one type that belong to ``phase`` (``all`` takes every phase)."""
        return [c for c in self.checks if type(c) is check_type and (phase == "all" or phase in c.phases)]


def fqdn(record: str, domain: str) -> str:
    """The full name of a record label under a base domain."""
    return f"{record}.{domain}"


def endpoint_host(req: Requirement, inv: Inventory) -> str:
    """An external requirement's host name, with the Universe domain filled in."""
    host = req.host or ""
    if "{universe}" in host:
        return host.replace("{universe}", inv.universe.dns_base_domain if inv.universe else "")
    return host


def dns_allowed(inv: Inventory) -> tuple[str, ...]:
    """Where the platform's names may point: the infra nodes, or the infra balancer (docs 1, 3.2)."""
    addrs = [n.address for n in inv.with_role("infra")]
    if "infra" in inv.balancers:
        addrs.append(inv.balancers["infra"])
    return tuple(addrs)


def internal_dns(inv: Inventory) -> bool:
    """Whether DNS runs inside the cluster (docs 3.2: internal or hybrid mode), so 53 is served by the infra nodes.

    ``network.dnsMode`` when the inventory gives it; else derived from ``dnsServers`` (an infra node or the
    infra balancer among them means internal).
    """
    return inv.dns_mode in ("internal", "hybrid")


def _names(cat: Catalog, inv: Inventory) -> list[tuple[str, Requirement, tuple[str, ...]]]:
    """Each platform name (and in closed mode each Universe name) with its requirement and allowed addresses."""
    records = [r for r in cat.by_area("dns") if r.module is None or r.module in inv.modules]
    allowed = dns_allowed(inv)
    names = [(fqdn(str(r.record), inv.dns_base_domain), r, allowed) for r in records]
    if inv.mode == "closed" and inv.universe:
        for r in cat.by_area("external"):
            if r.mode == "closed":
                names.append((endpoint_host(r, inv), r, (inv.universe.address,)))
    return names


def dns_records(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """Each name at each DNS server of the inventory."""
    for name, req, ok in _names(cat, inv):
        for server in inv.dns_servers:
            yield DnsRecordCheck(id=f"{name}:{server}", requirement=req, phases=req.phases, name=name,
                                 server=server, target=name, allowed=ok)


def names_on_nodes(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """All names through each host's own resolver, one check per host."""
    names = _names(cat, inv)
    records = [r for r in cat.by_area("dns") if r.module is None or r.module in inv.modules]
    first = records[0] if records else cat.by_area("dns")[0]
    used = {p for _, r, _ in names for p in r.phases} or set(first.phases)
    phases = tuple(p for p in BOTH_PHASES if p in used)
    for node in _probe_hosts(inv):
        yield NamesOnNodeCheck(id=node.name, requirement=first, phases=phases, host=node.name,
                               source=node.name, records=tuple((n, r) for n, r, _ in names))


def _probe_hosts(inv: Inventory) -> list[Host]:
    """The hosts that need names and endpoints: nova-ctl first, then the cluster nodes."""
    ctl = inv.nova_ctl
    return ([ctl] if ctl else []) + [n for n in inv.cluster_nodes if n is not ctl]


def external(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """Each vendor or Universe endpoint of the network mode, from nova-ctl and every cluster node (docs 2, 2.1)."""
    reqs = [r for r in cat.by_area("external") if r.mode == inv.mode and r.check is None]
    for node in _probe_hosts(inv):
        for r in reqs:
            host = endpoint_host(r, inv)
            for h in host.split():  # a row may name two hosts (hub and storage share the image store)
                yield EndpointCheck(id=f"{node.name}:{h}:{r.port}", requirement=r, phases=r.phases,
                                    host=node.name, source=node.name, target=h, name=h, port=r.port, protocol="tcp")


def node_reqs(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """Each os, k8s and per-host external requirement on each host of its scope."""
    for area in ("os", "k8s", "external"):
        for r in cat.by_area(area):
            # params.mode names a network mode (internet/closed) in some entries and a file mode ("0440") in
            # others; only the former limits where a requirement applies.
            if r.params.get("mode") in ("internet", "closed") and r.params["mode"] != inv.mode:
                continue
            if area == "external" and (r.check is None or r.mode != inv.mode):
                continue  # endpoints are expanded by _external
            for h in hosts_in_scope(inv, r.scope):
                yield NodeCheck(id=f"{h.name}:{r.id}", requirement=r, phases=r.phases, host=h.name,
                                source=h.name)


def hosts_in_scope(inv: Inventory, scope: str | None) -> list[Host]:
    """The hosts a node requirement's ``scope`` names (none for ``cluster`` and ``runner``: judged elsewhere).

    ``nodes``: the cluster nodes; ``nova-ctl``; ``hosts``: nova-ctl and the cluster nodes.
    """
    if scope == "nodes":
        return list(inv.cluster_nodes)
    if scope == "nova-ctl":
        return [inv.nova_ctl] if inv.nova_ctl else []
    if scope == "hosts":
        return _probe_hosts(inv)
    return []


def http_proxy(inv: Inventory) -> tuple[str, int] | None:
    """Host (a name or an address) and port of ``network.httpProxy``, or None when it is not set."""
    if not inv.http_proxy:
        return None
    parts = urlsplit(inv.http_proxy)
    return str(parts.hostname), parts.port or (443 if parts.scheme == "https" else 80)


def _proxy_rule(r: Requirement, inv: Inventory) -> Iterator[Check]:
    """One check per source of a rule to the HTTP proxy (docs 3.1.5); none without ``network.httpProxy``."""
    proxy = http_proxy(inv)
    if proxy is None:
        return
    host, port = proxy
    wanted = {s.name for sel in r.sources for s in _select(inv, sel)}
    for src in (h for h in (*inv.nodes, *inv.workstations) if h.name in wanted):
        yield PortRuleCheck(
            id=f"{src.name}:proxy:{port}/tcp",
            requirement=r,
            phases=r.phases,
            host=src.name,
            source=src.name,
            target="proxy",
            port=port,
            protocol="tcp",
            targets=(Target("proxy", host),),
        )


def _select(inv: Inventory, selector: str) -> tuple[Host, ...]:
    if selector == "nodes":
        return inv.cluster_nodes
    if selector == "nova-ctl":
        return (inv.nova_ctl,) if inv.nova_ctl else ()
    if selector == "workstations":
        return inv.workstations
    return inv.with_role(_ROLE_OF_SELECTOR[selector])


def _hosts(inv: Inventory, selectors: tuple[str, ...]) -> list[tuple[Host, str]]:
    """Hosts the selectors name, each once, with the first selector that names it."""
    found: dict[str, tuple[Host, str]] = {}
    for sel in selectors:
        for h in _select(inv, sel):
            found.setdefault(h.name, (h, sel))
    return list(found.values())


def _directions(r: Requirement) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(sources, targets) of each direction a rule is probed in.

    A bidirectional rule between the same selectors (nodes <-> nodes) is one direction: its reverse names the
    same pairs, all of which the first direction already probes.
    """
    directions = [(r.sources, r.targets)]
    if r.bidirectional and set(r.sources) != set(r.targets):
        directions.append((r.targets, r.sources))
    return directions


def firewall(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """One check per rule and source; each (source, destination, port, protocol) is probed once in the plan.

    Linear in the number of probes: hosts come from the inventory's role indexes, one ``Target`` per host is
    shared by every check, and pairs are remembered only for a port that more than one rule or direction uses
    (the all-to-all rules would otherwise keep millions of pairs at 1,000 nodes).
    """
    hosts = (*inv.nodes, *inv.workstations)
    order = {h.name: i for i, h in enumerate(hosts)}
    target_of = {h.name: Target(h.name, h.address) for h in hosts}
    rules = [r for r in cat.by_area("firewall") if "proxy" not in r.targets]
    uses = Counter((r.port, str(r.protocol)) for r in rules for _ in _directions(r))
    claimed: dict[tuple[int | None, str], dict[str, set[str]]] = {}
    for r in cat.by_area("firewall"):
        if "proxy" in r.targets:
            yield from _proxy_rule(r, inv)
            continue
        proto = str(r.protocol)
        port = f"{r.port}/{proto}" if r.port is not None else proto
        directions = _directions(r)
        if len(directions) == 1 and uses[(r.port, proto)] == 1:
            dests = _sorted_hosts(inv, directions[0][1], order)
            found = _to_all(dests, [s for s, _ in _hosts(inv, directions[0][0])], target_of)
        else:
            found = _claimed(inv, directions, claimed.setdefault((r.port, proto), {}), order, target_of)
        for src, label, targets in sorted(found, key=lambda f: order[f[0]]):
            yield PortRuleCheck(
                id=f"{src}:{label}:{port}",
                requirement=r,
                phases=r.phases,
                host=src,
                source=src,
                target=label,
                port=r.port,
                protocol=proto,
                targets=targets,
            )


_Found = tuple[str, str, tuple[Target, ...]]  # source, label of the destination selectors, destinations


def _sorted_hosts(inv: Inventory, selectors: tuple[str, ...], order: dict[str, int]) -> list[tuple[Host, str]]:
    return sorted(_hosts(inv, selectors), key=lambda d: order[d[0].name])


def _label(selectors: list[str]) -> str:
    return "+".join(dict.fromkeys(selectors))


def _to_all(dests: list[tuple[Host, str]], sources: list[Host], target_of: dict[str, Target]) -> list[_Found]:
    """Each source to every destination but itself: the all-to-all rules, by slicing one shared tuple."""
    targets = tuple(target_of[d.name] for d, _ in dests)
    if not targets:
        return []
    sels = [sel for _, sel in dests]
    full = _label(sels)
    index = {d.name: i for i, (d, _) in enumerate(dests)}
    found = []
    for s in sources:
        i = index.get(s.name)
        if i is None:
            found.append((s.name, full, targets))
        elif len(targets) > 1:
            found.append((s.name, _label(sels[:i] + sels[i + 1 :]), targets[:i] + targets[i + 1 :]))
    return found


def _claimed(
    inv: Inventory,
    directions: list[tuple[tuple[str, ...], tuple[str, ...]]],
    taken: dict[str, set[str]],
    order: dict[str, int],
    target_of: dict[str, Target],
) -> list[_Found]:
    """Sources to destinations no earlier rule or direction on the same port has probed."""
    pairs: dict[str, list[tuple[Host, str]]] = {}
    for srcs, dsts in directions:
        dests = _sorted_hosts(inv, dsts, order)
        for s, _ in _hosts(inv, srcs):
            done = taken.setdefault(s.name, set())
            new = [(d, sel) for d, sel in dests if d.name != s.name and d.name not in done]
            done.update(d.name for d, _ in new)
            if new:
                pairs.setdefault(s.name, []).extend(new)
    found = []
    for src, dests in pairs.items():
        dests.sort(key=lambda d: order[d[0].name])
        found.append((src, _label([sel for _, sel in dests]), tuple(target_of[d.name] for d, _ in dests)))
    return found


def balancers(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """Each balancer port's healthcheck through the balancer and at each backend (docs 3.2)."""
    for r in cat.by_area("lb"):
        lb = str(r.balancer)
        if lb not in inv.balancers or (r.condition == "internal-dns" and not internal_dns(inv)):
            continue
        backends = inv.with_role(_ROLE_OF_SELECTOR.get(str(r.backends), str(r.backends)))
        base = f"{lb}:{r.port}/{r.protocol}"
        if r.scheme == "https" and r.id.endswith("passthrough"):
            yield BalancerCheck(
                id=f"{base}:passthrough",
                requirement=r,
                phases=r.phases,
                target=lb,
                port=r.port,
                protocol=r.protocol,
                targets=tuple(Target(b.name, b.address) for b in backends),
                balancer=inv.balancers[lb],
            )
            continue
        for t in (Target(lb, inv.balancers[lb]), *(Target(b.name, b.address) for b in backends)):
            yield BalancerCheck(
                id=f"{base}:{t.name}",
                requirement=r,
                phases=r.phases,
                target=t.name,
                port=r.port,
                protocol=r.protocol,
                targets=(t,),
                balancer=inv.balancers[lb],
            )


def balancer_reach(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """Docs 3.2 "Внутренний доступ / Внешний доступ": each balancer port from every node and every workstation.

    Probed like a port rule (the firewall engine, from each source host); a balancer is not an inventory host, so
    nothing is started on it: its own listener answers.
    """
    seen: set[tuple[str, int | None, str | None]] = set()
    for r in cat.by_area("lb"):
        lb = str(r.balancer)
        if lb not in inv.balancers or (r.condition == "internal-dns" and not internal_dns(inv)):
            continue
        if (lb, r.port, r.protocol) in seen or not (r.internal or r.external):
            continue
        seen.add((lb, r.port, r.protocol))
        sources = [*(inv.cluster_nodes if r.internal else ()), *(inv.workstations if r.external else ())]
        for src in sources:
            yield PortRuleCheck(
                id=f"{src.name}:{lb}-lb:{r.port}/{r.protocol}",
                requirement=r,
                phases=r.phases,
                host=src.name,
                source=src.name,
                target=lb,
                port=r.port,
                protocol=r.protocol,
                targets=(Target(lb, inv.balancers[lb]),),
            )


def cluster_nodes(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """Cluster requirements asserted per inventory node (Ready, roles)."""
    for r in cat.by_area("k8s"):
        if r.scope == "cluster" and r.check in PER_NODE_CLUSTER_CHECKS:
            for n in inv.cluster_nodes:
                yield ClusterNodeCheck(id=f"{n.name}:{r.id}", requirement=r, phases=r.phases, target=n.name)


def cluster_checks(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """Cluster requirements asserted once (versions, kube-system pods)."""
    for r in cat.by_area("k8s"):
        if r.scope == "cluster" and r.check not in PER_NODE_CLUSTER_CHECKS:
            yield ClusterCheck(id=f"cluster:{r.id}", requirement=r, phases=r.phases)


def inventory_checks(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """Each inventory value the docs constrain, for the network mode."""
    for r in cat.by_area("inventory"):
        if r.params.get("mode") in ("internet", "closed") and r.params["mode"] != inv.mode:
            continue
        yield InventoryCheck(id=f"inventory:{r.id}", requirement=r, phases=r.phases, target="inventory")


Expand = Callable[[Catalog, Inventory], Iterable[Check]]


def build(cat: Catalog, inv: Inventory, expansions: Iterable[Expand]) -> Plan:
    """Expand ``cat`` over ``inv`` with each kind's expansion, in order: each kind's checks in a stable order."""
    return Plan(tuple(c for expand in expansions for c in expand(cat, inv)))
