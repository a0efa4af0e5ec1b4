"""Site tests: a site's own testinfra tests, run on the inventory's nodes and judged like the plan's checks.

With an inventory, every test that takes testinfra's ``host`` fixture is parametrized over the inventory's nodes
(ids are node names, sorted) in place of testinfra's ``--hosts``; ``host`` is a testinfra ``Host`` on the run's
shared connection to that node (:mod:`_pytest_nova.testinfra_backend`), grouped for xdist with the node's plan
items. Markers: ``nova_roles(*roles)`` narrows the nodes, ``nova_requirement(id, section=, summary=,
severity=, area=, fix=)`` names the requirement. Each (test, node) gives one record through
:func:`_pytest_nova.verdicts.judge`, as a built-in check does: the results JSON, the verdict, the report, JUnit,
waivers and ``--nova-strict`` read it like any other. Without an inventory testinfra works as before.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest
import testinfra.host

from _pytest_nova.errors import SourceError
from _pytest_nova.fixtures import hosts_of
from _pytest_nova.hosts import HostError, host_fix
from _pytest_nova.inventory import ROLES, Inventory
from _pytest_nova.model import CheckMeta, Outcome
from _pytest_nova.report.waiving import WAIVERS
from _pytest_nova.results import CHECK_PROPERTY
from _pytest_nova.session import SESSION, NovaSession
from _pytest_nova.testinfra_backend import NovaBackend, nova_host
from _pytest_nova.verdicts import ERROR, FAILED, PASSED, Verdict, judge

# testinfra's fixture behind ``host``; its own pytest_generate_tests parametrizes it from --hosts.
TESTINFRA_PARAM = "_testinfra_host"
SITE_AREA = "site"
REFUSED = "nova-refused:"  # the id of a placeholder item standing for a site test whose markers are refused
KIND = "site_test"
SEVERITIES = ("required", "advisory")
REQUIREMENT_KEYS = ("section", "summary", "severity", "area", "fix")
_WAIVERS_CHECKED = pytest.StashKey[bool]()  # this process collected the tests and checked the waivers
_HOSTS = pytest.StashKey[dict[str, testinfra.host.Host]]()  # node name -> its testinfra Host, one per process


class SiteTestError(Exception):
    """A site test's markers cannot be honoured; the message names the test and what to change."""


@dataclass(frozen=True)
class SiteTest:
    """What one (site test, node) item checks: its requirement, where, and how it is reported."""

    requirement: str
    area: str
    section: str
    summary: str
    severity: str
    fix: str
    node: str
    name: str

    def meta(self) -> CheckMeta:
        """The item's ``nova_check`` property: what a record of an item that ended early says."""
        return {"check": self.area, "requirement": self.requirement, "section": self.section, "source": None,
                "target": self.node, "port": None, "protocol": None, "fix": self.fix, "summary": self.summary,
                "severity": self.severity, "kind": KIND}

    def verdict(self, outcome: Outcome, message: str, fix: str = "") -> Verdict:
        """One record's verdict: Checked / Expected / Observed / Fix as a built-in check gives them."""
        return Verdict(check=self.area, requirement=self.requirement, section=self.section, outcome=outcome,
                       message=message, target=self.node, checked=f"site test {self.name} on {self.node}",
                       expected=self.summary, fix=fix or self.fix)


def pytest_configure(config: pytest.Config) -> None:
    """Register the site tests' markers."""
    config.addinivalue_line("markers", "nova_roles(*roles): run this site test only on nodes with these roles")
    config.addinivalue_line(
        "markers", "nova_requirement(id, section=, summary=, severity=required|advisory, area=site, fix=): "
                   "the requirement this site test proves")
    config.addinivalue_line("markers", f"{SITE_AREA}: a site's own tests (testinfra's host fixture)")


def _state(config: pytest.Config) -> NovaSession | None:
    state = config.stash.get(SESSION, None)
    return state if state is not None and state.inventory is not None else None


