"""The terminal's one line per host that could not be reached, however many checks it cost.

Every check of such a host keeps its own error record (results JSON, JUnit) and still fails the run; in the
terminal those tests are counted as ``unreachable`` instead of being listed one by one, and this summary says
once per host what went wrong: ``master-3: ssh: connection timed out after 5 s; 36 checks not run``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from pytest_nova.plugin import session_of
from pytest_nova.verdicts import ERROR, FAILED, USER_PROPERTY

LOGIN_PREFIX = "login-"


def failed_logins(run_dir: Path) -> dict[str, str]:
    """Host -> cause, for every host whose one login of the run failed."""
    out: dict[str, str] = {}
    for path in sorted(run_dir.glob(f"{LOGIN_PREFIX}*.json")):
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if "error" in stored:
            host, cause = stored["error"]
            out[str(host)] = str(cause)
    return out


def not_run(records: Iterable[dict[str, Any]], host: str, cause: str) -> int:
    """How many records are errors because of ``host``'s failed login."""
    needle = f"{host}: {cause}"
    count = 0
    for r in records:
        message = str(r.get("message", ""))
        if r.get("outcome") == "error" and (needle in message or (cause in message and host in (
                r.get("source"), r.get("target")))):
            count += 1
    return count


def lines(run_dir: Path, records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per unreachable host."""
    return [f"{host}: {cause}; {not_run(records, host, cause)} checks not run"
            for host, cause in failed_logins(run_dir).items()]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """On the controller: the unreachable hosts, once each."""
    state = session_of(config)
    if state.run_dir is None or not state.run_dir.is_dir():
        return
    out = lines(state.run_dir, state.collector.records(passed=False))
    if out:
        terminalreporter.write_sep("-", "hosts the checks could not use")
        for line in out:
            terminalreporter.write_line(line, red=True)


def only_unreached(report: pytest.TestReport, causes: dict[str, str]) -> bool:
    """Whether every failure of ``report`` is an error caused by a host whose login failed."""
    bad = [v for k, v in report.user_properties
           if k == USER_PROPERTY and isinstance(v, dict) and v.get("outcome") in (FAILED, ERROR)]
    if any(r.get("outcome") != ERROR for r in bad):
        return False
    texts = [str(r.get("message", "")) for r in bad] or [report.longreprtext]
    return all(any(cause in text for cause in causes.values()) for text in texts)


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """A test that failed only because a host could not be reached counts as ``unreachable`` in the terminal.

    It still fails the run (pytest counts the failure, JUnit and the results JSON keep it); the terminal shows
    the cause once per host in :func:`pytest_terminal_summary` instead of once per test.
    """
    if not report.failed or report.when == "teardown":
        return None
    state = session_of(config)
    if state.run_dir is None or not state.run_dir.is_dir():
        return None
    causes = failed_logins(state.run_dir)
    if causes and only_unreached(report, causes):
        return "unreachable", "U", "UNREACHABLE"
    return None
