"""The registry describes each kind once; what a plugin adds is checked when it is added."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest

from _pytest_nova.areas import REQUIRED, AreaSpec
from _pytest_nova.builtin_kinds import BUILTIN_KINDS, KINDS, builtin_registry
from _pytest_nova.catalog import Catalog, load_catalog
from _pytest_nova.checks.node_registry import NodeFact
from _pytest_nova.checks.node_rules import Rule
from _pytest_nova.inventory import Inventory, load_inventory
from _pytest_nova.kinds import Kind, Registry, RegistryError, build
from _pytest_nova.plan import Check, Expand, PortRuleCheck
from _pytest_nova.verdicts import Verdict
from tests.test_plan import PROD


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteCheck(Check):
    kind: ClassVar[str] = "site_thing"


def _none(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    return iter(())


def _judge(check: Check, request: pytest.FixtureRequest) -> list[Verdict]:
    return []


def test_every_builtin_kind_names_its_check_type_engine_and_known_areas() -> None:
    registry = builtin_registry()
    assert tuple(registry.kinds) == KINDS
    for kind in BUILTIN_KINDS:
        assert kind.check_type.kind == kind.name
        assert set(kind.areas) <= set(registry.areas), kind.name
        assert kind.engine.startswith("_pytest_nova."), kind.name
    assert registry.generic == ()
    assert registry.engines == ("_pytest_nova.checks.dns", "_pytest_nova.checks.node", "_pytest_nova.checks.firewall",
                                "_pytest_nova.checks.balancers", "_pytest_nova.checks.cluster", "_pytest_nova.fixtures")


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
     "kind 'site_thing': give verdicts(check, request), or the fixture its own suite asks for"),
])
def test_a_plugins_mistake_is_named(add: object, message: str) -> None:
    registry = builtin_registry()
    with pytest.raises(RegistryError) as info:
        add(registry)  # type: ignore[operator]
    assert str(info.value).startswith(message)


def test_a_plugin_kind_is_run_by_the_generic_suite() -> None:
    registry = builtin_registry()
    registry.add_kind(Kind("site_thing", SiteCheck, ("os",), _none, verdicts=_judge))
    assert registry.generic == ("site_thing",)


def test_an_empty_registry_knows_nothing_and_the_builtins_come_through_the_hook() -> None:
    assert (Registry().areas, Registry().kinds, Registry().node_rules) == ({}, {}, {})
    from _pytest_nova import builtin_kinds

    impl = builtin_kinds.pytest_nova_add_kinds
    assert impl.pytest_impl["tryfirst"]  # type: ignore[attr-defined]  # pluggy's marker
    registry = Registry()
    impl(registry, None)  # type: ignore[arg-type]  # the built-in implementation reads no option
    assert tuple(registry.kinds) == KINDS and "sudo_nopasswd" in registry.node_rules


def _time_sources() -> dict[str, list[str]]:
    return {"servers": []}


def _judge_time(facts: object, params: object, ctx: object) -> object:
    return None


@pytest.mark.parametrize(("fact", "message"), [
    (NodeFact("hostname", command=("hostname",)), "node fact 'hostname' is defined twice"),
    (NodeFact("my-fact", command=("true",)), "node fact 'my-fact': a name is letters, digits and _"),
    (NodeFact("both", command=("true",), gather=_time_sources), "node fact 'both': give exactly one of"),
    (NodeFact("neither"), "node fact 'neither': give exactly one of"),
    (NodeFact("shell", command="chronyc"), "node fact 'shell': command is a tuple of strings"),  # type: ignore[arg-type]
    (NodeFact("anon", gather=lambda: 1), "node fact 'anon': gather is a plain module-level function"),
    (NodeFact("slow", command=("true",), timeout=float("nan")), "node fact 'slow': timeout nan is not"),
])
def test_a_node_fact_that_cannot_be_sent_is_named(fact: NodeFact, message: str) -> None:
    with pytest.raises(RegistryError) as info:
        builtin_registry().add_node_fact(fact)
    assert str(info.value).startswith(message)


def test_a_node_fact_is_sent_as_its_source_and_a_rule_names_the_facts_it_reads() -> None:
    registry = builtin_registry()
    registry.add_node_fact(NodeFact("time_sources", gather=_time_sources))
    spec = registry.node_facts["time_sources"]
    assert spec is not None and spec["function"] == "_time_sources"
    assert str(spec["python"]).startswith("def _time_sources() -> dict[str, list[str]]:\n")
    with pytest.raises(RegistryError, match="node rule 'time_ok': unknown fact ntp"):
        registry.add_node_rule("time_ok", Rule(_judge_time, facts=("ntp",)))  # type: ignore[arg-type]
    registry.add_node_rule("time_ok", Rule(_judge_time, facts=("time_sources",)))  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="node rule 'sudo_nopasswd' is defined twice"):
        registry.add_node_rule("sudo_nopasswd", Rule(_judge_time))  # type: ignore[arg-type]


def test_an_area_no_kind_expands_is_refused() -> None:
    registry = builtin_registry()
    registry.add_area(AreaSpec("site", "Site", "site", {"host": REQUIRED}))
    with pytest.raises(RegistryError, match="area 'site': no kind expands it"):
        registry.check()
    builtin_registry().check()


def _twice(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    r = cat.by_area("os")[0]
    for _ in range(2):
        yield SiteCheck(id="same", requirement=r, phases=(r.phase,))


def _foreign(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    r = cat.by_area("firewall")[0]
    yield PortRuleCheck(id="x", requirement=r, phases=(r.phase,), targets=())


@pytest.mark.parametrize(("expand", "message"), [
    (_twice, "kind 'site_thing': check id 'same' is given twice (requirements os-"),
    (_foreign, "kind 'site_thing': its expansion gave a PortRuleCheck (kind 'port_rule'), not a SiteCheck"),
])
def test_a_plan_with_a_repeated_id_or_a_foreign_check_is_refused(expand: Expand, message: str) -> None:
    registry = builtin_registry()
    registry.add_kind(Kind("site_thing", SiteCheck, ("os",), expand, verdicts=_judge))
    with pytest.raises(RegistryError) as info:
        registry.build(load_catalog(), load_inventory(PROD))
    assert str(info.value).startswith(message)


def _both_phases(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    r = cat.by_area("os")[0]
    yield SiteCheck(id="both", requirement=r, phases=("preinstall", "postinstall"))


def test_a_check_collected_in_a_phase_its_requirement_does_not_name_is_refused() -> None:
    registry = builtin_registry()
    registry.add_kind(Kind("site_thing", SiteCheck, ("os",), _both_phases, verdicts=_judge))
    with pytest.raises(RegistryError, match=r"kind 'site_thing': check 'both' is collected in postinstall, not its "
                                            r"requirement's phase \(preinstall\): give it phases=requirement.phases"):
        registry.build(load_catalog(), load_inventory(PROD))


def test_every_kind_honours_its_entries_phase_the_firewall_too() -> None:
    cat = load_catalog()
    fw = [r for r in cat.requirements if r.area == "firewall"]
    assert {r.phases for r in fw} == {("preinstall", "postinstall")}  # the docs' rules hold before and after
    only_before = dataclasses.replace(fw[0], phase="preinstall", phases=("preinstall",))
    changed = Catalog(cat.version, tuple(only_before if r is fw[0] else r for r in cat.requirements))
    plan = build(changed, load_inventory(PROD))
    mine = [c for c in plan.checks if c.requirement.id == fw[0].id]
    assert mine and {c.phases for c in mine} == {("preinstall",)}
    assert not [c for c in plan.of_kind("port_rule", "postinstall") if c.requirement.id == fw[0].id]
    others = [c for c in plan.checks if c.requirement.area == "firewall" and c.requirement.id != fw[0].id]
    assert others and all(c.phases == ("preinstall", "postinstall") for c in others)
