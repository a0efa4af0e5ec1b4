"""The project's own tests: plugin tests with ``pytester`` and lab integration tests."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester", "tests.lab_fixtures"]


@pytest.fixture(autouse=True)
def _pytester_without_packaged_suites(request: pytest.FixtureRequest) -> None:
    """Plugin tests run their own synthetic suites: keep the package's plan out of their sessions."""
    if "pytester" not in request.fixturenames or request.node.get_closest_marker("nova_suites"):
        return
    request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when created: set it after
    request.getfixturevalue("monkeypatch").setenv("PYTEST_ADDOPTS", "-p no:nova-suites")
