"""Host access: one :class:`RemoteHost` per inventory host, with timeouts on everything and clear failures.

Each host's :class:`~_pytest_nova.transports.Transport` (chosen through the ``pytest_nova_transport`` hook)
gives the argv that runs a command there; this module runs it itself, so it can feed a script on standard
input (nothing shows in process lists), stream output from long-lived helpers such as temporary listeners,
and bound every run with a timeout. An SSH ``ControlMaster`` socket shared by all pytest-xdist workers keeps
one login per host per run.
"""

from __future__ import annotations

import math
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from _pytest_nova import ssh_mux
from _pytest_nova.inventory import Host, Inventory
from _pytest_nova.transports import SSH_FAILED as SSH_FAILED
from _pytest_nova.transports import Access as Access
from _pytest_nova.transports import Failure as Failure
from _pytest_nova.transports import HostError as HostError
from _pytest_nova.transports import Reason as Reason
from _pytest_nova.transports import Result as Result
from _pytest_nova.transports import Transport as Transport
from _pytest_nova.transports import builtin_transport, host_url
from _pytest_nova.transports import explain_ssh_failure as explain_ssh_failure
from _pytest_nova.transports import kex_preference as kex_preference

LOGIN_KEY = "login-"  # run-cache key prefix of each host's one login of the run
# Failures of a first login that say nothing about the host: sshd dropped excess unauthenticated connections
# (MaxStartups), or the runner could not start ssh under load.
_RETRY_LOGIN = frozenset({Reason.DROPPED, Reason.CANNOT_START})
# Makes each host's transport; the plugin passes its ``pytest_nova_transport`` hook, unit tests the built-in.
TransportFactory = Callable[[Host, Inventory, Access], "Transport | None"]


def session_refused(exc: HostError) -> bool:
    """Whether ``exc`` says sshd refused one more session on the shared connection (a fresh one may work)."""
    return exc.reason == Reason.SESSION_REFUSED


