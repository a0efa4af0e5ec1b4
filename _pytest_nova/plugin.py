"""The pytest plugin: hooks only, wiring options, the registry, the catalog, the plan, the suites and the report.

The run state lives in :mod:`_pytest_nova.session`, the engines in :mod:`_pytest_nova.checks`.
"""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from _pytest_nova import __version__, executor, handoff, secrets
from _pytest_nova.catalog import Catalog, load_catalog
from _pytest_nova.collect import add_suites, ignore_extensions
from _pytest_nova.errors import SourceError
from _pytest_nova.hosts import close_control_sockets
from _pytest_nova.inventory import Inventory, load_inventory
from _pytest_nova.kinds import GENERIC, Registry, RegistryError
from _pytest_nova.kubeconfig import kubeconfig_path
from _pytest_nova.limits import fds_needed, raise_fd_limit
from _pytest_nova.model import CheckMeta
from _pytest_nova.options import NO_INVENTORY, add_options, read_settings
from _pytest_nova.plan import Check
from _pytest_nova.report.waiving import WAIVERS
from _pytest_nova.results import CHECK_PROPERTY, ResultsWriter, pack
from _pytest_nova.roles import roles_of
from _pytest_nova.rundir import forget_run_dir, run_dir
from _pytest_nova.runfiles import check_run_files
from _pytest_nova.session import SESSION, NovaSession, check_of, session_of
from _pytest_nova.verdicts import junit_properties

# Inventories up to this many hosts run in one process under ``-n auto`` (measured: docs/scaling.md).
ONE_PROCESS_HOSTS = 60
PHASE_MARKERS = {
    "preinstall": "checks to run before installing the platform",
    "postinstall": "checks to run on the installed platform",
}


NO_INVENTORY_ID = "nova-no-inventory"
BUILTIN_KINDS_PLUGIN = "nova-builtin-kinds"
_INVENTORY = pytest.StashKey[tuple[Path, Inventory]]()
_GC_BEFORE = pytest.StashKey[tuple[int, int, int]]()
# The collector's thresholds for a run with an inventory. Every process of a 200-node run creates millions of
# short-lived containers (probe answers, results, reports); at CPython's default (700, 10, 10) the collector ran
# 750–870 times per process and took 6.2 s of the runner's 29 s of CPU (gw0 3.9 s, the controller 1.9 s); at
# these 1.2 s + 1.2 s + 0.1 s (bench/run.py's "gc_s"). What it collects later is a few MB more memory at most.
GC_THRESHOLDS = (50_000, 20, 100)
_ON_WORKER = [False]  # this process is an xdist worker: its reports go to the controller (set when configured)
_ROLES: dict[str, str] = {}  # the report's role column of each inventory name (roles.roles_of), on a worker
# Modules loaded as plugins besides the engines (whose modules the kinds name): common fixtures, the report.
PLUGIN_MODULES = ("_pytest_nova.fixtures", "_pytest_nova.report", "_pytest_nova.unreached", "_pytest_nova.site_tests")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the hooks site plugins implement (:mod:`pytest_nova.hookspecs`)."""
    from _pytest_nova import builtin_kinds
    from pytest_nova import hookspecs

    pluginmanager.add_hookspecs(hookspecs)
    # The built-in kinds are an implementation of the same hook plugins implement.
    if not pluginmanager.is_registered(builtin_kinds) and not pluginmanager.is_blocked(BUILTIN_KINDS_PLUGIN):
        pluginmanager.register(builtin_kinds, BUILTIN_KINDS_PLUGIN)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the --nova-* options."""
    add_options(parser)


