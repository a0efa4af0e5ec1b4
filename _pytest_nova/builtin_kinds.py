"""pytest-nova's own ``pytest_nova_add_kinds``: the built-in areas, kinds, node facts and node rules.

Registered as a plugin like a site's (as the built-in ssh transport is pytest-nova's own, ``trylast``,
``pytest_nova_transport``); ``tryfirst``, so the built-in areas exist when a plugin's kind names one.
"""

from __future__ import annotations

import pytest

from _pytest_nova import plan
from _pytest_nova.areas import BUILTIN_AREAS
from _pytest_nova.checks.node_rules import RULES
from _pytest_nova.checks.sudo_rules import NODE_FACTS
from _pytest_nova.kinds import Kind, Registry, chain

_NODE, _DNS = "_pytest_nova.checks.node", "_pytest_nova.checks.dns"
_CLUSTER, _FIXTURES = "_pytest_nova.checks.cluster", "_pytest_nova.fixtures"
BUILTIN_KINDS = (
    Kind("dns_record", plan.DnsRecordCheck, ("dns", "external"), plan.dns_records, "nova_dns", _DNS),
    Kind("dns_on_node", plan.NamesOnNodeCheck, ("dns", "external"), plan.names_on_nodes, "node_facts", _NODE),
    Kind("endpoint", plan.EndpointCheck, ("external",), plan.external, "node_facts", _NODE),
    Kind("node_requirement", plan.NodeCheck, ("os", "k8s", "external"), plan.node_reqs, "node_facts", _NODE),
    Kind("port_rule", plan.PortRuleCheck, ("firewall", "lb"), chain(plan.firewall, plan.balancer_reach),
         "port_matrix", "_pytest_nova.checks.firewall"),
    Kind("balancer_check", plan.BalancerCheck, ("lb",), plan.balancers, "nova_balancers",
         "_pytest_nova.checks.balancers"),
    Kind("cluster_node", plan.ClusterNodeCheck, ("k8s",), plan.cluster_nodes, "nova_cluster", _CLUSTER),
    Kind("cluster_check", plan.ClusterCheck, ("k8s",), plan.cluster_checks, "nova_cluster", _CLUSTER),
    Kind("inventory_check", plan.InventoryCheck, ("inventory",), plan.inventory_checks, "nova_inventory",
         _FIXTURES),
)
KINDS = tuple(k.name for k in BUILTIN_KINDS)


def add_builtins(registry: Registry) -> None:
    """Add the built-in areas, kinds, node facts and node rules to ``registry``."""
    for area in BUILTIN_AREAS:
        registry.add_area(area)
    for kind in BUILTIN_KINDS:
        registry.add_kind(kind)
    for fact in NODE_FACTS:
        registry.add_node_fact(fact)
    for name, rule in RULES.items():
        registry.add_node_rule(name, rule)


def builtin_registry() -> Registry:
    """A registry of the built-in areas, kinds and rules alone (what a run without site plugins has)."""
    registry = Registry()
    add_builtins(registry)
    return registry


@pytest.hookimpl(tryfirst=True)
def pytest_nova_add_kinds(registry: Registry, config: pytest.Config) -> None:
    """The built-in areas, kinds and node rules."""
    add_builtins(registry)
