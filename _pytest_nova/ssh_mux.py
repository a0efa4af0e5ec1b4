"""Ending a run's shared SSH connections: OpenSSH's multiplexing protocol spoken directly to each master.

``ssh -O exit`` starts one ssh client per connection to send a master two short messages; at the end of a
200-host run those clients cost about a second while nothing else could run. :func:`end_masters` sends the same
two messages itself (``PROTOCOL.mux``: ``MUX_MSG_HELLO``, then ``MUX_C_TERMINATE``) to the masters, 64 at a time,
and waits, under one deadline for all, until each has closed its socket and removed its path. A master that does
not (an OpenSSH that speaks the protocol differently, say) gets ``ssh -O exit``.
"""

from __future__ import annotations

import collections
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
ASK_AT_ONCE = 64  # sockets open at a time (fewer where the process has fewer files to spare)
EXIT_AT_ONCE = 32  # ``ssh -O exit`` clients at a time, for the masters that did not end
EXIT_TIMEOUT = 5.0  # for each of them: a socket whose process never answers holds ssh forever


def _packet(*words: int) -> bytes:
    body = struct.pack(f">{len(words)}I", *words)
    return struct.pack(">I", len(body)) + body


# Request id 1; the master's own hello and its reply are not needed: it closes the socket as it exits.
TERMINATE = _packet(MUX_MSG_HELLO, MUX_VERSION) + _packet(MUX_C_TERMINATE, 1)


def _ask_to_end(path: Path) -> socket.socket | None:
    """Connect to a master's socket and send the terminate request; None where it cannot be asked.

    OSError where no socket can be made (the process is out of files): the caller asks again later.
    """
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


def _wait_for_ends(asked: dict[socket.socket, Path], deadline: float) -> list[Path]:
    """Read each socket until the master closes it (it exits), all under one deadline; the paths that closed."""
    closed: list[Path] = []
    try:
        with selectors.PollSelector() as selector:  # holds no file of its own, unlike epoll
            for sock in asked:
                selector.register(sock, selectors.EVENT_READ, sock)
            while len(closed) < len(asked) and (left := deadline - time.monotonic()) > 0:
                for key, _ in selector.select(left):
                    sock = key.data
                    try:
                        data = sock.recv(4096)  # the master's own hello, then the end of the connection
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        selector.unregister(sock)
                        closed.append(asked[sock])
    finally:
        for sock in asked:
            sock.close()
    return closed


def _gone(paths: list[Path], deadline: float) -> None:
    """Wait until ``paths`` no longer exist, or the deadline: a master removes its path just after its connections."""
    while any(p.exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.01)


def _ssh_exit(path: Path) -> None:
    try:
        subprocess.run(["ssh", "-o", f"ControlPath={path}", "-O", "exit", "nova-control"], capture_output=True,
                       timeout=EXIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass  # nothing more can be done from here; the master's ControlPersist ends it


def end_masters(paths: Iterable[Path], within: float = END_WITHIN) -> list[Path]:
    """End the SSH control masters listening on ``paths``; the paths ``ssh -O exit`` was needed for."""
    deadline = time.monotonic() + within
    every = list(paths)
    pending = collections.deque(every)
    closed: list[Path] = []
    while pending:
        asked: dict[socket.socket, Path] = {}
        while pending and len(asked) < ASK_AT_ONCE:
            try:
                sock = _ask_to_end(pending[0])
            except OSError:  # out of files: end the masters asked so far, which frees theirs
                break
            path = pending.popleft()
            if sock is not None:
                asked[sock] = path
        if not asked:
            break  # not one file to spare: the rest are left to ssh -O exit
        closed += _wait_for_ends(asked, deadline)
    _gone(closed, deadline)
    # A path still there names a master that did not end, or a socket no master holds.
    left = [p for p in every if p.exists()]
    executor.run_all(_ssh_exit, left, EXIT_AT_ONCE)
    return left
