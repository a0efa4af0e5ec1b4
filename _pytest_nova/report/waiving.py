"""Waivers, applied where an item ran.

That is the worker under pytest-xdist, so the controller, JUnit and the exit code all see the final outcome.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import cast

import pytest

from _pytest_nova.model import Record
from _pytest_nova.verdicts import ERROR, FAILED, USER_PROPERTY
from _pytest_nova.waivers import Waiver, Waivers, waive

WAIVERS = pytest.StashKey["Waivers | None"]()
WAIVED_CATEGORY = "waived"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Mark failed records an unexpired waiver covers as waived; when that is all of them, the item is xfailed."""
    report: pytest.TestReport = yield
    waivers = item.config.stash.get(WAIVERS, None)
    if report.when == "call" and report.failed and waivers is not None and waivers.active:
        _apply(item, report, waivers)
    return report


def _apply(item: pytest.Item, report: pytest.TestReport, waivers: Waivers) -> None:
    props = item.user_properties
    failing = 0
    used: list[Waiver] = []
    for i, (key, value) in enumerate(props):
        if key != USER_PROPERTY or not isinstance(value, dict) or value.get("outcome") not in (FAILED, ERROR):
            continue
        failing += 1
        record = cast(Record, value)
        w = waivers.find(record)
        if w is not None:
            props[i] = (key, waive(record, w))
            used.append(w)
    if not used:
        return
    # The report copied the item's properties before this hook; the teardown report (JUnit) copies them later.
    report.user_properties = list(props)
    reasons = "; ".join(dict.fromkeys(w.reason for w in used))
    if len(used) == failing:
        report.outcome = "skipped"
        report.wasxfail = reasons
        report.nova_waived = True  # type: ignore[attr-defined]
    else:
        report.sections.append(("nova waivers", f"{len(used)} of {failing} failures waived: {reasons}"))


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    """Show a fully waived item as WAIVED (w) rather than XFAIL."""
    if getattr(report, "nova_waived", False) and report.when == "call":
        return WAIVED_CATEGORY, "w", "WAIVED"
    return None
