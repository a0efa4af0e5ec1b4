"""Hooks other plugins implement to extend pytest-nova, registered through ``pytest_addhooks`` (as xdist's are).

A site plugin is an ordinary pytest plugin (a ``conftest.py``, a module given with ``-p``, or a ``pytest11``
entry point) that defines any of these functions::

    def pytest_nova_catalog_dirs(config):        # site requirements, in the catalog's YAML format
        return [Path(__file__).parent / "catalog"]

    def pytest_nova_add_kinds(registry, config):  # a new area and kind of check (pytest_nova's public names)
        registry.add_area(AreaSpec("site", "Site requirements", "the site's own requirements",
                                   {"host": REQUIRED, "port": REQUIRED}))
        registry.add_kind(Kind("site_tcp", SiteTcpCheck, ("site",), expand, verdicts=verdicts))

``SiteTcpCheck``, ``expand`` and ``verdicts`` are the plugin's own (a ``Check`` subclass, its pure expansion, and
gather + judge of one check); ``docs/extending.md`` shows the whole file, with a node fact and rule too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from _pytest_nova.hosts import Access, Transport
    from _pytest_nova.inventory import Host, Inventory
    from _pytest_nova.kinds import Registry
    from _pytest_nova.model import JSONObject
    from _pytest_nova.session import NovaSession

hookspec = pytest.hookspec


@hookspec
def pytest_nova_catalog_dirs(config: pytest.Config) -> list[Path] | None:
    """Folders of catalog YAML files to load besides the packaged catalog (site requirements).

    Each file is validated like the packaged ones (file, line and key on error); its requirement ids must not
    repeat any other's. Called once per process, while pytest-nova configures the run.
    """


@hookspec
def pytest_nova_add_kinds(registry: Registry, config: pytest.Config) -> None:
    """Add areas, kinds of check, node facts and node rules to ``registry``.

    ``add_area``, ``add_kind``, ``add_node_fact``, ``add_node_rule``. Called once per process before the plan is
    built; every xdist worker must add the same, as it rebuilds the same plan. pytest-nova's own implementation
    (``tryfirst``) adds the built-in ones.
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
