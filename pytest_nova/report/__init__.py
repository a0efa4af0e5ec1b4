"""The acceptance report, loaded as a plugin by :mod:`pytest_nova.plugin`.

Every process loads the waivers and applies them where an item ran (:mod:`.waiving`); the controller decides the
verdict and prints it (:mod:`.summary`) and, with ``--html``, fills pytest-html's report (:mod:`.html_hooks`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_nova import handoff
from pytest_nova.baseline import Baseline, BaselineError, load_baseline
from pytest_nova.errors import SourceError
from pytest_nova.report.html_hooks import HtmlReport
from pytest_nova.report.summary import SignOff
from pytest_nova.report.waiving import WAIVERS, pytest_report_teststatus, pytest_runtest_makereport
from pytest_nova.session import NovaSession, session_of
from pytest_nova.waivers import load_waivers


def pytest_configure(config: pytest.Config) -> None:
    """Load the waivers (every process applies them); on the controller, add the summary and HTML hooks."""
    state = session_of(config)
    handed = handoff.received(config)
    waivers = handed.waivers if handed is not None else None
    if state.settings.waivers is not None and handed is None:
        inv = state.inventory
        hosts = None if inv is None else {h.name for h in (*inv.nodes, *inv.workstations)} | set(inv.balancers)
        try:
            waivers = load_waivers(
                state.settings.waivers, requirements={r.id for r in state.catalog.requirements}, hosts=hosts
            )
        except SourceError as exc:
            raise pytest.UsageError(f"--nova-waivers: {exc}") from None
    config.stash[WAIVERS] = waivers
    if hasattr(config, "workerinput"):
        return
    signoff = SignOff(config, state, waivers, _baseline(config, state))
    config.pluginmanager.register(signoff, "nova-signoff")
    # Only with --html: the hooks replace pytest-metadata's table, which other plugins may read.
    if config.pluginmanager.hasplugin("html") and config.getoption("htmlpath", None):
        config.pluginmanager.register(HtmlReport(signoff), "nova-html")


def _baseline(config: pytest.Config, state: NovaSession) -> Baseline | None:
    """The earlier run to compare with (``--nova-baseline``), read on the controller only."""
    path, inv = state.settings.baseline, state.inventory
    if path is None or inv is None:
        return None
    outs = [(flag, Path(os.path.expanduser(str(value)))) for flag, value in (
        ("--nova-json", state.settings.json_path), ("--junitxml", getattr(config.option, "xmlpath", None)),
        ("--html", getattr(config.option, "htmlpath", None))) if value]
    try:
        return load_baseline(path, inv.name, outputs=outs)
    except BaselineError as exc:
        raise pytest.UsageError(f"--nova-baseline: {exc}") from None


__all__ = ["pytest_configure", "pytest_report_teststatus", "pytest_runtest_makereport"]
