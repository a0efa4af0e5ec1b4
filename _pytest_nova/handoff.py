"""What the xdist controller hands its workers: the parsed inventory and waivers, and the secrets to mask.

Workers never read the user's files again: a pipe (``--nova-inventory=<(...)``) or a FIFO can be read once
only, a file may change between the controller's read and a worker's, and a worker that blocked on a FIFO
would hang the run. The controller pickles what it parsed into each worker's ``workerinput``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest

from _pytest_nova import secrets
from _pytest_nova.inventory import Inventory
from _pytest_nova.waivers import Waivers

KEY = "pytest_nova"


@dataclass(frozen=True)
class Handoff:
    """The controller's parsed inputs."""

    inventory: Inventory | None
    waivers: Waivers | None
    secrets: frozenset[str]


def pack(inventory: Inventory | None, waivers: Waivers | None) -> bytes:
    """The controller's inputs and registered secrets, for a worker's ``workerinput``."""
    return pickle.dumps(Handoff(inventory, waivers, secrets.registered()))


def received(config: pytest.Config) -> Handoff | None:
    """On a worker, what its controller handed it (its secrets registered here); None elsewhere."""
    workerinput = getattr(config, "workerinput", None)
    raw = workerinput.get(KEY) if isinstance(workerinput, dict) else None
    if not isinstance(raw, bytes):
        return None
    handed = pickle.loads(raw)  # written by this run's own controller
    if not isinstance(handed, Handoff):
        return None
    secrets.restore(handed.secrets)
    return handed
