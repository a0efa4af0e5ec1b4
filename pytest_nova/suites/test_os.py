"""Account preparation (docs "account 1" and "account 2"), the node resolver (2.1) and Universe trust (2.7)."""

from __future__ import annotations

import pytest

from _pytest_nova.checks.node import NodeFacts
from _pytest_nova.plan import NodeCheck
from _pytest_nova.session import NovaItem


@pytest.mark.nova_area("os")
def test_os(node_requirement: NodeCheck, node_facts: NodeFacts, nova: NovaItem) -> None:
    """The node meets the OS requirement (account 1, account 2; closed mode: 2.1, universe 2.7).

    The user with /bin/bash and a home, sudo -n -l granting (ALL) NOPASSWD: ALL (advisory: the docs' drop-in as
    sudo reads it), ~/.ssh 0700 and authorized_keys 0600 holding ssh.identityFile's key, nova-ctl's private
    key 0600/0400; in closed mode an internal resolver only and a trusted Universe CA.
    """
    nova.judge(node_facts.verdicts(node_requirement))
