"""Kubernetes node prerequisites (seed 002, k8s-basics), checked on each node."""

from __future__ import annotations

import pytest

from _pytest_nova.checks.node import NodeFacts
from _pytest_nova.plan import NodeCheck
from _pytest_nova.session import NovaItem


@pytest.mark.nova_area("k8s")
def test_k8s_node(node_requirement: NodeCheck, node_facts: NodeFacts, nova: NovaItem) -> None:
    """The node meets the Kubernetes prerequisite (k8s-basics).

    Before installation: swap off, net.ipv4.ip_forward = 1, br_netfilter loaded with bridge-nf-call-iptables = 1,
    hostname and product_uuid unique across the nodes. After: the container runtime, the kubelet, the binaries
    and a CNI config (k8s-basics).
    """
    nova.judge(node_facts.verdicts(node_requirement))
