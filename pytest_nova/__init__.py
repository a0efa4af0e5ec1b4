"""pytest-nova: prove that infrastructure meets Nova Container Platform's installation requirements.

The names a suite or site-plugin author needs; everything else is internal and may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

from pytest_nova.areas import AreaSpec
from pytest_nova.catalog import Catalog, Requirement
from pytest_nova.inventory import Host, Inventory
from pytest_nova.kinds import Kind, Registry
from pytest_nova.plan import (
    BalancerCheck,
    Check,
    ClusterCheck,
    ClusterNodeCheck,
    DnsRecordCheck,
    EndpointCheck,
    InventoryCheck,
    NamesOnNodeCheck,
    NodeCheck,
    PortRuleCheck,
    Target,
)
from pytest_nova.session import NovaItem, NovaSession, session_of
from pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, WARNING, Finding, Verdict

__all__ = [
    "ERROR",
    "FAILED",
    "PASSED",
    "SKIPPED",
    "WARNING",
    "AreaSpec",
    "BalancerCheck",
    "Catalog",
    "Check",
    "ClusterCheck",
    "ClusterNodeCheck",
    "DnsRecordCheck",
    "EndpointCheck",
    "Finding",
    "Host",
    "Inventory",
    "InventoryCheck",
    "Kind",
    "NamesOnNodeCheck",
    "NodeCheck",
    "NovaItem",
    "NovaSession",
    "PortRuleCheck",
    "Registry",
    "Requirement",
    "Target",
    "Verdict",
    "__version__",
    "session_of",
]
