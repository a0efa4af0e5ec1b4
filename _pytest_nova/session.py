"""The run state of one pytest session (a leaf module: engines and the report read it, nothing here reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from _pytest_nova.catalog import Catalog
from _pytest_nova.hosts import HostError, host_fix
from _pytest_nova.inventory import Inventory
from _pytest_nova.kinds import Registry
from _pytest_nova.options import Settings
from _pytest_nova.plan import Check, Plan
from _pytest_nova.results import Collector
from _pytest_nova.verdicts import ERROR, Verdict, judge


@dataclass
class NovaSession:
    """What one pytest session knows: settings, inventory, catalog, plan and collected results."""

    settings: Settings
    catalog: Catalog
    inventory: Inventory | None = None
    plan: Plan | None = None
    registry: Registry = field(default_factory=Registry)
    collector: Collector = field(default_factory=Collector)
    needs_inventory: bool = False
    run_dir: Path | None = None
    fd_note: str = ""  # set when the open-files limit is below what the inventory's size needs


SESSION = pytest.StashKey[NovaSession]()


def session_of(config: pytest.Config) -> NovaSession:
    """The pytest-nova state of a session."""
    return config.stash[SESSION]


def check_of(item: pytest.Item) -> Check | None:
    """The plan's check an item was parametrized with, if any."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    return next((v for v in params.values() if isinstance(v, Check)), None)


def selected_checks(session: pytest.Session) -> list[Check]:
    """The checks of the items this session runs (after ``-k``, ``-m`` and deselection)."""
    return [c for c in map(check_of, session.items) if c is not None]


class NovaItem:
    """Per-test helper given to suite functions: record verdicts and fail with a readable message."""

    def __init__(self, item: pytest.Item, state: NovaSession) -> None:
        self._item = item
        self.settings = state.settings
        self.catalog = state.catalog
        if state.inventory is None:
            raise ValueError("the nova fixture needs a run with an inventory")
        self.inventory: Inventory = state.inventory
        self.registry = state.registry

    def judge(self, verdicts: list[Verdict]) -> None:
        """Record every verdict; fail once, listing those that did not pass."""
        judge(self._item.user_properties, self._item.nodeid, verdicts, advisory=self.catalog.advisory,
              strict=self.settings.strict, proof=self.settings.require_proof)

    def judge_with(self, check: Check, request: pytest.FixtureRequest) -> list[Verdict]:
        """The verdicts of a check whose kind judges its own (a site plugin's kind).

        A :class:`HostError` it raises (a host it could not reach) is the check's one ``error`` verdict, naming
        host and cause, with the fix for that reason.
        """
        verdicts = self.registry.kind_of(check).verdicts
        if verdicts is None:
            raise TypeError(f"kind {check.kind} has a suite of its own")
        try:
            return verdicts(check, request)
        except HostError as exc:
            r = check.requirement
            return [Verdict(check=r.area, requirement=r.id, section=r.section, outcome=ERROR, message=str(exc),
                            source=check.source, target=check.target, port=check.port, protocol=check.protocol,
                            checked=f"{check.kind} {check.id}", expected=r.summary, fix=host_fix(exc))]
