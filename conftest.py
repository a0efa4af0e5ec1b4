"""Repository root: lets ``pytest`` run the plan and the project's tests from a checkout that is not installed.

The plugin is registered here unless pytest-nova is installed; the lab (``lab/nova_lab``, its own distribution)
is put on the path unless nova-lab is installed, also for subprocesses (the lab's servers, ``python -m nova_lab``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

if not any(ep.value == "_pytest_nova.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["_pytest_nova.plugin"]

if importlib.util.find_spec("nova_lab") is None:
    _LAB = str(Path(__file__).resolve().parent / "lab")
    sys.path.insert(0, _LAB)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_LAB, os.environ.get("PYTHONPATH")) if p)
