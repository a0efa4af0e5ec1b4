"""The report's role columns: which role a result belongs to, and the results counted per area, role and outcome.

Counted as the reports arrive (by the xdist worker that ran the item, or the controller), so the report's area ×
role table never reads the run's records back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from _pytest_nova.inventory import Inventory

Cell = tuple[str, str, str]  # area, role, outcome


def roles_of(inv: Inventory | None) -> dict[str, str]:
    """The matrix column of each inventory name: a node's first role, workstation, or load balancer."""
    if inv is None:
        return {}
    roles = {n.name: (n.roles[0] if n.roles else "worker") for n in inv.nodes}
    roles |= {w.name: "workstation" for w in inv.workstations}
    roles |= {b: "load balancer" for b in inv.balancers}
    return roles


def role_of(record: Mapping[str, object], roles: Mapping[str, str]) -> str:
    """The matrix column of a record: its source's role, else its target's, else cluster-wide."""
    for key in ("source", "target"):
        name = record.get(key)
        if isinstance(name, str) and name in roles:
            return roles[name]
    return "cluster-wide"


def cells_of(records: Iterable[Mapping[str, object]], roles: Mapping[str, str]) -> Counter[Cell]:
    """Results per (area, role, outcome)."""
    return Counter((str(r.get("check")), role_of(r, roles), str(r.get("outcome"))) for r in records)
