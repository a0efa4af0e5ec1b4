"""Transports: the argv pytest-nova builds for ssh and local hosts, and a plugin's transport chosen by the hook."""

from __future__ import annotations

import re
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from _pytest_nova import transports
from _pytest_nova.hosts import Access, HostError, Hosts, RemoteHost
from _pytest_nova.inventory import Inventory, load_inventory
from _pytest_nova.transports import (
    CommandTransport,
    LocalTransport,
    SshTransport,
    TestinfraTransport,
    builtin_transport,
    ssh_options,
)

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "_pytest_nova"


@pytest.fixture
def inv() -> Inventory:
    return load_inventory(REPO / "inventories" / "example-prod.yaml")


def test_the_ssh_argv_is_the_clients_own_with_the_runs_options(inv: Inventory, tmp_path: Path) -> None:
    access = Access(4.0, 30.0, tmp_path)
    t = builtin_transport(inv.host("master-1"), inv, access)
    assert isinstance(t, SshTransport)
    key = str(inv.resolve_file(inv.ssh.identity_file))
    argv = t.command("echo 'a b'")
    assert argv == ["ssh", *ssh_options(inv, access), "-o", f"User={inv.ssh.user}", "-o", f"Port={inv.ssh.port}",
                    "-i", key, "10.10.1.11", "echo 'a b'"]
    options = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv[:-2]) if a == "-o")
    assert options["ConnectTimeout"] == "4" and options["BatchMode"] == "yes"
    assert options["ControlMaster"] == "auto" and options["ControlPath"] == f"{tmp_path}/%C"
    # Without multiplexing, a connection of its own: ssh keeps the first value of an option, so these lead.
    own = t.command("true", multiplex=False)
    assert own[:5] == ["ssh", "-o", "ControlMaster=no", "-o", "ControlPath=none"]
    assert own[5:] == [*argv[1:-1], "true"]


def test_a_nodes_own_user_port_and_key_win_over_the_inventorys(inv: Inventory, tmp_path: Path) -> None:
    host = replace(inv.host("master-1"), user="ops", port=2222, identity_file="/keys/ops")
    argv = builtin_transport(host, inv, Access(2.0, 10.0, tmp_path)).command("true")
    assert argv is not None
    assert argv[-6:] == ["-o", "Port=2222", "-i", "/keys/ops", "10.10.1.11", "true"]
    assert "User=ops" in argv


def test_ssh_options_reach_the_client_the_nodes_own_first(inv: Inventory, tmp_path: Path) -> None:
    """ssh keeps an option's first value: a node's sshOptions win over ssh.options, both follow the run's own."""
    both = replace(inv, ssh=replace(inv.ssh, options=("ProxyJump=ops@10.10.0.2", "Compression=yes")))
    host = replace(inv.host("worker-1"), ssh_options=("ProxyJump=jump@10.10.0.3",))
    access = Access(2.0, 10.0, tmp_path)
    t = builtin_transport(host, both, access)
    assert isinstance(t, SshTransport)
    argv = t.command("true")
    run_own = ssh_options(both, access)
    assert argv[1:len(run_own) + 7] == [*run_own, "-o", "ProxyJump=jump@10.10.0.3", "-o", "ProxyJump=ops@10.10.0.2",
                                        "-o", "Compression=yes"]
    other = builtin_transport(inv.host("worker-2"), both, access).command("true") or []
    assert "ProxyJump=ops@10.10.0.2" in other and "ProxyJump=jump@10.10.0.3" not in other


def test_an_ssh_url_uses_the_same_client_at_the_urls_address(inv: Inventory, tmp_path: Path) -> None:
    host = replace(inv.host("master-1"), connection="ssh://admin@10.9.9.9:2200")
    t = builtin_transport(host, inv, Access(2.0, 10.0, tmp_path))
    assert isinstance(t, SshTransport)
    assert t.command("true")[-6:] == ["-o", "Port=2200", "-i", t.key, "10.9.9.9", "true"]
    assert "User=admin" in t.command("true")


def test_local_and_other_urls(inv: Inventory, tmp_path: Path) -> None:
    access = Access(2.0, 10.0, tmp_path)
    local = builtin_transport(inv.host("nova-ctl"), inv, access)
    assert isinstance(local, LocalTransport) and local.command("echo hi") == ["/bin/sh", "-c", "echo hi"]
    for connection in ("paramiko", "docker://box"):
        other = builtin_transport(replace(inv.host("master-1"), connection=connection), inv, access)
        assert isinstance(other, TestinfraTransport) and other.command("true") is None
    assert isinstance(other, TestinfraTransport) and other.url == "docker://box"


