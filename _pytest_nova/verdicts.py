"""Verdicts: the outcome of one individual assertion, and the failure text users read.

A pytest item may make several assertions (a DNS record at each server, a port rule to each target);
each gets a :class:`Verdict`. The item records all of them for the results JSON and fails once, listing the
failed ones in the Checked / Expected / Observed / Fix form.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import cast

import pytest

from _pytest_nova.model import Outcome, Record

PASSED, FAILED, SKIPPED, ERROR, WAIVED = Outcome.PASSED, Outcome.FAILED, Outcome.SKIPPED, Outcome.ERROR, Outcome.WAIVED
# An advisory requirement (good practice the Nova docs do not demand) that does not hold: reported, not gating.
WARNING = Outcome.WARNING
USER_PROPERTY = "nova_result"
# One JUnit property per warning, "<requirement> [<where>]: <message>", so CI shows it without failing the case.
WARNING_PROPERTY = "nova_warning"


@dataclass(frozen=True)
class Finding:
    """A judgement of one observation: outcome, what was observed, and a fix when the catalog's is not precise."""

    outcome: Outcome
    message: str
    fix: str = ""
    unprovable: bool = False  # skipped: the rule may or may not hold, and nothing could tell


@dataclass(frozen=True)
class Verdict:
    """One assertion's outcome, shaped like a record of the results JSON (format v1)."""

    check: str
    requirement: str
    section: str
    outcome: Outcome
    message: str
    source: str | None = None
    target: str | None = None
    port: int | None = None
    protocol: str | None = None
    # Failure explanation, shown in the terminal and the HTML report.
    checked: str = ""
    expected: str = ""
    fix: str = ""
    # A skipped verdict of a rule that may or may not hold: nothing could tell (--nova-require-proof fails it).
    unprovable: bool = False
    # The fix shared with other failures that differ only in their source: "{sources}" stands for the sources'
    # addresses, of which this failure's is fix_source (one destination dropping one port from many sources).
    fix_shared: str = ""
    fix_source: str = ""

    def record(self, nodeid: str, severity: str = "required") -> Record:
        """The results-JSON record for this verdict, with Checked / Expected / Fix as private keys."""
        record = Record(nodeid=nodeid, check=self.check, requirement=self.requirement, section=self.section,
                        source=self.source, target=self.target, port=self.port, protocol=self.protocol,
                        outcome=self.outcome, message=self.message, severity=severity)
        if self.outcome != PASSED:
            record["_checked"], record["_expected"] = self.checked, self.expected
        record["_fix"] = self.fix
        if self.unprovable:
            record["_unprovable"] = True
        if self.fix_shared and self.outcome != PASSED:
            record["_fix_shared"], record["_fix_source"] = self.fix_shared, self.fix_source
        return record

    def explain(self) -> str:
        """Checked / Expected / Observed / Fix, in as few lines as it takes."""
        return explain(self.checked, self.expected, self.section, self.message, self.fix)


def explain(checked: str, expected: str, section: str, observed: str, fix: str) -> str:
    """The Checked / Expected / Observed / Fix text of the terminal and JUnit."""
    lines = [f"Checked:  {checked}"] if checked else []
    if expected:
        lines.append(f"Expected: {expected} (docs {section})")
    lines.append(f"Observed: {observed}")
    if fix:
        lines.append(f"Fix:      {fix}")
    return "\n".join(lines)


def record_explain(r: Record) -> str:
    """A record's Checked / Expected / Observed / Fix text; the message alone for an item that ended unjudged."""
    if "_checked" not in r:
        return r["message"]
    return explain(r["_checked"], r.get("_expected", ""), r["section"], observed(r), r.get("_fix", ""))


def observed(r: Record) -> str:
    """What was observed: the message, without what a waiver added to it."""
    return r.get("_observed", r["message"])


def records_of(props: Iterable[tuple[str, object]]) -> list[Record]:
    """The records among an item's user properties (built by :meth:`Verdict.record`, perhaps sent by a worker)."""
    return [cast(Record, v) for k, v in props if k == USER_PROPERTY and isinstance(v, dict)]


def attach(item_props: list[tuple[str, object]], verdicts: Iterable[Verdict], nodeid: str,
           advisory: Collection[str] = ()) -> None:
    """Store verdicts on the item's user properties, which pytest-xdist carries to the controller."""
    for v in verdicts:
        severity = "advisory" if v.requirement in advisory else "required"
        item_props.append((USER_PROPERTY, v.record(nodeid, severity)))
        if v.outcome == WARNING:
            where = _label(v, True).strip()[1:-1]
            item_props.append((WARNING_PROPERTY, f"{v.requirement}{f' [{where}]' if where else ''}: {v.message}"))


def soften(verdicts: list[Verdict], advisory: Collection[str]) -> list[Verdict]:
    """Advisory requirements that failed (or could not be checked) become warnings; the rest stays as it is."""
    out = []
    for v in verdicts:
        if v.requirement in advisory and v.outcome in (FAILED, ERROR):
            message = v.message if v.outcome == FAILED else f"could not be checked: {v.message}"
            v = replace(v, outcome=WARNING, message=message)
        out.append(v)
    return out


UNPROVABLE = "cannot be proven"  # what a skipped verdict says when the rule holds or not, and nothing can tell


def unprovable(record: Record) -> bool:
    """Whether a record is a rule that could not be proven either way (as opposed to one that does not apply)."""
    return record["outcome"] == SKIPPED and record.get("_unprovable", False)


