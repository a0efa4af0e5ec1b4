"""Checks of the inventory's own values against the docs (area ``inventory``), judged on the runner.

The inventory loader refuses these values already; judging them again as checks puts the verification on the
sign-off (results JSON, report), so a reader sees that the Universe address and domain were verified.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from _pytest_nova.inventory import Inventory
from _pytest_nova.plan import Check
from _pytest_nova.verdicts import FAILED, PASSED, SKIPPED, Finding, Verdict

InventoryRule = Callable[[Inventory], Finding]


def universe_ipv4(inv: Inventory) -> Finding:
    """universe.address is IPv4 (docs 2.1: Nova Universe does not support IPv6)."""
    if inv.universe is None:
        return Finding(SKIPPED, "no universe section: not a closed-mode install")
    address = inv.universe.address
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        return Finding(FAILED, f"universe.address {address!r} is not an IP address")
    if version != 4:
        return Finding(FAILED, f"universe.address {address} is IPv6; Nova Universe supports IPv4 only")
    return Finding(PASSED, f"universe.address {address} is IPv4")


def universe_domain_distinct(inv: Inventory) -> Finding:
    """universe.dnsBaseDomain differs from cluster.dnsBaseDomain (docs universe 2.4)."""
    if inv.universe is None:
        return Finding(SKIPPED, "no universe section: not a closed-mode install")
    u, c = inv.universe.dns_base_domain.lower().rstrip("."), inv.dns_base_domain.lower().rstrip(".")
    if u == c:
        return Finding(FAILED, f"universe.dnsBaseDomain {u} equals cluster.dnsBaseDomain: Universe's services "
                               "would not be reachable from the platform")
    return Finding(PASSED, f"universe.dnsBaseDomain {u} differs from cluster.dnsBaseDomain {c}")


RULES: dict[str, InventoryRule] = {
    "universe_ipv4": universe_ipv4,
    "universe_domain_distinct": universe_domain_distinct,
}


def verdicts(check: Check, inv: Inventory) -> list[Verdict]:
    """The verdict of one ``inventory_check``."""
    r = check.requirement
    judge = RULES.get(str(r.check))
    finding = judge(inv) if judge else Finding(FAILED, f"no rule implements check {r.check!r} (requirement {r.id})")
    return [Verdict(check="inventory", requirement=r.id, section=r.section, outcome=finding.outcome,
                    message=finding.message, target=check.target, checked=f"inventory {inv.path}: {r.summary}",
                    expected=r.summary, fix="" if finding.outcome == PASSED else r.fix)]
