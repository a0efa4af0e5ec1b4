"""Transports: how a command reaches one host (ssh, local, or any testinfra URL), chosen through a hook.

A :class:`Transport` gives the local argv that runs a shell command on its host with the standard streams
piped, so pytest-nova can feed scripts on standard input (nothing shows in process lists), stream the output
of long-lived helpers and bound every run with a timeout. Where only a library can reach the host (paramiko,
``docker://``…), ``command`` answers None and ``run`` does the work.

The plugin's own ``pytest_nova_transport`` implementation (``trylast``) returns :func:`builtin_transport`;
another plugin's implementation for its own scheme wins over it (see :mod:`pytest_nova.hookspecs`).
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import testinfra

from _pytest_nova.inventory import Host, Inventory

SSH_FAILED = 255
# Says the shared connection is fine but sshd allows no further session on it (MaxSessions).
_SESSION_REFUSED = ("session open refused", "administratively prohibited", "session request failed")
# A connection of its own instead of a session on the shared one; ssh keeps the first value of each option.
_NO_MUX = ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
# Said when sshd dropped a connection before authentication (MaxStartups).
_DROPPED_EARLY = ("kex_exchange_identification", "connection closed by remote host", "connection reset by peer")


class Reason(StrEnum):
    """Why a host could not run a command: what :class:`HostError` callers decide on, never its text."""

    TIMEOUT = "timeout"  # the connection timed out
    UNREACHABLE = "unreachable"  # no route to the host, or its name does not resolve
    SSHD_DOWN = "sshd-down"  # the connection was refused
    LOGIN_REFUSED = "login-refused"  # the key was not accepted
    HOST_KEY = "host-key"  # the host key is unknown or changed
    SESSION_REFUSED = "session-refused"  # sshd allows no further session on the shared connection (MaxSessions)
    DROPPED = "dropped"  # sshd closed the connection before authentication (MaxStartups): worth one more try
    CANNOT_START = "cannot-start"  # the runner could not start the local command (fork or exec failed)
    HUNG = "hung"  # the command or script gave no answer within its time
    EXITED = "exited"  # the command ended early; ``HostError.stderr`` holds what it said
    NO_PYTHON = "no-python"  # python3 is not installed on the host
    NO_SUDO = "no-sudo"  # sudo -n was refused
    SCRIPT = "script"  # a probe script failed or sent something that is not an answer
    UNSUPPORTED = "unsupported"  # the host's transport cannot do this (a long-lived command over testinfra)
    OTHER = "other"


class HostError(Exception):
    """A host could not be reached or could not run a command: ``host``, ``cause`` (one line) and ``reason``."""

    def __init__(self, host: str, cause: str, reason: Reason = Reason.OTHER, stderr: str = "") -> None:
        super().__init__(f"{host}: {cause}")
        self.host, self.cause, self.reason, self.stderr = host, cause, reason, stderr


class Failure(NamedTuple):
    """What a transport says when a result shows the host was not reached: the cause and its reason."""

    cause: str
    reason: Reason


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


class Transport(Protocol):
    """How commands reach one host; :class:`CommandTransport` has the defaults of an argv-only transport."""

    def command(self, remote: str, *, multiplex: bool = True) -> list[str] | None:
        """The local argv that runs shell command ``remote`` on the host, streams piped; None to use :meth:`run`.

        ``multiplex=False`` asks for a connection of its own rather than a session on a shared one.
        """

    def run(self, remote: str, *, stdin: bytes | None, timeout: float) -> Result:
        """Run ``remote`` where :meth:`command` answers None; raise :class:`HostError` on failure or timeout."""

    def connection_failure(self, result: Result) -> Failure | str | None:
        """Why ``result`` shows the host was not reached (not the command failing); None when it was reached.

        A plain string is a cause with reason OTHER.
        """

    def close(self) -> None:
        """End whatever connection the transport keeps open (called once, at the end of the run)."""


class CommandTransport:
    """Base of transports that only build an argv: subclass and define :meth:`command`."""

    name = "?"

    def command(self, remote: str, *, multiplex: bool = True) -> list[str] | None:
        """The local argv that runs ``remote`` on the host."""
        raise NotImplementedError

    def run(self, remote: str, *, stdin: bytes | None, timeout: float) -> Result:
        """Not needed: :meth:`command` always answers."""
        raise HostError(self.name, "this transport runs commands only through their argv", Reason.UNSUPPORTED)

    def connection_failure(self, result: Result) -> Failure | str | None:
        """No exit status of its own says the host was not reached."""
        return None

    def close(self) -> None:
        """Nothing stays open."""


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


def explain_ssh_failure(stderr: str, host: Host, user: str, port: int, access: Access, key: str) -> str:
    """Turn ssh's stderr into one actionable sentence."""
    return ssh_failure(stderr, host, user, port, access, key).cause


