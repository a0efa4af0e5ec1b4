"""Fixtures the suites (and users' own test modules) ask for."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_nova.catalog import Catalog
from pytest_nova.hosts import Access, Hosts
from pytest_nova.inventory import Inventory
from pytest_nova.options import NO_INVENTORY
from pytest_nova.rundir import run_dir
from pytest_nova.session import NovaItem, NovaSession, session_of


def _state(config: pytest.Config) -> NovaSession:
    state = session_of(config)
    if state.inventory is None:
        pytest.fail(NO_INVENTORY, pytrace=False)
    return state


@pytest.fixture(scope="session")
def nova_inventory(pytestconfig: pytest.Config) -> Inventory:
    """The validated inventory of this run."""
    inv = _state(pytestconfig).inventory
    assert inv is not None
    return inv


@pytest.fixture(scope="session")
def nova_catalog(pytestconfig: pytest.Config) -> Catalog:
    """The requirements catalog."""
    return session_of(pytestconfig).catalog


@pytest.fixture
def nova(request: pytest.FixtureRequest) -> NovaItem:
    """Record this test's verdicts and fail it with a Checked / Expected / Observed / Fix message."""
    return NovaItem(request.node, _state(request.config))


@pytest.fixture(scope="session")
def nova_hosts(pytestconfig: pytest.Config, nova_inventory: Inventory) -> Hosts:
    """Every inventory host, reached through its testinfra backend with the run's timeouts."""
    settings = session_of(pytestconfig).settings
    return Hosts(nova_inventory, Access(settings.connect_timeout, settings.command_timeout, run_dir()))


@pytest.fixture(scope="session")
def nova_run_dir() -> Path:
    """The folder shared by the controller and the xdist workers for this run's caches."""
    return run_dir()
