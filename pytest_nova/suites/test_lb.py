"""Docs 3.2: each load balancer and each of its backends answers its healthcheck; the API balancer is L4 only."""

from __future__ import annotations

from _pytest_nova.checks.balancers import Balancers
from _pytest_nova.plan import BalancerCheck
from _pytest_nova.session import NovaItem


def test_balancer(balancer_check: BalancerCheck, nova_balancers: Balancers, nova: NovaItem) -> None:
    """Through the balancer and on each backend: the healthcheck answers 200 (DNS on 53).

    Through the API balancer, the masters' own certificate is presented (TLS passthrough).
    """
    nova.judge(nova_balancers.verdicts(balancer_check))
