"""The sign-off verdict of a run, computed from its records: may the platform be installed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from _pytest_nova.model import JSONObject
from _pytest_nova.results import summarize
from _pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, WAIVED, WARNING
from _pytest_nova.waivers import Usage

ACCEPTED = "ACCEPTED"
ACCEPTED_WITH_WAIVERS = "ACCEPTED WITH WAIVERS"
NOT_ACCEPTED = "NOT ACCEPTED"


@dataclass(frozen=True)
class Decision:
    """The verdict and what it rests on."""

    verdict: str
    reason: str
    summary: dict[str, int]
    usage: list[Usage] = field(default_factory=list)

    def as_json(self) -> JSONObject:
        """The verdict and waivers as extra top-level keys of the results JSON."""
        return {
            "verdict": self.verdict,
            "waivers": [
                {
                    "requirement": u.waiver.requirement,
                    "node": u.waiver.node,
                    "justification": u.waiver.justification,
                    "approver": u.waiver.approver,
                    "expires": u.waiver.expires.isoformat(),
                    "status": u.status,
                    "results": u.count,
                }
                for u in self.usage
            ],
        }


def decide(
    records: Iterable[Mapping[str, object]],
    usage: list[Usage],
    *,
    other_failures: int = 0,
    complete: bool = True,
    unprovable: int = 0,
) -> Decision:
    """ACCEPTED when every result passed, ACCEPTED WITH WAIVERS when only waived failures remain, else NOT.

    ``other_failures`` counts failures outside the plan's records (a user's own test, a collection error);
    ``complete`` is false when the run was interrupted or stopped early; ``unprovable`` counts the skipped
    results that are rules nothing could prove either way (the reason says how many were proven and how many not).
    """
    summary = summarize(records)
    bad = summary[FAILED] + summary[ERROR]
    total = sum(summary.values())
    if not complete:
        return Decision(NOT_ACCEPTED, "the run did not complete", summary, usage)
    if bad or other_failures:
        parts = [f"{n} {what}" for n, what in ((summary[FAILED], "failed"), (summary[ERROR], "could not be checked"))
                 if n]
        if other_failures:
            parts.append(f"{other_failures} other test failure{'s' if other_failures > 1 else ''}")
        return Decision(NOT_ACCEPTED, f"{', '.join(parts)}: fix them and run again", summary, usage)
    if total == 0:
        return Decision(NOT_ACCEPTED, "nothing was checked", summary, usage)
    # Advisories that do not hold are listed, never counted against the verdict (--nova-strict makes them failures).
    warned = f"; {_n(summary[WARNING], 'advisory warning')} (not gating)" if summary[WARNING] else ""
    if summary[WAIVED]:
        return Decision(
            ACCEPTED_WITH_WAIVERS,
            f"{summary[WAIVED]} failure{'s' if summary[WAIVED] > 1 else ''} accepted by waivers, the rest passed"
            + warned,
            summary,
            usage,
        )
    skipped = ""
    if unprovable:
        skipped += (f"; {summary[PASSED]} proven, {unprovable} could not be proven (skipped; --nova-require-proof "
                    "makes them fail)")
    if summary[SKIPPED] - unprovable:
        skipped += f"; {summary[SKIPPED] - unprovable} not applicable (skipped)"
    if warned:
        return Decision(ACCEPTED, f"every required check passed ({summary[PASSED]} passed){warned}{skipped}", summary,
                       usage)
    return Decision(ACCEPTED, f"all {summary[PASSED]} checks passed{skipped}", summary, usage)


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'s' if count != 1 else ''}"
