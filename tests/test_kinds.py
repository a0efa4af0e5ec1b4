"""The registry describes each kind once; what a plugin adds is checked when it is added."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest

from pytest_nova.areas import AreaSpec
from pytest_nova.catalog import Catalog, load_catalog
from pytest_nova.inventory import Inventory, load_inventory
from pytest_nova.kinds import BUILTIN_KINDS, KINDS, Kind, Registry, RegistryError, build
from pytest_nova.plan import Check, PortRuleCheck
from pytest_nova.verdicts import Verdict
from tests.test_plan import PROD


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteCheck(Check):
    kind: ClassVar[str] = "site_thing"


def _none(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    return iter(())


def _judge(check: Check, request: pytest.FixtureRequest) -> list[Verdict]:
    return []


def test_every_builtin_kind_names_its_check_type_engine_and_known_areas() -> None:
    registry = Registry()
    assert tuple(registry.kinds) == KINDS
    for kind in BUILTIN_KINDS:
        assert kind.check_type.kind == kind.name
        assert set(kind.areas) <= set(registry.areas), kind.name
        assert kind.engine.startswith("pytest_nova."), kind.name
    assert registry.generic == ()
    assert registry.engines == ("pytest_nova.checks.dns", "pytest_nova.checks.node", "pytest_nova.checks.firewall",
                                "pytest_nova.checks.balancers", "pytest_nova.checks.cluster", "pytest_nova.fixtures")


def test_the_plan_holds_only_the_registered_types_each_under_its_kind() -> None:
    plan = build(load_catalog(), load_inventory(PROD))
    by_kind = {k.name: k.check_type for k in BUILTIN_KINDS}
    assert {c.kind for c in plan.checks} == set(KINDS) - {"inventory_check"}  # prod is not in closed mode
    assert all(type(c) is by_kind[c.kind] for c in plan.checks)
    assert len(plan.of_type(PortRuleCheck)) == len(plan.of_kind("port_rule", "all")) > 100


@pytest.mark.parametrize(("add", "message"), [
    (lambda r: r.add_area(AreaSpec("dns", "again", "")), "area 'dns' is defined twice"),
    (lambda r: r.add_area(AreaSpec("my-site", "t", "")), "area 'my-site': a name is letters, digits and _"),
    (lambda r: r.add_area(AreaSpec("site", "t", "", {"hots": True})), "area 'site': hots is not a requirement field"),
    (lambda r: r.add_kind(Kind("port_rule", PortRuleCheck, ("firewall",), _none)), "kind 'port_rule' is defined twice"),
    (lambda r: r.add_kind(Kind("site_other", SiteCheck, ("os",), _none, verdicts=_judge)),
     "kind 'site_other': SiteCheck.kind is 'site_thing'"),
    (lambda r: r.add_kind(Kind("site_thing", SiteCheck, ("ntp",), _none, verdicts=_judge)),
     "kind 'site_thing': unknown area ntp (add it with add_area)"),
    (lambda r: r.add_kind(Kind("site_thing", SiteCheck, ("os",), _none)),
     "kind 'site_thing': a plugin kind gives verdicts(check, request)"),
])
def test_a_plugins_mistake_is_named(add: object, message: str) -> None:
    registry = Registry()
    with pytest.raises(RegistryError) as info:
        add(registry)  # type: ignore[operator]
    assert str(info.value).startswith(message)


def test_a_plugin_kind_is_run_by_the_generic_suite() -> None:
    registry = Registry()
    registry.add_kind(Kind("site_thing", SiteCheck, ("os",), _none, verdicts=_judge))
    assert registry.generic == ("site_thing",)
