"""Repository root: lets ``pytest --nova-inventory=...`` run the plan from a checkout that is not installed."""

from __future__ import annotations

from importlib.metadata import entry_points

if not any(ep.value == "pytest_nova.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["pytest_nova.plugin"]
