"""What a run did not prove, so that a sign-off states it: the ``coverage`` key of the results JSON.

A requirement is not (fully) covered when the inventory gives it nothing to check that the docs still demand (the
workstation rules without ``workstations``, a balancer the inventory does not list), when it belongs to the
phase the run did not check, when ``-k``/``-m`` deselected its checks or they were not run, and when results of it
could not be proven either way. Requirements that do not apply to this cluster (the other network mode, a module
it does not use, no HTTP proxy) are not gaps and are not listed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from _pytest_nova.catalog import Catalog, Requirement
from _pytest_nova.inventory import Inventory
from _pytest_nova.model import JSONObject, Record
from _pytest_nova.plan import Plan
from _pytest_nova.verdicts import UNPROVABLE, unprovable

NO_WORKSTATIONS = "the inventory lists no workstations; add `workstations:` to cover them"
WORKSTATIONS_PART = ("the inventory lists no workstations: checked from the cluster nodes only; add `workstations:` "
                     "to cover them")
NOT_RUN = "not run (their suite was not collected, or the run stopped early)"
REQUIRE_PROOF = "--nova-require-proof makes them fail"
# The report's one reason for all requirements of a kind whose reasons differ only in their note.
KIND_REASONS = {"deselected": "checks deselected (-k, -m)", "not-run": f"checks {NOT_RUN}",
                "unprovable": f"results that could not be proven either way ({REQUIRE_PROOF})"}
OTHER_PHASE = {
    "postinstall": "checked after installation; run with --nova-phase=postinstall (or all) once the platform is "
                   "installed",
    "preinstall": "checked before installation; run with --nova-phase=preinstall (or all)",
}


@dataclass(frozen=True)
class Gap:
    """One requirement, or part of it, that the run did not prove, and why."""

    requirement: str
    section: str
    reason: str
    kind: str  # phase, workstations, inventory, deselected, not-run, unprovable: how the report groups it
    note: str = ""  # what is particular to this requirement within its kind ("3 of 10"), for the report's rows


@dataclass
class Coverage:
    """The ``coverage`` key: what was not covered, and the counts of unprovable results and deselected checks."""

    not_covered: list[Gap] = field(default_factory=list)
    unprovable: int = 0
    deselected: int = 0

    @property
    def requirements(self) -> int:
        """How many requirements are not (fully) covered."""
        return len({g.requirement for g in self.not_covered})

    def as_json(self) -> JSONObject:
        """The ``coverage`` key of the results JSON (docs/results-v1.md)."""
        return {
            "not_covered": [{"requirement": g.requirement, "section": g.section, "reason": g.reason}
                            for g in self.not_covered],
            "unprovable": self.unprovable,
            "deselected": self.deselected,
        }

    def line(self) -> str:
        """What the terminal's verdict line adds: ``; 14 requirements not covered by this run``."""
        n = self.requirements
        return f"; {n} requirement{'s' if n != 1 else ''} not covered by this run" if n else ""


def _uses_workstations(r: Requirement) -> bool:
    return "workstations" in r.sources or "workstations" in r.targets or r.external


def _in_phase(phases: Iterable[str], phase: str) -> bool:
    return phase == "all" or phase in phases


def plan_gaps(catalog: Catalog, inv: Inventory, plan: Plan, phase: str) -> list[Gap]:
    """Gaps the plan itself shows: the other phase, the workstation rules, balancers the inventory lacks."""
    phases: dict[str, set[str]] = {}
    for c in plan.checks:
        phases.setdefault(c.requirement.id, set()).update(c.phases)
    gaps = []
    for r in catalog.requirements:
        planned = phases.get(r.id)
        if planned is not None:
            if not _in_phase(planned, phase):
                gaps.append(Gap(r.id, r.section, OTHER_PHASE["postinstall" if "postinstall" in planned
                                                             else "preinstall"], "phase"))
            elif _uses_workstations(r) and not inv.workstations:
                gaps.append(Gap(r.id, r.section, WORKSTATIONS_PART, "workstations"))
            continue
        # Nothing planned: a gap only when the inventory lacks what the docs still demand (else it does not apply).
        if _uses_workstations(r) and not inv.workstations:
            gap = Gap(r.id, r.section, NO_WORKSTATIONS, "workstations")
        elif r.area == "lb" and r.balancer and r.balancer not in inv.balancers and not (
                r.condition == "internal-dns" and inv.dns_mode not in ("internal", "hybrid")):
            gap = Gap(r.id, r.section, f"the inventory lists no {r.balancer} load balancer; add `loadBalancers: "
                                       f"{{{r.balancer}: {{address: …}}}}` to cover it", "inventory")
        else:
            continue
        if not _in_phase((r.phase,), phase):
            gap = Gap(r.id, r.section, OTHER_PHASE[r.phase], "phase")
        gaps.append(gap)
    return gaps


def selection_gaps(catalog: Catalog, planned: Mapping[str, int], deselected: Mapping[str, int],
                   reported: Mapping[str, int]) -> list[Gap]:
    """Requirements some of whose checks in this phase were deselected (``-k``, ``-m``) or not run at all."""
    gaps = []
    for r in catalog.requirements:
        total = planned.get(r.id, 0)
        if not total:
            continue
        out = deselected.get(r.id, 0)
        if out:
            gaps.append(Gap(r.id, r.section, f"{out} of {total} checks deselected (-k, -m)", "deselected",
                            f"{out} of {total}"))
        missing = total - out - reported.get(r.id, 0)
        if missing > 0:
            gaps.append(Gap(r.id, r.section, f"{missing} of {total} checks {NOT_RUN}", "not-run",
                            f"{missing} of {total}"))
    return gaps


def unprovable_gaps(catalog: Catalog, records: Iterable[Record]) -> tuple[list[Gap], int]:
    """Requirements with results that could not be proven, each with what was missing (of its first such result)."""
    counts: Counter[str] = Counter()
    why: dict[str, str] = {}
    for r in records:
        if unprovable(r):
            counts[r["requirement"]] += 1
            why.setdefault(r["requirement"], r["message"].split(f"{UNPROVABLE}: ", 1)[-1])
    sections = {r.id: r.section for r in catalog.requirements}
    gaps = [Gap(req, sections.get(req, ""), f"{n} result{'s' if n != 1 else ''} could not be proven, e.g. "
                                            f"{why[req]} ({REQUIRE_PROOF})", "unprovable",
                f"{n} result{'s' if n != 1 else ''}, e.g. {why[req]}")
            for req, n in counts.items()]
    return gaps, sum(counts.values())


def coverage(catalog: Catalog, inv: Inventory, plan: Plan, phase: str, *, deselected: Mapping[str, int],
             reported: Mapping[str, int], records: Iterable[Record]) -> Coverage:
    """The run's coverage: ``deselected`` and ``reported`` count checks per requirement; ``records`` did not pass."""
    planned: Counter[str] = Counter(c.requirement.id for c in plan.checks if _in_phase(c.phases, phase))
    unproven, n = unprovable_gaps(catalog, records)
    gaps = plan_gaps(catalog, inv, plan, phase) + selection_gaps(catalog, planned, deselected, reported) + unproven
    order = {r.id: i for i, r in enumerate(catalog.requirements)}
    gaps.sort(key=lambda g: order.get(g.requirement, len(order)))
    return Coverage(gaps, n, sum(deselected.values()))
