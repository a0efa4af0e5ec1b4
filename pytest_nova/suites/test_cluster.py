"""The installed cluster is the one the inventory describes: every node registered, Ready, with its roles.

One kubelet version across nodes; kube-system pods running.
"""

from __future__ import annotations

from _pytest_nova.checks.cluster import Cluster
from _pytest_nova.plan import ClusterCheck, ClusterNodeCheck
from _pytest_nova.session import NovaItem


def test_cluster_node(cluster_node: ClusterNodeCheck, nova_cluster: Cluster, nova: NovaItem) -> None:
    """Each inventory node is registered and Ready, with the roles the inventory gives it."""
    nova.judge(nova_cluster.verdicts(cluster_node))


def test_cluster(cluster_check: ClusterCheck, nova_cluster: Cluster, nova: NovaItem) -> None:
    """Cluster-wide: one kubelet version across nodes, every kube-system pod Running."""
    nova.judge(nova_cluster.verdicts(cluster_check))