@pytest.hookimpl(wrapper=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> Generator[None, None, None]:
    """With an inventory, parametrize testinfra's host over the inventory's nodes instead of its --hosts."""
    state = _state(metafunc.config)
    names = metafunc.fixturenames
    if state is None or TESTINFRA_PARAM not in names:
        return (yield)
    # testinfra's implementation parametrizes every test that uses the argument: hidden from it while it runs.
    at = names.index(TESTINFRA_PARAM)
    del names[at]
    try:
        result = yield
    finally:
        names.insert(at, TESTINFRA_PARAM)
    try:
        area = requirement_of(metafunc.definition, metafunc.function.__name__, state)[1]
        nodes = nodes_of(metafunc.definition, state.inventory)
    except SiteTestError as exc:
        # Raised after collection (here it would print as a collection error); the id carries the line to the
        # xdist controller, which collects nothing itself.
        problem = f"{metafunc.definition.nodeid}: {exc}"
        metafunc.parametrize(TESTINFRA_PARAM, [pytest.param(None, id=f"{REFUSED}{problem}",
                                                            marks=pytest.mark.skip(reason=problem))],
                             indirect=True, scope="module")
        return result
    params = [pytest.param(_host(metafunc.config, name), id=name,
                           marks=[pytest.mark.xdist_group(name), getattr(pytest.mark, area)]) for name in nodes]
    # No node has the roles: deselected like a plan kind with nothing to check.
    metafunc.parametrize(TESTINFRA_PARAM, params or [pytest.param(None, id="none", marks=pytest.mark.nova_empty)],
                         indirect=True, scope="module")
    return result


def _host(config: pytest.Config, name: str) -> testinfra.host.Host:
    hosts = config.stash.setdefault(_HOSTS, {})
    if name not in hosts:
        hosts[name] = nova_host(name, lambda: hosts_of(config))
    return hosts[name]


def nodes_of(definition: pytest.Item, inv: Inventory | None) -> list[str]:
    """The nodes a site test runs on, sorted: those with a role of ``nova_roles``, else every node."""
    if inv is None:
        return []
    marker = definition.get_closest_marker("nova_roles")
    if marker is None:
        return sorted(n.name for n in inv.nodes)
    if marker.kwargs or not marker.args or not all(isinstance(r, str) for r in marker.args):
        raise SiteTestError("nova_roles takes role names, e.g. @pytest.mark.nova_roles(\"master\", \"worker\")")
    unknown = [r for r in marker.args if r not in ROLES]
    if unknown:
        raise SiteTestError(f"nova_roles: unknown role {unknown[0]!r} (expected one of: {', '.join(ROLES)})")
    return sorted({n.name for role in marker.args for n in inv.with_role(role)})


def requirement_of(definition: pytest.Item, name: str, state: NovaSession) -> tuple[str, str, dict[str, str]]:
    """The requirement id, area and the other ``nova_requirement`` values of a site test (id: its name)."""
    marker = definition.get_closest_marker("nova_requirement")
    if marker is None:
        return name, SITE_AREA, {}
    if len(marker.args) != 1 or not isinstance(marker.args[0], str) or not marker.args[0].strip():
        raise SiteTestError("nova_requirement takes one requirement id, e.g. "
                            "@pytest.mark.nova_requirement(\"site-ntp\", severity=\"advisory\")")
    values: dict[str, str] = {}
    for key, value in marker.kwargs.items():
        if key not in REQUIREMENT_KEYS:
            expected = ", ".join(REQUIREMENT_KEYS)
            raise SiteTestError(f"nova_requirement: unknown key {key!r} (expected one of: {expected})")
        if not isinstance(value, str):
            raise SiteTestError(f"nova_requirement: {key} must be text, not {type(value).__name__}")
        values[key] = value
    if values.get("severity", "required") not in SEVERITIES:
        raise SiteTestError(f"nova_requirement: severity {values['severity']!r} (expected required or advisory)")
    area = values.get("area", SITE_AREA)
    if area != SITE_AREA and area not in state.registry.areas:
        raise SiteTestError(f"nova_requirement: unknown area {area!r} "
                            f"(expected {SITE_AREA} or one of: {', '.join(state.registry.areas)})")
    return marker.args[0].strip(), area, values


def site_test_of(item: pytest.Item) -> SiteTest | None:
    """The site test an item runs, or None for any other item (the plan's, or testinfra without an inventory)."""
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get(TESTINFRA_PARAM) if callspec is not None else None
    backend = getattr(host, "backend", None)
    state = _state(item.config)
    if not isinstance(backend, NovaBackend) or state is None:
        return None
    name = getattr(item, "originalname", item.name)
    requirement, area, values = requirement_of(item, name, state)
    doc = (getattr(getattr(item, "obj", None), "__doc__", None) or "").strip().splitlines()
    return SiteTest(requirement=requirement, area=area, section=values.get("section", SITE_AREA),
                    summary=values.get("summary", doc[0] if doc else name),
                    severity=values.get("severity", "required"), fix=values.get("fix", ""),
                    node=backend.hostname, name=name)


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: a waiver may name a test this run leaves out
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Attach each site test's description (it travels with its reports); refuse unusable markers and waivers."""
    declared: set[str] = set()
    if not hasattr(config, "workerinput"):
        _refuse([item.nodeid for item in items])
    for item in items:
        site = site_test_of(item)
        if site is not None:
            item.user_properties.append((CHECK_PROPERTY, site.meta()))
            declared.add(site.requirement)
    waivers = config.stash.get(WAIVERS, None)
    if waivers is None or hasattr(config, "workerinput"):
        return  # an xdist worker cannot end the run in one line: the controller checks after the run
    config.stash[_WAIVERS_CHECKED] = True
    try:
        waivers.check_pending(declared)
    except SourceError as exc:
        raise pytest.UsageError(f"--nova-waivers: {exc}") from None


def _refuse(ids: list[str]) -> None:
    problem = next((i.split(REFUSED, 1)[1].removesuffix("]") for i in ids if REFUSED in i), None)
    if problem is not None:
        raise pytest.UsageError(problem)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest-nova also runs with -p no:xdist
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """On the xdist controller: a site test whose markers a worker refused ends the run with the one line."""
    _refuse(ids)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under xdist, the controller refuses a waiver of a requirement that neither the catalog nor a test has."""
    config = session.config
    waivers, state = config.stash.get(WAIVERS, None), _state(config)
    if waivers is None or state is None or not waivers.pending or config.stash.get(_WAIVERS_CHECKED, False) \
            or hasattr(config, "workerinput") or config.option.collectonly:
        return
    try:
        waivers.check_pending({r["requirement"] for r in state.collector.records()})
    except SourceError as exc:
        sys.stderr.write(f"ERROR: --nova-waivers: {exc}\n")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Run a site test on its node and judge it: one record, and a failure text without traceback."""
    site = site_test_of(pyfuncitem)
    if site is None:
        return (yield)
    try:
        # The node's one login of the run first: an unreachable node errors each of its tests with its cause.
        hosts_of(pyfuncitem.config)[site.node].login()
    except HostError as exc:
        _judge(pyfuncitem, site, site.verdict(ERROR, str(exc), host_fix(exc)))
    result: object = None
    try:
        result = yield
    except AssertionError as exc:
        verdict = site.verdict(FAILED, observed(exc))
    except pytest.fail.Exception as exc:
        verdict = site.verdict(FAILED, exc.msg or "failed")
    except HostError as exc:
        verdict = site.verdict(ERROR, str(exc), host_fix(exc))
    else:
        verdict = site.verdict(PASSED, "passed")
    _judge(pyfuncitem, site, verdict)
    return result


def _judge(item: pytest.Function, site: SiteTest, verdict: Verdict) -> None:
    state = _state(item.config)
    settings = state.settings if state is not None else None
    judge(item.user_properties, item.nodeid, [verdict],
          advisory=(site.requirement,) if site.severity == "advisory" else (),
          strict=bool(settings and settings.strict), proof=bool(settings and settings.require_proof))


def observed(exc: AssertionError) -> str:
    """What a failed assertion observed: its message when it has one, else pytest's explanation."""
    text = str(exc).strip()
    message, explained, _ = text.partition("\nassert ")
    return (message.strip() if explained and message.strip() else text) or "assertion failed"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A node that fails in a site test's fixture (the test's own, before it ran) says why in one line."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(HostError) and site_test_of(item) is not None:
        report.longrepr = str(call.excinfo.value)
    return report
