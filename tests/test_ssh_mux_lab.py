"""Ending the run's shared SSH connections through OpenSSH's mux protocol, against real masters in the lab."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from _pytest_nova import ssh_mux
from nova_lab import Lab
from tests.lab_fixtures import ssh_argv

pytestmark = pytest.mark.lab


def _start_master(lab: Lab, host: str, path: Path) -> None:
    argv = ssh_argv(lab, host, "true")
    at = argv.index("ssh") + 1
    argv[at:at] = ["-o", "ControlMaster=auto", "-o", "ControlPersist=60", "-o", f"ControlPath={path}"]
    # The master stays in the background: it must not hold the pipes this call waits on.
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=True)


def _masters(folder: Path) -> set[int]:
    """The ssh processes naming a control path in ``folder`` (a master's command line reads ``ssh: PATH [mux]``)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args[0].split(b":")[0].endswith(b"ssh") and any(str(folder).encode() in a for a in args):
            found.add(int(pid))
    return found


def test_masters_end_without_a_client_each_and_odd_sockets_get_ssh_exit_within_a_deadline(lab: Lab) -> None:
    folder = lab.state_dir / f"mux-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    nodes = [h.name for h in lab.hosts.values() if h.kind == "node"][:3]
    paths = [folder / f"m{i}" for i in range(len(nodes))]
    for host, path in zip(nodes, paths, strict=True):
        _start_master(lab, host, path)
    assert all(p.is_socket() for p in paths)
    assert len(_masters(folder)) == len(nodes)
    # A socket left by a master that was killed: nothing listens, it refuses.
    stale = folder / "stale"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(stale))
    dead.close()
    # A process that holds a socket and never answers: neither the request nor ssh -O exit may wait for it forever.
    silent_path = folder / "silent"
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(silent_path))
    silent.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        for _ in range(2):  # the request, then ssh -O exit
            held.append(silent.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    started = time.monotonic()
    try:
        left = ssh_mux.end_masters([*paths, stale, silent_path], within=2)
        took = time.monotonic() - started
    finally:
        silent.close()
        for conn in held:
            conn.close()
    # The masters ended on the request alone: each removed its path; only the odd ones needed ssh -O exit.
    assert sorted(left) == sorted([stale, silent_path])
    assert not any(p.exists() for p in paths)
    assert took < 2 + ssh_mux.EXIT_TIMEOUT + 2, took
    deadline = time.monotonic() + 5
    while _masters(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _masters(folder)
