"""Ending a run's shared SSH connections: OpenSSH's multiplexing protocol spoken directly to each master.

``ssh -O exit`` starts one ssh client per connection to send a master two short messages; at the end of a
200-host run those clients cost about a second while nothing else could run. :func:`end_masters` sends the same
two messages itself (``PROTOCOL.mux``: ``MUX_MSG_HELLO``, then ``MUX_C_TERMINATE``) to every master at once and
waits, under one deadline, until each has closed its socket and removed its path. A master that does not (an
OpenSSH that speaks the protocol differently, say) gets ``ssh -O exit``.
"""

from __future__ import annotations

import selectors
import socket
import struct
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from _pytest_nova import executor

MUX_MSG_HELLO = 0x00000001
MUX_C_TERMINATE = 0x10000005
MUX_VERSION = 4
END_WITHIN = 5.0  # seconds for every master to end before ``ssh -O exit`` is tried
EXIT_AT_ONCE = 32  # ``ssh -O exit`` clients at a time, for the masters that did not end
EXIT_TIMEOUT = 5.0  # for each of them: a socket whose process never answers holds ssh forever


def _packet(*words: int) -> bytes:
    body = struct.pack(f">{len(words)}I", *words)
    return struct.pack(">I", len(body)) + body


# Request id 1; the master's own hello and its reply are not needed: it closes the socket as it exits.
TERMINATE = _packet(MUX_MSG_HELLO, MUX_VERSION) + _packet(MUX_C_TERMINATE, 1)


def _ask_to_end(path: Path) -> socket.socket | None:
    """Connect to a master's socket and send the terminate request; None where it cannot be asked."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)  # a full backlog (a master that stopped accepting) fails at once, as does a stale path
    try:
        sock.connect(str(path))
        if sock.send(TERMINATE) == len(TERMINATE):  # a new socket's buffer takes these 24 bytes whole
            return sock
    except OSError:
        pass
    sock.close()
    return None


def _wait_for_ends(asked: dict[socket.socket, Path], deadline: float) -> None:
    """Read each socket until the master closes it (it exits), all under one deadline; closes them all."""
    with selectors.DefaultSelector() as selector:
        for sock in asked:
            selector.register(sock, selectors.EVENT_READ, sock)
        open_ = set(asked)
        while open_ and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                sock = key.data
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    open_.discard(sock)
    for sock in asked:
        sock.close()


def _ssh_exit(path: Path) -> None:
    try:
        subprocess.run(["ssh", "-o", f"ControlPath={path}", "-O", "exit", "nova-control"], capture_output=True,
                       timeout=EXIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass  # nothing more can be done from here; the master's ControlPersist ends it


def end_masters(paths: Iterable[Path], within: float = END_WITHIN) -> list[Path]:
    """End the SSH control masters listening on ``paths``; the paths ``ssh -O exit`` was needed for."""
    asked: dict[socket.socket, Path] = {}
    unasked: list[Path] = []
    for path in paths:
        sock = _ask_to_end(path)
        if sock is None:
            unasked.append(path)
        else:
            asked[sock] = path
    _wait_for_ends(asked, time.monotonic() + within)
    # A master removes its socket's path as it exits: a path still there names one that did not end.
    left = [p for p in [*asked.values(), *unasked] if p.exists()]
    executor.run_all(_ssh_exit, left, EXIT_AT_ONCE)
    return left
