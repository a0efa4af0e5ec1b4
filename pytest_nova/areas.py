"""The areas of the catalog: what each covers, its report title, its pytest marker and its catalog keys.

An area groups requirements of one part of the docs (DNS, the firewall matrix, …); its name is the ``check``
field of a result record and a pytest marker (``-m firewall``). Site plugins add their own
(:func:`pytest_nova.hookspecs.pytest_nova_add_kinds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AreaSpec:
    """One area: ``keys`` are the catalog keys its entries may have beyond the common ones (True: required)."""

    name: str
    title: str
    marker: str
    keys: Mapping[str, bool] = field(default_factory=dict)


BUILTIN_AREAS = (
    AreaSpec("dns", "DNS (1)", "DNS records of the platform's services (docs 1)",
             {"record": True, "module": False}),
    # An external entry with ``check`` is judged per host from its facts (like os), not probed as an endpoint.
    AreaSpec("external", "External endpoints (2)", "vendor or Nova Universe endpoints (docs 2, 2.1)",
             {"mode": True, "host": False, "port": False, "ips": False, "check": False, "scope": False,
              "params": False}),
    AreaSpec("firewall", "Firewall (3.1)", "port rules between node roles (docs 3.1)",
             {"sources": True, "targets": True, "bidirectional": False, "port": False, "protocol": True,
              "description": True}),
    AreaSpec("os", "OS account", "the OS account, sudo and SSH key (account preparation)",
             {"check": True, "scope": True, "params": False}),
    AreaSpec("lb", "Load balancers (3.2)", "load balancers and their healthchecks (docs 3.2)",
             {"balancer": True, "port": True, "protocol": True, "backends": True, "scheme": False, "path": False,
              "condition": False, "description": False, "internal": False, "external": False}),
    AreaSpec("k8s", "Kubernetes", "Kubernetes node prerequisites and cluster state",
             {"check": True, "scope": True, "params": False}),
    AreaSpec("inventory", "Inventory",
             "the inventory's own values the docs constrain (Nova Universe, 2.1 and universe 2.4)",
             {"check": True, "params": False}),
)

AREAS = tuple(a.name for a in BUILTIN_AREAS)
