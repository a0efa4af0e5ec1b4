"""Collect the plan's suites shipped in the package, from any directory, when an inventory is given.

``pytest --nova-inventory=prod.yaml`` adds the package's ``suites`` folder to what pytest collects, next to
whatever it collects anyway (``testpaths`` or the current directory): the user's own test modules run with the
plan. Paths on the command line choose exactly what runs (add ``--pyargs pytest_nova.suites`` to include the
plan); ``-p no:nova-suites`` turns the suites off; without an inventory nothing changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SUITES = Path(__file__).resolve().parents[1] / "pytest_nova" / "suites"  # the public package ships them
OPT_OUT = "nova-suites"  # -p no:nova-suites


def add_suites(config: pytest.Config) -> None:
    """Append the suites folder to the session's arguments unless paths were given or it is already there."""
    if config.args_source == pytest.Config.ArgsSource.ARGS or config.pluginmanager.is_blocked(OPT_OUT):
        return
    if any(_resolved(arg) == SUITES for arg in config.args):
        return
    config.args.append(str(SUITES))


def ignore_extensions(collection_path: Path, generic: tuple[str, ...]) -> bool:
    """Whether to skip the generic suite: no plugin added a kind that judges its own checks."""
    return not generic and collection_path == SUITES / "test_extensions.py"


def _resolved(arg: str) -> Path | None:
    try:
        return Path(arg.split("::")[0]).resolve()
    except (OSError, ValueError):
        return None
