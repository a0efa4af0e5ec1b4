"""Fault isolation without a lab: framed script messages, early-dying commands, shared logins, second-pass rules."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from _pytest_nova import runcache
from _pytest_nova.checks.firewall import Listening, Probe, judge_probe, suspect
from _pytest_nova.hosts import Access, HostError, Reason, RemoteHost, Result, explain_ssh_failure, host_fix
from _pytest_nova.inventory import Inventory, load_inventory
from _pytest_nova.probes import portprobe
from _pytest_nova.remote_scripts import NO_PYTHON, NO_SUDO, Script, _failure, framed, new_marker, start_and_read
from _pytest_nova.transports import SshTransport
from _pytest_nova.unreached import lines
from _pytest_nova.verdicts import SKIPPED

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def inv() -> Inventory:
    return load_inventory(REPO / "inventories" / "example-prod.yaml")


@pytest.fixture
def local(inv: Inventory, tmp_path: Path) -> RemoteHost:
    """nova-ctl of the example inventory: ``connection: local``, commands run here."""
    return RemoteHost(inv.host("nova-ctl"), inv, Access(2.0, 10.0, tmp_path))


def test_only_framed_lines_are_messages() -> None:
    marker = new_marker()
    text = f"*** authorized use only ***\n{marker}x {{}}\n{marker} {{\"a\": 1}}\nLast login: today\n"
    assert framed(marker, text) == ['{"a": 1}']
    assert new_marker() != marker


def test_a_banner_around_a_streamed_message_is_skipped(local: RemoteHost) -> None:
    marker = new_marker()
    command = f"echo '*** authorized use only ***'; echo banner >&2; echo '{marker} {{\"ready\": true}}'; cat"
    script = Script(local, "listener", local.start(command, b""), marker)
    try:
        assert script.read(5) == {"ready": True}
    finally:
        script.stream.close(timeout=5)


def test_a_command_that_dies_before_reading_its_input_is_a_host_error(local: RemoteHost) -> None:
    # 4 MB cannot fit in the pipe: writing it to a command that already exited breaks the pipe.
    with pytest.raises(HostError) as caught:
        stream = local.start("echo 'no such thing' >&2; exit 3", b"x" * (4 << 20))
        stream.readline(5)
    assert caught.value.host == "nova-ctl" and caught.value.cause == "no such thing"


def test_closing_a_stream_twice_is_harmless(local: RemoteHost) -> None:
    stream = local.start("cat", b"hello\n")
    assert stream.close(timeout=5) == "hello\n"
    assert stream.close(timeout=5) == ""
    stream.close_input()


def test_a_failed_login_is_tried_once_per_run_and_remembered(inv: Inventory, tmp_path: Path) -> None:
    host = RemoteHost(inv.host("master-1"), inv, Access(1.0, 5.0, tmp_path))
    calls: list[str] = []

    def refuse(remote: str, **_: Any) -> Any:
        calls.append(remote)
        raise HostError("master-1", "ssh: connection refused by 10.10.1.11:22 (is sshd running?)")

    host._run = refuse  # type: ignore[method-assign]
    for _ in range(3):
        with pytest.raises(HostError, match="connection refused"):
            host.run("python3 -c ...")
    assert calls == ["true"]
    # Another process of the run (a new RemoteHost, same run folder) reads the stored failure.
    other = RemoteHost(inv.host("master-1"), inv, Access(1.0, 5.0, tmp_path))
    other._run = refuse  # type: ignore[method-assign]
    with pytest.raises(HostError, match="connection refused"):
        other.start("cat", b"")
    assert calls == ["true"]
    with pytest.raises(HostError):
        runcache.once(tmp_path, "login-master-1", lambda: True)


@pytest.mark.parametrize(("stderr", "cause"), [
    ("ssh: connect to host 10.10.1.11 port 22: Network is unreachable\n",
     "ssh: connect to host 10.10.1.11 port 22: Network is unreachable"),
    ("mux_client_request_session: session request failed: Session open refused by peer\n",
     "ssh: 10.10.1.11 refused another session on the connection (sshd MaxSessions too low)"),
    ("kex_exchange_identification: read: Connection reset by peer\n",
     "ssh: kex_exchange_identification: read: Connection reset by peer"),
])
def test_ssh_failures_say_ssh_once(inv: Inventory, tmp_path: Path, stderr: str, cause: str) -> None:
    access = Access(5.0, 60.0, tmp_path)
    assert explain_ssh_failure(stderr, inv.host("master-1"), "nova-installer", 22, access, "k") == cause


def test_no_fix_points_at_text_that_is_not_there() -> None:
    errors = [HostError("h", "ssh: connection timed out after 5 s", Reason.TIMEOUT),
              HostError("h", "ssh: connection refused by 10.0.0.1:22 (is sshd running?)", Reason.SSHD_DOWN),
              HostError("h", "ssh: login as 'u' with key k refused", Reason.LOGIN_REFUSED),
              HostError("h", "python3 is not installed", Reason.NO_PYTHON),
              HostError("h", "sudo -n refused (a password is required)", Reason.NO_SUDO),
              HostError("h", "listener script ended", Reason.SCRIPT)]
    assert all("above" not in host_fix(e) for e in errors)
    assert len({host_fix(e) for e in errors}) == len(errors)


@pytest.mark.parametrize(("stderr", "reason"), [
    ("ssh: connect to host 10.10.1.11 port 22: Connection timed out\n", Reason.TIMEOUT),
    ("ssh: connect to host 10.10.1.11 port 22: Connection refused\n", Reason.SSHD_DOWN),
    ("nova-installer@10.10.1.11: Permission denied (publickey).\n", Reason.LOGIN_REFUSED),
    ("Host key verification failed.\n", Reason.HOST_KEY),
    ("mux_client_request_session: session request failed: Session open refused by peer\n", Reason.SESSION_REFUSED),
    ("kex_exchange_identification: read: Connection reset by peer\n", Reason.DROPPED),
    ("ssh: connect to host 10.10.1.11 port 22: Network is unreachable\n", Reason.UNREACHABLE),
])
def test_an_ssh_failure_carries_its_reason_as_a_type_not_as_text(inv: Inventory, tmp_path: Path, stderr: str,
                                                                 reason: Reason) -> None:
    access = Access(5.0, 60.0, tmp_path)
    failure = SshTransport(inv.host("master-1"), inv, access).connection_failure(Result(255, "", stderr))
    assert failure is not None and failure.reason == reason
    stored = HostError("master-1", failure.cause, failure.reason)
    with pytest.raises(HostError) as caught:
        runcache.once(tmp_path, f"login-{reason}", lambda: (_ for _ in ()).throw(stored))
    assert (caught.value.reason, caught.value.cause) == (reason, failure.cause)  # kept through the run cache


def test_every_source_starts_on_another_destination() -> None:
    groups = [[port, "tcp", 1, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]] for port in (1, 2)]
    firsts = [portprobe.batch({"groups": groups, "rotate": i})[0].address for i in range(3)]
    assert firsts == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    probes = portprobe.batch({"groups": groups, "rotate": 4})
    # Grouped by destination; ids name the place in the groups, which is the order of the answer.
    assert [(p.address, p.port, p.id) for p in probes] == [
        ("10.0.0.2", 1, "1"), ("10.0.0.2", 2, "4"), ("10.0.0.3", 1, "2"), ("10.0.0.3", 2, "5"),
        ("10.0.0.1", 1, "0"), ("10.0.0.1", 2, "3")]
    assert all(p.retry for p in probes)


def test_only_what_would_be_called_dropped_is_probed_again() -> None:
    tcp = Probe("s", "t", "10.0.0.1", 2379, "tcp")
    udp = Probe("s", "t", "10.0.0.1", 4789, "udp")
    ipip = Probe("s", "t", "10.0.0.1", None, "ipip")
    served = Listening(bound=frozenset({"4789/udp"}), ipip="ready")
    assert suspect("filtered", served, tcp) and suspect("silent", served, udp) and suspect("sent", served, ipip)
    assert not suspect("refused", served, tcp) and not suspect("open", served, udp)
    assert not suspect("silent", Listening(), udp)  # nobody would echo: unprovable, not dropped
    assert not suspect("sent", Listening(error="t: ssh: connection refused"), ipip)


def test_without_sudo_what_needs_root_is_unprovable_and_says_why() -> None:
    low = Probe("s", "worker-2", "10.0.0.2", 179, "tcp")
    ipip = Probe("s", "worker-2", "10.0.0.2", None, "ipip")
    listening = Listening(
        bound=frozenset({"2379/tcp"}), ipip="no IPIP receiver: a raw socket for IP protocol 4 needs root",
        failed={"179/tcp": "binding it needs root (net.ipv4.ip_unprivileged_port_start 1024)"},
        privilege="sudo -n refused (a password is required)")
    expected = ("skipped: cannot be proven: worker-2: sudo -n refused (a password is required): the IPIP receiver "
                "and listeners on ports below 1024 need it")
    for p in (low, ipip):
        assert judge_probe(p, "refused" if p.port else "sent", "", listening=listening, listeners=True,
                           timeout=2.0) == (SKIPPED, expected, True)


def test_a_probe_batch_keeps_few_probes_in_flight_per_destination() -> None:
    servers = [socket.socket() for _ in range(2)]
    for s in servers:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
    ports = [s.getsockname()[1] for s in servers]
    most: dict[str, int] = {}

    class Counting(portprobe.Prober):
        def _watch(self, p: Any, sock: socket.socket, events: int) -> None:
            super()._watch(p, sock, events)
            most[p.address] = max(most.get(p.address, 0), self.in_flight[p.address])

    probes = [portprobe.Probe(f"{a}/{i}", a, ports[i % 2], "tcp", str(i))
              for a in ("127.0.0.1", "127.0.0.2") for i in range(40)]
    try:
        results = Counting({"timeout": 2, "concurrency": 64, "per_target": 3}).run(probes)
    finally:
        for s in servers:
            s.close()
    assert most == {"127.0.0.1": 3, "127.0.0.2": 3}
    assert {r[0] for r in results.values()} <= {"open", "refused"} and len(results) == 80


def test_the_terminal_names_each_unreachable_host_once(tmp_path: Path) -> None:
    cause = "ssh: connection timed out after 5 s (is 10.0.0.3:22 reachable?)"
    (tmp_path / "login-master-3.json").write_text(json.dumps({"error": ["master-3", cause]}))
    (tmp_path / "login-master-1.json").write_text(json.dumps({"value": True}))
    records: list[dict[str, Any]] = [
        {"outcome": "error", "message": f"master-3: {cause}", "source": "master-3", "target": None},
        {"outcome": "error", "message": f"error: cannot probe from master-3: {cause}", "source": "master-3"},
        {"outcome": "error", "message": f"error: no IPIP receiver on master-3 (master-3: {cause})",
         "source": "worker-1", "target": "master-3"},
        {"outcome": "failed", "message": "filtered", "source": "master-3", "target": "worker-1"},
        {"outcome": "error", "message": "worker-1: python3 is not installed", "source": "worker-1"},
    ]
    assert lines(tmp_path, records) == [f"master-3: {cause}; 3 checks not run"]


def test_a_listener_that_dies_mid_way_is_a_host_error_not_a_traceback(local: RemoteHost) -> None:
    params = {"address": "127.0.0.1", "ports": [], "ipip": False, "magic": "nova-probe-x", "max_seconds": 30}
    ready, script = start_and_read(local, "listener", params, 10)
    assert ready["ready"] is True and ready["bound"] == []
    script.send("seen")
    assert script.read(5) == {"seen": []}
    script.stream.kill()  # the script and its ssh are gone, as if the host crashed
    with pytest.raises(HostError) as caught:
        script.send("seen")
        script.read(5)
    assert caught.value.host == "nova-ctl" and "listener script" in caught.value.cause
    script.stream.close(timeout=2)


@pytest.mark.parametrize(("rc", "stderr", "cause"), [
    (127, "*** banner ***\nbash: line 1: python3: command not found\n", NO_PYTHON),
    (1, "*** banner ***\nsudo: a password is required\n", NO_SUDO),
    (1, "Traceback (most recent call last):\n  ...\nMemoryError\n", "listener script ended without an answer "
                                                                       "(MemoryError)"),
])
def test_why_a_script_gave_no_answer(local: RemoteHost, rc: int, stderr: str, cause: str) -> None:
    assert _failure(local, "listener", rc, "", stderr).cause == cause


def test_run_cache_is_read_without_computing(tmp_path: Path) -> None:
    def down() -> None:
        raise HostError("master-3", "ssh: connection refused")

    assert runcache.once(tmp_path, "firewall-matrix", lambda: {"probes": 3}) == {"probes": 3}
    with pytest.raises(HostError):
        runcache.once(tmp_path, "login-master-3", down)
    runcache.once(tmp_path, "login-worker-1", lambda: True)
    assert runcache.stored(tmp_path, "firewall-matrix") == {"probes": 3}
    assert runcache.stored(tmp_path, "login-master-3") is None and runcache.stored(tmp_path, "nothing") is None
    failed = [(e.host, e.cause) for e in runcache.failures(tmp_path, "login-")]
    assert failed == [("master-3", "ssh: connection refused")]
