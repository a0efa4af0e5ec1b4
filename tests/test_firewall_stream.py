"""The matrix judged as each source answers gives the records judging every probe at once gave; the probe script's
retries with growing patience find what a lossy path hides and still call a real drop.

A generated inventory (a dozen nodes, two workstations, the HTTP proxy) with planted faults of every kind: drops
(TCP, UDP, ICMP, IPIP), a refusing host, an unreachable source, a listener that could not start and one that
died during the probes, ports a service holds, a silent service, a source without sudo, a lossy IPIP path.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from _pytest_nova.catalog import load_catalog
from _pytest_nova.checks import firewall as matrix
from _pytest_nova.checks import udp_evidence
from _pytest_nova.checks.firewall import Judgement, Listening, ListenRequest, Probe, judge_probe
from _pytest_nova.hosts import Access, HostError, Hosts, RemoteHost
from _pytest_nova.inventory import load_inventory
from _pytest_nova.kinds import build
from _pytest_nova.model import JSONScalar, Outcome
from _pytest_nova.options import Settings
from _pytest_nova.plan import PortRuleCheck
from _pytest_nova.probes import portprobe
from _pytest_nova.remote_scripts import SUDO_REFUSED, Script
from _pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED

SETTINGS = Settings(inventory=None, phase="preinstall", json_path=None, probe_timeout=0.1, connect_timeout=5.0,
                    command_timeout=120.0, concurrency=64, waivers=None)
UNREACHED = "worker-5"  # its batch cannot start
NO_SUDO = "worker-4"  # sudo -n refused: it cannot send IPIP
NOT_LISTENING = "infra-2"  # its listener could not start
DIED = "master-3"  # its listener ended during the probes
REFUSING = "ingress-1"  # a firewall rejects every TCP port on it


def _inventory(folder: Path) -> Path:
    nodes = [("master", 3), ("infra", 2), ("ingress", 1), ("worker", 5)]
    lines = ["cluster: {name: gen, dnsBaseDomain: nova.gen.local}",
             "network: {mode: internet, dnsServers: [198.18.0.53], httpProxy: 'http://198.18.0.60:3128'}",
             "ssh: {user: nova-installer, identityFile: ~/.ssh/id_nova}", "nodes:",
             "  - {name: nova-ctl, address: 198.18.1.5, roles: [nova-ctl], connection: local}"]
    i = 10
    for role, count in nodes:
        for k in range(1, count + 1):
            i += 1
            lines.append(f"  - {{name: {role}-{k}, address: 198.18.1.{i}, roles: [{role}]}}")
    lines += ["workstations:", "  - {name: ops-1, address: 198.19.0.7}"]
    path = folder / "gen.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class World:
    """What each probe finds on the planted network, and what each destination's listener reports."""

    def __init__(self, checks: list[PortRuleCheck]) -> None:
        self.name_of = {t.address: t.name for c in checks for t in c.targets}
        self.resent: set[str] = set()

    @staticmethod
    def listening(req: ListenRequest) -> Listening:
        if req.host == NOT_LISTENING:
            return Listening(error=f"{req.host}: ssh: connection refused by 198.18.1.15:22 (is sshd running?)")
        bound = {f"{port}/{proto}" for port, proto in req.ports}
        taken = {}
        if req.host == "master-2":  # a service holds etcd's ports and a silent UDP port
            taken = {label: "etcd (pid 7)" for label in bound if label.startswith("23")}
            taken |= {label: "the kernel (a VXLAN device)" for label in bound if label == "4789/udp"}
        if req.host == "worker-2":  # the same service, answering: evidence that master-2's silence is a drop
            taken = {label: "the kernel (a VXLAN device)" for label in bound if label == "4789/udp"}
        return Listening(bound=frozenset(bound - set(taken)), taken=taken, ipip="ready" if req.ipip else None)

    def final(self, source: str, target: str, port: int | None, protocol: str) -> tuple[str, str]:
        """The answer after every retry, IPIP as its receiver would tell."""
        if protocol == "ipip":
            if source == NO_SUDO:
                return "error", "no raw socket for IP protocol 4: Operation not permitted"
            return ("sent", "") if (source, target) == ("worker-2", "worker-1") or target == NOT_LISTENING else (
                "seen", "")
        if (protocol, port, target) == ("tcp", 2379, "master-1") and source.startswith("worker"):
            return "filtered", ""
        if (protocol, port, target) == ("udp", 4789, "worker-3") and source != "nova-ctl":
            return "silent", ""
        if protocol == "udp" and target == "master-2" and port == 4789:
            return "silent", ""
        if protocol == "icmp" and target == "infra-1":
            return "filtered", ""
        if protocol == "tcp" and target == REFUSING:
            return "refused", "Connection refused"
        if target == DIED and protocol == "tcp" and port == 6443:
            return "refused", "Connection refused"  # after its listener died
        if target == "proxy" and source == "worker-3":
            return "refused", "Connection refused"
        if protocol == "udp" and target == NOT_LISTENING:
            return "refused", "Connection refused"
        return "open", ""

    def answer(self, source: str, address: str, port: int | None, protocol: str) -> str | list[str]:
        status, detail = self.final(source, self.name_of[address], port, protocol)
        if protocol == "ipip" and status == "seen":
            return "sent"
        return [status, detail] if detail else status

    def seen_at(self, host: str, sources: list[str]) -> list[list[str]]:
        """The tokens ``host``'s receiver has; master-1 -> worker-1 is lost on the first send, seen when sent again."""
        lossy = ("master-1", "worker-1")

        def arrived(source: str) -> bool:
            if (source, host) == lossy:
                return source in self.resent
            return self.final(source, host, None, "ipip")[0] == "seen"

        return [["198.18.0.1", s] for s in sources if arrived(s)]


