"""Run the probe scripts of :mod:`_pytest_nova.probes` on a host and read their framed JSON answers.

Each run gets a random frame marker (sent on stdin with the parameters, never on the command line); the
scripts print every message as one line ``<marker> <json>``. Only such lines are read: whatever a shell rc, a
login banner or a library prints on stdout or stderr around them can never be taken for an answer.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from functools import cache
from importlib.resources import files
from typing import Any

from _pytest_nova.hosts import HostError, Reason, RemoteHost, Stream, session_refused

# A script's parameters: JSON data, sent on its stdin with the frame marker.
Params = Mapping[str, object]
# Called with every stream started (to track it for cleanup).
OnStart = Callable[[Stream], object]
# Reads exactly the script's bytes from stdin, so the rest of stdin stays open for the script itself
# (its parameters, and for listeners a lifeline whose end tells it to exit).
_BOOT = "import sys;exec(compile(sys.stdin.buffer.read(int(sys.argv[1])),sys.argv[2],'exec'))"
NO_PYTHON = "python3 is not installed; pytest-nova runs small Python 3 scripts on the hosts (install python3)"
NO_SUDO = "sudo -n refused (a password is required); this check needs passwordless sudo (docs: account 1)"
SUDO_REFUSED = "sudo -n refused (a password is required)"
_SUDO_WORDS = ("a password is required", "a terminal is required", "is not in the sudoers file",
               "is not allowed to execute")


def new_marker() -> str:
    """A frame marker no banner can forge by accident."""
    return f"NOVA-{secrets.token_hex(8)}"


@cache
def source(name: str) -> bytes:
    """The text of probe script ``name``."""
    return files("_pytest_nova.probes").joinpath(f"{name}.py").read_bytes()


def _command(name: str, sudo: bool) -> tuple[str, bytes]:
    script = source(name)
    prefix = "sudo -n " if sudo else ""
    # -I -S: stdlib only, so no site-packages, .pth files or PYTHON* variables of the host's (a third of a
    # python3 start's CPU, paid by every script on every host).
    return f'{prefix}python3 -I -S -c "{_BOOT}" {len(script)} nova-{name}', script


def sudo_refused(exc: HostError) -> bool:
    """Whether ``exc`` says ``sudo -n`` was refused on its host."""
    return exc.reason == Reason.NO_SUDO


def framed(marker: str, text: str) -> list[str]:
    """The payloads of the framed lines of ``text``, in order."""
    head = marker + " "
    return [line[len(head):] for line in text.splitlines() if line.startswith(head)]


def _decode(host: RemoteHost, name: str, payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise HostError(host.name, f"{name} script sent a broken message: {payload[:120]}", Reason.SCRIPT) from None


def _failure(host: RemoteHost, name: str, rc: int | None, stdout: str, stderr: str) -> HostError:
    """Why a script gave no answer; the host's own chatter is only quoted when nothing better is known."""
    # The shell's and sudo's own words on stderr are the only account of why the script never started.
    if rc == 127 or "python3: not found" in stderr or "python3: command not found" in stderr:
        return HostError(host.name, NO_PYTHON, Reason.NO_PYTHON)
    if any(w in stderr for w in _SUDO_WORDS):
        return HostError(host.name, NO_SUDO, Reason.NO_SUDO)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    tail = lines[-1][:200] if lines else f"exit status {rc}" if rc is not None else "no output"
    return HostError(host.name, f"{name} script ended without an answer ({tail})", Reason.SCRIPT)


def _parse(host: RemoteHost, name: str, marker: str, rc: int, stdout: str, stderr: str) -> Any:
    payloads = framed(marker, stdout)
    if not payloads:
        raise _failure(host, name, rc, stdout, stderr)
    return _decode(host, name, payloads[-1])


def _payload(script: bytes, params: Params, marker: str) -> bytes:
    return script + json.dumps({**params, "frame": marker}).encode() + b"\n"


def run_script(host: RemoteHost, name: str, params: Params, *, timeout: float | None = None, sudo: bool = False) -> Any:
    """Run probe ``name`` with ``params`` on ``host``; return its JSON answer."""
    command, script = _command(name, sudo)
    marker = new_marker()
    result = host.run(command, stdin=_payload(script, params, marker), timeout=timeout)
    return _parse(host, name, marker, result.rc, result.stdout, result.stderr)


class Script:
    """A long-lived probe script: read its framed messages, close it when done."""

    def __init__(self, host: RemoteHost, name: str, stream: Stream, marker: str) -> None:
        self.host, self.name, self.stream, self.marker = host, name, stream, marker

    def read(self, timeout: float) -> Any:
        """The next framed message; other lines are the host's noise and skipped. HostError on EOF or timeout."""
        deadline = time.monotonic() + timeout
        head = self.marker + " "
        while True:
            try:
                line = self.stream.readline(max(0.1, deadline - time.monotonic()))
            except HostError as exc:
                raise self._explain(exc) from None
            if line.startswith(head):
                return _decode(self.host, self.name, line[len(head):].strip())
            if time.monotonic() >= deadline:
                raise HostError(self.host.name, f"{self.name} script: no answer within {timeout:g} s", Reason.HUNG)

    def _explain(self, exc: HostError) -> HostError:
        # A connection failure or a timeout says it all; a command that ended early left the shell's own words
        # (sudo, python3 missing) on its stderr.
        if exc.reason != Reason.EXITED:
            return exc
        return _failure(self.host, self.name, self.stream.proc.returncode, "", exc.stderr)

    def send(self, line: str) -> None:
        """Write one command line to the script's input; HostError if it is gone."""
        stdin = self.stream.proc.stdin
        try:
            if stdin is None:  # its input was closed
                raise ValueError("input closed")
            stdin.write(line.encode() + b"\n")
            stdin.flush()
        except (OSError, ValueError):
            raise HostError(self.host.name, f"{self.name} script ended early", Reason.EXITED) from None


def start_script(host: RemoteHost, name: str, params: Params, *, sudo: bool = False, multiplex: bool = True) -> Script:
    """Start probe ``name`` as a long-lived process; it exits when the stream's input closes."""
    command, script = _command(name, sudo)
    marker = new_marker()
    stream = host.start(command, _payload(script, params, marker), multiplex=multiplex)
    return Script(host, name, stream, marker)


def start_and_read(host: RemoteHost, name: str, params: Params, timeout: float, *, sudo: bool = False,
                   on_start: OnStart | None = None) -> tuple[Any, Script]:
    """Start probe ``name`` and read its first message; a refused extra session is retried on its own connection.

    ``on_start(stream)`` is called with every stream started (to track it for cleanup); a stream whose script
    failed is closed before the HostError is raised.
    """
    try:
        return _start_and_read(host, name, params, timeout, sudo, True, on_start)
    except HostError as exc:
        if not session_refused(exc):
            raise
    return _start_and_read(host, name, params, timeout, sudo, False, on_start)


def _start_and_read(host: RemoteHost, name: str, params: Params, timeout: float, sudo: bool, multiplex: bool,
                    on_start: OnStart | None) -> tuple[Any, Script]:
    started = start_script(host, name, params, sudo=sudo, multiplex=multiplex)
    if on_start is not None:
        on_start(started.stream)
    try:
        return started.read(timeout), started
    except HostError:
        started.stream.close(timeout=2)
        raise
