"""The run folder: one per run, shared by the controller and its xdist workers (control sockets, the run cache).

The controller creates it before xdist starts its workers, which find it through the environment.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

RUN_DIR_ENV = "PYTEST_NOVA_RUN_DIR"


def run_dir() -> Path:
    """The per-run folder shared by the controller and its xdist workers (control sockets, caches)."""
    existing = os.environ.get(RUN_DIR_ENV)
    if existing and Path(existing).is_dir():
        return Path(existing)
    # Short path: an SSH control socket path must stay under about 100 bytes.
    path = Path(tempfile.mkdtemp(prefix="nova-", dir="/tmp" if os.path.isdir("/tmp") else None))
    os.environ[RUN_DIR_ENV] = str(path)
    return path


def forget_run_dir() -> None:
    """Stop pointing later runs in this process (pytester, a caller's loop) at a removed folder."""
    os.environ.pop(RUN_DIR_ENV, None)
