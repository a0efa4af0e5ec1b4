"""Docs 2 and 2.1: every cluster node and nova-ctl reach the vendor (or Nova Universe) endpoints over TLS."""

from __future__ import annotations

import pytest

from _pytest_nova.checks.node import NodeFacts
from _pytest_nova.plan import EndpointCheck, NodeCheck
from _pytest_nova.session import NovaItem


def test_endpoint(endpoint: EndpointCheck, node_facts: NodeFacts, nova: NovaItem) -> None:
    """From the node, the endpoint accepts TCP and its TLS certificate verifies (docs 2, 2.1).

    The connection goes through network.httpProxy (CONNECT) when it is set; the certificate verifies against
    the node's own trust store. Closed mode: Universe's hub, sun, repo and uploads on 443 (docs 2.1).
    """
    nova.judge(node_facts.verdicts(endpoint))


@pytest.mark.nova_area("external")
def test_vendor_addresses(node_requirement: NodeCheck, node_facts: NodeFacts, nova: NovaItem) -> None:
    """Advisory, per host: the vendor names resolve only to docs 2's addresses; the trust store verifies the chains."""
    nova.judge(node_facts.verdicts(node_requirement))
