"""Docs 3.1.1–3.1.6: every documented port rule holds from each source host to each of its destinations.

Docs 3.2 (after installation): each balancer port is reached from the cluster nodes and the workstations.
"""

from __future__ import annotations

from _pytest_nova.checks.firewall import PortMatrix
from _pytest_nova.checks.firewall_fixes import families, with_fixes
from _pytest_nova.checks.node import NodeFacts
from _pytest_nova.plan import PortRuleCheck
from _pytest_nova.session import NovaItem


def test_port(port_rule: PortRuleCheck, port_matrix: PortMatrix, node_facts: NodeFacts, nova: NovaItem) -> None:
    """The source reaches every destination of the rule on its port and protocol (open, not refused/filtered)."""
    family_of = families(lambda host: node_facts.get(host, prefetch=False))
    nova.judge(with_fixes(port_matrix.verdicts(port_rule), port_rule, nova.inventory, family_of))