@pytest.hookimpl(tryfirst=True)  # before pytest-html, which writes its assets while it is configured
def pytest_configure(config: pytest.Config) -> None:
    """Load the inventory and catalog and build the plan; bad input ends the run with one line."""
    _ON_WORKER[0] = hasattr(config, "workerinput")
    registry = _registry(config)
    for name, help_text in {**{a.name: a.marker for a in registry.areas.values()}, **PHASE_MARKERS}.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")
    config.addinivalue_line("markers", "nova_check: an item generated from the pytest-nova plan")
    config.addinivalue_line("markers", "nova_empty: a placeholder for a kind with no checks in this phase")
    config.addinivalue_line("markers", "nova_area(*areas): parametrize this test only with checks of these areas")
    secrets.install_log_filter()
    secrets.register_environment()
    settings = read_settings(config)
    handed = handoff.received(config)
    try:
        state = NovaSession(settings=settings, catalog=_catalog(config, registry), registry=registry)
        if settings.inventory is not None:
            inv = handed.inventory if handed is not None else None
            state.inventory = inv if inv is not None else _inventory(config, settings.inventory)
            state.plan = registry.build(state.catalog, state.inventory)
            add_suites(config)
    except SourceError as exc:
        raise pytest.UsageError(secrets.mask(str(exc))) from None
    except RegistryError as exc:
        raise pytest.UsageError(secrets.mask(f"pytest_nova_add_kinds: {exc}")) from None
    config.stash[SESSION] = state
    if state.inventory is not None:
        config.stash[_GC_BEFORE] = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
    _ROLES.clear()
    _ROLES.update(roles_of(state.inventory))
    if state.inventory is not None and handed is None:
        register_secrets(state.inventory)
    if not hasattr(config, "workerinput"):
        check_run_files(config, settings, state.inventory)
        config.pluginmanager.register(ResultsWriter(state), "nova-results")
        if state.inventory is not None:
            # Created before xdist starts its workers, which inherit it through the environment.
            state.run_dir = run_dir()
            # Before the workers start too: they inherit the limit.
            state.fd_note = raise_fd_limit(fds_needed(len(state.inventory.nodes) + len(state.inventory.workstations)))
    for module in PLUGIN_MODULES:
        if not config.pluginmanager.has_plugin(module):
            config.pluginmanager.import_plugin(module)
    _import_engines(config, registry)


def _import_engines(config: pytest.Config, registry: Registry) -> None:
    """Load each kind's engine module as a plugin; one that cannot be imported ends the run with one line."""
    for kind in registry.kinds.values():
        module = kind.engine
        if not module or config.pluginmanager.has_plugin(module):
            continue
        try:
            config.pluginmanager.import_plugin(module)
        except Exception as exc:  # any error raised while importing someone's module: named, not a traceback
            cause = exc.__cause__ if isinstance(exc, ImportError) and exc.__cause__ else exc
            raise pytest.UsageError(f"pytest_nova_add_kinds: kind {kind.name!r}: engine module {module!r} cannot be "
                                    f"imported: {type(cause).__name__}: {cause}".splitlines()[0]) from None


def _inventory(config: pytest.Config, path: Path) -> Inventory:
    """The inventory at ``path``, read once per process (``-n auto`` reads it before the run is configured)."""
    loaded = config.stash.get(_INVENTORY, None)
    if loaded is None or loaded[0] != path:
        loaded = config.stash[_INVENTORY] = (path, load_inventory(path))
    return loaded[1]


def _registry(config: pytest.Config) -> Registry:
    """The built-in kinds and those site plugins add; a plugin's mistake ends the run with one line."""
    registry = Registry()
    try:
        config.hook.pytest_nova_add_kinds(registry=registry, config=config)
        registry.check()
    except RegistryError as exc:
        raise pytest.UsageError(f"pytest_nova_add_kinds: {exc}") from None
    return registry


def _catalog(config: pytest.Config, registry: Registry) -> Catalog:
    """The packaged catalog plus the folders site plugins add (validated the same way)."""
    extra = [Path(d) for dirs in config.hook.pytest_nova_catalog_dirs(config=config) if dirs for d in dirs]
    try:
        return load_catalog(extra=extra, areas=registry.areas)
    except ValueError as exc:
        raise pytest.UsageError(f"pytest_nova_catalog_dirs: {exc}") from None


