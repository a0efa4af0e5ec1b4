"""Run the probe scripts of :mod:`pytest_nova.probes` on a host and read their JSON answer."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from pytest_nova.hosts import HostError, RemoteHost, Stream

# Reads exactly the script's bytes from stdin, so the rest of stdin stays open for the script itself
# (its parameters, and for listeners a lifeline whose end tells it to exit).
_BOOT = "import sys;exec(compile(sys.stdin.buffer.read(int(sys.argv[1])),sys.argv[2],'exec'))"
NO_PYTHON = "python3 is not installed; pytest-nova runs small Python 3 scripts on the hosts (install python3)"
NO_SUDO = "sudo -n refused (a password is required); this check needs passwordless sudo (docs: account 1)"


@cache
def source(name: str) -> bytes:
    """The text of probe script ``name``."""
    return files("pytest_nova.probes").joinpath(f"{name}.py").read_bytes()


def _command(name: str, sudo: bool) -> tuple[str, bytes]:
    script = source(name)
    prefix = "sudo -n " if sudo else ""
    return f'{prefix}python3 -c "{_BOOT}" {len(script)} nova-{name}', script


def _parse(host: RemoteHost, name: str, rc: int, stdout: str, stderr: str) -> Any:
    if rc == 127 or "python3: not found" in stderr or "python3: command not found" in stderr:
        raise HostError(host.name, NO_PYTHON)
    if "a password is required" in stderr or "a terminal is required" in stderr:
        raise HostError(host.name, NO_SUDO)
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {rc}"
        raise HostError(host.name, f"{name} probe failed: {tail}")
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise HostError(host.name, f"{name} probe printed no JSON: {lines[-1][:200]}") from None


def run_script(host: RemoteHost, name: str, params: Any, *, timeout: float | None = None, sudo: bool = False) -> Any:
    """Run probe ``name`` with ``params`` on ``host``; return its JSON answer."""
    command, script = _command(name, sudo)
    payload = script + json.dumps(params).encode() + b"\n"
    result = host.run(command, stdin=payload, timeout=timeout)
    return _parse(host, name, result.rc, result.stdout, result.stderr)


def start_script(host: RemoteHost, name: str, params: Any, *, sudo: bool = False) -> Stream:
    """Start probe ``name`` as a long-lived process; it exits when the stream's input closes."""
    command, script = _command(name, sudo)
    return host.start(command, script + json.dumps(params).encode() + b"\n")


def parse_line(host: RemoteHost, name: str, line: str) -> Any:
    """Decode one JSON line a streaming probe printed."""
    return _parse(host, name, 0, line, "")
