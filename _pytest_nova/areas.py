"""The areas of the catalog: what each covers, its report title, its pytest marker and its catalog keys.

An area groups requirements of one part of the docs (DNS, the firewall matrix, …); its name is the ``check``
field of a result record and a pytest marker (``-m firewall``). Site plugins add their own
(:func:`pytest_nova.hookspecs.pytest_nova_add_kinds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Key(StrEnum):
    """Whether an area's entries must give a catalog key (``REQUIRED``) or may (``OPTIONAL``)."""

    REQUIRED = "required"
    OPTIONAL = "optional"


REQUIRED, OPTIONAL = Key.REQUIRED, Key.OPTIONAL


@dataclass(frozen=True)
class AreaSpec:
    """One area of the catalog.

    ``name`` is the catalog files' ``area``, the ``check`` of its records and its ``-m`` marker; ``title`` the
    report's heading; ``marker`` the marker's help. ``keys`` maps each catalog key its entries take beyond the
    common ones (``id``, ``section``, ``phase``…) to :data:`REQUIRED` or :data:`OPTIONAL`; each must be a
    requirement field (``host``, ``port``, ``protocol``, ``check``, ``params``…), read into the
    :class:`~_pytest_nova.catalog.Requirement` with that field's type. ``True``/``False`` are read as
    required/optional.
    """

    name: str
    title: str
    marker: str
    keys: Mapping[str, Key | bool] = field(default_factory=dict)

    @property
    def required(self) -> frozenset[str]:
        """The keys every entry of this area must give."""
        return frozenset(k for k, use in self.keys.items() if use is True or use == REQUIRED)


BUILTIN_AREAS = (
    AreaSpec("dns", "DNS (1)", "DNS records of the platform's services (docs 1)",
             {"record": REQUIRED, "module": OPTIONAL}),
    # An external entry with ``check`` is judged per host from its facts (like os), not probed as an endpoint.
    AreaSpec("external", "External endpoints (2)", "vendor or Nova Universe endpoints (docs 2, 2.1)",
             {"mode": REQUIRED, "host": OPTIONAL, "port": OPTIONAL, "ips": OPTIONAL, "check": OPTIONAL,
              "scope": OPTIONAL, "params": OPTIONAL}),
    AreaSpec("firewall", "Firewall (3.1)", "port rules between node roles (docs 3.1)",
             {"sources": REQUIRED, "targets": REQUIRED, "bidirectional": OPTIONAL, "port": OPTIONAL,
              "protocol": REQUIRED, "description": REQUIRED}),
    AreaSpec("os", "OS account", "the OS account, sudo and SSH key (account preparation)",
             {"check": REQUIRED, "scope": REQUIRED, "params": OPTIONAL}),
    AreaSpec("lb", "Load balancers (3.2)", "load balancers and their healthchecks (docs 3.2)",
             {"balancer": REQUIRED, "port": REQUIRED, "protocol": REQUIRED, "backends": REQUIRED, "scheme": OPTIONAL,
              "path": OPTIONAL, "condition": OPTIONAL, "description": OPTIONAL, "internal": OPTIONAL,
              "external": OPTIONAL}),
    AreaSpec("k8s", "Kubernetes", "Kubernetes node prerequisites and cluster state",
             {"check": REQUIRED, "scope": REQUIRED, "params": OPTIONAL}),
    AreaSpec("inventory", "Inventory",
             "the inventory's own values the docs constrain (Nova Universe, 2.1 and universe 2.4)",
             {"check": REQUIRED, "params": OPTIONAL}),
)

AREAS = tuple(a.name for a in BUILTIN_AREAS)
