"""A testinfra backend on pytest-nova's shared connections: testinfra's modules with one login per host per run.

:class:`NovaBackend` is a ``testinfra.backend.base.BaseBackend`` whose ``run`` goes through
:meth:`_pytest_nova.hosts.RemoteHost.run`: the same transport, login and ``ControlMaster`` the plan's engines
use, the run's command timeout, and :class:`~_pytest_nova.transports.HostError` when the node cannot be reached.
It is registered in testinfra's ``BACKENDS`` table as ``nova``, so ``testinfra.get_host("nova://worker-1",
nova_hosts=nova_hosts)`` builds one too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import testinfra.backend
import testinfra.backend.base
import testinfra.host

from _pytest_nova.hosts import Hosts, RemoteHost
from _pytest_nova.remote_scripts import new_marker

NAME = "nova"
testinfra.backend.BACKENDS.setdefault(NAME, f"{__name__}.NovaBackend")


class NovaBackend(testinfra.backend.base.BaseBackend):  # type: ignore[misc]  # testinfra is untyped
    """Runs testinfra's commands on an inventory node through the run's shared connection to it.

    ``nova_hosts`` is the run's :class:`~_pytest_nova.hosts.Hosts`, or a function returning it (the node's
    connection is then looked up on the first command, not while tests are collected).
    """

    NAME = NAME

    def __init__(self, hostname: str, *args: Any, nova_hosts: Hosts | Callable[[], Hosts], **kwargs: Any) -> None:
        kwargs.pop("connection", None)  # testinfra.get_host passes the scheme along
        super().__init__(hostname, *args, **kwargs)
        self._hosts = nova_hosts

    @property
    def remote(self) -> RemoteHost:
        """The node's connection of this run."""
        hosts = self._hosts if isinstance(self._hosts, Hosts) else self._hosts()
        return hosts[self.hostname]

    def __repr__(self) -> str:
        # Shown inside testinfra's CommandResult when check_output fails: the node, not an object address.
        return f"{NAME}://{self.hostname}"

    def get_pytest_id(self) -> str:
        """The node's inventory name: a site test's id is ``test_x[worker-1]``."""
        return str(self.hostname)

    def run(self, command: str, *args: str, **kwargs: Any) -> testinfra.backend.base.CommandResult:
        """Run ``command`` (with testinfra's quoting and ``host.sudo()``) on the node; ``timeout=`` in seconds.

        Without ``timeout`` the run's ``--nova-command-timeout`` bounds it. Raises ``HostError`` when the node
        cannot be reached or the command does not finish in time.
        """
        cmd = self.get_command(command, *args)
        # A shell rc that prints a banner (bash reads ~/.bashrc for ssh commands too) would reach testinfra's
        # parsers: a marker printed just before the command runs marks where its own output begins.
        marker = new_marker()
        framed = f"printf '%s\\n' {marker}; printf '%s\\n' {marker} >&2; {cmd}"
        result = self.remote.run(framed, timeout=kwargs.get("timeout"))
        return self.result(result.rc, self.encode(cmd), _after(result.stdout, marker), _after(result.stderr, marker))


def _after(text: str, marker: str) -> str:
    """What followed the marker's line (all of ``text`` when the marker is missing: the command never ran)."""
    _, found, rest = text.partition(marker + "\n")
    return rest if found else text


def nova_host(name: str, nova_hosts: Hosts | Callable[[], Hosts]) -> testinfra.host.Host:
    """A testinfra ``Host`` for inventory node ``name``, on the run's shared connection to it."""
    backend = NovaBackend(name, nova_hosts=nova_hosts)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