def ssh_failure(stderr: str, host: Host, user: str, port: int, access: Access, key: str) -> Failure:
    """What ssh's stderr (its only account of a failed connection) says: one actionable sentence and its reason."""
    text = stderr.lower()
    if "timed out" in text:
        return Failure(f"ssh: connection timed out after {access.connect_timeout:g} s (is {host.address}:{port} "
                       "reachable?)", Reason.TIMEOUT)
    if "connection refused" in text:
        return Failure(f"ssh: connection refused by {host.address}:{port} (is sshd running?)", Reason.SSHD_DOWN)
    if "no route to host" in text:
        return Failure(f"ssh: no route to host {host.address}", Reason.UNREACHABLE)
    if "host key verification failed" in text or "identification has changed" in text:
        return Failure(f"ssh: host key of {host.address} is unknown or changed; add it to the known_hosts file "
                       "(ssh-keyscan) or set ssh.hostKeyPolicy: accept-new", Reason.HOST_KEY)
    if "permission denied" in text:
        return Failure(f"ssh: login as {user!r} with key {key} refused (is the public key in "
                       f"~{user}/.ssh/authorized_keys?)", Reason.LOGIN_REFUSED)
    if "could not resolve" in text:
        return Failure(f"ssh: cannot resolve {host.address}", Reason.UNREACHABLE)
    if any(s in text for s in _SESSION_REFUSED):
        return Failure(f"ssh: {host.address} refused another session on the connection (sshd MaxSessions too low)",
                       Reason.SESSION_REFUSED)
    last = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    message = last[-1] if last else "failed without a message"
    # ssh prefixes its own messages with "ssh: "; say it once.
    cause = "ssh: " + (message[len("ssh: "):] if message.startswith("ssh: ") else message)
    if any(s in text for s in _DROPPED_EARLY):
        return Failure(cause, Reason.DROPPED)
    if "network is unreachable" in text:
        return Failure(cause, Reason.UNREACHABLE)
    return Failure(cause, Reason.OTHER)


class SshTransport(CommandTransport):
    """The OpenSSH client, one ``ControlMaster`` connection per host shared by every process of the run."""

    def __init__(self, host: Host, inv: Inventory, access: Access, *, user: str | None = None,
                 port: int | None = None) -> None:
        self.host, self.access, self.name = host, access, host.name
        self.user = user or host.user or inv.ssh.user
        self.port = port or host.port or inv.ssh.port
        self.key = str(inv.resolve_file(host.identity_file or inv.ssh.identity_file))
        # The host's own options first: ssh keeps the first value of each option, so they win over ssh.options.
        extra = [arg for option in (*host.ssh_options, *inv.ssh.options) for arg in ("-o", option)]
        self.options = ssh_options(inv, access) + extra

    def command(self, remote: str, *, multiplex: bool = True) -> list[str]:
        """``ssh [own connection] OPTIONS -o User= -o Port= -i KEY ADDRESS REMOTE``."""
        return ["ssh", *([] if multiplex else _NO_MUX), *self.options, "-o", f"User={self.user}",
                "-o", f"Port={self.port}", "-i", self.key, self.host.address, remote]

    def connection_failure(self, result: Result) -> Failure | None:
        """The cause, in one sentence, and its reason when ssh itself failed (exit status 255)."""
        if result.rc != SSH_FAILED:
            return None
        return ssh_failure(result.stderr, self.host, self.user, self.port, self.access, self.key)

    def close(self) -> None:
        """End the shared connection of this host, if one is open."""
        argv = ["ssh", *self.options, "-O", "exit", "-p", str(self.port), "-l", self.user, self.host.address]
        subprocess.run(argv, capture_output=True, timeout=10, check=False)