def test_a_closed_port_is_refused_through_the_real_ssh_client(inv: Inventory) -> None:
    host = replace(inv.host("master-1"), address="127.0.0.1", port=1)
    # A short folder, as the run folder is: ssh limits a ControlPath to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="nova-", dir="/tmp") as run_dir, pytest.raises(HostError) as caught:
        RemoteHost(host, inv, Access(2.0, 10.0, Path(run_dir))).run("true")
    assert caught.value.cause == "ssh: connection refused by 127.0.0.1:1 (is sshd running?)"


def test_no_private_testinfra_api_is_used() -> None:
    """testinfra's extension points only: a backend subclasses BaseBackend and registers itself in BACKENDS."""
    public = r"base(?:\.(?:BaseBackend|CommandResult))?\b(?!\.)|BACKENDS\b"
    private = re.compile(rf"\._build_ssh_command|testinfra\.backend\.(?!{public})\w|\b_[a-z]\w*\(.*#.*testinfra")
    offenders = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if private.search(p.read_text())]
    assert offenders == []


def test_hosts_take_their_transport_from_the_factory(inv: Inventory, tmp_path: Path) -> None:
    class Echo(CommandTransport):
        def command(self, remote: str, *, multiplex: bool = True) -> list[str] | None:
            return ["/bin/sh", "-c", f"echo via-echo; {remote}"]

    chosen: list[str] = []

    def factory(host: object, inventory: Inventory, access: Access) -> transports.Transport:
        chosen.append(getattr(host, "name", "?"))
        return Echo()

    hosts = Hosts(inv, Access(2.0, 10.0, tmp_path), factory)
    assert hosts["worker-1"].run("echo ran").stdout == "via-echo\nran\n"
    assert hosts["worker-1"] is hosts["worker-1"] and chosen == ["worker-1"]


def test_a_login_the_runner_could_not_start_is_tried_once_more(inv: Inventory, tmp_path: Path) -> None:
    """A local spawn failure (the runner's, under load) is not the host's: one more try before it is cached."""
    class FlakyStart(CommandTransport):
        def __init__(self) -> None:
            self.calls = 0

        def command(self, remote: str, *, multiplex: bool = True) -> list[str] | None:
            self.calls += 1
            return [str(tmp_path / "missing-shell")] if self.calls == 1 else ["/bin/sh", "-c", remote]

    flaky = FlakyStart()
    hosts = Hosts(inv, Access(2.0, 10.0, tmp_path), lambda host, inventory, access: flaky)
    assert hosts["worker-1"].run("echo ran").stdout == "ran\n"
    assert flaky.calls == 3  # the failed start, the login's second try, the command

    class NeverStarts(CommandTransport):
        def command(self, remote: str, *, multiplex: bool = True) -> list[str] | None:
            return [str(tmp_path / "missing-shell")]

    broken = Hosts(inv, Access(2.0, 10.0, tmp_path / "other"), lambda host, inventory, access: NeverStarts())
    (tmp_path / "other").mkdir()
    with pytest.raises(HostError) as info:
        broken["worker-2"].run("true")
    assert str(info.value) == f"worker-2: cannot start {tmp_path / 'missing-shell'}: No such file or directory"


PLUGIN = '''
from __future__ import annotations

from pathlib import Path

from _pytest_nova.transports import CommandTransport

CALLS = Path(__file__).parent / "calls.txt"


class Jail(CommandTransport):
    """A made-up scheme: runs the command here, and says so on stdout."""

    def __init__(self, name):
        self.name = name

    def command(self, remote, *, multiplex=True):
        with CALLS.open("a") as f:
            f.write(self.name + ": " + remote + "\\n")
        return ["/bin/sh", "-c", "echo jail:" + self.name + "; " + remote]


def pytest_nova_transport(host, inventory, access):
    if (host.connection or "").startswith("jail://"):
        return Jail(host.name)
    return None
'''

TEST = '''
def test_through_the_plugin(nova_hosts):
    assert nova_hosts["master-1"].run("echo ok").stdout == "jail:master-1\\nok\\n"


def test_others_keep_the_builtin(nova_hosts):
    assert nova_hosts["nova-ctl"].run("echo ok").stdout == "ok\\n"
    assert type(nova_hosts["worker-1"].transport).__name__ == "SshTransport"
'''


def test_a_plugins_transport_is_used_for_its_scheme(pytester: pytest.Pytester) -> None:
    text = (REPO / "inventories" / "example-prod.yaml").read_text()
    line = "  - {name: master-1, address: 10.10.1.11, roles: [master]}"
    assert line in text
    pytester.makefile(".yaml", inv=text.replace(line, line[:-1] + ", connection: 'jail://m1'}"))
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(test_jail=TEST)
    result = pytester.runpytest("--nova-inventory=inv.yaml", "-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=2)
    # Only its own host: the run's one login, then the test's command.
    assert (pytester.path / "calls.txt").read_text() == "master-1: true\nmaster-1: echo ok\n"