class RemoteHost:
    """One inventory host reached through its transport."""

    def __init__(self, host: Host, inv: Inventory, access: Access, transport: Transport | None = None) -> None:
        self.host = host
        self.name = host.name
        self.access = access
        self.user = host.user or inv.ssh.user
        self.port = host.port or inv.ssh.port
        self.key = str(inv.resolve_file(host.identity_file or inv.ssh.identity_file))
        self.connection = host.connection or "ssh"
        self.url = host_url(host, inv)
        self.transport = transport if transport is not None else builtin_transport(host, inv, access)
        self._login_lock = threading.Lock()
        self._login: HostError | bool = False

    def command(self, remote: str, *, multiplex: bool = True) -> list[str] | None:
        """The local argv that runs ``remote`` here, from the host's transport; None where only it can run it.

        ``multiplex=False`` opens a connection of its own instead of a session on the shared one (for an sshd
        whose MaxSessions is used up).
        """
        return self.transport.command(remote, multiplex=multiplex)

    def login(self) -> None:
        """Log in once per run (shared by every process of the run); raise the cached HostError if that failed.

        The first login opens the shared connection every later command multiplexes over, so an unreachable
        host costs one connect timeout per run, and sshd sees one authentication per host, not one per script.
        """
        if self.connection == "local":
            return
        with self._login_lock:
            if self._login is False:
                from _pytest_nova import runcache  # runcache imports this module

                try:
                    runcache.once(self.access.run_dir, f"{LOGIN_KEY}{self.name}", self._first_login)
                    self._login = True
                except HostError as exc:
                    self._login = exc
            if isinstance(self._login, HostError):
                raise self._login

    def _first_login(self) -> bool:
        limit = self.access.connect_timeout + 10
        try:
            self._run("true", stdin=None, limit=limit)
        except HostError as exc:
            # sshd drops excess unauthenticated connections at random (MaxStartups), and a runner under load can
            # fail to start a process at all: neither says anything about the host, and the login's outcome is
            # kept for the whole run, so one more try.
            if exc.reason not in _RETRY_LOGIN:
                raise
            self._run("true", stdin=None, limit=limit)
        return True

    def run(self, remote: str, *, stdin: bytes | None = None, timeout: float | None = None) -> Result:
        """Run a shell command; raise :class:`HostError` when the host cannot be reached or it hangs."""
        self.login()
        limit = timeout or self.access.command_timeout
        try:
            return self._run(remote, stdin=stdin, limit=limit)
        except HostError as exc:
            if not session_refused(exc):
                raise
            return self._run(remote, stdin=stdin, limit=limit, multiplex=False)

    def _run(self, remote: str, *, stdin: bytes | None, limit: float, multiplex: bool = True) -> Result:
        argv = self.command(remote, multiplex=multiplex)
        if argv is None:
            return self.transport.run(remote, stdin=stdin, timeout=limit)
        try:
            proc = subprocess.run(
                argv, input=stdin or b"", capture_output=True, timeout=limit, start_new_session=True, check=False
            )
        except subprocess.TimeoutExpired:
            raise HostError(self.name, f"command did not finish within {limit:g} s", Reason.HUNG) from None
        except OSError as exc:
            raise HostError(self.name, f"cannot start {argv[0]}: {exc.strerror}", Reason.CANNOT_START) from None
        result = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
        self._raise_for_login(result)
        return result

    def _raise_for_login(self, result: Result) -> None:
        failure = self.transport.connection_failure(result)
        if isinstance(failure, Failure):
            raise HostError(self.name, failure.cause, failure.reason)
        if failure is not None:
            raise HostError(self.name, failure)

    def start(self, remote: str, stdin: bytes, *, multiplex: bool = True) -> Stream:
        """Start a long-lived command fed ``stdin``; it ends when :meth:`Stream.close` closes its input.

        Raises :class:`HostError` when the host cannot be reached or the command ended before reading its input.
        """
        self.login()
        argv = self.command(remote, multiplex=multiplex)
        if argv is None:
            raise HostError(self.name, f"temporary listeners need an ssh or local connection, not {self.url}",
                            Reason.UNSUPPORTED)
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
        except OSError as exc:
            raise HostError(self.name, f"cannot start {argv[0]}: {exc.strerror}", Reason.CANNOT_START) from None
        stream = Stream(self, proc)
        try:
            if proc.stdin is None:  # never with stdin=PIPE; the type says it may be
                raise OSError("no input pipe")
            proc.stdin.write(stdin)
            proc.stdin.flush()
        except OSError:
            # ssh (or the remote shell) ended before it read the script: say why it ended.
            stream.failed()
        return stream

    def close(self) -> None:
        """End the shared connection of this host, if its transport keeps one open."""
        self.transport.close()


