"""Reading the files a user gives without ever blocking: regular files, and pipes or FIFOs with a deadline.

A FIFO nobody writes to would block an ``open()`` or a ``read()`` forever (in CI: no verdict, a job timeout).
It is opened without blocking and read until its writer closes it, at most :data:`FIFO_SECONDS`. Directories,
devices and sockets are refused. Every failure is a :class:`SourceError` naming the file.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import time
from pathlib import Path

from _pytest_nova.errors import SourceError

FIFO_SECONDS = 10.0  # how long a pipe or FIFO may take to deliver its whole content
KUBECONFIG_BYTES = 64 << 20  # a kubeconfig of many users with inline certificates; larger ones are only scanned


def kind_of(mode: int) -> str | None:
    """What a file that is neither a regular file nor a FIFO is, for a refusal; None for those two."""
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is a device"


def read_input(path: Path, limit: int, what: str = "a YAML file") -> bytes:
    """At most ``limit + 1`` bytes of ``path`` (the caller tells "too large" from the extra byte).

    Raises :class:`SourceError` for a directory, a device or a socket, a file that cannot be opened, and a
    pipe or FIFO that does not deliver its content within :data:`FIFO_SECONDS`.
    """
    try:
        mode = os.stat(path).st_mode
        refusal = kind_of(mode)
        if refusal:
            detail = "; name a YAML file" if what == "a YAML file" else f"; name {what}"
            raise SourceError(str(path), 0, "", f"{refusal}, not a file{detail}")
        if stat.S_ISFIFO(mode):
            return read_pipe(path, limit)
        with open(path, "rb") as f:
            return f.read(limit + 1)
    except OSError as exc:
        raise SourceError(str(path), 0, "", f"cannot read file: {exc.strerror or exc}") from None


def read_pipe(path: Path, limit: int, seconds: float | None = None) -> bytes:
    """Read a pipe or FIFO until its writer closes it, at most ``seconds`` (:data:`FIFO_SECONDS`), never blocking."""
    seconds = FIFO_SECONDS if seconds is None else seconds
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    size = 0
    connected = False  # a writer was seen: an end of file is then the end of the content
    try:
        while size <= limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceError(
                    str(path), 0, "",
                    f"is a pipe or FIFO that did not deliver its content within {seconds:g} s; start its "
                    "writer first, or name a regular file",
                )
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                connected = True
                select.select([fd], [], [], remaining)
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if chunk:
                connected = True
                chunks.append(chunk)
                size += len(chunk)
            elif connected:
                break
            else:  # no writer yet: a FIFO's writer may open it after us
                time.sleep(min(0.05, remaining))
    finally:
        os.close(fd)
    return b"".join(chunks)[: limit + 1]


def read_small(path: Path, limit: int) -> bytes | None:
    """The first ``limit`` bytes of a helper file (a key, a public key, a CA) if it is a readable regular file.

    Else None: the callers fall back or report a finding, and a FIFO is not worth a wait.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None
