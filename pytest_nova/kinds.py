"""The registry of kinds of check: each kind described once, built-in or added by a site plugin.

A kind names the test argument its suite asks for (``port_rule``), the check type it is parametrized with,
the catalog areas it expands, how the plan expands catalog × inventory into its checks, and the engine fixture
that judges them. A plugin's kind without a suite of its own gives ``verdicts``: the packaged generic suite
(``suites/test_extensions.py``) then runs its checks. Areas (report title, marker, catalog keys) are in
:mod:`pytest_nova.areas`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from pytest_nova import plan
from pytest_nova.areas import BUILTIN_AREAS, AreaSpec
from pytest_nova.catalog import AREA_KEYS, Catalog
from pytest_nova.inventory import Inventory
from pytest_nova.plan import Check, Expand
from pytest_nova.verdicts import Verdict

# How a plugin kind judges one of its checks; ``request`` gives it any fixture (``request.getfixturevalue``).
Judge = Callable[[Check, pytest.FixtureRequest], list[Verdict]]


@dataclass(frozen=True)
class Kind:
    """One kind of check."""

    name: str  # the test argument of its suite; also ``check_type.kind``
    check_type: type[Check]
    areas: tuple[str, ...]  # the catalog areas whose requirements it expands
    expand: Expand
    fixture: str = ""  # the engine fixture that judges it (a built-in suite asks for it)
    engine: str = ""  # the module holding that fixture, loaded as a pytest plugin
    verdicts: Judge | None = None  # a kind without a suite of its own: judged by the generic suite


def _chain(*expansions: Expand) -> Expand:
    def expand(cat: Catalog, inv: Inventory) -> Iterable[Check]:
        return itertools.chain.from_iterable(e(cat, inv) for e in expansions)

    return expand


_NODE, _DNS = "pytest_nova.checks.node", "pytest_nova.checks.dns"
_CLUSTER, _FIXTURES = "pytest_nova.checks.cluster", "pytest_nova.fixtures"
BUILTIN_KINDS = (
    Kind("dns_record", plan.DnsRecordCheck, ("dns", "external"), plan.dns_records, "nova_dns", _DNS),
    Kind("dns_on_node", plan.NamesOnNodeCheck, ("dns", "external"), plan.names_on_nodes, "node_facts", _NODE),
    Kind("endpoint", plan.EndpointCheck, ("external",), plan.external, "node_facts", _NODE),
    Kind("node_requirement", plan.NodeCheck, ("os", "k8s", "external"), plan.node_reqs, "node_facts", _NODE),
    Kind("port_rule", plan.PortRuleCheck, ("firewall", "lb"), _chain(plan.firewall, plan.balancer_reach),
         "port_matrix", "pytest_nova.checks.firewall"),
    Kind("balancer_check", plan.BalancerCheck, ("lb",), plan.balancers, "nova_balancers",
         "pytest_nova.checks.balancers"),
    Kind("cluster_node", plan.ClusterNodeCheck, ("k8s",), plan.cluster_nodes, "nova_cluster", _CLUSTER),
    Kind("cluster_check", plan.ClusterCheck, ("k8s",), plan.cluster_checks, "nova_cluster", _CLUSTER),
    Kind("inventory_check", plan.InventoryCheck, ("inventory",), plan.inventory_checks, "nova_inventory",
         _FIXTURES),
)


class RegistryError(ValueError):
    """A kind or area that cannot be added (a plugin's mistake), named with the reason."""


class Registry:
    """The areas and kinds of one run: the built-in ones, then those plugins add."""

    def __init__(self) -> None:
        self.areas: dict[str, AreaSpec] = {}
        self.kinds: dict[str, Kind] = {}
        for area in BUILTIN_AREAS:
            self.add_area(area)
        for kind in BUILTIN_KINDS:
            self.add_kind(kind)

    def add_area(self, area: AreaSpec) -> None:
        """Add an area; its catalog keys must be fields of a requirement."""
        if area.name in self.areas:
            raise RegistryError(f"area {area.name!r} is defined twice")
        if not area.name.isidentifier():
            raise RegistryError(f"area {area.name!r}: a name is letters, digits and _ (it is a pytest marker)")
        unknown = sorted(set(area.keys) - AREA_KEYS)
        if unknown:
            raise RegistryError(f"area {area.name!r}: {', '.join(unknown)} is not a requirement field "
                                f"(expected some of: {', '.join(sorted(AREA_KEYS))})")
        self.areas[area.name] = area

    def add_kind(self, kind: Kind) -> None:
        """Add a kind; its areas must be known and its check type must name it."""
        if kind.name in self.kinds:
            raise RegistryError(f"kind {kind.name!r} is defined twice")
        if kind.check_type.kind != kind.name:
            raise RegistryError(f"kind {kind.name!r}: {kind.check_type.__name__}.kind is {kind.check_type.kind!r}")
        missing = [a for a in kind.areas if a not in self.areas]
        if missing:
            raise RegistryError(f"kind {kind.name!r}: unknown area {', '.join(missing)} (add it with add_area)")
        if kind.name not in {k.name for k in BUILTIN_KINDS} and kind.verdicts is None:
            raise RegistryError(f"kind {kind.name!r}: a plugin kind gives verdicts(check, request)")
        self.kinds[kind.name] = kind

    def build(self, cat: Catalog, inv: Inventory) -> plan.Plan:
        """The plan of every kind, in registration order."""
        return plan.build(cat, inv, (k.expand for k in self.kinds.values()))

    def kind_of(self, check: Check) -> Kind:
        """The kind of ``check``."""
        return self.kinds[check.kind]

    @property
    def engines(self) -> tuple[str, ...]:
        """The modules holding the kinds' fixtures, each once, in registration order."""
        return tuple(dict.fromkeys(k.engine for k in self.kinds.values() if k.engine))

    @property
    def generic(self) -> tuple[str, ...]:
        """Kinds the generic suite runs (those that judge their checks themselves)."""
        return tuple(k.name for k in self.kinds.values() if k.verdicts is not None)


KINDS = tuple(k.name for k in BUILTIN_KINDS)
GENERIC = "nova_check"  # the generic suite's test argument: checks of every kind that judges its own


def build(cat: Catalog, inv: Inventory, registry: Registry | None = None) -> plan.Plan:
    """The plan of ``cat`` over ``inv`` with the kinds of ``registry`` (by default the built-in ones)."""
    return (registry or Registry()).build(cat, inv)
