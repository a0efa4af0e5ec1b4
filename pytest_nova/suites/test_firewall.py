"""Docs 3.1.1–3.1.6: every documented port rule holds from each source host to each of its destinations."""

from __future__ import annotations

from pytest_nova.matrix import PortMatrix
from pytest_nova.plan import Check
from pytest_nova.plugin import NovaItem


def test_port(port_rule: Check, port_matrix: PortMatrix, nova: NovaItem) -> None:
    """The source reaches every destination of the rule on its port and protocol (open, not refused/filtered)."""
    nova.judge(port_matrix.verdicts(port_rule))
