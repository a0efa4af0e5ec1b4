"""The project's own tests: plugin tests with ``pytester`` and lab integration tests."""

from __future__ import annotations

pytest_plugins = ["pytester", "tests.lab_fixtures"]