class Stream:
    """A running remote command: read its lines, then close its input to make it exit."""

    def __init__(self, remote: RemoteHost, proc: subprocess.Popen[bytes]) -> None:
        self.remote, self.proc = remote, proc
        self._closed = False
        self._close_lock = threading.Lock()
        # Output read from the pipe but not yet returned (readline reads the fd directly, in chunks).
        self._buffer = bytearray()
        self._eof = False

    @property
    def stdout(self) -> IO[bytes]:
        """The command's output."""
        if self.proc.stdout is None:  # never with stdout=PIPE; the type says it may be
            raise HostError(self.remote.name, "the command has no output pipe", Reason.CANNOT_START)
        return self.proc.stdout

    def readline(self, timeout: float) -> str:
        """The next line of output, or raise :class:`HostError` after ``timeout`` seconds.

        Waits on the pipe with ``poll`` in the calling thread (no thread per call); at the end of the output a
        last unterminated line is returned, then :meth:`failed` says why the command ended.
        """
        deadline = time.monotonic() + timeout
        fd = self.stdout.fileno()
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or (self._eof and self._buffer):
                size = end + 1 if end >= 0 else len(self._buffer)
                line = bytes(self._buffer[:size])
                del self._buffer[:size]
                return line.decode(errors="replace")
            if self._eof:
                self.failed()
            left = deadline - time.monotonic()
            if left <= 0 or not _readable(fd, left):
                self.kill()
                raise HostError(self.remote.name, f"no answer within {timeout:g} s", Reason.HUNG)
            chunk = os.read(fd, 65536)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True

    def failed(self) -> None:
        """The command ended early (no more output): raise :class:`HostError` with the reason from stderr."""
        try:
            self.proc.wait(timeout=self.remote.access.connect_timeout + 5)
        except subprocess.TimeoutExpired:
            self.kill()
        err = ""
        if self.proc.stderr is not None:
            try:
                err = self.proc.stderr.read().decode(errors="replace")
            except (OSError, ValueError):
                pass
        self.remote._raise_for_login(Result(self.proc.returncode, "", err))
        lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
        status = self.proc.returncode
        raise HostError(self.remote.name, lines[-1] if lines else f"exited early (exit status {status})",
                        Reason.EXITED, stderr=err)

    def close_input(self) -> None:
        """Close the command's input (the remote script exits); safe to call more than once."""
        stdin, self.proc.stdin = self.proc.stdin, None
        if stdin is not None:
            try:
                stdin.close()
            except OSError:
                pass  # the command is gone already

    def close(self, timeout: float = 10) -> str:
        """Close the command's input and return the rest of its output; kill it if it lingers."""
        with self._close_lock:
            if self._closed:
                return ""
            self._closed = True
            self.close_input()
            early, self._buffer = bytes(self._buffer), bytearray()
            try:
                out, _ = self.proc.communicate(timeout=timeout)
                return (early + (out or b"")).decode(errors="replace")
            except (subprocess.TimeoutExpired, OSError, ValueError):
                self.kill()
                return ""

    def end(self, timeout: float = 5) -> None:
        """Close the command's input and wait for it to exit, killing it if it lingers; its output is not read.

        For ending a command that another thread may be reading (:meth:`readline`): that thread then sees the
        end of the output itself. Reading the output here as well would race it for the same pipe.
        """
        self.close_input()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Stop the local side; the remote side exits when its input closes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # unkillable only in theory; nothing more to do locally


def _readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` has input (or its end) within ``timeout`` seconds."""
    poller = select.poll()  # holds no file descriptor of its own, unlike epoll
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(timeout * 1000))))


class Hosts:
    """The run's hosts by name, each created on first use."""

    def __init__(self, inv: Inventory, access: Access, transport: TransportFactory = builtin_transport) -> None:
        self.inventory, self.access = inv, access
        self._transport = transport
        self._hosts: dict[str, RemoteHost] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> RemoteHost:
        with self._lock:
            if name not in self._hosts:
                host = self.inventory.host(name)
                transport = self._transport(host, self.inventory, self.access)
                self._hosts[name] = RemoteHost(host, self.inventory, self.access, transport)
            return self._hosts[name]


def close_control_sockets(folder: Path) -> None:
    """End every shared SSH connection of a run (called once, by the controller, at the end)."""
    ssh_mux.end_masters(sock for sock in folder.iterdir() if sock.is_socket())


_FIXES = {
    Reason.TIMEOUT: "make the host reachable over SSH from where the checks run, then run them again",
    Reason.UNREACHABLE: "make the host reachable over SSH from where the checks run, then run them again",
    Reason.SSHD_DOWN: "start sshd on the host (systemctl start sshd)",
    Reason.LOGIN_REFUSED: "add the public key of the SSH identity to the user's ~/.ssh/authorized_keys on the host",
    Reason.HOST_KEY: "add the host key to the known_hosts file (ssh-keyscan) or set ssh.hostKeyPolicy: accept-new",
    Reason.NO_PYTHON: "install python3 on the host",
    Reason.NO_SUDO: "give the user passwordless sudo (an /etc/sudoers.d drop-in with NOPASSWD, docs: account 1)",
    Reason.SESSION_REFUSED: "raise MaxSessions in the host's sshd_config (10 is the default), then run the checks "
                            "again",
}


def host_fix(error: HostError) -> str:
    """What to do about a host that could not run the checks, from the reason of its :class:`HostError`."""
    return _FIXES.get(error.reason, "make the host accept the SSH login and run python3 scripts (the observed "
                                    "error says why not)")
