"""Fixtures the suites (and users' own test modules) ask for."""

from __future__ import annotations

from pathlib import Path

import pytest

from _pytest_nova.catalog import Catalog
from _pytest_nova.hosts import Access, Hosts, Transport
from _pytest_nova.inventory import Host, Inventory
from _pytest_nova.options import NO_INVENTORY
from _pytest_nova.runcache import RunCache
from _pytest_nova.rundir import run_dir
from _pytest_nova.session import NovaItem, NovaSession, session_of
from _pytest_nova.transports import builtin_transport


def _state(config: pytest.Config) -> NovaSession:
    state = session_of(config)
    if state.inventory is None:
        pytest.fail(NO_INVENTORY, pytrace=False)
    return state


@pytest.fixture(scope="session")
def nova_inventory(pytestconfig: pytest.Config) -> Inventory:
    """The validated inventory of this run."""
    inv = _state(pytestconfig).inventory
    if inv is None:  # _state fails first; the type does not know
        pytest.fail(NO_INVENTORY, pytrace=False)
    return inv


@pytest.fixture(scope="session")
def nova_catalog(pytestconfig: pytest.Config) -> Catalog:
    """The requirements catalog."""
    return session_of(pytestconfig).catalog


@pytest.fixture
def nova(request: pytest.FixtureRequest) -> NovaItem:
    """Record this test's verdicts and fail it with a Checked / Expected / Observed / Fix message."""
    return NovaItem(request.node, _state(request.config))


_HOSTS = pytest.StashKey[Hosts]()


def hosts_of(config: pytest.Config) -> Hosts:
    """The run's :class:`Hosts` in this process, created on first use (the ``nova_hosts`` fixture, site tests)."""
    hosts = config.stash.get(_HOSTS, None)
    if hosts is None:
        state = session_of(config)
        if state.inventory is None:
            pytest.fail(NO_INVENTORY, pytrace=False)
        settings = state.settings
        hook = config.hook.pytest_nova_transport

        def transport(host: Host, inventory: Inventory, access: Access) -> Transport | None:
            chosen: Transport | None = hook(host=host, inventory=inventory, access=access)
            return chosen

        access = Access(settings.connect_timeout, settings.command_timeout, run_dir())
        hosts = config.stash[_HOSTS] = Hosts(state.inventory, access, transport)
    return hosts


@pytest.fixture(scope="session")
def nova_hosts(pytestconfig: pytest.Config) -> Hosts:
    """Every inventory host by name (``nova_hosts["master-1"]``, a :class:`~_pytest_nova.hosts.RemoteHost`).

    Each is reached through the transport the ``pytest_nova_transport`` hook gives for it, over the run's one
    login per host: ``.run(command, timeout=)`` returns a ``Result`` (``rc``, ``stdout``, ``stderr``) or raises
    ``HostError`` when the host cannot be reached.
    """
    return hosts_of(pytestconfig)


@pytest.hookimpl(trylast=True)
def pytest_nova_transport(host: Host, inventory: Inventory, access: Access) -> Transport:
    """The built-in transports (ssh, local, any other testinfra URL); a plugin's own implementation wins."""
    return builtin_transport(host, inventory, access)


@pytest.fixture(scope="session")
def nova_run_dir() -> Path:
    """The folder shared by the controller and the xdist workers for this run's caches."""
    return run_dir()


@pytest.fixture(scope="session")
def nova_run_cache(nova_run_dir: Path) -> RunCache:
    """The run cache: ``nova_run_cache.once(key, compute)`` computes once per run, for every xdist worker."""
    return RunCache(nova_run_dir)
