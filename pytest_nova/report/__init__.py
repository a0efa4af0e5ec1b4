"""The acceptance report: waivers, the sign-off verdict, the terminal summary and the pytest-html report.

Loaded as a plugin by :mod:`pytest_nova.plugin`. Waivers are applied where the item ran (the worker under
pytest-xdist), so the controller, JUnit and the exit code all see the final outcome; the verdict is decided on
the controller from the records every report carries.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
from collections.abc import Generator
from typing import Any

import pytest

from pytest_nova import __version__
from pytest_nova.errors import SourceError
from pytest_nova.plugin import NovaSession, session_of
from pytest_nova.report import html
from pytest_nova.report.signoff import ACCEPTED, ACCEPTED_WITH_WAIVERS, NOT_ACCEPTED, Outcome, decide
from pytest_nova.results import CHECK_PROPERTY, now
from pytest_nova.verdicts import COUNTS_PROPERTY, ERROR, FAILED, USER_PROPERTY, WARNING, unprovable, where
from pytest_nova.waivers import Waiver, Waivers, load_waivers, usage, waive

WAIVERS = pytest.StashKey["Waivers | None"]()
OUTCOME = pytest.StashKey[Outcome]()
WAIVED_CATEGORY = "waived"
_INCOMPLETE = (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR)


def pytest_configure(config: pytest.Config) -> None:
    """Load the waivers (every process applies them); on the controller, add the summary and HTML hooks."""
    state = session_of(config)
    waivers = None
    if state.settings.waivers is not None:
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
    signoff = SignOff(config, state, waivers)
    config.pluginmanager.register(signoff, "nova-signoff")
    # Only with --html: the hooks replace pytest-metadata's table, which other plugins may read.
    if config.pluginmanager.hasplugin("html") and config.getoption("htmlpath", None):
        config.pluginmanager.register(HtmlReport(signoff), "nova-html")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
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
        w = waivers.find(value)
        if w is not None:
            props[i] = (key, waive(value, w))
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


def operator() -> str:
    """``user@host`` of whoever ran the checks."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER variable (some containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class SignOff:
    """On the controller: decide the verdict, extend the results JSON, print it in the terminal summary."""

    def __init__(self, config: pytest.Config, state: NovaSession, waivers: Waivers | None) -> None:
        self.config, self.state, self.waivers = config, state, waivers
        self.other_failures: set[str] = set()
        self.finished = ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count failures of items outside the plan: they too block acceptance."""
        if report.failed and not any(k == CHECK_PROPERTY for k, _ in report.user_properties):
            self.other_failures.add(report.nodeid)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A module that failed to collect blocks acceptance too."""
        if report.failed:
            self.other_failures.add(report.nodeid or "<collection>")

    @property
    def outcome(self) -> Outcome:
        """The verdict (decided at session finish)."""
        return self.config.stash[OUTCOME]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Decide the verdict before the results JSON and the HTML report are written."""
        if self.config.option.collectonly:
            # Listing the plan checks nothing: no verdict and no results JSON that could read NOT ACCEPTED.
            self.state.settings = dataclasses.replace(self.state.settings, json_path=None)
            return
        records = self.state.collector.records()
        # Waivers concern failures only: read those back, not every passed result.
        used = usage(self.waivers, self.state.collector.records(passed=False)) if self.waivers is not None else []
        complete = exitstatus not in _INCOMPLETE and not session.shouldstop and not session.shouldfail
        not_proven = sum(1 for r in self.state.collector.records(passed=False) if unprovable(r))
        outcome = decide(records, used, other_failures=len(self.other_failures), complete=complete,
                         unprovable=not_proven)
        self.config.stash[OUTCOME] = outcome
        self.finished = now()
        self.state.json_extra.update(outcome.as_json())
        # pytest and the verdict agree by construction; this keeps a gate from passing if they ever do not.
        if outcome.verdict == NOT_ACCEPTED and session.exitstatus == pytest.ExitCode.OK and len(records):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The verdict, the waivers applied, and expired or unused waivers."""
        outcome = self.config.stash.get(OUTCOME, None)
        if outcome is None or self.state.inventory is None or self.config.option.collectonly:
            return
        tr = terminalreporter
        colour = {ACCEPTED: "green", ACCEPTED_WITH_WAIVERS: "yellow"}.get(outcome.verdict, "red")
        tr.write_sep("=", f"nova verdict: {outcome.verdict}", **{colour: True, "bold": True})
        tr.write_line(f"{self.state.inventory.name}: {outcome.reason}")
        self._warnings(tr)
        waivers = self.waivers
        for u in outcome.usage:
            w = u.waiver
            where = waivers.where(w) if waivers else ""
            if u.status == "applied":
                tr.write_line(
                    f"waived: {w.label}: {u.count} result(s): {w.justification} (approved by {w.approver} until "
                    f"{w.expires.isoformat()})"
                )
            elif u.status == "expired":
                tr.write_line(
                    f"expired waiver, not applied: {where}: {w.label} expired {w.expires.isoformat()}"
                    f" ({u.count} failure(s) it would cover)",
                    yellow=True,
                )
            else:
                tr.write_line(f"unused waiver: {where}: {w.label} matched no failure", yellow=True)


    def _warnings(self, tr: Any) -> None:
        """Advisory requirements that do not hold, one line per requirement with where and what was seen."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in self.state.collector.records(passed=False):
            if r.get("outcome") == WARNING:
                groups.setdefault(str(r.get("requirement")), []).append(r)
        if not groups:
            return
        n = sum(len(rs) for rs in groups.values())
        tr.write_line(f"advisory warnings (not gating; --nova-strict makes them fail): {n}", yellow=True)
        for req, rs in groups.items():
            places = sorted({where(r) or str(r.get("nodeid")) for r in rs})
            shown = ", ".join(places[:6]) + (f" and {len(places) - 6} more" if len(places) > 6 else "")
            tr.write_line(f"  warning: {req} (docs {rs[0].get('section')}): {len(rs)} result(s) at {shown}: "
                          f"{rs[0].get('message')}", yellow=True)


class HtmlReport:
    """pytest-html hooks, registered only when pytest-html is installed (their hook specs exist then)."""

    def __init__(self, signoff: SignOff) -> None:
        self.signoff = signoff
        self.state = signoff.state
        self.report: Any = None  # pytest-html's ReportData, kept to put the verdict in the title at the end
        self.passed_rows: list[str] = []

    def environment(self) -> dict[str, str]:
        """The run's identity for the environment table; values are escaped (pytest-html inserts them as HTML)."""
        inv, state = self.state.inventory, self.state
        env: dict[str, str] = {}
        if inv is not None:
            env |= {
                "Cluster": inv.name,
                "Inventory": str(inv.path),
                "Inventory sha256": inv.sha256,
                "dnsBaseDomain": inv.dns_base_domain,
                "Mode": inv.mode,
            }
        env |= {
            "Catalog (docs version)": state.catalog.version,
            "pytest-nova": __version__,
            "Phase": state.settings.phase,
            "Started": state.collector.started,
            "Finished": self.signoff.finished or "(running)",
            "Operator": operator(),
        }
        if self.signoff.waivers is not None:
            env["Waivers file"] = str(self.signoff.waivers.path)
        return {k: html.esc(v) for k, v in env.items()}

    def _replace_metadata(self) -> None:
        # Our table replaces pytest-metadata's, which lists environment variables of CI systems and whatever
        # --metadata added: nothing that is not needed to identify the run goes on a signed document.
        try:
            from pytest_metadata.plugin import metadata_key  # type: ignore[import-untyped]
        except ImportError:  # pragma: no cover - pytest-html requires pytest-metadata
            return
        meta = self.signoff.config.stash.get(metadata_key, None)
        if meta is None:
            return
        keep = {k: meta[k] for k in ("Python", "Platform") if k in meta}
        meta.clear()  # pytest-html holds this very dict: change it in place
        meta.update(self.environment() | {k: html.esc(v) for k, v in keep.items()})

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self) -> None:
        """Fill the environment table before pytest-html reads it."""
        self._replace_metadata()

    def pytest_html_report_title(self, report: Any) -> None:
        """Title with the cluster name; the xfail counter is the waived counter."""
        inv = self.state.inventory
        report.title = f"Nova acceptance report: {inv.name}" if inv else "Nova acceptance report"
        report.outcomes["xfailed"]["label"] = "Waived"
        self.report = report

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str]) -> None:
        """At the top: the sign-off block with the verdict, what to fix, and the area × role matrix."""
        # Workers' metadata is merged into the table when they finish: replace it again, with the end time.
        self._replace_metadata()
        outcome = self.signoff.config.stash.get(OUTCOME, None)
        if outcome is None:
            return
        records = self.state.collector.records()
        inv = self.state.inventory
        if self.report is not None:  # the first line a reader sees, and the browser tab
            self.report.title = f"{self.report.title}: {outcome.verdict}"
        prefix.append(html.CSS)
        prefix.append(html.signoff_html(outcome, self.signoff.waivers, inv.name if inv else ""))
        not_passed = self.state.collector.records(passed=False)
        prefix.append(html.problems_html(not_passed))
        prefix.append(html.warnings_html(not_passed))
        prefix.append(html.matrix_html(records, html.roles_of(inv)))
        prefix.append(html.signature_html(inv.sha256 if inv else ""))
        postfix.append(html.passed_table(self.passed_rows))

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        """Area, requirement, docs section, source and target after the test id."""
        cells[2:2] = html.header_cells()

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        """The check's area, requirement, section, source and target; passed checks go to the compact list.

        pytest-html 4 builds every row with JavaScript when the page opens and again on every click
        (pytest-html#684): thousands of rows make the report unusable. Passed checks, the bulk of a run, are
        listed in a static table instead; the interactive table keeps what needs attention.
        """
        meta = dict(report.user_properties).get(CHECK_PROPERTY)
        if isinstance(meta, dict) and report.when == "call" and report.passed and self.report is not None:
            self.passed_rows.append(html.passed_row(report.nodeid, meta, html.result_count(report.user_properties)))
            self.report.outcomes = "passed"  # counted here: pytest-html skips rows whose cells are cleared
            cells.clear()
            return
        cells[2:2] = html.row_cells(meta if isinstance(meta, dict) else None)

    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list[str]) -> None:
        """Replace the failure text with a table of the results that did not pass (captured output stays)."""
        records = [v for k, v in report.user_properties if k == USER_PROPERTY and isinstance(v, dict)]
        counts = dict(report.user_properties).get(COUNTS_PROPERTY)
        if not (records or counts) or report.when != "call":
            return
        if report.longreprtext and data:
            del data[0]
        elif data == ["No log output captured."]:
            data.clear()
        data.insert(0, html.detail_html(records, counts if isinstance(counts, dict) else None))
