"""On the controller: the verdict decided at the end of the run, and the terminal summary that prints it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from _pytest_nova.baseline import Baseline, Comparison, compare
from _pytest_nova.coverage import Coverage, coverage
from _pytest_nova.model import JSONObject
from _pytest_nova.report.groups import listed, problems
from _pytest_nova.report.signoff import ACCEPTED, ACCEPTED_WITH_WAIVERS, NOT_ACCEPTED, Decision, decide
from _pytest_nova.results import CHECK_PROPERTY, lists_only, now
from _pytest_nova.session import NovaSession
from _pytest_nova.unreached import failed_logins
from _pytest_nova.verdicts import ERROR, FAILED, WARNING, unprovable
from _pytest_nova.waivers import Waivers, usage

OUTCOME = pytest.StashKey[Decision]()
# Checks -k/-m deselected in this process: requirement -> (kind, check id).
DESELECTED = pytest.StashKey[dict[str, set[tuple[str, str]]]]()
DESELECTED_OUTPUT = "nova_deselected"  # the same, in an xdist worker's output
MAX_TERMINAL_PROBLEMS = 20  # problems the terminal lists; the report lists every one
MAX_TERMINAL_OBSERVATIONS = 3  # distinct observations per problem
MAX_TERMINAL_PLACES = 6  # places per observation
_INCOMPLETE = (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR)


def deselected_counts(config: pytest.Config) -> dict[str, int]:
    """Checks ``-k``/``-m`` deselected in this process, per requirement."""
    return {req: len(ids) for req, ids in config.stash.get(DESELECTED, {}).items()}


class SignOff:
    """On the controller: decide the verdict, extend the results JSON, print it in the terminal summary."""

    def __init__(self, config: pytest.Config, state: NovaSession, waivers: Waivers | None,
                 baseline: Baseline | None = None) -> None:
        self.config, self.state, self.waivers, self.baseline = config, state, waivers, baseline
        self.comparison: Comparison | None = None  # with the baseline, once the verdict is decided
        self.coverage: Coverage | None = None  # once the verdict is decided
        self.reported: dict[str, set[tuple[str, str]]] = {}  # requirement -> (kind, check id) of items that reported
        self.worker_deselected: Counter[str] | None = None
        self.other_failures: set[str] = set()
        self.finished = ""
        self.session: pytest.Session | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count failures of items outside the plan: they too block acceptance; note the plan's checks that ran."""
        meta = next((v for k, v in report.user_properties if k == CHECK_PROPERTY), None)
        if isinstance(meta, dict):
            self.reported.setdefault(str(meta.get("requirement")), set()).add((str(meta.get("kind")),
                                                                               str(meta.get("id"))))
        elif report.failed:
            self.other_failures.add(report.nodeid)

    @pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest-nova also runs with -p no:xdist
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """Take the checks a worker deselected (every worker collects, and deselects, the same items)."""
        counts = getattr(node, "workeroutput", {}).get(DESELECTED_OUTPUT)
        if isinstance(counts, dict) and self.worker_deselected is None:
            self.worker_deselected = Counter({str(k): int(v) for k, v in counts.items()})

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A module that failed to collect blocks acceptance too."""
        if report.failed:
            self.other_failures.add(report.nodeid or "<collection>")

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Keep the session: the verdict reads its exit status and whether it was stopped."""
        self.session = session

    def decision(self) -> Decision | None:
        """The verdict, decided once at the end of the run by whichever asks first (None for --collect-only).

        The results JSON, the HTML report and the terminal all ask for it while the session finishes, in
        whatever order their hooks run.
        """
        decided = self.config.stash.get(OUTCOME, None)
        if decided is not None or lists_only(self.config) or self.session is None:
            return decided  # listing the plan checks nothing: no verdict that could read NOT ACCEPTED
        session = self.session
        if session.exitstatus == pytest.ExitCode.USAGE_ERROR and not len(self.state.collector):
            return None  # refused before anything ran: the one line says why, a verdict would add nothing
        records = self.state.collector.records()
        # Waivers concern failures only: read those back, not every passed result.
        used = usage(self.waivers, self.state.collector.records(passed=False)) if self.waivers is not None else []
        complete = session.exitstatus not in _INCOMPLETE and not session.shouldstop and not session.shouldfail
        not_proven = sum(1 for r in self.state.collector.records(passed=False) if unprovable(r))
        outcome = decide(records, used, other_failures=len(self.other_failures), complete=complete,
                         unprovable=not_proven)
        if self.baseline is not None:
            self.comparison = compare(self.baseline, self.state.collector.records())
        self.coverage = self._coverage()
        self.config.stash[OUTCOME] = outcome
        self.finished = now()
        return outcome

    def _coverage(self) -> Coverage | None:
        state = self.state
        if state.inventory is None or state.plan is None:
            return None
        deselected = self.worker_deselected or deselected_counts(self.config)
        return coverage(state.catalog, state.inventory, state.plan, state.settings.phase, deselected=deselected,
                        reported={req: len(ids) for req, ids in self.reported.items()},
                        records=state.collector.records(passed=False))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Pytest and the verdict agree by construction; this keeps a gate from passing if they ever do not."""
        outcome = self.decision()
        if outcome is not None and outcome.verdict == NOT_ACCEPTED and session.exitstatus == pytest.ExitCode.OK \
                and len(self.state.collector):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_nova_results_fields(self) -> JSONObject | None:
        """The verdict's keys in the results JSON (``verdict``, ``waivers``: docs/report.md; ``baseline``)."""
        outcome = self.decision()
        if outcome is None:
            return None
        fields = outcome.as_json()
        if self.coverage is not None:
            fields["coverage"] = self.coverage.as_json()
        if self.comparison is not None:
            fields["baseline"] = self.comparison.as_json()
        return fields

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """The verdict, the waivers applied, and expired or unused waivers."""
        outcome = self.config.stash.get(OUTCOME, None)
        if outcome is None or self.state.inventory is None or lists_only(self.config):
            return
        tr = terminalreporter
        colour = {ACCEPTED: "green", ACCEPTED_WITH_WAIVERS: "yellow"}.get(outcome.verdict, "red")
        tr.write_sep("=", f"nova verdict: {outcome.verdict}", **{colour: True, "bold": True})
        tr.write_line(f"{self.state.inventory.name}: {outcome.reason}{self.coverage.line() if self.coverage else ''}")
        if self.comparison is not None:
            c = self.comparison
            tr.write_line(c.line(), red=bool(c.new), green=not (c.new or c.still_failing))
        self._problems(tr)
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


    def _problems(self, tr: pytest.TerminalReporter) -> None:
        """What to fix: one entry per requirement and fix, one line per distinct observation with its places.

        Errors of a host that could not be reached are left to the one line per host (:mod:`_pytest_nova.unreached`).
        """
        run_dir = self.state.run_dir
        causes = list(failed_logins(run_dir).values()) if run_dir is not None and run_dir.is_dir() else []
        records = (r for r in self.state.collector.records(passed=False)
                   if not (causes and r["outcome"] == ERROR and any(c in r["message"] for c in causes)))
        found = problems(records, (FAILED, ERROR))
        if not found:
            return
        n = sum(p.count for p in found)
        tr.write_line(f"to fix: {len(found)} problem{'s' if len(found) != 1 else ''}, {n} result(s)", red=True)
        for p in found[:MAX_TERMINAL_PROBLEMS]:
            tr.write_line(f"  {p.requirement} (docs {p.section}): {p.count} result(s)", red=True)
            for obs in list(p.observations.values())[:MAX_TERMINAL_OBSERVATIONS]:
                tr.write_line(f"    {one_line(obs.message)}: at {listed(obs.places, MAX_TERMINAL_PLACES)}")
            if len(p.observations) > MAX_TERMINAL_OBSERVATIONS:
                tr.write_line(f"    … and {len(p.observations) - MAX_TERMINAL_OBSERVATIONS} other observations")
            if p.fix:
                tr.write_line(f"    fix: {one_line(p.fix)}")
        if len(found) > MAX_TERMINAL_PROBLEMS:
            tr.write_line(f"  … and {len(found) - MAX_TERMINAL_PROBLEMS} more problems (the report and the results "
                          "JSON list them all)")

    def _warnings(self, tr: pytest.TerminalReporter) -> None:
        """Advisory requirements that do not hold: one line per requirement and observation, with its places."""
        found = problems(self.state.collector.records(passed=False), (WARNING,))
        if not found:
            return
        n = sum(p.count for p in found)
        tr.write_line(f"advisory warnings (not gating; --nova-strict makes them fail): {n}", yellow=True)
        for p in found:
            for obs in p.observations.values():
                tr.write_line(f"  warning: {p.requirement} (docs {p.section}): {len(obs.places)} result(s) at "
                              f"{listed(sorted(obs.places), 6)}: {one_line(obs.message)}", yellow=True)


def one_line(text: str) -> str:
    """A text for one terminal line: its line breaks as " | "."""
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
