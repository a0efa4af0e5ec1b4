"""An example site plugin: its own catalog folder, two areas and two kinds of check.

- ``site`` (catalog/site.yaml), kind ``site_tcp``: the site's time source answers on its TCP port, as seen from
  the machine that runs pytest; expanded into one check per requirement and judged with a TCP connect.
- ``site_node`` (catalog/site_node.yaml), kind ``site_node``: each node's chrony or timesyncd configuration
  names the site's time source. A node fact (``time_sources``, a small function run on the node) and a node
  rule (``time_source_configured``) ride the node's one facts run: no extra SSH session per host.

Use it with ``pytest -p site_plugin --nova-inventory=…``; docs/extending.md walks through it.
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
    OPTIONAL,
    PASSED,
    REQUIRED,
    AreaSpec,
    Catalog,
    Check,
    Context,
    Facts,
    Finding,
    Inventory,
    Kind,
    NodeCheck,
    NodeFact,
    NodeRule,
    NovaSession,
    Params,
    Registry,
    Verdict,
    gathered,
    hosts_in_scope,
    node_verdicts,
    session_of,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteTcpCheck(Check):
    """A TCP port the runner must reach."""

    kind: ClassVar[str] = "site_tcp"


def expand(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """One check per site requirement."""
    for r in cat.by_area("site"):
        yield SiteTcpCheck(id=f"runner:{r.host}:{r.port}", requirement=r, phases=r.phases, source="runner",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteNodeCheck(NodeCheck):
    """A site requirement judged on one node from its facts."""

    kind: ClassVar[str] = "site_node"


def expand_nodes(cat: Catalog, inv: Inventory) -> Iterator[Check]:
    """One check per site_node requirement and host of its scope."""
    for r in cat.by_area("site_node"):
        for host in hosts_in_scope(inv, r.scope):
            yield SiteNodeCheck(id=f"{host.name}:{r.id}", requirement=r, phases=r.phases, host=host.name,
                                source=host.name)


def time_sources() -> dict[str, list[str]]:
    """Runs on the node (python3 3.6+, standard library only): the servers chrony and timesyncd are given."""
    import glob

    found: dict[str, list[str]] = {"chrony": [], "timesyncd": []}
    files = {"chrony": ["/etc/chrony.conf", "/etc/chrony/chrony.conf", *glob.glob("/etc/chrony/conf.d/*.conf")],
             "timesyncd": ["/etc/systemd/timesyncd.conf", *glob.glob("/etc/systemd/timesyncd.conf.d/*.conf")]}
    for daemon, paths in files.items():
        for path in paths:
            try:
                with open(path) as fh:
                    lines = fh.read(65536).splitlines()
            except OSError:
                continue
            for line in lines:
                words = line.split("#", 1)[0].replace("=", " ").split()
                if daemon == "chrony" and len(words) > 1 and words[0] in ("server", "pool", "peer"):
                    found[daemon].append(words[1])
                if daemon == "timesyncd" and words[:1] in (["NTP"], ["FallbackNTP"]):
                    found[daemon].extend(words[1:])
    return found


def time_source_configured(facts: Facts, params: Params, ctx: Context) -> Finding:
    """Pure: the node's chrony or timesyncd configuration names the site's time source."""
    server = str(params["server"])
    got = gathered(facts, "time_sources")
    if not isinstance(got, dict) or "error" in got:
        error = got.get("error") if isinstance(got, dict) else "not gathered"
        return Finding(FAILED, f"the time configuration could not be read: {error}")
    servers: list[str] = []
    for daemon in ("chrony", "timesyncd"):
        listed = got.get(daemon)
        servers += [str(s) for s in listed] if isinstance(listed, list) else []
    if server in servers:
        return Finding(PASSED, f"{server} is among the configured time sources ({', '.join(servers)})")
    if not servers:
        return Finding(FAILED, f"no time source is configured (chrony, systemd-timesyncd); {ctx.host} must use "
                               f"{server}")
    return Finding(FAILED, f"the configured time sources are {', '.join(servers)}, not the site's {server}")


def pytest_nova_catalog_dirs(config: pytest.Config) -> list[Path]:
    """The site's requirements, in the catalog's YAML format."""
    return [Path(__file__).parent / "catalog"]


def pytest_nova_add_kinds(registry: Registry, config: pytest.Config) -> None:
    """The ``site`` area and its ``site_tcp`` kind; the ``site_node`` area, its node fact, rule and kind."""
    registry.add_area(AreaSpec("site", "Site requirements", "the site's own requirements",
                               {"host": REQUIRED, "port": REQUIRED}))
    registry.add_kind(Kind("site_tcp", SiteTcpCheck, ("site",), expand, verdicts=verdicts))
    registry.add_area(AreaSpec("site_node", "Site node requirements", "the site's own requirements of each node",
                               {"check": REQUIRED, "scope": REQUIRED, "params": OPTIONAL}))
    registry.add_node_fact(NodeFact("time_sources", gather=time_sources))
    registry.add_node_rule("time_source_configured", NodeRule(time_source_configured, facts=("time_sources",)))
    registry.add_kind(Kind("site_node", SiteNodeCheck, ("site_node",), expand_nodes, verdicts=node_verdicts))


def pytest_nova_results_fields(session: NovaSession) -> dict[str, object]:
    """Which site standard this run checked, for whoever reads the results JSON."""
    return {"site": {"standard": "site-1"}}
