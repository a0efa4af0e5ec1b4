"""Hooks other plugins implement to extend pytest-nova, registered through ``pytest_addhooks`` (as xdist's are).

A site plugin is an ordinary pytest plugin (a ``conftest.py``, a module given with ``-p``, or a ``pytest11``
entry point) that defines any of these functions::

    def pytest_nova_catalog_dirs(config):        # site requirements, in the catalog's YAML format
        return [Path(__file__).parent / "catalog"]

    def pytest_nova_add_kinds(registry, config):  # a new area and kind of check
        registry.add_area(Area("site", "Site requirements", "the site's own requirements", keys={...}))
        registry.add_kind(Kind("site_check", SiteCheck, ("site",), expand, verdicts=judge))

See ``docs/extending.md`` for a whole example.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_nova.hosts import Access, Transport
    from pytest_nova.inventory import Host, Inventory
    from pytest_nova.kinds import Registry
    from pytest_nova.model import JSONObject
    from pytest_nova.session import NovaSession

hookspec = pytest.hookspec


@hookspec
def pytest_nova_catalog_dirs(config: pytest.Config) -> list[Path] | None:
    """Folders of catalog YAML files to load besides the packaged catalog (site requirements).

    Each file is validated like the packaged ones (file, line and key on error); its requirement ids must not
    repeat any other's. Called once per process, while pytest-nova configures the run.
    """


@hookspec
def pytest_nova_add_kinds(registry: Registry, config: pytest.Config) -> None:
    """Add areas and kinds of check to ``registry`` (:meth:`Registry.add_area`, :meth:`Registry.add_kind`).

    Called once per process before the plan is built; every xdist worker must add the same, as it rebuilds the
    same plan.
    """


@hookspec(firstresult=True)
def pytest_nova_transport(host: Host, inventory: Inventory, access: Access) -> Transport | None:
    """The transport that runs commands on ``host``, or None to leave it to the next implementation.

    Called once per host and process; ``host.connection`` names the scheme (``ssh``, ``local``, a URL). The
    built-in implementation handles ssh, paramiko and local and every other testinfra URL.
    """


@hookspec
def pytest_nova_results_fields(session: NovaSession) -> JSONObject | None:
    """Top-level keys to add to the results JSON (a compatible extension of v1), called once when it is written.

    Keys of format v1 itself (``schema``, ``summary``, ``results``, …) cannot be replaced.
    """
