"""Evidence for silent UDP probes of held ports: conntrack on the destination, the service's answers elsewhere."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from _pytest_nova.checks import udp_evidence as ev
from _pytest_nova.checks.firewall import Listening, Probe, judge_probe
from _pytest_nova.model import JSONScalar
from _pytest_nova.probes import conntrack
from _pytest_nova.verdicts import FAILED, PASSED, SKIPPED

NODES = {"w1": "10.0.0.1", "w2": "10.0.0.2", "w3": "10.0.0.3"}
KERNEL = "the kernel (no process holds the socket: a VXLAN or other tunnel device)"


def _probe(src: str, dst: str, port: int = 8472) -> Probe:
    return Probe(src, dst, NODES[dst], port, "udp")


Matrix = tuple[list[tuple[Probe, str, str, list[JSONScalar]]], dict[str, Listening], ev.Peers]


def _matrix(raw: dict[tuple[str, str], tuple[str, str]], holders: dict[str, str], port: int = 8472) -> Matrix:
    """The matrix's probes that did not pass plainly, the listeners, and the answers of held ports as they came."""
    settled: list[tuple[Probe, str, str, list[JSONScalar]]] = []
    listening = {h: Listening(taken={f"{port}/udp": who}) for h, who in holders.items()}
    peers = ev.Peers()
    for (src, dst), (status, detail) in raw.items():
        p = _probe(src, dst, port)
        if status == "open":
            peers.answered(src, dst, port, holders[dst])
            continue
        settled.append((p, status, detail, list(judge_probe(p, status, detail, listening=listening.get(dst),
                                                                listeners=True, timeout=2.0))))
    return settled, listening, peers


def test_the_conntrack_script_finds_exactly_the_probes_flows_and_sees_tracking() -> None:
    table = (
        "ipv4 2 tcp 6 431999 ESTABLISHED src=10.0.0.9 dst=10.0.0.2 sport=50000 dport=22 src=10.0.0.2 dst=10.0.0.9 "
        "sport=22 dport=50000 [ASSURED] mark=0 zone=0 use=2\n"
        "ipv4 2 udp 17 28 src=10.0.0.1 dst=10.0.0.2 sport=40000 dport=8472 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 "
        "sport=8472 dport=40000 mark=0 zone=0 use=2\n"
    )
    flows = [["10.0.0.1", 40000, "10.0.0.2", 8472], ["10.0.0.3", 40000, "10.0.0.2", 8472],
             ["10.0.0.2", 8472, "10.0.0.1", 40000]]  # the reply direction is not the probe's flow
    assert conntrack.scan(table, flows, "10.0.0.2", 22) == {"found": [0], "tracking": True}
    assert conntrack.scan(table, flows, "10.0.0.2", 2222)["tracking"] is False


def test_helpers_read_the_probe_detail_and_the_holder() -> None:
    assert ev.local_end("10.0.0.1:40000") == ("10.0.0.1", 40000)
    assert ev.local_end("") is None
    assert ev.service("python3 (pid 12)") == ev.service("python3 (pid 40)") == "python3"


def _silent(holder: str = KERNEL) -> ev.Silent:
    return ev.Silent(_probe("w1", "w2"), holder, ("10.0.0.1", 40000))


def test_conntrack_decides_both_ways_and_only_when_it_can() -> None:
    found = ev.Kernel(ev.KernelAnswer(found=[0], tracking=True, udp_timeout=30), read_at=5.0)
    decided = ev.judge_kernel(_silent(), found, 0.0, 0)
    assert not isinstance(decided, str)
    outcome, message = decided
    assert outcome == PASSED and "evidence: conntrack on w2 holds the probe's flow 10.0.0.1:40000 -> " \
                                 "10.0.0.2:8472" in message
    absent = ev.Kernel(ev.KernelAnswer(found=[], tracking=True, udp_timeout=30), read_at=5.0)
    decided = ev.judge_kernel(_silent(), absent, 0.0, 0)
    assert not isinstance(decided, str)
    outcome, message = decided
    assert outcome == FAILED and message.startswith("filtered: the datagram did not pass w2's firewall")
    # Absence proves nothing when tracking is off, when read too late, or without the source port.
    off = ev.Kernel(ev.KernelAnswer(found=[], tracking=False, udp_timeout=30), read_at=5.0)
    assert "tracking is off" in str(ev.judge_kernel(_silent(), off, 0.0, 0))
    late = ev.Kernel(ev.KernelAnswer(found=[], tracking=True, udp_timeout=30), read_at=28.0)
    assert "later than its 30 s" in str(ev.judge_kernel(_silent(), late, 0.0, 0))
    assert "source port is unknown" in str(ev.judge_kernel(_silent(), found, 0.0, None))
    assert "sudo -n is refused" in str(ev.judge_kernel(_silent(), None, 0.0, 0))
    broken = ev.Kernel(ev.KernelAnswer(error="cannot read /proc/net/nf_conntrack: No such file"))
    assert "No such file" in str(ev.judge_kernel(_silent(), broken, 0.0, 0))


