"""The checks of kinds that site plugins add (``pytest_nova_add_kinds``): each kind judges its own checks.

Collected only when a plugin added such a kind; see docs/extending.md.
"""

from __future__ import annotations

import pytest

from _pytest_nova.plan import Check
from _pytest_nova.session import NovaItem


def test_check(nova_check: Check, request: pytest.FixtureRequest, nova: NovaItem) -> None:
    """The site requirement holds, as its kind judges it."""
    nova.judge(nova.judge_with(nova_check, request))
