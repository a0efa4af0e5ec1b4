"""pytest-nova: prove that infrastructure meets Nova Container Platform's installation requirements.

The names a suite or site-plugin author needs (``__all__``), typed; everything else is internal and may change.
"""

from __future__ import annotations

from _pytest_nova import __version__
from _pytest_nova.areas import OPTIONAL, REQUIRED, AreaSpec, Key
from _pytest_nova.catalog import Catalog, Requirement
from _pytest_nova.checks.facts import Facts
from _pytest_nova.checks.node_registry import NodeFact, gathered, node_verdicts
from _pytest_nova.checks.node_rules import Context, Params
from _pytest_nova.checks.node_rules import Rule as NodeRule
from _pytest_nova.hosts import HostError, Hosts, Reason, RemoteHost, Result
from _pytest_nova.inventory import Host, Inventory
from _pytest_nova.kinds import Judge, Kind, Registry, RegistryError
from _pytest_nova.model import JSONObject, JSONValue, Outcome, Phase
from _pytest_nova.plan import (
    BalancerCheck,
    Check,
    ClusterCheck,
    ClusterNodeCheck,
    DnsRecordCheck,
    EndpointCheck,
    Expand,
    InventoryCheck,
    NamesOnNodeCheck,
    NodeCheck,
    PortRuleCheck,
    Target,
    hosts_in_scope,
)
from _pytest_nova.runcache import RunCache, once
from _pytest_nova.session import NovaItem, NovaSession, session_of
from _pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, WARNING, Finding, Verdict

__all__ = [
    "ERROR",
    "FAILED",
    "OPTIONAL",
    "PASSED",
    "REQUIRED",
    "SKIPPED",
    "WARNING",
    "AreaSpec",
    "BalancerCheck",
    "Catalog",
    "Check",
    "ClusterCheck",
    "ClusterNodeCheck",
    "Context",
    "DnsRecordCheck",
    "EndpointCheck",
    "Expand",
    "Facts",
    "Finding",
    "Host",
    "HostError",
    "Hosts",
    "Inventory",
    "InventoryCheck",
    "JSONObject",
    "JSONValue",
    "Judge",
    "Key",
    "Kind",
    "NamesOnNodeCheck",
    "NodeCheck",
    "NodeFact",
    "NodeRule",
    "NovaItem",
    "NovaSession",
    "Outcome",
    "Params",
    "Phase",
    "PortRuleCheck",
    "Reason",
    "Registry",
    "RegistryError",
    "RemoteHost",
    "Requirement",
    "Result",
    "RunCache",
    "Target",
    "Verdict",
    "__version__",
    "gathered",
    "hosts_in_scope",
    "node_verdicts",
    "once",
    "session_of",
]