class PlantedRun(matrix.MatrixRun):
    """The matrix engine with the network replaced by :class:`World` (no ssh, no scripts)."""

    def __init__(self, hosts: Hosts, checks: list[PortRuleCheck], folder: Path, world: World) -> None:
        super().__init__(hosts, checks, SETTINGS, folder)
        self.world = world
        self.ipip_sources = sorted({str(c.source) for c in checks if c.protocol == "ipip"})

    def _listen(self, req: ListenRequest) -> None:
        self.listening[req.host] = World.listening(req)
        if not self.listening[req.host].error:
            self.receivers[req.host] = cast(Script, object())

    def _run_probe(self, host: RemoteHost, params: dict[str, object], sudo: bool) -> matrix.ProbeAnswer:
        if host.name == UNREACHED:
            raise HostError(host.name, "ssh: connection timed out after 5 s")
        if host.name == NO_SUDO:
            self.no_sudo[host.name] = SUDO_REFUSED
        groups = cast(list[list[Any]], params["groups"])
        results = [self.world.answer(host.name, a, port, protocol) for port, protocol, _, addresses in groups
                   for a in addresses]
        return {"results": results, "passes": [len(results), 0, 0]}

    def _resend_ipip(self, source: str) -> None:
        self.world.resent.add(source)

    def _still_listening(self) -> None:
        self.listening[DIED] = Listening(error=f"{DIED}: the listener ended during the probes: gone")

    def _seen_at(self, host: str) -> list[list[str]]:
        return self.world.seen_at(host, self.ipip_sources)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hosts, list[PortRuleCheck], World]]:
    folder = tmp_path_factory.mktemp("planted")
    inv = load_inventory(_inventory(folder))
    checks = build(load_catalog(), inv).of_type(PortRuleCheck, "preinstall")
    yield Hosts(inv, Access(5, 120, folder)), checks, World(checks)


def all_at_once(hosts: Hosts, checks: list[PortRuleCheck], world: World) -> dict[str, list[Judgement]]:
    """The reference: every probe's final answer judged once all are in, then the UDP evidence over all of them."""
    known = matrix.inventory_hosts(hosts.inventory)
    listening = {h: World.listening(r) for h, r in matrix.listen_requests(checks, listeners=True, known=known).items()}
    listening[DIED] = Listening(error=f"{DIED}: the listener ended during the probes: gone")
    every: dict[str, tuple[Probe, str, str, list[JSONScalar]]] = {}
    peers = udp_evidence.Peers()
    for source, probes in matrix.probes_by_source(checks).items():
        for p in probes:
            status, detail = world.final(source, p.target, p.port, p.protocol)
            if source == UNREACHED:
                status, detail = "unreached", "ssh: connection timed out after 5 s"
            inside = (p.target, p.address) in known
            served = listening.get(p.target) if inside else None
            judged = judge_probe(p, status, detail, listening=served, listeners=inside, timeout=SETTINGS.probe_timeout,
                                 source_sudo=SUDO_REFUSED if source == NO_SUDO else None)
            every[p.key] = (p, status, detail, [judged.outcome, judged.message, judged.unprovable])
            holder = served.taken.get(p.label) if served and p.protocol == "udp" else None
            if status == "open" and holder:
                peers.answered(source, p.target, p.port, holder)
    silent = udp_evidence.silent_probes(every.values(), listening)
    verdicts = {key: row[3] for key, row in every.items()}
    udp_evidence.prove(cast(matrix.MatrixRun, None), silent, verdicts, peers, 0.0, probes=len(every), unprovable=0)
    out = {}
    for check in checks:
        keys = [matrix.probe_key(str(check.source), t.name, check.port, str(check.protocol)) for t in check.targets]
        out[check.id] = [Judgement(Outcome(str(verdicts[k][0])), str(verdicts[k][1]), verdicts[k][2] is True)
                         for k in keys]
    return out


