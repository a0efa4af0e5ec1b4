"""An example site plugin: one site requirement (its own catalog folder) and one kind of check.

Requirement ``site-time-source`` (catalog/site.yaml): the site's time source answers on its TCP port, as seen from
the machine that runs pytest. Kind ``site_tcp`` expands each ``site`` requirement into one check and judges it
with a TCP connect. Use it with ``pytest -p site_plugin --nova-inventory=…``; docs/extending.md walks through it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from pytest_nova import (
    FAILED,
    PASSED,
    AreaSpec,
    Catalog,
    Check,
    Inventory,
    Kind,
    NovaSession,
    Registry,
    Verdict,
    session_of,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteTcpCheck(Check):
    """A TCP port the runner must reach."""

    kind: ClassVar[str] = "site_tcp"


def expand(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """One check per site requirement."""
    for r in cat.by_area("site"):
        yield SiteTcpCheck(id=f"runner:{r.host}:{r.port}", requirement=r, phases=(r.phase,), source="runner",
                           target=r.host, port=r.port, protocol="tcp")


def verdicts(check: Check, request: pytest.FixtureRequest) -> list[Verdict]:
    """Connect once, with the run's probe timeout."""
    timeout = session_of(request.config).settings.probe_timeout
    where = f"{check.target}:{check.port}"
    try:
        with socket.create_connection((str(check.target), int(check.port or 0)), timeout=float(timeout)):
            outcome, message = PASSED, f"connected to {where}"
    except OSError as exc:
        outcome, message = FAILED, f"refused or unreachable: {where}: {exc.strerror or exc}"
    r = check.requirement
    return [Verdict(check=r.area, requirement=r.id, section=r.section, outcome=outcome, message=message,
                    source="runner", target=check.target, port=check.port, protocol="tcp",
                    checked=f"TCP connect from the runner to {where}", expected=r.summary,
                    fix="" if outcome == PASSED else r.fix)]


def pytest_nova_catalog_dirs(config: pytest.Config) -> list[Path]:
    """The site's requirements, in the catalog's YAML format."""
    return [Path(__file__).parent / "catalog"]


def pytest_nova_add_kinds(registry: Registry, config: pytest.Config) -> None:
    """The ``site`` area and the ``site_tcp`` kind that checks it."""
    registry.add_area(AreaSpec("site", "Site requirements", "the site's own requirements",
                               {"host": True, "port": True}))
    registry.add_kind(Kind("site_tcp", SiteTcpCheck, ("site",), expand, verdicts=verdicts))


def pytest_nova_results_fields(session: NovaSession) -> dict[str, object]:
    """Which site standard this run checked, for whoever reads the results JSON."""
    return {"site": {"standard": "site-1"}}