def require_proof(verdicts: list[Verdict]) -> list[Verdict]:
    """Rules that could not be proven fail (``--nova-require-proof``)."""
    return [replace(v, outcome=FAILED, message=f"not proven (--nova-require-proof): {v.message}", unprovable=False)
            if v.outcome == SKIPPED and v.unprovable else v for v in verdicts]


def judge(item_props: list[tuple[str, object]], nodeid: str, verdicts: list[Verdict], *,
          advisory: Collection[str] = (), strict: bool = False, proof: bool = False) -> None:
    """Record ``verdicts``; fail the test (without a traceback) when any of them did not pass.

    A failed (or unverifiable) verdict of an ``advisory`` requirement is recorded as a warning and does not fail
    the test, unless ``strict``. With ``proof``, a rule that could not be proven fails.
    """
    if proof:
        verdicts = require_proof(verdicts)
    if not strict:
        verdicts = soften(verdicts, advisory)
    attach(item_props, verdicts, nodeid, advisory)
    bad = [v for v in verdicts if v.outcome in (FAILED, ERROR)]
    if not verdicts:
        pytest.fail("nothing was checked: the plan produced no assertions for this item", pytrace=False)
    if bad:
        head = f"{len(bad)} of {len(verdicts)} failed" if len(verdicts) > 1 else ""
        blocks = _blocks(bad, len(verdicts) > 1)
        body = "\n\n".join(blocks[:20])
        more = f"\n\n… and {len(blocks) - 20} more (see the results JSON)" if len(blocks) > 20 else ""
        pytest.fail((head + "\n" if head else "") + body + more, pytrace=False)
    skipped = [v for v in verdicts if v.outcome == SKIPPED]
    if skipped and len(skipped) == len(verdicts):
        pytest.skip(skipped[0].message)


def _blocks(bad: list[Verdict], many: bool) -> list[str]:
    """One block per failure; errors with the same cause (an unreachable host) share one block."""
    blocks: list[str] = []
    errors: dict[tuple[str, str], list[Verdict]] = {}
    for v in bad:
        if v.outcome == ERROR:
            errors.setdefault((v.message, v.fix), []).append(v)
        else:
            blocks.append(_label(v, many) + v.explain())
    for (message, fix), same in errors.items():
        if len(same) == 1:
            blocks.append(_label(same[0], many) + same[0].explain())
            continue
        where = ", ".join(_label(v, True).strip()[1:-1] for v in same[:3])
        where += f" and {len(same) - 3} more" if len(same) > 3 else ""
        blocks.append(f"[{where}]\nObserved: {message}" + (f"\nFix:      {fix}" if fix else ""))
    return blocks


def _label(v: Verdict, many: bool) -> str:
    if not many:
        return ""
    parts = [p for p in (v.source, v.target) if p]
    where = " -> ".join(parts)
    if v.port is not None:
        where += f" {v.port}/{v.protocol}"
    elif v.protocol:
        where += f" {v.protocol}"
    return f"[{where}]\n" if where else ""


COUNTS_PROPERTY = "nova_counts"  # results per outcome of an item whose passed records were dropped
RENDERED_PROPERTY = "nova_rendered"  # an item's records as the results JSON writes them (from an xdist worker)
CELLS_PROPERTY = "nova_cells"  # an item's records per area, role and outcome (from an xdist worker)
FAILURE_PROPERTY = "nova_failure"  # in JUnit: one result that did not pass, as its full text


def where(record: Mapping[str, object]) -> str:
    """``source -> target port/protocol`` of a record, as far as it applies."""
    text = " -> ".join(str(record[k]) for k in ("source", "target") if record.get(k))
    if record.get("port") is not None:
        text += f" {record['port']}/{record.get('protocol')}"
    elif record.get("protocol"):
        text += f" {record['protocol']}"
    return text.strip()


def compact(props: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Properties with the passed records replaced by counts per outcome (the records are in the results JSON).

    What pytest's own reporters keep of every report until the session ends: a run's memory then grows with
    its items and failures, not with its passed results.
    """
    if any(k == RENDERED_PROPERTY for k, _ in props):
        # Packed by an xdist worker (results.pack): already without its passed records, and counted.
        return [(k, v) for k, v in props if k not in (RENDERED_PROPERTY, CELLS_PROPERTY)]
    records = [v for k, v in props if k == USER_PROPERTY and isinstance(v, dict)]
    if not records:
        return props
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r.get("outcome"))] = counts.get(str(r.get("outcome")), 0) + 1
    kept = [(k, v) for k, v in props
            if k != USER_PROPERTY or not isinstance(v, dict) or v.get("outcome") != PASSED]
    return [*kept, (COUNTS_PROPERTY, counts)]


def junit_properties(props: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """What JUnit carries for an item: its other properties, and each result that did not pass, in full.

    Checked / Expected / Observed / Fix of every failed, error or waived result; passed results are counted in
    the testcase, listed in the results JSON, and not repeated here.
    """
    out: list[tuple[str, object]] = []
    for key, value in props:
        if key != USER_PROPERTY or not isinstance(value, dict):
            out.append((key, value))
        elif value.get("outcome") not in (PASSED, SKIPPED):
            r = cast(Record, value)
            place = where(r)
            head = f"{r['outcome']}{': ' + place if place else ''}: {r['message']}"
            out.append((FAILURE_PROPERTY, f"{head}\n{record_explain(r)}"))
    return out
