"""The terminal's one line per host that could not be reached, however many checks it cost.

Every check of such a host keeps its own error record (results JSON, JUnit) and still fails the run; in the
terminal those tests are counted as ``unreachable`` instead of being listed one by one, and this summary says
once per host what went wrong: ``master-3: ssh: connection timed out after 5 s; 36 checks not run``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from _pytest_nova import runcache
from _pytest_nova.hosts import LOGIN_KEY
from _pytest_nova.session import session_of
from _pytest_nova.verdicts import ERROR, FAILED, USER_PROPERTY


def failed_logins(run_dir: Path) -> dict[str, str]:
    """Host -> cause, for every host whose one login of the run failed."""
    return {exc.host: exc.cause for exc in runcache.failures(run_dir, LOGIN_KEY)}


def lines(run_dir: Path, records: Iterable[Mapping[str, object]]) -> list[str]:
    """One line per unreachable host, with how many error records its failed login caused (one pass)."""
    causes = failed_logins(run_dir)
    if not causes:
        return []
    counts = dict.fromkeys(causes, 0)
    for r in records:
        if r.get("outcome") != ERROR:
            continue
        message = str(r.get("message", ""))
        for host, cause in causes.items():
            if f"{host}: {cause}" in message or (cause in message and host in (r.get("source"), r.get("target"))):
                counts[host] += 1
    return [f"{host}: {cause}; {counts[host]} checks not run" for host, cause in causes.items()]


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


def error_texts(report: pytest.TestReport) -> list[str] | None:
    """What the failures of ``report`` say, or None when one of them is a real failure rather than an error."""
    bad = [v for k, v in report.user_properties
           if k == USER_PROPERTY and isinstance(v, dict) and v.get("outcome") in (FAILED, ERROR)]
    if any(r.get("outcome") != ERROR for r in bad):
        return None
    return [str(r.get("message", "")) for r in bad] or [report.longreprtext]


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """A test that failed only because a host could not be reached counts as ``unreachable`` in the terminal.

    It still fails the run (pytest counts the failure, JUnit and the results JSON keep it); the terminal shows
    the cause once per host in :func:`pytest_terminal_summary` instead of once per test.
    """
    # A collection error's report comes here too (pytest calls it for every report): it has no properties.
    if not isinstance(report, pytest.TestReport) or not report.failed or report.when == "teardown":
        return None
    state = session_of(config)
    # Only a report whose failures are all errors can be an unreachable host's: the run folder is read for those.
    texts = error_texts(report)
    if texts is None or state.run_dir is None or not state.run_dir.is_dir():
        return None
    causes = failed_logins(state.run_dir).values()
    if causes and all(any(cause in text for cause in causes) for text in texts):
        return "unreachable", "U", "UNREACHABLE"
    return None
