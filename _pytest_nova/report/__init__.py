"""The acceptance report, loaded as a plugin by :mod:`_pytest_nova.plugin`.

Every process loads the waivers and applies them where an item ran (:mod:`.waiving`); the controller decides the
verdict and prints it (:mod:`.summary`) and, with ``--html``, fills pytest-html's report (:mod:`.html_hooks`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from _pytest_nova import handoff
from _pytest_nova.baseline import Baseline, BaselineError, load_baseline
from _pytest_nova.errors import SourceError
from _pytest_nova.report.html_hooks import HtmlReport
from _pytest_nova.report.summary import DESELECTED, DESELECTED_OUTPUT, SignOff, deselected_counts
from _pytest_nova.report.waiving import WAIVERS, pytest_report_teststatus, pytest_runtest_makereport
from _pytest_nova.session import NovaSession, check_of, session_of
from _pytest_nova.waivers import load_waivers


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
                state.settings.waivers, requirements={r.id for r in state.catalog.requirements}, hosts=hosts,
                pending=True,  # a site test's requirement: checked once the tests are collected (site_tests.py)
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


def pytest_deselected(items: Sequence[pytest.Item]) -> None:
    """Count the plan's checks ``-k`` and ``-m`` deselect, per requirement (the coverage says so)."""
    for item in items:
        check = check_of(item)
        if check is not None:  # a check two modules test is counted once
            item.config.stash.setdefault(DESELECTED, {}).setdefault(check.requirement.id, set()).add(
                (check.kind, check.id))


@pytest.hookimpl(optionalhook=True)  # on an xdist worker, whose selection the controller does not see
def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: hand the deselected counts to the controller with the worker's output."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[DESELECTED_OUTPUT] = deselected_counts(session.config)


def _baseline(config: pytest.Config, state: NovaSession) -> Baseline | None:
    """The earlier run to compare with (``--nova-baseline``), read on the controller only.

    That no output of the run is the baseline is checked before (:mod:`_pytest_nova.runfiles`).
    """
    path, inv = state.settings.baseline, state.inventory
    if path is None or inv is None:
        return None
    try:
        return load_baseline(path, inv.name)
    except BaselineError as exc:
        raise pytest.UsageError(f"--nova-baseline: {exc}") from None


__all__ = ["pytest_configure", "pytest_deselected", "pytest_report_teststatus", "pytest_runtest_makereport",
           "pytest_sessionfinish"]