def register_secrets(inv: Inventory) -> None:
    """Mask the contents of the SSH keys and the kubeconfig's credentials in everything the run writes."""
    for key in {inv.ssh.identity_file, *(n.identity_file for n in inv.nodes if n.identity_file)}:
        secrets.register_key_file(inv.resolve_file(key))
    secrets.register_kubeconfig(kubeconfig_path(inv))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> Generator[None, None, None]:
    """Mask secrets in a report before the terminal, JUnit, pytest-html or the results JSON see it.

    On an xdist worker the report's records are first packed (:func:`_pytest_nova.results.pack`: one rendered
    string, masked as a whole, and the records that did not pass) before xdist sends the report to the controller.
    """
    if _ON_WORKER[0] and report.when == "call":
        report.user_properties = pack(report.user_properties, _ROLES)
    if getattr(report, "node", None) is None:
        # A report an xdist worker sent (the controller sets its ``node``) was masked there, with the same secrets
        # (handoff): masking its 100 MB of records again cost the controller seconds.
        mask_report(report)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_collectreport(report: pytest.CollectReport) -> Generator[None, None, None]:
    """Mask secrets in a collection report (an error while importing a suite)."""
    mask_report(report)
    return (yield)


def mask_report(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Replace secrets in the failure text, captured output and properties of ``report``."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        report.longrepr = (longrepr[0], longrepr[1], secrets.mask(longrepr[2]))
    elif longrepr is not None:
        text = str(longrepr)
        masked = secrets.mask(text)
        if masked != text:
            report.longrepr = masked
    report.sections = [(title, secrets.mask(content)) for title, content in report.sections]
    if isinstance(report, pytest.TestReport):
        report.user_properties = [(k, secrets.mask_data(v)) for k, v in report.user_properties]


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest-nova also runs with -p no:xdist
def pytest_configure_node(node: Any) -> None:
    """On the xdist controller: hand each worker the parsed inventory and waivers (:mod:`_pytest_nova.handoff`)."""
    state = node.config.stash.get(SESSION, None)
    if state is not None:
        node.workerinput[handoff.KEY] = handoff.pack(state.inventory, node.config.stash.get(WAIVERS, None))


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest-nova also runs with -p no:xdist
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """On the xdist controller: a worker that found suites but no inventory ends the run with the one line."""
    if any(NO_INVENTORY_ID in i for i in ids):
        raise pytest.UsageError(NO_INVENTORY)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The generic suite is collected only when a site plugin added a kind that judges its own checks."""
    state = config.stash.get(SESSION, None)
    return True if state is not None and ignore_extensions(collection_path, state.registry.generic) else None


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # an xdist hook (also runs with -p no:xdist); before xdist's own
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` runs a plan of up to ONE_PROCESS_HOSTS hosts in one process (docs/scaling.md).

    The engines already do every host's network work in threads of whichever process asks first, so workers
    add no network parallelism, only their own collection of the plan and a process boundary for every report:
    up to 60 nodes one process was faster and needed half the CPU. Larger inventories, runs without an
    inventory, and an explicit PYTEST_XDIST_AUTO_NUM_WORKERS keep xdist's own choice.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    path = read_settings(config).inventory
    try:
        inv = _inventory(config, path) if path is not None else None
    except SourceError:
        return None  # reported in one line when the run is configured
    return 0 if inv is not None and len(inv.nodes) + len(inv.workstations) <= ONE_PROCESS_HOSTS else None


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Under ``-n``, distribute by xdist group unless told otherwise: one worker holds one host's items."""
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") == "no":
        config.option.dist = "loadgroup"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Join this process's remote work; on the controller, close the shared SSH connections, remove the run's folder."""
    before = config.stash.get(_GC_BEFORE, None)
    if before is not None:
        gc.set_threshold(*before)  # a run inside another process (pytester) leaves it as it was
    executor.shutdown()  # the remote work first: it runs over the connections closed below
    state = config.stash.get(SESSION, None)
    if state is None or state.run_dir is None:
        return
    close_control_sockets(state.run_dir)
    executor.shutdown()
    shutil.rmtree(state.run_dir, ignore_errors=True)
    forget_run_dir()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that asks for a kind of check with that kind's checks from the plan.

    ``nova_check`` (the generic suite's argument) takes the checks of every kind that judges its own.
    """
    state = session_of(metafunc.config)
    kinds = [k for k in (*state.registry.kinds, GENERIC) if k in metafunc.fixturenames]
    if not kinds:
        return
    if state.plan is None:
        # Raised after collection: a usage error during collection would print as a collection error.
        state.needs_inventory = True
        # A placeholder the xdist controller recognises among the ids a worker collected.
        skip = pytest.mark.skip(reason=NO_INVENTORY)
        metafunc.parametrize(kinds[0], [pytest.param(None, id=NO_INVENTORY_ID, marks=skip)])
        return
    if len(kinds) > 1:
        raise pytest.UsageError(f"{metafunc.function.__name__}: a test takes one kind of check, not {kinds}")
    generic = state.registry.generic if kinds[0] == GENERIC else (kinds[0],)
    checks = [c for kind in generic for c in state.plan.of_kind(kind, state.settings.phase)]
    # One kind may span areas (node_requirement: os and k8s); a suite per area narrows it with nova_area.
    area = metafunc.definition.get_closest_marker("nova_area")
    if area is not None:
        checks = [c for c in checks if c.area in area.args]
    # A kind with nothing to check in this phase (lb before installation) is deselected, not skipped.
    marks: dict[tuple[str, str, tuple[str, ...]], list[pytest.MarkDecorator]] = {}
    params = [_param(c, marks) for c in checks] or [pytest.param(None, id="none", marks=pytest.mark.nova_empty)]
    metafunc.parametrize(kinds[0], params)


def _param(check: Check, marks: dict[tuple[str, str, tuple[str, ...]], list[pytest.MarkDecorator]]) -> Any:
    # Items of one host share their mark objects: building them per item was a third of a large collection.
    key = (check.area, check.group, check.phases)
    if key not in marks:
        marks[key] = [getattr(pytest.mark, check.area), pytest.mark.xdist_group(check.group), pytest.mark.nova_check,
                      *(getattr(pytest.mark, p) for p in check.phases)]
    return pytest.param(check, id=check.id, marks=marks[key])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Attach each item's check description, which travels with its reports to the controller."""
    if session_of(config).needs_inventory and not hasattr(config, "workerinput"):
        items[:] = []  # --collect-only would list the placeholders before the error
        raise pytest.UsageError(NO_INVENTORY)
    keep: list[pytest.Item] = []
    empty: list[pytest.Item] = []
    for item in items:
        check = check_of(item)
        if check is not None:
            item.user_properties.append((CHECK_PROPERTY, describe(check)))
        elif item.get_closest_marker("nova_empty"):
            empty.append(item)
            continue
        keep.append(item)
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move the plan and the items out of the garbage collector's sight: they live until the session ends.

    With tens of thousands of items (each holding its check, and the port rules millions of targets), every full
    collection walked them all again: a third of a 1,000-node collection, and pytest runs several at its end.
    """
    if session_of(session.config).plan is not None:
        gc.freeze()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """The teardown report, which JUnit takes its properties from, carries failures in full and no passed result."""
    if call.when == "teardown":
        item.user_properties[:] = junit_properties(item.user_properties)
    return (yield)


def describe(check: Check) -> CheckMeta:
    """The plain-data summary of a check that reports carry."""
    r = check.requirement
    return {
        "check": r.area,
        "requirement": r.id,
        "section": r.section,
        "source": check.source,
        "target": check.target,
        "port": check.port,
        "protocol": check.protocol,
        "fix": r.fix,
        "summary": r.summary,
        "severity": r.severity,
        "kind": check.kind,
        "id": check.id,
    }


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One header line naming the inventory, the phase and the size of the plan."""
    state = session_of(config)
    if state.inventory is None or state.plan is None:
        return []
    inv = state.inventory
    return [
        f"nova: {inv.name} ({inv.path}), {len(inv.nodes)} nodes, mode {inv.mode}, phase "
        f"{state.settings.phase}, {len(state.plan.checks)} checks planned, catalog {state.catalog.version}, "
        f"pytest-nova {__version__}",
        *([f"nova: warning: {state.fd_note}"] if state.fd_note else []),
    ]


