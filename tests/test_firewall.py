"""The firewall matrix: probe planning, verdict rules, and the two remote scripts run on this machine's loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _pytest_nova.catalog import load_catalog
from _pytest_nova.checks import firewall as matrix
from _pytest_nova.checks.firewall import Listening, Probe, judge_probe, listen_requests, probes_by_source
from _pytest_nova.hosts import Access, HostError, Hosts, Reason, RemoteHost
from _pytest_nova.inventory import load_inventory
from _pytest_nova.kinds import build
from _pytest_nova.options import Settings
from _pytest_nova.plan import PortRuleCheck
from _pytest_nova.probes import portprobe
from _pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED

REPO = Path(__file__).resolve().parents[1]
PROD = REPO / "inventories" / "example-prod.yaml"
PROBES = REPO / "_pytest_nova" / "probes"


def _checks() -> list[PortRuleCheck]:
    return build(load_catalog(), load_inventory(PROD)).of_type(PortRuleCheck, "preinstall")


def _judge(p: Probe, status: str, detail: str = "", **kw: Any) -> tuple[str, str]:
    kw.setdefault("listeners", True)
    kw.setdefault("timeout", 2.0)
    kw.setdefault("listening", Listening(bound=frozenset({"2379/tcp", "4789/udp"})))
    return judge_probe(p, status, detail, **kw)[:2]


TCP = Probe("worker-1", "master-2", "10.10.1.12", 2379, "tcp")
UDP = Probe("worker-1", "worker-2", "10.10.1.42", 4789, "udp")
ICMP = Probe("worker-1", "worker-2", "10.10.1.42", None, "icmp")
IPIP = Probe("worker-1", "worker-2", "10.10.1.42", None, "ipip")


def test_every_planned_target_is_probed_once_from_its_source() -> None:
    checks = _checks()
    by_source = probes_by_source(checks)
    planned = {(c.source, t.name, c.port, c.protocol) for c in checks for t in c.targets}
    probed = [(p.source, p.target, p.port, p.protocol) for ps in by_source.values() for p in ps]
    assert len(probed) == len(set(probed))
    assert set(probed) == planned
    assert all(p.source == src for src, ps in by_source.items() for p in ps)


def test_preinstall_listens_on_every_probed_port_and_postinstall_only_receives_ipip() -> None:
    pre = listen_requests(_checks(), listeners=True)
    post = listen_requests(_checks(), listeners=False)
    assert (2379, "tcp") in pre["master-2"].ports
    assert (4789, "udp") in pre["worker-1"].ports
    assert all(proto in ("tcp", "udp") for r in pre.values() for _, proto in r.ports)
    assert all(not r.ports for r in post.values())
    assert post["worker-1"].ipip and set(post) <= set(pre)


def test_the_proxy_is_probed_as_it_is_with_no_listener() -> None:
    inv = load_inventory(PROD)  # httpProxy: http://proxy.mycompany.local:3128, not an inventory host
    by_source = probes_by_source(_checks())
    proxy = [p for ps in by_source.values() for p in ps if p.target == "proxy"]
    assert {(p.address, p.port) for p in proxy} == {("proxy.mycompany.local", 3128)}
    assert len(proxy) == 1 + len(inv.cluster_nodes)
    pre = listen_requests(_checks(), listeners=True, known=matrix.inventory_hosts(inv))
    assert "proxy" not in pre and (2379, "tcp") in pre["master-2"].ports
    # Judged like a real service: refused means nothing listens there, not a missing temporary listener.
    outcome, message = _judge(proxy[0], "refused", listeners=False, listening=None)
    assert outcome == FAILED and message.startswith("refused: nothing listens on proxy 3128/tcp")
    assert _judge(proxy[0], "open", listeners=False, listening=None) == (PASSED, "open")


def test_a_target_name_that_does_not_resolve_on_the_source_fails_saying_so() -> None:
    p = Probe("worker-1", "proxy", "proxy.mycompany.local", 3128, "tcp")
    outcome, message = _judge(p, "unresolved", "Name or service not known", listeners=False, listening=None)
    assert (outcome, message) == (FAILED, "name not resolved: proxy.mycompany.local on worker-1: "
                                          "Name or service not known")


def test_portprobe_resolves_host_names_on_the_source() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        prober = portprobe.Prober({"timeout": 2})
        probes = [portprobe.Probe("by-name", "localhost", port, "tcp", "t1"),
                  portprobe.Probe("by-address", "127.0.0.1", port, "tcp", "t2"),
                  portprobe.Probe("nowhere", "no-such-host.invalid", port, "tcp", "t3")]
        results = prober.run(probes)
    assert results["by-name"] == ("open", "") and results["by-address"] == ("open", "")
    assert probes[0].address == "127.0.0.1"
    assert results["nowhere"][0] == "unresolved" and results["nowhere"][1]


def test_open_passes_and_names_the_process_of_a_taken_port() -> None:
    assert _judge(TCP, "open") == (PASSED, "open")
    taken = Listening(taken={"2379/tcp": "etcd (pid 7)"})
    assert _judge(TCP, "open", listening=taken) == (PASSED, "open: port already in use by etcd (pid 7)")


FILTERED = "filtered: no answer within 2.0 s, nor when probed again (3 s, 6 s)"


def test_no_answer_is_filtered_with_the_timeout() -> None:
    assert _judge(TCP, "filtered") == (FAILED, FILTERED)
    assert _judge(UDP, "silent") == (FAILED, FILTERED)
    assert _judge(ICMP, "filtered", listening=None) == (FAILED, FILTERED)


def test_refused_says_whether_a_listener_was_there() -> None:
    outcome, message = _judge(TCP, "refused")
    assert outcome == FAILED and "although a temporary listener was bound" in message
    outcome, message = _judge(TCP, "refused", listeners=False, listening=None)
    assert outcome == FAILED and message.startswith("refused: nothing listens on master-2 2379/tcp")


def test_a_silent_udp_service_cannot_be_proven() -> None:
    outcome, message = _judge(UDP, "silent", listeners=False, listening=None)
    assert outcome == SKIPPED
    assert message.startswith("skipped: cannot be proven: no UDP answer and no ICMP error")
    # The verdict says so in a field, not only in its text: the sign-off and --nova-require-proof read that.
    assert judge_probe(UDP, "silent", "", listening=None, listeners=False, timeout=2.0).unprovable
    assert not judge_probe(UDP, "refused", "", listening=None, listeners=False, timeout=2.0).unprovable
    kernel = Listening(taken={"4789/udp": "the kernel (no process holds the socket: a VXLAN or other tunnel device)"})
    outcome, message = _judge(UDP, "silent", listening=kernel)
    assert outcome == SKIPPED and "VXLAN" in message


def test_a_missing_listener_is_an_error_not_a_verdict_on_the_firewall() -> None:
    down = Listening(error="master-2: ssh: connection refused by 10.10.1.12:22 (is sshd running?)")
    outcome, message = _judge(TCP, "refused", listening=down)
    assert outcome == ERROR and "sshd" in message
    # A drop is still a drop: the packet never got an answer, listener or not.
    assert _judge(TCP, "filtered", listening=down)[0] == FAILED


def test_an_unreachable_source_is_one_error_per_probe() -> None:
    outcome, message = _judge(TCP, "unreached", "ssh: connection timed out after 5 s")
    assert outcome == ERROR and message == "error: cannot probe from worker-1: ssh: connection timed out after 5 s"


def test_ipip_depends_on_the_receiver() -> None:
    ready = Listening(ipip="ready")
    assert _judge(IPIP, "seen", listening=ready) == (PASSED, "open")
    assert _judge(IPIP, "sent", listening=ready)[0] == FAILED
    no_root = Listening(ipip="no IPIP receiver: a raw socket for IP protocol 4 needs root (Operation not permitted)")
    assert _judge(IPIP, "sent", listening=no_root)[0] == SKIPPED
    outcome, message = _judge(IPIP, "error", "no raw socket for IP protocol 4: Operation not permitted",
                              listening=ready)
    assert outcome == SKIPPED and "sudo -n" in message


def _stored(check: PortRuleCheck, folder: Path, exceptions: dict[str, list[Any]]) -> matrix.Matrix:
    (folder / matrix.EXCEPTIONS_FILE).write_text(matrix.Exceptions.line(str(check.source), exceptions))
    return matrix.Matrix(probes=len(check.targets), sources=1, destinations=len(check.targets), seconds=0.1,
                         second_pass=0, passes=[len(check.targets), 0, 0], dropped=0, counts={},
                         checks=[check.id], taken={"master-3": {"2379/tcp": "etcd (pid 7)"}},
                         exceptions=matrix.EXCEPTIONS_FILE)


def test_port_matrix_gives_one_verdict_per_target_with_the_requirement(tmp_path: Path) -> None:
    check = next(c for c in _checks() if c.id == "worker-1:masters:2379/tcp")
    stored = _stored(check, tmp_path, {"master-2>2379/tcp": [ERROR, "error: x"]})
    verdicts = matrix.PortMatrix(stored, tmp_path).verdicts(check)
    assert [v.target for v in verdicts] == [t.name for t in check.targets]
    assert [(v.outcome, v.message) for v in verdicts] == [
        (PASSED, "open"), (ERROR, "error: x"), (PASSED, "open: port already in use by etcd (pid 7)")]
    assert not any(v.unprovable for v in verdicts)
    stored = _stored(check, tmp_path, {"master-1>2379/tcp": [SKIPPED, "skipped: cannot be proven: x", True]})
    assert matrix.PortMatrix(stored, tmp_path).verdicts(check)[0].unprovable
    v = verdicts[0]
    assert (v.requirement, v.section, v.port, v.protocol) == ("fw-master-etcd-client", "3.1.2", 2379, "tcp")
    assert v.checked == "worker-1 -> master-1 (10.10.1.11) 2379/tcp"
    # A check the matrix was not computed for is an error, not a pass.
    other = next(c for c in _checks() if c.id == "worker-2:masters:2379/tcp")
    assert {v.outcome for v in matrix.PortMatrix(stored, tmp_path).verdicts(other)} == {ERROR}


def test_checksum_of_a_header_with_its_checksum_is_zero() -> None:
    head = portprobe.ipv4_header("10.0.0.1", "10.0.0.2", 253, 12)
    assert len(head) == 20 and head[9] == 253
    assert portprobe.checksum(head) == 0


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listener() -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any], int, int, int]]:
    """The listener script serving a free TCP and UDP port on loopback, plus a port held by this test."""
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    busy = held.getsockname()[1]
    params = {"address": "127.0.0.1", "ports": [[tcp, "tcp"], [udp, "udp"], [busy, "tcp"]], "magic": "nova-probe-t",
              "max_seconds": 30}
    proc = subprocess.Popen([sys.executable, str(PROBES / "listener.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(params).encode() + b"\n")
    proc.stdin.flush()
    ready = json.loads(proc.stdout.readline())
    try:
        yield proc, ready, tcp, udp, busy
    finally:
        proc.stdin.close()
        proc.wait(5)
        held.close()


def test_listener_serves_free_ports_names_taken_ones_and_exits_when_stdin_closes(
    listener: tuple[subprocess.Popen[bytes], dict[str, Any], int, int, int],
) -> None:
    proc, ready, tcp, udp, busy = listener
    assert ready["bound"] == [f"{tcp}/tcp", f"{udp}/udp"]
    assert f"{busy}/tcp" in ready["taken"]
    # Run as root the owner is named; as a user at least our own process is visible.
    assert "(pid " in ready["taken"][f"{busy}/tcp"]
    groups = [[tcp, "tcp", 0, ["127.0.0.1"]], [udp, "udp", 0, ["127.0.0.1"]],
              [_free_port(socket.SOCK_STREAM), "tcp", 0, ["127.0.0.1"]], [_free_port(socket.SOCK_DGRAM), "udp", 0,
                                                                         ["127.0.0.1"]]]
    params = {"timeout": 1.0, "concurrency": 2, "groups": groups, "magic": "nova-probe-t"}
    out = subprocess.run([sys.executable, str(PROBES / "portprobe.py")], input=json.dumps(params).encode() + b"\n",
                         capture_output=True, timeout=20, check=True)
    results = json.loads(out.stdout)["results"]
    assert results == ["open", "open", ["refused", "Connection refused"], ["refused", "Connection refused"]]
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(5) == 0
    with socket.socket() as s:  # nothing listens any more (REUSEADDR: the accepted connection is in TIME_WAIT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", tcp))


# Runs in a fresh network namespace whose somaxconn is argv[2]: the listener on one port, then waves of
# connections; prints per wave how many connected, how many of them at once (no SYN resent), and how many waited
# in the port's accept queue right after the wave and a little more than a look later.
_QUEUE_WAVES = r"""
import json, socket, subprocess, sys, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
open("/proc/sys/net/core/somaxconn", "w").write(sys.argv[2])
proc = subprocess.Popen([sys.executable, sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
proc.stdin.write(json.dumps({"address": "127.0.0.1", "ports": [[4240, "tcp"]], "max_seconds": 60}).encode() + b"\n")
proc.stdin.flush()
assert json.loads(proc.stdout.readline())["bound"] == ["4240/tcp"]

def waiting():
    out = subprocess.run(["ss", "-Hltn", "sport = :4240"], capture_output=True, text=True).stdout.split()
    return int(out[1])

waves = []
for size in [int(n) for n in sys.argv[3:]]:
    connected = prompt = 0
    for _ in range(size):
        with socket.socket() as s:
            s.settimeout(3)
            start = time.monotonic()
            try:
                s.connect(("127.0.0.1", 4240))
            except OSError:
                continue
            connected += 1
            prompt += time.monotonic() - start < 0.5  # a dropped SYN is resent after 1 s
    queued = waiting()
    time.sleep(1.2)
    waves.append([connected, prompt, queued, waiting()])
proc.stdin.close()
proc.wait(5)
print(json.dumps(waves))
"""


def _queue_waves(somaxconn: int, *sizes: int) -> list[list[int]]:
    argv = ["unshare", "--net", sys.executable, "-c", _QUEUE_WAVES, str(PROBES / "listener.py"), str(somaxconn),
            *map(str, sizes)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return list(json.loads(out.stdout))


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its own needs root")
def test_listener_leaves_probe_connections_queued_and_empties_a_half_full_queue() -> None:
    # somaxconn 2048: the handshake answers each probe and nothing is accepted until the queue is half full;
    # three waves of 900 are more than the queue holds, and every connection is answered at once.
    waves = _queue_waves(2048, 900, 900, 900)
    assert [wave[:2] for wave in waves] == [[900, 900]] * 3
    first, second, third = (wave[2:] for wave in waves)
    assert first == [900, 900]  # under half full: left waiting
    assert second == [1800, 0]  # over half full: emptied within a look
    assert third == [900, 900]


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its own needs root")
def test_listener_accepts_each_connection_when_the_queue_is_small() -> None:
    # somaxconn 128 (older kernels): waiting connections could fill the queue, so each one is accepted at once.
    [(connected, _, queued, later)] = _queue_waves(128, 400)
    assert connected == 400
    assert queued < 64 and later == 0


def test_listener_runs_its_own_hosts_probe_batch_in_process(
    listener: tuple[subprocess.Popen[bytes], dict[str, Any], int, int, int],
) -> None:
    proc, ready, tcp, udp, _ = listener
    assert proc.stdin is not None and proc.stdout is not None
    groups = [[tcp, "tcp", 0, ["127.0.0.1"]], [udp, "udp", 0, ["127.0.0.1"]],
              [_free_port(socket.SOCK_STREAM), "tcp", 0, ["127.0.0.1"]]]
    request = {"script": (PROBES / "portprobe.py").read_text(),
               "params": {"timeout": 1.0, "concurrency": 2, "groups": groups, "magic": "nova-probe-t"}}
    for line in ("probe " + json.dumps(request), "probe {not json"):
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()
    # Each runs in a thread of its own: the broken request's answer may come first.
    messages = [json.loads(proc.stdout.readline()) for _ in range(2)]
    broken, answer = sorted(messages, key=lambda m: m["probed"] is not None)
    assert answer["probed"]["results"] == ["open", "open", ["refused", "Connection refused"]]
    assert answer["probed"]["uid"] == ready["uid"]  # with the listener's own privileges
    # A request it cannot run is answered too, so the controller probes with a session of its own.
    assert broken["probed"] is None and broken["error"].startswith("JSONDecodeError")


class _ListenerScript:
    """A node's listener as the controller sees it: what it was sent, and one answer or failure to read."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.sent: list[str] = []

    def send(self, line: str) -> None:
        self.sent.append(line)

    def read(self, timeout: float) -> object:
        if isinstance(self.answer, HostError):
            raise self.answer
        return self.answer


def test_a_batch_inside_the_listener_falls_back_only_where_a_session_of_its_own_can_tell_more(tmp_path: Path) -> None:
    settings = Settings(inventory=None, phase="preinstall", json_path=None, probe_timeout=0.5, connect_timeout=5.0,
                        command_timeout=30.0, concurrency=64, waivers=None)
    run = matrix.MatrixRun(Hosts(load_inventory(PROD), Access(5, 30, tmp_path)), _checks(), settings, tmp_path)
    params: dict[str, object] = {"groups": [[2379, "tcp", 0, ["10.0.0.1"]]]}

    def batch(answer: object, *, sudo: bool = False, privilege: str | None = None) -> tuple[Any, list[str]]:
        script = _ListenerScript(answer)
        run.receivers["master-1"] = script  # type: ignore[assignment]  # only send and read are used
        run.listening["master-1"] = Listening(privilege=privilege)
        return run._probe_in_listener("master-1", params, sudo), script.sent

    answer, sent = batch({"probed": {"results": ["open"]}})
    assert answer == {"results": ["open"]}
    [line] = sent
    assert line.startswith("probe ") and json.loads(line[len("probe "):])["params"] == params
    # The listener could not run it, or ended: a session of its own runs the batch and says what is wrong.
    assert batch({"probed": None, "error": "JSONDecodeError: ..."})[0] is None
    assert batch(HostError("master-1", "listener script ended early", Reason.EXITED))[0] is None
    # IPIP needs root, and this listener runs without it: not even asked.
    assert batch({"probed": {"results": []}}, sudo=True, privilege="sudo -n refused") == (None, [])
    # A batch that outlived the command timeout: the source is unreached, not probed a second time.
    with pytest.raises(HostError, match="no answer within 30 s"):
        batch(HostError("master-1", "no answer within 30 s", Reason.HUNG))
    # The run is being torn down: nothing more starts.
    run.streams.close_all()
    with pytest.raises(HostError, match="the run ended before its probes did"):
        batch(HostError("master-1", "listener script ended early", Reason.EXITED))


def test_ipip_packets_no_receiver_saw_are_sent_again_by_the_probe_script(tmp_path: Path) -> None:
    """The runner's IPIP retry drives the real probe script: it must take the batch format the script reads."""
    answers: list[dict[str, Any]] = []

    class Local(matrix.MatrixRun):
        def _run_probe(self, host: RemoteHost, params: dict[str, object], sudo: bool) -> matrix.ProbeAnswer:
            out = subprocess.run([sys.executable, str(PROBES / "portprobe.py")],
                                 input=json.dumps({**params, "lifeline": False}).encode() + b"\n",
                                 capture_output=True, timeout=30, check=True)
            answers.append(json.loads(out.stdout))
            return answers[-1]  # type: ignore[return-value]  # the script's JSON answer

    inv = load_inventory(PROD)
    ipip = [c for c in _checks() if c.protocol == "ipip"]
    settings = Settings(inventory=None, phase="preinstall", json_path=None, probe_timeout=0.5, connect_timeout=5.0,
                        command_timeout=30.0, concurrency=64, waivers=None)
    run = Local(Hosts(inv, Access(5, 30, tmp_path)), ipip, settings, tmp_path)
    source = str(ipip[0].source)
    run.ipip_sent = {source: {t: Probe(source, t, "127.0.0.1", None, "ipip", ipip[0].requirement.id)
                              for t in ("master-2", "master-3")}}
    run._resend_ipip(source)
    [answer] = answers
    # Root sends (loopback: nothing leaves this machine); without root the script says why it cannot.
    expected = "sent" if os.geteuid() == 0 else "error"
    assert [r if isinstance(r, str) else r[0] for r in answer["results"]] == [expected, expected]


def test_portprobe_exits_when_its_lifeline_closes() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers: the probe would wait 30 s
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    params = {"timeout": 30, "groups": [[port, "udp", 0, ["127.0.0.1"]]], "lifeline": True, "deadline": 60}
    proc = subprocess.Popen([sys.executable, str(PROBES / "portprobe.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(params).encode() + b"\n")
    proc.stdin.flush()
    proc.stdin.close()
    assert proc.wait(5) == 3
    silent.close()


def test_listener_names_a_taken_port_from_one_read_of_each_socket_table() -> None:
    from _pytest_nova.probes import listener

    listener._TABLES.clear()
    with socket.socket() as held, socket.socket() as other:
        for s in (held, other):
            s.bind(("127.0.0.1", 0))
            s.listen(1)
        inodes = listener.owners_of(held.getsockname()[1], "tcp")
        assert inodes == [str(os.fstat(held.fileno()).st_ino)]
        # Found over IPv4: the IPv6 table was not read; a second port reuses the same read.
        assert set(listener._TABLES) == {"tcp"}
        assert listener.owners_of(other.getsockname()[1], "tcp") == [str(os.fstat(other.fileno()).st_ino)]
        assert listener.process_of(inodes) == f"{Path('/proc/self/comm').read_text().strip()} (pid {os.getpid()})"
    assert listener.owners_of(1, "udp") == [] and set(listener._TABLES) == {"tcp", "udp", "udp6"}
