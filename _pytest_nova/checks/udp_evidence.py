"""Evidence for a UDP port a service holds that answered nothing: was the datagram dropped, or ignored.

A service that holds a UDP port (a VXLAN device, a daemon) need not answer an arbitrary datagram, so silence
alone proves nothing either way. Before calling such a probe unprovable, two honest sources are asked, in order:

1. **conntrack** (with ``sudo -n`` on the destination): the kernel confirms a flow's conntrack entry only once its
   first datagram has passed every input hook, the firewall's included. An entry for the probe's exact 5-tuple
   proves the datagram passed; no entry, in a namespace that tracks (the run's own SSH connection is in the
   table) and within the entry's lifetime, proves it did not.
2. **peers**: the same service answers the same probe on other nodes, or this node's service answers it from
   other sources, while this probe got nothing: the path from this source to this node drops it.

:func:`prove` is the firewall matrix's one hook: it rewrites the judgements of such probes in place and returns
counts for the run's summary line. The answers it compares with are kept as they arrive (:class:`Peers`): a
count and the first few names per source and port and per target and port, never the probes themselves.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict, cast

from _pytest_nova import executor
from _pytest_nova.hosts import HostError
from _pytest_nova.model import JSONScalar, Outcome
from _pytest_nova.remote_scripts import run_script
from _pytest_nova.verdicts import FAILED, PASSED, SKIPPED

if TYPE_CHECKING:
    from _pytest_nova.checks.firewall import Listening, MatrixRun, Probe

# Seconds kept between the latest possible probe and the end of an unanswered UDP entry's life: absence only
# counts while a passed datagram's entry would surely still be there.
MARGIN = 3.0
PEERS_NAMED = 3
_PID = re.compile(r"\s*\(pid \d+\)$")


class KernelAnswer(TypedDict, total=False):
    """What ``probes/conntrack.py`` reports for one destination."""

    found: list[int]
    tracking: bool
    udp_timeout: int
    error: str


class Proof(TypedDict):
    """Counts of the evidence step, stored with the matrix."""

    silent: int  # UDP probes of a held port that got no answer
    conntrack: int  # decided by conntrack
    peers: int  # decided by the service's answers elsewhere
    proven: int  # every probe of the matrix judged passed or failed
    probes: int


@dataclass(frozen=True)
class Silent:
    """One probe of a held UDP port that got no answer, with the local end it was sent from."""

    probe: Probe
    holder: str
    local: tuple[str, int] | None


@dataclass
class Kernel:
    """The conntrack answer of one destination, and when the controller had it."""

    answer: KernelAnswer = field(default_factory=lambda: KernelAnswer())
    read_at: float = 0.0


def service(holder: str) -> str:
    """The holder without its pid: ``python3 (pid 12)`` and ``python3 (pid 40)`` are the same service."""
    return _PID.sub("", holder)


def local_end(detail: str) -> tuple[str, int] | None:
    """``198.18.1.5:40123`` (what the probe script reports for a silent UDP probe) as (address, port)."""
    address, _, port = detail.rpartition(":")
    return (address, int(port)) if address and port.isdigit() else None


def silent_probes(settled: Iterable[tuple[Probe, str, str, list[JSONScalar]]],
                  listening: Mapping[str, Listening]) -> list[Silent]:
    """The probes judged unprovable because a service holds the UDP port and answered nothing.

    ``settled`` holds the matrix's probes that did not pass plainly: (probe, status, detail, verdict).
    """
    out = []
    for p, status, detail, entry in settled:
        if p.protocol != "udp" or entry[0] != SKIPPED or not entry[2] or status != "silent":
            continue
        served = listening.get(p.target)
        holder = served.taken.get(f"{p.port}/udp") if served else None
        if holder:
            out.append(Silent(p, holder, local_end(detail)))
    return out


class Sample:
    """How many names, and the first few in sorted order: what a message names, in constant memory."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[str] = []

    def add(self, name: str) -> None:
        """Count ``name`` (each name is added once)."""
        self.count += 1
        if len(self.first) < PEERS_NAMED or name < self.first[-1]:
            bisect.insort(self.first, name)
            del self.first[PEERS_NAMED:]

    def merged(self, other: Sample) -> Sample:
        """Both samples' names (they hold different names)."""
        out = Sample()
        out.count = self.count + other.count
        out.first = sorted(self.first + other.first)[:PEERS_NAMED]
        return out