def ssh_options(inv: Inventory, access: Access) -> list[str]:
    """The ssh client options of every host of a run: batch mode, timeouts, the shared connection."""
    known = inv.resolve_file(inv.ssh.known_hosts_file) if inv.ssh.known_hosts_file else None
    policy = "yes" if inv.ssh.host_key_policy == "strict" else "accept-new"
    settings = [
        "BatchMode=yes",
        f"StrictHostKeyChecking={policy}",
        f"ConnectTimeout={max(1, round(access.connect_timeout))}",
        "ServerAliveInterval=2",
        "ServerAliveCountMax=3",
        "ControlMaster=auto",
        "ControlPersist=120",
        f"ControlPath={access.run_dir}/%C",
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


class LocalTransport(CommandTransport):
    """The machine pytest-nova runs on (``connection: local``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def command(self, remote: str, *, multiplex: bool = True) -> list[str]:
        """``/bin/sh -c REMOTE``."""
        return ["/bin/sh", "-c", remote]


class TestinfraTransport:
    """Any other testinfra host URL (paramiko, ``docker://``…): commands run through testinfra's ``run``."""

    __test__ = False  # a product class, not a test class

    def __init__(self, name: str, url: str, connect_timeout: float, kwargs: dict[str, Any] | None = None) -> None:
        self.name, self.url, self.connect_timeout = name, url, connect_timeout
        self._kwargs = kwargs or {}
        self._lock = threading.Lock()
        self._backend: Any = None

    @property
    def backend(self) -> Any:
        """The testinfra host, created on first use."""
        with self._lock:
            if self._backend is None:
                self._backend = testinfra.get_host(self.url, **self._kwargs)
            return self._backend

    def command(self, remote: str, *, multiplex: bool = True) -> list[str] | None:
        """None: only testinfra reaches these hosts."""
        return None

    def run(self, remote: str, *, stdin: bytes | None, timeout: float) -> Result:
        """Run through testinfra, the input given on the command line, bounded by a remote ``timeout``."""
        if stdin:
            remote = f"printf %s {shlex.quote(stdin.decode())} | {remote}"
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["out"] = self.backend.run(f"timeout {int(timeout)} sh -c {shlex.quote(remote)}")
            except Exception as exc:  # testinfra backends raise bare exceptions for connection failures
                box["exc"] = exc

        # testinfra's run has no timeout of its own: a watchdog thread bounds the wait.
        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        worker.join(timeout + self.connect_timeout + 2)
        if worker.is_alive():
            raise HostError(self.name, f"command did not finish within {timeout:g} s", Reason.HUNG)
        if "exc" in box:
            raise HostError(self.name, f"{self.url.split('://')[0]}: {box['exc']}".splitlines()[0])
        out = box["out"]
        return Result(out.rc, out.stdout, out.stderr)

    def connection_failure(self, result: Result) -> Failure | str | None:
        """None: testinfra raises for connection failures; an exit status says nothing more."""
        return None

    def close(self) -> None:
        """Nothing to do: testinfra keeps its connections until the process ends."""


def host_url(host: Host, inv: Inventory) -> str:
    """The testinfra host URL of ``host``."""
    connection = host.connection or "ssh"
    if "://" in connection:
        return connection
    if connection == "local":
        return "local://"
    return f"{connection}://{host.user or inv.ssh.user}@{host.address}:{host.port or inv.ssh.port}"


def builtin_transport(host: Host, inv: Inventory, access: Access) -> Transport:
    """The transport pytest-nova itself provides for ``host.connection``."""
    connection = host.connection or "ssh"
    if connection == "ssh":
        return SshTransport(host, inv, access)
    if connection in ("local", "local://"):
        return LocalTransport(host.name)
    url = urlsplit(connection)
    if url.scheme == "ssh" and url.hostname and not url.password and not url.query:
        # An ssh:// URL: the same client and shared connection, to the URL's address, user and port.
        target = replace(host, address=url.hostname)
        return SshTransport(target, inv, access, user=url.username, port=url.port)
    kwargs: dict[str, Any] = {}
    if connection == "paramiko":
        kwargs = {"ssh_identity_file": str(inv.resolve_file(host.identity_file or inv.ssh.identity_file)),
                  "timeout": max(1, round(access.connect_timeout))}
    return TestinfraTransport(host.name, host_url(host, inv), access.connect_timeout, kwargs)