def test_judging_as_answers_arrive_gives_the_records_of_judging_all_at_once(
        planted: tuple[Hosts, list[PortRuleCheck], World], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hosts, checks, world = planted
    # No conntrack on the planted hosts: the service's answers elsewhere decide the silent UDP probes.
    monkeypatch.setattr(udp_evidence, "read_kernel", lambda run, silent: ({}, {}))
    stored = PlantedRun(hosts, checks, tmp_path, world).compute()
    port_matrix = matrix.PortMatrix(stored, tmp_path)
    got = {c.id: [matrix.Judgement(v.outcome, v.message, v.unprovable) for v in port_matrix.verdicts(c)]
           for c in checks}
    expected = all_at_once(hosts, checks, world)
    assert got == expected
    outcomes = [j for js in expected.values() for j in js]
    # Every kind of planted fault is in there, and so are passes that name a port's holder.
    assert {j.outcome for j in outcomes} == {PASSED, FAILED, SKIPPED, ERROR}
    assert any(j.message == "open: port already in use by etcd (pid 7)" for j in outcomes)
    assert any(j.message.startswith("filtered: the IPIP packet did not reach worker-1") for j in outcomes)
    assert any("the listener ended during the probes" in j.message for j in outcomes)
    assert any("(evidence: the service's answers elsewhere)" in j.message for j in outcomes)
    # Counts per rule add up to every probe once; only what is not a plain pass is in the file.
    probes = sum(len(ps) for ps in matrix.probes_by_source(checks).values())
    assert stored["probes"] == probes == sum(n for c in stored["counts"].values() for n in c.values())
    lines = (tmp_path / matrix.EXCEPTIONS_FILE).read_text().splitlines()
    stored_verdicts = sum(len(json.loads(line.split("\t", 1)[1])) for line in lines)
    not_passed = {(c.source, t.name, c.port, c.protocol) for c in checks
                  for t, j in zip(c.targets, expected[c.id], strict=True) if j.outcome != PASSED}
    assert 0 < len(lines) <= stored["sources"] and stored_verdicts == len(not_passed)
    assert stored["dropped"] > 0 and stored["passes"][1] > 0  # the IPIP probes sent again
    assert set(stored["taken"]) == {"master-2", "worker-2"}  # only hosts where a service holds a port


def test_the_summary_line_counts_each_pass() -> None:
    value = matrix.Matrix(probes=100, sources=3, destinations=4, seconds=1.5, second_pass=7, passes=[100, 7, 2],
                          dropped=2, counts={}, checks=[], taken={}, exceptions=matrix.EXCEPTIONS_FILE,
                          phases={"listeners": 0.5})
    assert matrix.summary_line(value) == (
        "nova firewall matrix: 100 probes from 3 sources to 4 listening hosts in 1.50 s; 7 probed a second time, "
        "2 a third time before 2 were called dropped (listeners 0.50 s)")


class _LossyEcho:
    """A UDP echo server on loopback that ignores the first ``lose`` datagrams of each probe (a lossy path)."""

    def __init__(self, lose: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lose, self.count, self.stop = lose, 0, False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(2048)
            except OSError:
                continue
            self.count += 1
            if self.count > self.lose:
                self.sock.sendto(data, peer)

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


def test_portprobe_retries_no_answer_with_growing_patience_and_counts_each_pass() -> None:
    lossy = _LossyEcho(lose=portprobe.UDP_SENDS)  # every datagram of the first pass is lost
    silent = _LossyEcho(lose=10**6)  # a real drop: never answers
    try:
        params = {"timeout": 0.3, "retries": [[2.0, 50.0], [4.0, 20.0]], "magic": "m"}
        prober = portprobe.Prober(params)
        probes = [portprobe.Probe("lossy", "127.0.0.1", lossy.port, "udp", "t1", True),
                  portprobe.Probe("dropped", "127.0.0.1", silent.port, "udp", "t2", True),
                  portprobe.Probe("not-retried", "127.0.0.1", silent.port, "udp", "t3", False)]
        started = time.monotonic()
        results = prober.run(probes)
        took = time.monotonic() - started
    finally:
        lossy.close()
        silent.close()
    assert {k: v[0] for k, v in results.items()} == {"lossy": "open", "dropped": "silent", "not-retried": "silent"}
    assert results["dropped"][1].startswith("127.0.0.1:")  # the last try's local end, for conntrack
    # Pass 1: all three; pass 2: the lossy and the dropped one; pass 3: only the drop, at 4 × the timeout.
    assert prober.passes == [3, 2, 1]
    assert 0.3 + 0.6 + 1.2 <= took < 5


def test_portprobe_starts_no_retry_that_cannot_end_within_its_budget() -> None:
    silent = _LossyEcho(lose=10**6)
    try:
        prober = portprobe.Prober({"timeout": 0.3, "retries": [[2.0, 50.0], [4.0, 20.0]], "budget": 1.0})
        results = prober.run([portprobe.Probe("dropped", "127.0.0.1", silent.port, "udp", "t", True)])
    finally:
        silent.close()
    assert results["dropped"][0] == "silent" and prober.passes == [1, 1, 0]