class Peers:
    """Who got an answer from a held UDP port, kept as samples as the matrix's answers arrive (not per probe).

    Per source and port: the targets whose service answered, by service; per target and port: the sources it
    answered.
    """

    def __init__(self) -> None:
        self.elsewhere: dict[tuple[str, int | None], dict[str, Sample]] = {}
        self.others: dict[tuple[str, int | None], Sample] = {}

    def answered(self, source: str, target: str, port: int | None, holder: str) -> None:
        """``target``'s service ``holder`` answered ``source``'s UDP probe of ``port``."""
        self.elsewhere.setdefault((source, port), {}).setdefault(service(holder), Sample()).add(target)
        self.others.setdefault((target, port), Sample()).add(source)

    def update(self, other: Peers) -> None:
        """Add the answers ``other`` holds (one source's batch: names not seen here yet)."""
        for key, by_service in other.elsewhere.items():
            mine = self.elsewhere.setdefault(key, {})
            for name, sample in by_service.items():
                mine[name] = mine[name].merged(sample) if name in mine else sample
        for key, sample in other.others.items():
            self.others[key] = self.others[key].merged(sample) if key in self.others else sample


def judge_kernel(s: Silent, kernel: Kernel | None, probes_started: float, flow_index: int | None) -> \
        tuple[Outcome, str] | str:
    """The conntrack verdict on one silent probe, or why conntrack cannot tell."""
    p = s.probe
    if kernel is None:
        return "no conntrack evidence (sudo -n is refused on the destination)"
    got = kernel.answer
    if "error" in got:
        return f"no conntrack evidence ({p.target}: {got['error']})"
    if s.local is None or flow_index is None:
        return "no conntrack evidence (the probe's source port is unknown)"
    flow = f"{s.local[0]}:{s.local[1]} -> {p.address}:{p.port}"
    if flow_index in (got.get("found") or []):
        return PASSED, (f"open: the datagram passed {p.target}'s firewall (evidence: conntrack on {p.target} holds "
                        f"the probe's flow {flow}; {s.holder} answers nothing to an arbitrary datagram)")
    if not got.get("tracking"):
        return f"no conntrack evidence (connection tracking is off in {p.target}'s network namespace)"
    lifetime = float(got.get("udp_timeout") or 30)
    if kernel.read_at - probes_started + MARGIN >= lifetime:
        return f"no conntrack evidence (read later than its {lifetime:g} s UDP entry lifetime)"
    return FAILED, (f"filtered: the datagram did not pass {p.target}'s firewall (evidence: conntrack on {p.target} "
                    f"tracks this run's SSH connection but holds no entry for the probe's flow {flow}, "
                    f"read within its {lifetime:g} s lifetime)")


def judge_peers(s: Silent, peers: Peers) -> tuple[Outcome, str] | None:
    """Failed when the same service answers the same probe elsewhere; None when nothing answered it."""
    p = s.probe
    mine = service(s.holder)
    by_service = peers.elsewhere.get((p.source, p.port), {})
    elsewhere = Sample()  # other nodes whose same service answered this source
    for name, sample in by_service.items():
        if mine.startswith("unknown process") or name == mine:
            elsewhere = elsewhere.merged(sample)
    others = peers.others.get((p.target, p.port), Sample())  # other sources this node's service answered
    if not elsewhere.count and not others.count:
        return None
    seen = []
    if elsewhere.count:
        seen.append(f"on {_named(elsewhere, 'other node')}")
    if others.count:
        seen.append(f"on {p.target} from {_named(others, 'other source')}")
    return FAILED, (f"filtered: no answer from {p.target} {p.port}/udp (held by {s.holder}), while the same "
                    f"service answers the same probe {' and '.join(seen)} (evidence: the service's answers "
                    "elsewhere)")


