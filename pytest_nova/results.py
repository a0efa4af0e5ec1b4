"""The results JSON (format v1): one record per individual assertion, written by the controller."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_nova import outputs
from pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, USER_PROPERTY, WAIVED, WARNING

SCHEMA = "pytest-nova/results/v1"
CHECK_PROPERTY = "nova_check"
OUTCOMES = (PASSED, FAILED, SKIPPED, ERROR, WAIVED, WARNING)


def now() -> str:
    """The current time as the JSON writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Collector:
    """Gathers verdict records from test reports (also those pytest-xdist sends from workers)."""

    def __init__(self) -> None:
        self.started = now()
        self.by_nodeid: dict[str, list[dict[str, Any]]] = {}

    def add(self, report: pytest.TestReport) -> None:
        """Take the records of one report: the call phase's, or a setup that failed or skipped."""
        props = dict(report.user_properties)
        meta = props.get(CHECK_PROPERTY)
        if not isinstance(meta, dict):
            return
        if report.when == "setup" and report.passed:
            return
        if report.when == "teardown":
            if report.failed and report.nodeid not in self.by_nodeid:
                self.by_nodeid[report.nodeid] = [_synth(meta, report, ERROR)]
            return
        records = [dict(v) for k, v in report.user_properties if k == USER_PROPERTY and isinstance(v, dict)]
        if not records:
            # Without verdicts, a failure means the check itself broke (or its setup did): an error.
            outcome = SKIPPED if report.skipped else (PASSED if report.passed else ERROR)
            records = [_synth(meta, report, outcome)]
        self.by_nodeid[report.nodeid] = records

    def records(self) -> list[dict[str, Any]]:
        """All records, ordered by test id."""
        return [r for nodeid in sorted(self.by_nodeid) for r in self.by_nodeid[nodeid]]


def _synth(meta: dict[str, Any], report: pytest.TestReport, outcome: str) -> dict[str, Any]:
    """A record for an item that ended before judging its verdicts (an unreachable host, a skip)."""
    if report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2]).removeprefix("Skipped: ")
    else:
        message = _first_line(report)
    return {
        "nodeid": report.nodeid,
        **{k: meta.get(k) for k in ("check", "requirement", "section", "source", "target", "port", "protocol")},
        "outcome": outcome,
        "message": message,
        "severity": meta.get("severity", "required"),
        "_explain": message,
        "_fix": meta.get("fix", ""),
    }


def _first_line(report: pytest.TestReport) -> str:
    text = report.longreprtext.strip()
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("E "):
            return line[1:].strip()
    return text.splitlines()[-1].strip() if text else ""


def summarize(records: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of records per outcome."""
    summary = dict.fromkeys(OUTCOMES, 0)
    for r in records:
        summary[r["outcome"]] = summary.get(r["outcome"], 0) + 1
    return summary


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the private keys the report uses."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def write(
    path: Path,
    *,
    cluster: str,
    inventory_path: str,
    sha256: str,
    catalog: str,
    started: str,
    records: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the results JSON atomically, so a reader never sees half a file.

    ``extra`` adds top-level keys (such as the sign-off verdict); readers of v1 ignore keys they do not know.
    """
    data = {
        "schema": SCHEMA,
        "cluster": cluster,
        "inventory": {"path": inventory_path, "sha256": sha256},
        "catalog": catalog,
        "started": started,
        "finished": now(),
        "summary": summarize(records),
        **{k: v for k, v in (extra or {}).items() if k not in ("schema", "summary", "results")},
        "results": [public(r) for r in records],
    }
    outputs.write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