def test_the_same_service_answering_elsewhere_fails_the_silent_one() -> None:
    raw = {("w1", "w2"): ("silent", "10.0.0.1:40000"), ("w1", "w3"): ("open", "echo"),
           ("w3", "w2"): ("open", "echo"), ("w2", "w3"): ("open", "echo")}
    holders = {"w2": "python3 (pid 7)", "w3": "python3 (pid 9)"}
    settled, listening, answers = _matrix(raw, holders)
    silent = ev.silent_probes(settled, listening)
    assert [s.probe.key for s in silent] == [_probe("w1", "w2").key]
    peers = ev.judge_peers(silent[0], answers)
    assert peers is not None and peers[0] == FAILED
    assert "on 1 other node (w3)" in peers[1] and "on w2 from 1 other source (w3)" in peers[1]
    assert "(evidence: the service's answers elsewhere)" in peers[1]
    # Another service on the other node is no evidence, nor is a port that nothing answers anywhere.
    holders = {"w2": "python3 (pid 7)", "w3": "dnsmasq (pid 9)"}
    raw = {("w1", "w2"): ("silent", "10.0.0.1:40000"), ("w1", "w3"): ("open", "answer")}
    settled, listening, answers = _matrix(raw, holders)
    assert ev.judge_peers(ev.silent_probes(settled, listening)[0], answers) is None


def test_prove_prefers_conntrack_then_peers_and_keeps_the_rest_unprovable(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = {("w1", "w2"): ("silent", "10.0.0.1:40000"), ("w1", "w3"): ("silent", "10.0.0.1:40001"),
           ("w2", "w3"): ("silent", "10.0.0.2:40002"), ("w3", "w1"): ("open", "echo"),
           ("w2", "w1"): ("silent", "10.0.0.2:40003")}
    holders = {"w1": "python3 (pid 1)", "w2": "python3 (pid 2)", "w3": "python3 (pid 3)"}
    settled, listening, answers = _matrix(raw, holders)
    run: Any = SimpleNamespace(listening=listening)
    judged = {p.key: verdict for p, _, _, verdict in settled}

    def kernel(_run: Any, silent: list[ev.Silent]) -> tuple[dict[str, ev.Kernel], dict[str, int]]:
        # Only w3 lets us read conntrack: it holds w1's flow, not w2's.
        index = {s.probe.key: i for i, s in enumerate(s for s in silent if s.probe.target == "w3")}
        return {"w3": ev.Kernel(ev.KernelAnswer(found=[index[_probe("w1", "w3").key]], tracking=True,
                                                udp_timeout=30), read_at=1.0)}, index

    monkeypatch.setattr(ev, "read_kernel", kernel)
    silent = ev.silent_probes(settled, listening)
    proof = ev.prove(run, silent, judged, answers, 0.0, probes=5, unprovable=len(silent))
    outcome = {k: (v[0], v[2]) for k, v in judged.items()}
    assert outcome[_probe("w1", "w3").key] == (PASSED, False)
    assert outcome[_probe("w2", "w3").key] == (FAILED, False)  # conntrack: no entry
    assert outcome[_probe("w2", "w1").key] == (FAILED, False)  # peers: w1 answers w3
    assert outcome[_probe("w1", "w2").key] == (SKIPPED, True)  # nothing answers w2, no conntrack there
    assert "no other node's service answers the same probe" in str(judged[_probe("w1", "w2").key][1])
    assert proof == {"silent": 4, "conntrack": 2, "peers": 1, "proven": 4, "probes": 5}
    assert ev.proof_line(proof).startswith("nova firewall proof: 4 of 5 probes proven (80.0%)")


def test_without_the_proc_file_the_conntrack_tool_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    def no_file(*_a: Any, **_k: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory")

    line = b"ipv4     2 udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=40000 dport=8472 [UNREPLIED] src=10.0.0.2\n"
    monkeypatch.setattr("builtins.open", no_file)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, line, b""))
    text = conntrack.read_table()
    assert conntrack.scan(text, [["10.0.0.1", 40000, "10.0.0.2", 8472]], "10.0.0.2", 22)["found"] == [0]
    monkeypatch.setattr(subprocess, "run", no_file)
    with pytest.raises(OSError, match="no /proc/net/nf_conntrack and conntrack -L could not run"):
        conntrack.read_table()
