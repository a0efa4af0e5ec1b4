"""Docs 1 (and 2.1 in closed mode): the platform's names resolve, at every DNS server and on every node."""

from __future__ import annotations

from _pytest_nova.checks.dns import NameChecks
from _pytest_nova.checks.node import NodeFacts
from _pytest_nova.plan import DnsRecordCheck, NamesOnNodeCheck
from _pytest_nova.session import NovaItem


def test_dns_record(dns_record: DnsRecordCheck, nova_dns: NameChecks, nova: NovaItem) -> None:
    """The record resolves at this DNS server, and only to the infra nodes or the infra balancer (docs 1).

    In closed mode the Universe names (hub, sun, repo, uploads) resolve to the Universe address (docs 2.1).
    """
    nova.judge(nova_dns.verdicts(dns_record))


def test_dns_on_node(dns_on_node: NamesOnNodeCheck, node_facts: NodeFacts, nova: NovaItem) -> None:
    """Every required name resolves on the node through the node's own resolver, to allowed addresses (docs 1, 2.1)."""
    nova.judge(node_facts.verdicts(dns_on_node))
