"""A transport plugin for tests: pytest-nova's own ssh transport, counting every ssh process it starts per host.

Each ``command`` call is one ssh process, so one SSH session (on the shared connection, or a connection of its
own): a line ``<host>`` is appended to the file ``$NOVA_SESSION_LOG`` (atomic appends, every xdist worker).
"""

from __future__ import annotations

import os

from _pytest_nova.hosts import Access, Transport
from _pytest_nova.inventory import Host, Inventory
from _pytest_nova.transports import SshTransport, builtin_transport


class CountingSsh(SshTransport):
    """The built-in ssh transport, logging each session it opens."""

    def command(self, remote: str, *, multiplex: bool = True) -> list[str]:
        """Log the session, then give the built-in argv."""
        fd = os.open(os.environ["NOVA_SESSION_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{self.name}\n".encode())
        finally:
            os.close(fd)
        return super().command(remote, multiplex=multiplex)


def pytest_nova_transport(host: Host, inventory: Inventory, access: Access) -> Transport | None:
    """The counting transport for ssh hosts; the others are left to the built-in implementation."""
    chosen = builtin_transport(host, inventory, access)
    if not isinstance(chosen, SshTransport):
        return None
    return CountingSsh(chosen.host, inventory, access, user=chosen.user, port=chosen.port)
