"""The lab's state directory: what was created (for teardown from records alone) and what is switched on.

Layout of ``/var/tmp/nova-lab/<name>/`` (``/var/tmp``, not ``/tmp``: hosts have a private ``/tmp``):

    records.jsonl   append-only log of every namespace, link, pid and /etc/netns entry, written as they
                    are created, so ``down`` works after a crash or Ctrl-C, from any process
    lab.json        the spec, the lab index and the host plan
    faults.json     the faults switched on, with what is needed to revert them
    flags/          files the lab's servers look at on every request (health 503, NotReady node, ...)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path("/var/tmp/nova-lab")


def state_dir(name: str) -> Path:
    """The state directory of lab ``name``."""
    return ROOT / name


@contextlib.contextmanager
def registry_lock() -> Iterator[None]:
    """Serialise index allocation between labs started at the same time (e.g. by xdist workers)."""
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def used_indexes() -> set[int]:
    """Lab indexes claimed by existing state directories."""
    used = set()
    if ROOT.is_dir():
        for f in ROOT.glob("*/index"):
            with contextlib.suppress(OSError, ValueError):
                used.add(int(f.read_text()))
    return used


class Records:
    """The append-only creation log of one lab."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, kind: str, **data: Any) -> None:
        """Append one record (written before or right after the thing is created)."""
        line = json.dumps({"kind": kind, **data}, sort_keys=True)
        # O_APPEND writes of one short line are atomic, so threads can log concurrently.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """All records, oldest first; a torn last line (crash mid-write) is skipped."""
        out: list[dict[str, Any]] = []
        if not self.path.exists():
            return out
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def read_json(path: Path, default: Any) -> Any:
    """Load JSON from ``path`` or return ``default`` when it does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (servers read these files while the lab changes them)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def proc_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks, or None when it is gone (or a zombie).

    Recorded next to each pid, it guards against killing an unrelated process that reused the pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])