def _named(names: Sample, what: str) -> str:
    shown = ", ".join(names.first) + (f", … ({names.count} in all)" if names.count > PEERS_NAMED else "")
    return f"{names.count} {what}{'s' if names.count != 1 else ''} ({shown})"


def read_kernel(run: MatrixRun, silent: list[Silent]) -> tuple[dict[str, Kernel], dict[str, int]]:
    """Each destination's conntrack answer for its silent probes (sudo -n there), and each probe's flow index."""
    flows: dict[str, list[list[JSONScalar]]] = {}
    index: dict[str, int] = {}
    for s in silent:
        served = run.listening.get(s.probe.target)
        if s.local is None or s.probe.target in run.no_sudo or (served and served.privilege):
            continue
        mine = flows.setdefault(s.probe.target, [])
        index[s.probe.key] = len(mine)
        mine.append([s.local[0], s.local[1], s.probe.address, s.probe.port])
    kernels: dict[str, Kernel] = {}
    inv = run.hosts.inventory

    def ask(target: str) -> None:
        node = inv.host(target)
        params = {"flows": flows[target], "address": node.address, "ssh_port": node.port or inv.ssh.port}
        try:
            got = run_script(run.hosts[target], "conntrack", params, timeout=run.settings.command_timeout, sudo=True)
        except HostError as exc:
            answer = KernelAnswer(error=exc.cause)
        else:
            answer = cast(KernelAnswer, got) if isinstance(got, dict) else KernelAnswer(error="no answer")
        kernels[target] = Kernel(answer, time.monotonic())

    executor.run_all(ask, sorted(flows), 64)
    return kernels, index


def prove(run: MatrixRun, silent: list[Silent], judged: dict[str, list[JSONScalar]], peers: Peers,
          probes_started: float, *, probes: int, unprovable: int) -> Proof:
    """Decide, where evidence allows, the ``silent`` probes (their verdicts in ``judged``, by probe key).

    ``probes`` and ``unprovable`` count the whole matrix before this step, for the share of probes proven.
    """
    kernels, index = read_kernel(run, silent) if silent else ({}, {})
    by_kernel = by_peers = 0
    for s in silent:
        kernel = judge_kernel(s, kernels.get(s.probe.target), probes_started, index.get(s.probe.key))
        if not isinstance(kernel, str):
            judged[s.probe.key] = [kernel[0], kernel[1], False]
            by_kernel += 1
            continue
        decided = judge_peers(s, peers)
        if decided is not None:
            judged[s.probe.key] = [decided[0], decided[1], False]
            by_peers += 1
            continue
        judged[s.probe.key] = [SKIPPED, f"{judged[s.probe.key][1]}; {kernel}; no other node's service answers "
                                        "the same probe", True]
    proven = probes - (unprovable - by_kernel - by_peers)
    return Proof(silent=len(silent), conntrack=by_kernel, peers=by_peers, proven=proven, probes=probes)


def proof_line(proof: Proof) -> str:
    """The evidence line of the terminal summary."""
    probes = proof.get("probes", 0)
    share = f"{100 * proof.get('proven', 0) / probes:.1f}%" if probes else "-"
    return (f"nova firewall proof: {proof.get('proven', 0)} of {probes} probes proven ({share}); "
            f"{proof.get('silent', 0)} UDP probes of a held port got no answer: {proof.get('conntrack', 0)} decided "
            f"by conntrack, {proof.get('peers', 0)} by the service's answers elsewhere, "
            f"{proof.get('silent', 0) - proof.get('conntrack', 0) - proof.get('peers', 0)} cannot be proven")

