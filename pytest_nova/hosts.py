"""Host access: one testinfra host per inventory host, with timeouts on everything and clear failures.

Commands are built by testinfra's backends (ssh, paramiko, local or any testinfra URL). For the ssh and local
backends this module runs the command itself, so it can feed a script on standard input (nothing shows in
process lists), stream output from long-lived helpers such as temporary listeners, and bound every run with a
timeout. An SSH ``ControlMaster`` socket shared by all pytest-xdist workers keeps one login per host per run.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

import testinfra
from testinfra.backend.local import LocalBackend
from testinfra.backend.ssh import SshBackend

from pytest_nova.inventory import Host, Inventory

RUN_DIR_ENV = "PYTEST_NOVA_RUN_DIR"
SSH_FAILED = 255


@cache
def kex_preference() -> str | None:
    """The ssh client's default key exchanges with curve25519 first, or None to keep the defaults.

    OpenSSH 9.x prefers sntrup761x25519, which costs about 0.25 s of CPU per login on each side against 0.02 s
    for curve25519; with one login per host that is most of a large run's login cost. The sessions carry
    facts and probe results, no secrets, so the post-quantum exchange buys nothing here.
    """
    try:
        out = subprocess.run(["ssh", "-G", "nova-probe"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.stdout.splitlines():
        if line.startswith("kexalgorithms "):
            algorithms = line.split(None, 1)[1].strip().split(",")
            fast = [a for a in algorithms if a.startswith("curve25519")]
            return ",".join(fast + [a for a in algorithms if a not in fast]) if fast else None
    return None


class HostError(Exception):
    """A host could not be reached or could not run a command; the message names host and cause."""

    def __init__(self, host: str, cause: str) -> None:
        super().__init__(f"{host}: {cause}")
        self.host, self.cause = host, cause


@dataclass(frozen=True)
class Result:
    """What a remote command returned."""

    rc: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Access:
    """Connection settings shared by all hosts of a run."""

    connect_timeout: float
    command_timeout: float
    run_dir: Path


def run_dir() -> Path:
    """The per-run folder shared by the controller and its xdist workers (control sockets, caches)."""
    existing = os.environ.get(RUN_DIR_ENV)
    if existing and Path(existing).is_dir():
        return Path(existing)
    # Short path: an SSH control socket path must stay under about 100 bytes.
    path = Path(tempfile.mkdtemp(prefix="nova-", dir="/tmp" if os.path.isdir("/tmp") else None))
    os.environ[RUN_DIR_ENV] = str(path)
    return path


def explain_ssh_failure(stderr: str, host: Host, user: str, port: int, access: Access, key: str) -> str:
    """Turn ssh's stderr into one actionable sentence."""
    text = stderr.lower()
    if "timed out" in text:
        return f"ssh: connection timed out after {access.connect_timeout:g} s (is {host.address}:{port} reachable?)"
    if "connection refused" in text:
        return f"ssh: connection refused by {host.address}:{port} (is sshd running?)"
    if "no route to host" in text:
        return f"ssh: no route to host {host.address}"
    if "host key verification failed" in text or "identification has changed" in text:
        return (
            f"ssh: host key of {host.address} is unknown or changed; add it to the known_hosts file "
            "(ssh-keyscan) or set ssh.hostKeyPolicy: accept-new"
        )
    if "permission denied" in text:
        return f"ssh: login as {user!r} with key {key} refused (is the public key in ~{user}/.ssh/authorized_keys?)"
    if "could not resolve" in text:
        return f"ssh: cannot resolve {host.address}"
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"ssh: {last[-1] if last else 'failed without a message'}"


