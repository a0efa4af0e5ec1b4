"""Results computed once per run and shared by the controller and every pytest-xdist worker.

A host's facts or the firewall matrix are gathered by whichever process asks first; the others wait on a file
lock and read the stored JSON. A failure is stored too, so an unreachable host costs one timeout per run.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from _pytest_nova.hosts import HostError, Reason
from _pytest_nova.model import JSONValue

T = TypeVar("T")


def _path(folder: Path, key: str) -> Path:
    return folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.json"


def once(folder: Path, key: str, compute: Callable[[], T]) -> T:
    """The stored value of ``key``, computing it under a lock if no process has yet.

    The value goes through JSON: ``T`` is made of JSON values (a ``TypedDict`` of them, lists, not tuples).
    """
    path = _path(folder, key)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            stored = json.loads(path.read_text())
        else:
            try:
                stored = {"value": compute()}
            except HostError as exc:
                stored = {"error": [exc.host, exc.cause, exc.reason, exc.stderr]}
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stored))
            tmp.replace(path)
    if "error" in stored:
        raise _error(stored["error"])
    return cast(T, stored["value"])


@dataclass(frozen=True)
class RunCache:
    """The run cache of one run (the ``nova_run_cache`` fixture): :meth:`once` without passing the folder."""

    folder: Path

    def once(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``'s value for ``key``, computed by the first process of the run that asks (JSON data).

        A :class:`~_pytest_nova.hosts.HostError` it raises is stored and raised again to every later asker.
        """
        return once(self.folder, key, compute)


def _error(stored: list[str]) -> HostError:
    """The HostError a failure was stored as: host, cause, reason, stderr."""
    host, cause, *rest = (str(v) for v in stored)
    reason = Reason(rest[0]) if rest and rest[0] in Reason.__members__.values() else Reason.OTHER
    return HostError(host, cause, reason, rest[1] if len(rest) > 1 else "")


def stored(folder: Path, key: str) -> JSONValue:
    """The value stored for ``key``, or None when none is stored yet or it failed (no waiting, no computing)."""
    try:
        value: JSONValue = json.loads(_path(folder, key).read_text()).get("value")
        return value
    except (OSError, ValueError):
        return None


def failures(folder: Path, prefix: str) -> list[HostError]:
    """The stored failures of every key that starts with ``prefix``, in key order (no waiting, no computing)."""
    out = []
    for path in sorted(folder.glob(f"{_path(folder, prefix).stem}*.json")):
        try:
            error = json.loads(path.read_text()).get("error")
        except (OSError, ValueError):
            continue
        if error:
            out.append(_error(error))
    return out
