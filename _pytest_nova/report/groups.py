"""Problems as a reader fixes them: one entry per requirement and fix, one line per distinct observation.

An observation shared by many hosts (the same Observed text) is listed once with its places; failures that
differ only in their source and share one fix (one destination dropping one port from many sources) are one
problem whose fix lists every source. The results JSON keeps every record; this is only how they are shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from _pytest_nova.checks.firewall_fixes import SOURCES
from _pytest_nova.model import Record
from _pytest_nova.verdicts import observed, where


@dataclass
class Observation:
    """One Observed text and every place it was seen."""

    message: str
    places: list[str] = field(default_factory=list)


@dataclass
class Problem:
    """A requirement's failures that share one fix."""

    requirement: str
    section: str
    expected: str  # what the docs demand (else what was checked), of the first failure
    fix: str
    observations: dict[str, Observation] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # addresses a shared fix lists
    count: int = 0

    @property
    def shared(self) -> bool:
        """Whether the fix is one for several sources."""
        return len(self.sources) > 1


def problems(records: Iterable[Record], outcomes: Iterable[str]) -> list[Problem]:
    """The records of ``outcomes`` grouped into problems, in the order they first appear."""
    wanted = set(outcomes)
    found: dict[tuple[str, str, str], Problem] = {}
    for r in records:
        if r["outcome"] not in wanted:
            continue
        shared = r.get("_fix_shared", "")
        key = (r["requirement"], r["section"], shared or r.get("_fix", ""))
        p = found.get(key)
        if p is None:
            expected = r.get("_expected", "")
            p = found[key] = Problem(r["requirement"], r["section"],
                                     f"{expected} (docs {r['section']})" if expected else r.get("_checked", ""),
                                     r.get("_fix", ""))
        p.count += 1
        source = r.get("_fix_source", "")
        if shared and source and source not in p.sources:
            p.sources.append(source)
            if p.shared:
                p.fix = shared.replace(SOURCES, " ".join(p.sources))
        text = observed(r)
        obs = p.observations.get(text)
        if obs is None:
            obs = p.observations[text] = Observation(text)
        obs.places.append(where(r) or r["nodeid"])
    return list(found.values())


def listed(places: list[str], limit: int) -> str:
    """``a, b, c`` up to ``limit`` places, then how many more."""
    shown = ", ".join(places[:limit])
    return shown + (f" and {len(places) - limit} more" if len(places) > limit else "")
