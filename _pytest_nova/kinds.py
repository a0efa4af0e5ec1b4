"""The registry of one run: areas, kinds of check, and the node engine's facts and rules.

Built-in and plugin kinds are described alike and added alike, through the ``pytest_nova_add_kinds`` hook
(pytest-nova's own implementation is :mod:`_pytest_nova.builtin_kinds`). A kind is three parts:

- ``expand(catalog, inventory)``: pure, the checks of its areas' requirements (one pytest item each);
- gather: the I/O its checks need, done once per run through the run cache (:func:`_pytest_nova.runcache.once`,
  shared by every xdist worker), by the kind's engine fixture or inside ``verdicts``;
- judge: pure, the gathered data of one check into :class:`~_pytest_nova.verdicts.Verdict` s.

A kind either gives ``verdicts(check, request)`` (gather + judge; the packaged generic suite,
``suites/test_extensions.py``, runs its checks) or names the ``fixture`` a suite of its own asks for. Areas
(report title, marker, catalog keys) are in :mod:`_pytest_nova.areas`; the node engine's facts and rules in
:mod:`_pytest_nova.checks.node_registry` and :mod:`_pytest_nova.checks.node_rules`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from _pytest_nova import plan
from _pytest_nova.areas import AreaSpec, Key
from _pytest_nova.catalog import AREA_KEYS, Catalog
from _pytest_nova.checks.node_registry import BUILTIN_FACTS, FactError, NodeFact
from _pytest_nova.checks.node_rules import Rule
from _pytest_nova.inventory import Inventory
from _pytest_nova.model import JSONObject
from _pytest_nova.plan import Check, Expand
from _pytest_nova.verdicts import Verdict

# How a kind judges one of its checks; ``request`` gives it any fixture (``request.getfixturevalue``).
Judge = Callable[[Check, pytest.FixtureRequest], list[Verdict]]


@dataclass(frozen=True)
class Kind:
    """One kind of check: its check type, the areas it expands, the expansion, and how its checks are judged."""

    name: str  # the test argument its checks are parametrized under; also ``check_type.kind``
    check_type: type[Check]
    areas: tuple[str, ...]  # the catalog areas whose requirements it expands
    expand: Expand
    fixture: str = ""  # the engine fixture a suite of its own asks for
    engine: str = ""  # the module holding the kind's fixtures, loaded as a pytest plugin
    verdicts: Judge | None = None  # gather + judge one check: the generic suite runs the kind's checks


def chain(*expansions: Expand) -> Expand:
    """One expansion made of several, in order."""
    def expand(cat: Catalog, inv: Inventory) -> Iterable[Check]:
        return itertools.chain.from_iterable(e(cat, inv) for e in expansions)

    return expand


class RegistryError(ValueError):
    """A kind or area that cannot be added (a plugin's mistake), named with the reason."""


class Registry:
    """The areas, kinds, node facts and node rules of one run, as the ``pytest_nova_add_kinds`` hooks add them."""

    def __init__(self) -> None:
        self.areas: dict[str, AreaSpec] = {}
        self.kinds: dict[str, Kind] = {}
        # The node engine: the probe spec of each fact (None: gathered by the probe itself), the rules by name.
        self.node_facts: dict[str, JSONObject | None] = dict.fromkeys(BUILTIN_FACTS)
        self.node_rules: dict[str, Rule] = {}

    def add_area(self, area: AreaSpec) -> None:
        """Add an area; its catalog keys must be fields of a requirement, each required or optional."""
        if area.name in self.areas:
            raise RegistryError(f"area {area.name!r} is defined twice")
        if not area.name.isidentifier():
            raise RegistryError(f"area {area.name!r}: a name is letters, digits and _ (it is a pytest marker)")
        unknown = sorted(set(area.keys) - AREA_KEYS)
        if unknown:
            raise RegistryError(f"area {area.name!r}: {', '.join(unknown)} is not a requirement field "
                                f"(expected some of: {', '.join(sorted(AREA_KEYS))})")
        untyped = sorted(k for k, use in area.keys.items() if not isinstance(use, Key | bool))
        if untyped:
            raise RegistryError(f"area {area.name!r}: key {', '.join(untyped)}: say REQUIRED or OPTIONAL")
        self.areas[area.name] = area

    def add_kind(self, kind: Kind) -> None:
        """Add a kind; its areas must be known, its check type must name it, and it must say how it is judged."""
        if kind.name in self.kinds:
            raise RegistryError(f"kind {kind.name!r} is defined twice")
        if kind.check_type.kind != kind.name:
            raise RegistryError(f"kind {kind.name!r}: {kind.check_type.__name__}.kind is {kind.check_type.kind!r}")
        missing = [a for a in kind.areas if a not in self.areas]
        if missing:
            raise RegistryError(f"kind {kind.name!r}: unknown area {', '.join(missing)} (add it with add_area)")
        if kind.verdicts is None and not kind.fixture:
            raise RegistryError(f"kind {kind.name!r}: give verdicts(check, request), or the fixture its own suite "
                                "asks for")
        self.kinds[kind.name] = kind

    def add_node_fact(self, fact: NodeFact) -> None:
        """Add a fact to every node's facts run (a command or a small stdlib-only function)."""
        if fact.name in self.node_facts:
            raise RegistryError(f"node fact {fact.name!r} is defined twice")
        try:
            self.node_facts[fact.name] = fact.spec()
        except FactError as exc:
            raise RegistryError(f"node {exc}") from None

    def add_node_rule(self, name: str, rule: Rule) -> None:
        """Add the rule that judges catalog ``check: name`` from a node's facts; the facts it reads must exist."""
        if name in self.node_rules:
            raise RegistryError(f"node rule {name!r} is defined twice")
        unknown = [f for f in rule.facts if f not in self.node_facts]
        if unknown:
            raise RegistryError(f"node rule {name!r}: unknown fact {', '.join(unknown)} (add it with add_node_fact "
                                "first)")
        self.node_rules[name] = rule

    def check(self) -> None:
        """Refuse what the run could not honour: an area no kind expands (its entries would never be checked)."""
        covered = {a for k in self.kinds.values() for a in k.areas}
        idle = [a for a in self.areas if a not in covered]
        if idle:
            raise RegistryError(f"area {', '.join(map(repr, idle))}: no kind expands it, so its requirements would "
                                "never be checked (add_kind(Kind(..., areas=(...))) naming it)")

    def build(self, cat: Catalog, inv: Inventory) -> plan.Plan:
        """The plan of every kind, in registration order; refuses a check of another kind or an id given twice.

        An id names one pytest item among the checks of its test function (a kind's own suite, or the generic
        suite for every kind judged by ``verdicts``): pytest would rename a repeated one (``…0``, ``…1``).
        """
        checks: list[Check] = []
        seen: dict[str, dict[str, str]] = {}
        for kind in self.kinds.values():
            ids = seen.setdefault(GENERIC if kind.name in self.generic else kind.name, {})
            for c in kind.expand(cat, inv):
                if c.kind != kind.name:
                    raise RegistryError(f"kind {kind.name!r}: its expansion gave a {type(c).__name__} (kind "
                                        f"{c.kind!r}), not a {kind.check_type.__name__}")
                stray = sorted(set(c.phases) - c.allowed_phases)
                if stray or not c.phases:
                    raise RegistryError(f"kind {kind.name!r}: check {c.id!r} is collected in "
                                        f"{', '.join(stray) or 'no phase'}, not its requirement's phase "
                                        f"({', '.join(c.requirement.phases)}): give it phases=requirement.phases")
                if c.id in ids:
                    raise RegistryError(f"kind {kind.name!r}: check id {c.id!r} is given twice (requirements "
                                        f"{ids[c.id]} and {c.requirement.id}); each id names one test item")
                ids[c.id] = c.requirement.id
                checks.append(c)
        return plan.Plan(tuple(checks))

    def kind_of(self, check: Check) -> Kind:
        """The kind of ``check``."""
        return self.kinds[check.kind]

    @property
    def engines(self) -> tuple[str, ...]:
        """The modules holding the kinds' fixtures, each once, in registration order."""
        return tuple(dict.fromkeys(k.engine for k in self.kinds.values() if k.engine))

    @property
    def generic(self) -> tuple[str, ...]:
        """Kinds the generic suite runs (those judged by ``verdicts``, without a suite of their own)."""
        return tuple(k.name for k in self.kinds.values() if k.verdicts is not None and not k.fixture)


GENERIC = "nova_check"  # the generic suite's test argument: checks of every kind that judges its own


def build(cat: Catalog, inv: Inventory, registry: Registry | None = None) -> plan.Plan:
    """The plan of ``cat`` over ``inv`` with the kinds of ``registry`` (by default the built-in ones)."""
    if registry is None:
        from _pytest_nova.builtin_kinds import builtin_registry  # it imports this module

        registry = builtin_registry()
    return registry.build(cat, inv)