class RemoteHost:
    """One inventory host reached through a testinfra backend."""

    def __init__(self, host: Host, inv: Inventory, access: Access) -> None:
        self.host = host
        self.name = host.name
        self.access = access
        self.user = host.user or inv.ssh.user
        self.port = host.port or inv.ssh.port
        self.key = str(inv.resolve_file(host.identity_file or inv.ssh.identity_file))
        self.connection = host.connection or "ssh"
        self._lock = threading.Lock()
        self._backend: Any = None
        self._ssh_options = self._options(inv)

    def _options(self, inv: Inventory) -> list[str]:
        known = inv.resolve_file(inv.ssh.known_hosts_file) if inv.ssh.known_hosts_file else None
        policy = "yes" if inv.ssh.host_key_policy == "strict" else "accept-new"
        settings = [
            "BatchMode=yes",
            f"StrictHostKeyChecking={policy}",
            f"ConnectTimeout={max(1, round(self.access.connect_timeout))}",
            "ServerAliveInterval=2",
            "ServerAliveCountMax=3",
            "ControlMaster=auto",
            "ControlPersist=120",
            f"ControlPath={self.access.run_dir}/%C",
            "LogLevel=ERROR",
            "IdentitiesOnly=yes",
            "PasswordAuthentication=no",
        ]
        kex = kex_preference()
        if kex:
            settings.append(f"KexAlgorithms={kex}")
        opts = [arg for setting in settings for arg in ("-o", setting)]
        if known is not None:
            opts += ["-o", f"UserKnownHostsFile={known}"]
        return opts

    @property
    def backend(self) -> Any:
        """The testinfra host, created on first use."""
        with self._lock:
            if self._backend is None:
                self._backend = testinfra.get_host(self.url, **self._kwargs())
            return self._backend

    @property
    def url(self) -> str:
        """The testinfra host URL of this host."""
        if "://" in self.connection:
            return self.connection
        if self.connection == "local":
            return "local://"
        return f"{self.connection}://{self.user}@{self.host.address}:{self.port}"

    def _kwargs(self) -> dict[str, Any]:
        if self.connection == "ssh":
            return {
                "ssh_identity_file": self.key,
                "ssh_extra_args": shlex.join(self._ssh_options),
                "timeout": max(1, round(self.access.connect_timeout)),
                "controlpersist": 0,
            }
        if self.connection == "paramiko":
            return {"ssh_identity_file": self.key, "timeout": max(1, round(self.access.connect_timeout))}
        return {}

    def command(self, remote: str) -> list[str] | None:
        """The local argv that runs ``remote`` here, as testinfra builds it; None where only testinfra can."""
        backend = self.backend.backend
        if isinstance(backend, SshBackend):
            cmd, args = backend._build_ssh_command(remote)  # testinfra's own ssh command line
            return ["/bin/sh", "-c", backend.quote(" ".join(cmd), *args)]
        if isinstance(backend, LocalBackend):
            return ["/bin/sh", "-c", backend.get_command(remote)]
        return None

    def run(self, remote: str, *, stdin: bytes | None = None, timeout: float | None = None) -> Result:
        """Run a shell command; raise :class:`HostError` when the host cannot be reached or it hangs."""
        limit = timeout or self.access.command_timeout
        argv = self.command(remote)
        if argv is None:
            return self._run_testinfra(remote, stdin, limit)
        try:
            proc = subprocess.run(
                argv, input=stdin or b"", capture_output=True, timeout=limit, start_new_session=True, check=False
            )
        except subprocess.TimeoutExpired:
            raise HostError(self.name, f"command did not finish within {limit:g} s") from None
        except OSError as exc:
            raise HostError(self.name, f"cannot start {argv[0]}: {exc.strerror}") from None
        result = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
        self._raise_for_login(result)
        return result

    def _raise_for_login(self, result: Result) -> None:
        if self.connection == "ssh" and result.rc == SSH_FAILED:
            raise HostError(
                self.name, explain_ssh_failure(result.stderr, self.host, self.user, self.port, self.access, self.key)
            )

    def _run_testinfra(self, remote: str, stdin: bytes | None, limit: float) -> Result:
        if stdin:
            remote = f"printf %s {shlex.quote(stdin.decode())} | {remote}"
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["out"] = self.backend.run(f"timeout {int(limit)} sh -c {shlex.quote(remote)}")
            except Exception as exc:  # testinfra backends raise bare exceptions for connection failures
                box["exc"] = exc

        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        worker.join(limit + self.access.connect_timeout + 2)
        if worker.is_alive():
            raise HostError(self.name, f"command did not finish within {limit:g} s")
        if "exc" in box:
            raise HostError(self.name, f"{self.connection}: {box['exc']}".splitlines()[0])
        out = box["out"]
        return Result(out.rc, out.stdout, out.stderr)

    def start(self, remote: str, stdin: bytes) -> Stream:
        """Start a long-lived command fed ``stdin``; it ends when :meth:`Stream.close` closes its input."""
        argv = self.command(remote)
        if argv is None:
            raise HostError(self.name, f"temporary listeners need an ssh or local connection, not {self.url}")
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.flush()
        return Stream(self, proc)

    def close(self) -> None:
        """End the shared SSH connection of this host, if one is open."""
        if self.connection != "ssh":
            return
        argv = ["ssh", *self._ssh_options, "-O", "exit", "-p", str(self.port), "-l", self.user, self.host.address]
        subprocess.run(argv, capture_output=True, timeout=10, check=False)


class Stream:
    """A running remote command: read its lines, then close its input to make it exit."""

    def __init__(self, remote: RemoteHost, proc: subprocess.Popen[bytes]) -> None:
        self.remote, self.proc = remote, proc

    @property
    def stdout(self) -> IO[bytes]:
        """The command's output."""
        assert self.proc.stdout is not None
        return self.proc.stdout

    def readline(self, timeout: float) -> str:
        """The next line of output, or raise :class:`HostError` after ``timeout`` seconds."""
        box: list[bytes] = []
        reader = threading.Thread(target=lambda: box.append(self.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            self.kill()
            raise HostError(self.remote.name, f"no answer within {timeout:g} s")
        line = box[0].decode(errors="replace")
        if not line:
            self.proc.wait(timeout=5)
            assert self.proc.stderr is not None
            err = self.proc.stderr.read().decode(errors="replace")
            self.remote._raise_for_login(Result(self.proc.returncode, "", err))
            raise HostError(self.remote.name, err.strip().splitlines()[-1] if err.strip() else "exited early")
        return line

    def close(self, timeout: float = 10) -> str:
        """Close the command's input and return the rest of its output; kill it if it lingers."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            out, _ = self.proc.communicate(timeout=timeout)
            return out.decode(errors="replace")
        except (subprocess.TimeoutExpired, OSError, ValueError):
            self.kill()
            return ""

    def kill(self) -> None:
        """Stop the local side; the remote side exits when its input closes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=5)


class Hosts:
    """The run's hosts by name, each created on first use."""

    def __init__(self, inv: Inventory, access: Access) -> None:
        self.inventory, self.access = inv, access
        self._hosts: dict[str, RemoteHost] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> RemoteHost:
        with self._lock:
            if name not in self._hosts:
                self._hosts[name] = RemoteHost(self.inventory.host(name), self.inventory, self.access)
            return self._hosts[name]


def close_control_sockets(folder: Path) -> None:
    """End every shared SSH connection of a run (called once, by the controller, at the end)."""
    for sock in folder.iterdir():
        if sock.is_socket():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "nova-control"],
                capture_output=True,
                timeout=10,
                check=False,
            )
