"""Docs section 1: the platform's service names resolve, at every DNS server, to the infra nodes."""

from __future__ import annotations

from pytest_nova.plan import Check
from pytest_nova.plugin import NovaItem


def test_dns_record(dns_record: Check, nova: NovaItem) -> None:
    nova.judge([])
