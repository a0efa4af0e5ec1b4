"""Docs 2.1 and universe 2.4: the inventory's Nova Universe values, verified on the sign-off."""

from __future__ import annotations

from _pytest_nova.checks import inventory as inventory_checks
from _pytest_nova.inventory import Inventory
from _pytest_nova.plan import InventoryCheck
from _pytest_nova.session import NovaItem


def test_inventory_value(inventory_check: InventoryCheck, nova_inventory: Inventory, nova: NovaItem) -> None:
    """The Universe address is IPv4 (2.1) and its domain is not the cluster's (universe 2.4)."""
    nova.judge(inventory_checks.verdicts(inventory_check, nova_inventory))
