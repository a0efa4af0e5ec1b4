"""The lab's address plan: every host's name, roles, address and MAC, derived from a spec and a lab index.

Each lab owns one /20 of 198.18.0.0/15 (the benchmark range, never routed on the internet), so up to 32
labs can run side by side. Inside its /20 a lab is one flat L2 segment; the third octet says what a host is:

    +0  services: nova-ctl .5, ops-1 .7, proxy .31, dns-1 .53, dns-2 .54, vendor .80, universe .90
    +1  masters .11.., load balancers api .100, infra .101, ingress .102
    +2  infra nodes .11..
    +3  ingress nodes .11..
    +4… workers .11..210, 200 per octet
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
PREFIXLEN = 20
MAX_LABS = 2 ** (PREFIXLEN - LAB_RANGE.prefixlen)
DOMAIN = "nova.lab.local"
UNIVERSE_DOMAIN = "universe.lab.local"
VENDOR_NAMES = (
    "hub.nova-platform.io",
    "storage.cloud.croc.ru",
    "access.nova-platform.io",
    "code.nova-platform.io",
    "sun.nova-platform.io",
)
UNIVERSE_NAMES = tuple(f"{n}.{UNIVERSE_DOMAIN}" for n in ("hub", "sun", "repo", "uploads"))
_WORKERS_PER_OCTET = 200

# Host kinds: "runner" is nova-ctl (a bare network namespace: pytest runs there); "node" and "workstation"
# are full hosts (mount + UTS namespace, sshd, the OS account); "service" and "lb" run one program each.
KINDS = ("runner", "node", "workstation", "service", "lb")


@dataclass(frozen=True)
class LabSpec:
    """What to build: cluster sizes and network mode."""

    name: str = "nova"
    masters: int = 3
    infra: int = 2
    ingress: int = 1
    workers: int = 3
    mode: str = "internet"
    proxy: bool = False
    installed: bool = False
    index: int | None = None  # which /20 of 198.18.0.0/15; None picks the first free one
    modules: tuple[str, ...] = field(default=("opensearch", "neuvector"))

    def validate(self) -> None:
        """Raise ValueError when the spec cannot be built."""
        if not self.name or len(self.name) > 24 or not all(c.isalnum() or c == "-" for c in self.name):
            raise ValueError(f"lab name {self.name!r}: use 1-24 letters, digits or '-'")
        if self.mode not in ("internet", "closed"):
            raise ValueError(f"mode {self.mode!r}: expected internet or closed")
        if self.proxy and self.mode == "closed":
            raise ValueError("proxy mode needs mode internet")
        if self.masters < 1 or self.infra < 1 or self.workers < 1 or self.ingress < 0:
            raise ValueError("need at least 1 master, 1 infra node and 1 worker")
        if self.masters > 89 or self.infra > 200 or self.ingress > 200 or self.workers > 2400:
            raise ValueError("too many nodes for one lab's /20")
        if self.index is not None and not 0 <= self.index < MAX_LABS:
            raise ValueError(f"lab index must be in 0..{MAX_LABS - 1}")


@dataclass(frozen=True)
class Host:
    """One planned host of the lab."""

    name: str
    kind: str
    roles: tuple[str, ...]
    address: str
    mac: str
    number: int  # 1-based position in the plan; names the root-side veth

    @property
    def role(self) -> str:
        """The host's first role, or its kind for hosts outside the cluster (workstation, service, lb)."""
        return self.roles[0] if self.roles else self.kind

    @property
    def is_full(self) -> bool:
        """Whether the host has its own mount/UTS namespace, sshd and the OS account."""
        return self.kind in ("node", "workstation")


def subnet(index: int) -> ipaddress.IPv4Network:
    """The /20 of lab number ``index``."""
    base = int(LAB_RANGE.network_address) + index * 2 ** (32 - PREFIXLEN)
    return ipaddress.IPv4Network((base, PREFIXLEN))


def _addr(net: ipaddress.IPv4Network, octet: int, last: int) -> str:
    return str(net.network_address + octet * 256 + last)


def plan(spec: LabSpec, index: int) -> list[Host]:
    """Every host of the lab, in a stable order (services first, then the cluster, then workers)."""
    net = subnet(index)
    rows: list[tuple[str, str, tuple[str, ...], str]] = [
        ("nova-ctl", "runner", ("nova-ctl",), _addr(net, 0, 5)),
        ("ops-1", "workstation", (), _addr(net, 0, 7)),
        ("dns-1", "service", (), _addr(net, 0, 53)),
        ("dns-2", "service", (), _addr(net, 0, 54)),
    ]
    if spec.mode == "internet":
        rows.append(("vendor", "service", (), _addr(net, 0, 80)))
    else:
        rows.append(("universe", "service", (), _addr(net, 0, 90)))
    if spec.proxy:
        rows.append(("proxy", "service", (), _addr(net, 0, 31)))
    rows += [
        ("lb-api", "lb", (), _addr(net, 1, 100)),
        ("lb-infra", "lb", (), _addr(net, 1, 101)),
        ("lb-ingress", "lb", (), _addr(net, 1, 102)),
    ]
    rows += [(f"master-{i}", "node", ("master",), _addr(net, 1, 10 + i)) for i in range(1, spec.masters + 1)]
    rows += [(f"infra-{i}", "node", ("infra",), _addr(net, 2, 10 + i)) for i in range(1, spec.infra + 1)]
    rows += [(f"ingress-{i}", "node", ("ingress",), _addr(net, 3, 10 + i)) for i in range(1, spec.ingress + 1)]
    rows += [
        (f"worker-{i}", "node", ("worker",),
         _addr(net, 4 + (i - 1) // _WORKERS_PER_OCTET, 11 + (i - 1) % _WORKERS_PER_OCTET))
        for i in range(1, spec.workers + 1)
    ]
    return [
        Host(name, kind, roles, addr, f"02:4e:4c:{index:02x}:{n >> 8:02x}:{n & 0xFF:02x}", n)
        for n, (name, kind, roles, addr) in enumerate(rows, start=1)
    ]
