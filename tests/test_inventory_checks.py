"""The inventory's own values as checks on the sign-off (docs 2.1, universe 2.4): pure rules, no network."""

from __future__ import annotations

import dataclasses

from _pytest_nova.catalog import load_catalog
from _pytest_nova.checks import inventory as inventory_checks
from _pytest_nova.inventory import load_inventory
from _pytest_nova.kinds import build
from _pytest_nova.verdicts import FAILED, PASSED, SKIPPED
from tests.test_plan import CLOSED, PROD

CAT = load_catalog()


def _verdict(inv_path: object, req_id: str, **universe: str) -> tuple[str, str]:
    inv = load_inventory(CLOSED)
    if universe:
        assert inv.universe is not None
        inv = dataclasses.replace(inv, universe=dataclasses.replace(inv.universe, **universe))
    check = next(c for c in build(CAT, load_inventory(CLOSED)).checks if c.id == f"inventory:{req_id}")
    (v,) = inventory_checks.verdicts(check, inv)
    assert v.check == "inventory" and v.requirement == req_id
    return v.outcome, v.message


def test_closed_example_passes_both() -> None:
    assert _verdict(CLOSED, "inv-universe-ipv4")[0] == PASSED
    outcome, message = _verdict(CLOSED, "inv-universe-domain-distinct")
    assert outcome == PASSED and "differs from cluster.dnsBaseDomain" in message


def test_ipv6_and_same_domain_fail_saying_why() -> None:
    outcome, message = _verdict(CLOSED, "inv-universe-ipv4", address="fd00::10")
    assert outcome == FAILED and "is IPv6; Nova Universe supports IPv4 only" in message
    domain = load_inventory(CLOSED).dns_base_domain
    outcome, message = _verdict(CLOSED, "inv-universe-domain-distinct", dns_base_domain=domain.upper() + ".")
    assert outcome == FAILED and "equals cluster.dnsBaseDomain" in message


def test_internet_mode_plans_none_and_a_missing_universe_is_skipped() -> None:
    assert not [c for c in build(CAT, load_inventory(PROD)).checks if c.kind == "inventory_check"]
    check = next(c for c in build(CAT, load_inventory(CLOSED)).checks if c.kind == "inventory_check")
    (v,) = inventory_checks.verdicts(check, dataclasses.replace(load_inventory(CLOSED), universe=None))
    assert v.outcome == SKIPPED
