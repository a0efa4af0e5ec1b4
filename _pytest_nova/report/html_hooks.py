"""The pytest-html hooks: the sign-off block, the area × role matrix and compact rows (built by :mod:`.html`).

Registered only with ``--html`` and pytest-html installed (their hook specs exist then).
"""

from __future__ import annotations

import getpass
import os
import socket
from typing import Protocol, cast

import pytest

from _pytest_nova import __version__
from _pytest_nova.model import CheckMeta
from _pytest_nova.report import html
from _pytest_nova.report.summary import SignOff
from _pytest_nova.results import CHECK_PROPERTY
from _pytest_nova.roles import roles_of
from _pytest_nova.verdicts import COUNTS_PROPERTY, records_of


class ReportData(Protocol):
    """What the hooks use of pytest-html's ``ReportData``."""

    title: str

    @property
    def outcomes(self) -> dict[str, dict[str, str]]:
        """Per outcome: its label and count in the summary."""

    @outcomes.setter
    def outcomes(self, outcome: str) -> None:
        """Count one more result of ``outcome``."""


def operator() -> str:
    """``user@host`` of whoever ran the checks."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER variable (some containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class HtmlReport:
    """pytest-html hooks, registered only when pytest-html is installed (their hook specs exist then)."""

    def __init__(self, signoff: SignOff) -> None:
        self.signoff = signoff
        self.state = signoff.state
        self.report: ReportData | None = None  # kept to put the verdict in the title at the end
        self.passed_rows: list[str] = []
        self._listed: set[str] = set()  # items listed as passed whose teardown report pytest-html has yet to show

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
        if self.signoff.baseline is not None:
            env["Baseline"] = f"{self.signoff.baseline.path} (sha256 {self.signoff.baseline.sha256})"
        option = self.signoff.config.option
        selection = [f"{flag} {value!r}" for flag, value in (("-k", getattr(option, "keyword", "")),
                                                               ("-m", getattr(option, "markexpr", ""))) if value]
        if selection:  # what it left out is under "Not covered by this run"
            env["Selection"] = " ".join(selection)
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

    def pytest_html_report_title(self, report: ReportData) -> None:
        """Title with the cluster name; the xfail counter is the waived counter."""
        inv = self.state.inventory
        report.title = f"Nova acceptance report: {inv.name}" if inv else "Nova acceptance report"
        report.outcomes["xfailed"]["label"] = "Waived"
        self.report = report

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str]) -> None:
        """At the top: the sign-off block with the verdict, what to fix, and the area × role matrix."""
        # Workers' metadata is merged into the table when they finish: replace it again, with the end time.
        self._replace_metadata()
        outcome = self.signoff.decision()
        if outcome is None:
            return
        records = self.state.collector.records()
        inv = self.state.inventory
        if self.report is not None:  # the first line a reader sees, and the browser tab
            self.report.title = f"{self.report.title}: {outcome.verdict}"
        prefix.append(html.CSS)
        prefix.append(html.signoff_html(outcome, self.signoff.waivers, inv.name if inv else "", self.signoff.coverage))
        not_passed = self.state.collector.records(passed=False)
        prefix.append(html.problems_html(not_passed))
        if self.signoff.coverage is not None:
            prefix.append(html.coverage_html(self.signoff.coverage))
        if self.signoff.comparison is not None:
            prefix.append(html.baseline_html(self.signoff.comparison))
        prefix.append(html.warnings_html(not_passed))
        titles = {a.name: a.title for a in self.state.registry.areas.values()}
        prefix.append(html.matrix_html(records, roles_of(inv), titles, counted=self.state.collector.cells()))
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
        if report.passed and (report.when == "setup" or (report.when == "teardown" and report.nodeid in self._listed)):
            # pytest-html drops these rows after building them (a passed setup, and a passed teardown whose only use
            # is adding its log to a failed call's row): cleared, it builds nothing.
            self._listed.discard(report.nodeid)
            cells.clear()
            return
        raw = dict(report.user_properties).get(CHECK_PROPERTY)
        meta = cast(CheckMeta, raw) if isinstance(raw, dict) else None
        if meta is not None and report.when == "call" and report.passed and self.report is not None:
            self.passed_rows.append(html.passed_row(report.nodeid, meta, html.result_count(report.user_properties)))
            self.report.outcomes = "passed"  # counted here: pytest-html skips rows whose cells are cleared
            self._listed.add(report.nodeid)
            cells.clear()
            return
        cells[2:2] = html.row_cells(meta)

    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list[str]) -> None:
        """Replace the failure text with a table of the results that did not pass (captured output stays)."""
        records = records_of(report.user_properties)
        counts = dict(report.user_properties).get(COUNTS_PROPERTY)
        if not (records or counts) or report.when != "call":
            return
        if report.longreprtext and data:
            del data[0]
        elif data == ["No log output captured."]:
            data.clear()
        data.insert(0, html.detail_html(records, counts if isinstance(counts, dict) else None))
