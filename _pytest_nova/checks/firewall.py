"""The firewall matrix: every (source, target, port, protocol) of the selected port rules, probed in one batch.

Before installation nothing listens on the documented ports, so the engine starts one temporary listener
script per destination host (``probes/listener.py``: TCP accept, UDP echo, an IPIP receiver) on the free ports,
then runs one probe script per source host (``probes/portprobe.py``) with all that host's probes at once, every
source in parallel, and closes the listeners whatever happens. After installation the same holds: a port a
service holds is probed as it is (the listener names its owner), and a documented port that no service uses on
this node (the Hubble relay runs on one node, only one of 4789 and 8472 carries the overlay) gets a temporary
listener, so the firewall is proven there too rather than a refusal taken for a drop. IPIP receivers bind
nothing and run in every phase.

The whole matrix is computed by one process of the run (``runcache.once``) and read by the pytest-xdist workers;
the ``test_port`` items only turn it into verdicts.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import NamedTuple, NotRequired, TypedDict, TypeVar, cast

import pytest

from _pytest_nova import executor, runcache
from _pytest_nova.checks.udp_evidence import Peers, Proof, proof_line, prove, silent_probes
from _pytest_nova.hosts import HostError, Hosts, Reason, RemoteHost, Stream
from _pytest_nova.inventory import Inventory
from _pytest_nova.model import JSONScalar, JSONValue, Outcome
from _pytest_nova.options import Settings
from _pytest_nova.plan import PortRuleCheck, Target
from _pytest_nova.remote_scripts import SUDO_REFUSED, Script, run_script, start_and_read, sudo_refused
from _pytest_nova.remote_scripts import source as script_text
from _pytest_nova.session import selected_checks, session_of
from _pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, UNPROVABLE, Verdict

CACHE_KEY = "firewall-matrix"
LISTEN_PROTOCOLS = ("tcp", "udp")
# Controller threads: every source and destination at once, up to this many (each is one ssh session).
MAX_PARALLEL_HOSTS = 128
READY_MARGIN = 15.0  # on top of the connect timeout: python3 start and binding a few dozen ports
# Probes one source keeps in flight to any one destination: bounds the load the batches put on a host.
PER_TARGET = 8
# Apparent drops are probed again with growing patience before they are called drops: per later pass, the
# timeout times this factor and at most this many retries started per second by one source (paced, so the
# retries cannot cause the loss they look for). TCP and ICMP probes are retried inside their source's batch as
# soon as they time out; IPIP probes (only the receiver can tell) in later sessions of their own.
RETRY_PASSES = ((1.5, 50.0), (3.0, 20.0))
# Probes in flight over all the sources probing at once: each batch gets its share (pacing the first pass).
IN_FLIGHT = 2048
MIN_CONCURRENCY = 8
# Sources sending their IPIP probes again at a time.
RETRY_HOSTS = 16
# A batch stops starting retries this long before the command timeout, so its answer always arrives.
ANSWER_MARGIN = 10.0
# How the verdict of a probe called dropped begins.
DROP_MESSAGES = ("filtered: no answer", "filtered: the IPIP packet")
# The run folder's file of the verdicts that are not a plain pass: one line per source.
EXCEPTIONS_FILE = "firewall-matrix.exceptions"

T = TypeVar("T")


def probe_key(source: str, target: str, port: int | None, protocol: str) -> str:
    """The cache key of one probe (a JSON object key)."""
    return f"{source}>{target}>{'' if port is None else port}/{protocol}"


def port_label(port: int | None, protocol: str) -> str:
    """``2379/tcp``, or ``icmp`` for a rule without a port."""
    return protocol if port is None else f"{port}/{protocol}"


@dataclass(frozen=True, slots=True)
class Probe:
    """One (source, target, port, protocol) of the matrix; ``rule`` is the requirement it was planned for."""

    source: str
    target: str
    address: str
    port: int | None
    protocol: str
    rule: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        """The probe's name in the run: ``source>target>port/protocol``."""
        return probe_key(self.source, self.target, self.port, self.protocol)

    @property
    def label(self) -> str:
        """``2379/tcp``, ``icmp``."""
        return port_label(self.port, self.protocol)


@dataclass(frozen=True)
class ListenRequest:
    """What one destination host must serve during the probes."""

    host: str
    address: str
    ports: tuple[tuple[int, str], ...]
    ipip: bool


@dataclass
class Listening:
    """What a destination's listener reported: ports it bound, ports already taken (by whom), failures."""

    bound: frozenset[str] = frozenset()
    taken: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    ipip: str | None = None  # "ready", or why there is no receiver
    error: str | None = None  # the listener could not start at all
    privilege: str | None = None  # why the listener runs without root (sudo -n refused), if it does

    def needs_root(self) -> str:
        """What, on this host, could not be served without root: for the "cannot be proven" message."""
        parts = []
        if self.ipip and self.ipip != "ready":
            parts.append("the IPIP receiver")
        low = sorted({int(k.split("/")[0]) for k, why in self.failed.items() if "needs root" in why})
        if low:
            start = next((why.rsplit(" ", 1)[-1].rstrip(")") for why in self.failed.values()
                          if "unprivileged_port_start" in why), "1024")
            parts.append(f"listeners on ports below {start}")
        if not parts:
            return "the listener needs it"
        return " and ".join(parts) + (" need it" if len(parts) > 1 else " needs it")


def checks_by_source(checks: Iterable[PortRuleCheck]) -> dict[str, list[PortRuleCheck]]:
    """The port-rule checks of each source host, in plan order."""
    out: dict[str, list[PortRuleCheck]] = {}
    for check in checks:
        if check.source is not None and check.protocol is not None:
            out.setdefault(check.source, []).append(check)
    return out


def source_probes(checks: Iterable[PortRuleCheck]) -> list[Probe]:
    """The probes of one source's checks, each (target, port, protocol) once, named after its first rule.

    Made when the source's batch starts and dropped once its answers are judged: the matrix never holds the
    probes of all sources (8 million at 1,000 nodes).
    """
    seen: set[tuple[str, int | None, str]] = set()
    out: list[Probe] = []
    for check in checks:
        source, port, protocol, rule = str(check.source), check.port, str(check.protocol), check.requirement.id
        for t in check.targets:
            k = (t.name, port, protocol)
            if k not in seen:
                seen.add(k)
                out.append(Probe(source, t.name, t.address, port, protocol, rule))
    return out


def probes_by_source(checks: Iterable[PortRuleCheck]) -> dict[str, list[Probe]]:
    """Every probe of ``checks``, by source host, each (source, target, port, protocol) once (small plans, tests)."""
    return {s: source_probes(cs) for s, cs in checks_by_source(checks).items()}


def inventory_hosts(inv: Inventory) -> frozenset[tuple[str, str]]:
    """(name, address) of every inventory host: the only targets the engine starts anything on."""
    return frozenset((h.name, h.address) for h in (*inv.nodes, *inv.workstations))


def listen_requests(
    checks: Iterable[PortRuleCheck], *, listeners: bool, known: Collection[tuple[str, str]] | None = None
) -> dict[str, ListenRequest]:
    """Per destination: the ports to serve (only when ``listeners``) and whether an IPIP receiver is needed.

    With ``known`` (see :func:`inventory_hosts`) a target that is not one of them (the HTTP proxy) gets nothing:
    it is probed as it is, the service already listening.
    """
    # Targets by (port, protocol) first: the per-destination work below then runs once per port, not per probe.
    wanted: dict[tuple[int | None, str], dict[str, str]] = {}
    for check in checks:
        protocol = str(check.protocol)
        if protocol == "ipip" or (listeners and protocol in LISTEN_PROTOCOLS and check.port is not None):
            names = wanted.setdefault((check.port, protocol), {})
            for t in check.targets:
                names[t.name] = t.address
    ports: dict[str, set[tuple[int, str]]] = {}
    ipip: set[str] = set()
    address: dict[str, str] = {}
    for (port, protocol), names in wanted.items():
        for name, addr in names.items():
            if known is not None and (name, addr) not in known:
                continue
            address[name] = addr
            if protocol == "ipip":
                ipip.add(name)
            elif port is not None:
                ports.setdefault(name, set()).add((port, protocol))
    hosts = sorted(set(ports) | ipip)
    return {h: ListenRequest(h, address[h], tuple(sorted(ports.get(h, ()))), h in ipip) for h in hosts}


class ListenerReady(TypedDict, total=False):
    """The listener script's first answer: the ports it bound, those a service holds, those it could not bind."""

    bound: list[str]  # "2379/tcp"
    taken: dict[str, str]  # port label -> the process holding it
    failed: dict[str, str]  # port label -> why it could not be bound
    ipip: str | None  # "ready", or why there is no IPIP receiver


class ProbeAnswer(TypedDict, total=False):
    """The probe script's answer: each probe's status word (and detail); the probes started per pass."""

    results: list[str | list[str]]  # in the order of the groups' addresses: a status, or [status, detail]
    passes: list[int]


class Matrix(TypedDict):
    """The computed matrix as the run cache stores it: counts, and where the verdicts that are not a plain pass are.

    A plain pass is ``open`` (``open: port already in use by …`` where ``taken`` names the holder); every other
    verdict is a line of the run folder's ``exceptions`` file (see :class:`Exceptions`).
    """

    probes: int
    sources: int
    destinations: int
    seconds: float
    second_pass: int  # probes started a second time (the first of :data:`RETRY_PASSES`)
    passes: list[int]  # probes started in each pass: the first, then each retry
    dropped: int  # probes called dropped after every pass
    counts: dict[str, dict[str, int]]  # requirement id -> outcome -> probes
    checks: list[str]  # ids of the checks whose probes the matrix holds
    taken: dict[str, dict[str, str]]  # host -> port label -> the process holding it
    exceptions: str  # file name in the run folder
    phases: NotRequired[dict[str, float]]  # seconds per phase: listeners, probes, IPIP retries, closing
    proof: NotRequired[Proof]  # how silent UDP probes of held ports were decided (checks/udp_evidence.py)


class Judgement(NamedTuple):
    """The outcome of one probe and its message; ``unprovable`` when skipped because nothing could tell."""

    outcome: Outcome
    message: str
    unprovable: bool = False


def _patience(timeout: float) -> str:
    """The waits of the later passes: ``3 s, 6 s``."""
    return ", ".join(f"{timeout * factor:g} s" for factor, _rate in RETRY_PASSES)


def _unproven(why: str) -> Judgement:
    return Judgement(SKIPPED, f"skipped: {UNPROVABLE}: {why}", unprovable=True)


def judge_probe(
    p: Probe,
    status: str,
    detail: str,
    *,
    listening: Listening | None,
    listeners: bool,
    timeout: float,
    source_sudo: str | None = None,
) -> Judgement:
    """Outcome and message of one probe, from the probe script's status and what the target served.

    ``status`` is the probe script's word (open, refused, unreachable, blocked, filtered, silent, sent, seen,
    unresolved, unprovable, error) or ``unreached`` with the source's HostError in ``detail``. A probe that
    looked dropped has been probed a second time, slower, before it gets here. ``source_sudo`` is why sudo
    was refused on the source, if it was.
    """
    label = port_label(p.port, p.protocol)
    where = f"{p.target} {label}"
    if status == "unreached":
        return Judgement(ERROR, f"error: cannot probe from {p.source}: {detail}")
    if status == "unresolved":
        return Judgement(FAILED, f"name not resolved: {p.address} on {p.source}: {detail}")
    if status == "unprovable":
        why = f"; {source_sudo}" if source_sudo else ""
        return _unproven(f"{p.source}: {detail}{why}")
    if p.protocol == "ipip":
        return _judge_ipip(p, status, detail, listening, timeout, source_sudo)
    taken = listening.taken.get(label) if listening else None
    ours = bool(listening and label in listening.bound)
    missing = None  # why the temporary listener this probe needed is not there
    if listeners and p.protocol in LISTEN_PROTOCOLS and not ours and not taken:
        missing = (listening.error or listening.failed.get(label)) if listening else None
        missing = missing or "no listener was requested"
    if status == "open":
        return Judgement(PASSED, f"open: port already in use by {taken}" if taken else "open")
    # TCP and ICMP always answer when the path is open (an RST, a reply); UDP only when our echo listener is there.
    if status == "filtered" or (status == "silent" and ours):
        return Judgement(FAILED,
                         f"filtered: no answer within {timeout} s, nor when probed again ({_patience(timeout)})")
    if status == "blocked":
        return Judgement(FAILED,
                         f"filtered: blocked on {p.source} itself ({detail}: a local firewall drops outgoing packets)")
    if status == "unreachable":
        return Judgement(FAILED, f"unreachable: {detail} (a router or firewall rejected it, or {p.target} is down)")
    if missing and listening is not None and listening.privilege and "needs root" in missing:
        return _unproven(f"{p.target}: {listening.privilege}: {listening.needs_root()}")
    if missing:
        return Judgement(ERROR, f"error: no temporary listener on {where} ({missing}); the probe saw: {status}")
    if status == "refused":
        if ours:
            kind = "ICMP port unreachable" if p.protocol == "udp" else "connection reset"
            return Judgement(FAILED,
                             f"refused: {kind} although a temporary listener was bound (a firewall rejects it)")
        return Judgement(FAILED, f"refused: nothing listens on {where} (the packet arrived; is the service running?)")
    if status == "silent":
        owner = f"held by {taken}" if taken else "the service does not answer arbitrary datagrams"
        return _unproven(f"no UDP answer and no ICMP error from {where} ({owner})")
    return Judgement(ERROR, f"error: {detail or status}")


def _judge_ipip(
    p: Probe, status: str, detail: str, listening: Listening | None, timeout: float, source_sudo: str | None
) -> Judgement:
    if status == "seen":
        return Judgement(PASSED, "open")  # the receiver had it: proof, even if the receiver ended later
    if listening is None or listening.error:
        reason = listening.error if listening else "no receiver was requested"
        return Judgement(ERROR, f"error: no IPIP receiver on {p.target} ({reason})")
    if listening.ipip != "ready":
        if listening.privilege:
            return _unproven(f"{p.target}: {listening.privilege}: {listening.needs_root()}")
        return _unproven(f"{listening.ipip} on {p.target}")
    if status == "sent":
        return Judgement(FAILED,
                         f"filtered: the IPIP packet did not reach {p.target} within {timeout} s, nor when sent again "
                         f"({_patience(timeout)})")
    if status == "error" and "raw socket" in detail:
        cause = source_sudo or "sudo -n"
        return _unproven(f"{p.source}: {cause}: sending IPIP needs it ({detail})")
    return judge_probe(p, status, detail, listening=None, listeners=False, timeout=timeout)


class Streams:
    """Every remote script this run started; :meth:`close_all` ends them, also those that start later."""

    def __init__(self) -> None:
        self._open: set[Stream] = set()
        self._lock = threading.Lock()
        self._closed = False

    def add(self, stream: Stream) -> None:
        """Track ``stream``; if the run is already being torn down, end it at once."""
        with self._lock:
            if not self._closed:
                self._open.add(stream)
                return
        stream.kill()

    def done(self, stream: Stream, timeout: float = 10) -> None:
        """Close one stream normally (its stdin ends, the script exits)."""
        with self._lock:
            self._open.discard(stream)
        stream.close(timeout)

    @property
    def closing(self) -> bool:
        """Whether the run is being torn down (nothing new may start)."""
        return self._closed

    def close_all(self) -> None:
        """Close every stream at once: stdin first, so the remote scripts exit and release their ports.

        Their output is left to the threads that may still be reading it (a batch waiting for its listener's
        answer): they see its end and stop.
        """
        with self._lock:
            self._closed = True
            streams, self._open = list(self._open), set()
        for s in streams:
            s.close_input()
        # One deadline for all: waiting up to 5 s for each in turn made a large run's Ctrl-C take minutes.
        deadline = time.monotonic() + 5
        for s in streams:
            s.end(timeout=max(0.0, deadline - time.monotonic()))


def _parallel(items: Sequence[T], work: Callable[[T], None], limit: int = MAX_PARALLEL_HOSTS) -> None:
    """Run ``work`` on every item at once; on Ctrl-C stop waiting (the caller's cleanup ends the scripts)."""
    executor.run_all(work, items, limit)


def suspect(status: str, listening: Listening | None, p: Probe) -> bool:
    """Whether a first-pass answer would be judged a drop, so it gets a second, slower look first.

    Only where a drop is what would be reported: a target without a listener or receiver is judged
    unprovable or an error whatever the probe saw, so probing it again would only cost time.
    """
    if status == "filtered":
        return True
    if status == "sent":
        return bool(listening and listening.ipip == "ready")
    return status == "silent" and p.protocol == "udp" and bool(listening and port_label(p.port, p.protocol)
                                                                in listening.bound)


def plain_pass(taken: Mapping[str, Mapping[str, str]], target: str, label: str) -> Judgement:
    """The verdict of an open probe: ``open``, naming the process when a service holds the port.

    ``taken`` holds inventory hosts only (by name); a target outside the inventory is never in it.
    """
    holder = taken.get(target, {}).get(label)
    return Judgement(PASSED, f"open: port already in use by {holder}" if holder else "open")


class Exceptions:
    """The verdicts that are not a plain pass, one line per source: ``source<TAB>{"target>port/protocol": verdict}``.

    Written by the process that computes the matrix, one source at a time; read by any process one source at a
    time (a few sources kept), so no process holds them all.
    """

    KEEP = 4

    def __init__(self, path: Path) -> None:
        self.path = path
        self._index: dict[str, list[int]] | None = None
        self._cache: dict[str, dict[str, list[JSONScalar]]] = {}

    @staticmethod
    def line(source: str, verdicts: Mapping[str, Sequence[JSONScalar]]) -> str:
        """One source's line of the file."""
        return f"{source}\t{json.dumps(verdicts, separators=(',', ':'))}\n"

    def of(self, source: str) -> dict[str, list[JSONScalar]]:
        """The stored verdicts of ``source`` by ``target>port/protocol`` (empty when all passed plainly)."""
        if source in self._cache:
            return self._cache[source]
        if self._index is None:
            self._index = {}
            try:
                with open(self.path, "rb") as f:
                    offset = 0
                    for raw in f:
                        self._index.setdefault(raw.split(b"\t", 1)[0].decode(), []).append(offset)
                        offset += len(raw)
            except FileNotFoundError:
                pass
        found: dict[str, list[JSONScalar]] = {}
        if self._index.get(source):
            with open(self.path, "rb") as f:
                for offset in self._index[source]:
                    f.seek(offset)
                    found.update(json.loads(f.readline().split(b"\t", 1)[1]))
        if len(self._cache) >= self.KEEP:
            self._cache.pop(next(iter(self._cache)))
        self._cache[source] = found
        return found


class MatrixRun:
    """One computation of the matrix: listeners, probes judged as each source answers, retries, cleanup.

    What the run keeps is flat in the number of probes: per rule the count of plain passes, and the probes that
    did not pass plainly with their answers (judged again at the end, when every listener is known to have
    outlived the probes). IPIP probes wait for their receivers as a set of targets per source.
    """

    def __init__(self, hosts: Hosts, checks: Sequence[PortRuleCheck], settings: Settings,
                 folder: Path | None = None) -> None:
        self.hosts, self.settings = hosts, settings
        self.folder = folder
        # In every phase: after installation the free ports still need a listener to prove the firewall.
        self.listeners = True
        self.by_source = checks_by_source(checks)
        self.check_ids = [c.id for cs in self.by_source.values() for c in cs]
        # Targets outside the inventory (the HTTP proxy) are probed as they are, with no listener.
        self.known = inventory_hosts(hosts.inventory)
        self.requests = listen_requests(checks, listeners=self.listeners, known=self.known)
        # Per run, so a listener never echoes or records anything but this run's probes.
        self.magic = f"nova-probe-{secrets.token_hex(4)}"
        self.streams = Streams()
        self.listening: dict[str, Listening] = {}
        self.receivers: dict[str, Script] = {}
        self.no_sudo: dict[str, str] = {}  # host -> why sudo -n was refused there
        self.probes = 0
        self.passed: Counter[str] = Counter()  # requirement id -> plain passes
        self.unsettled: dict[str, list[tuple[Probe, str, str]]] = {}  # source -> (probe, status, detail)
        self.ipip_sent: dict[str, dict[str, Probe]] = {}  # source -> target -> IPIP probe not yet seen there
        self.passes = [0] * (1 + len(RETRY_PASSES))
        self.dropped = 0
        self.lock = threading.Lock()
        self.phases: dict[str, float] = {}  # seconds per phase of :meth:`compute`, for the summary line
        self._phase_start = 0.0
        self.probes_started = 0.0  # when the first probe may have left: bounds the age of a conntrack entry
        self.peers = Peers()  # who got an answer from a held UDP port (checks/udp_evidence.py)
        self.proof = Proof(silent=0, conntrack=0, peers=0, proven=0, probes=0)

    def _phase(self, name: str) -> None:
        """Close the phase called ``name``: its time since the previous one ended."""
        now = time.monotonic()
        self.phases[name] = round(now - self._phase_start, 3)
        self._phase_start = now

    def compute(self) -> Matrix:
        """Probe everything; return the counts, write the verdicts that are not a plain pass (:class:`Matrix`)."""
        started = self._phase_start = time.monotonic()
        try:
            _parallel(sorted(self.requests.values(), key=lambda r: r.host), self._listen)
            self._phase("listeners")
            self.probes_started = time.monotonic()
            sources = sorted(self.by_source)
            _parallel(list(enumerate(sources)), self._probe)
            self._collect_ipip(self.settings.probe_timeout)
            self._phase("probes")
            self._retry_ipip()
            self._phase("ipip retries")
            self._still_listening()
        finally:
            self.streams.close_all()
            self._phase("closing")
        counts, taken = self._settle()
        return Matrix(probes=self.probes, sources=len(self.by_source), destinations=len(self.requests),
                      seconds=round(time.monotonic() - started, 3), second_pass=self.passes[1],
                      passes=self.passes, dropped=self.dropped, counts=counts, checks=self.check_ids, taken=taken,
                      exceptions=EXCEPTIONS_FILE, phases=self.phases, proof=self.proof)

    def exceptions_path(self) -> Path:
        """Where the verdicts that are not a plain pass go (the run folder; a temporary one without)."""
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="nova-matrix-"))
        return self.folder / EXCEPTIONS_FILE

    def _taken(self) -> dict[str, dict[str, str]]:
        return {h: dict(sorted(lst.taken.items())) for h, lst in sorted(self.listening.items()) if lst.taken}

    def _inside(self, p: Probe) -> bool:
        return (p.target, p.address) in self.known

    def judge(self, p: Probe, status: str, detail: str) -> Judgement:
        """The verdict of one answer, with what the run knows now of the target's listener and the source's sudo."""
        inside = self._inside(p)
        return judge_probe(p, status, detail, listening=self.listening.get(p.target) if inside else None,
                           listeners=self.listeners and inside, timeout=self.settings.probe_timeout,
                           source_sudo=self.no_sudo.get(p.source))

    def verdict(self, p: Probe, status: str, detail: str) -> list[JSONScalar]:
        """:meth:`judge` as stored: ``[outcome, message, unprovable]``."""
        judged = self.judge(p, status, detail)
        return [str(judged.outcome), judged.message, judged.unprovable]

    def _settle(self) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, str]]]:
        """Judge what did not pass plainly, now that every listener is checked; write it, one source at a time."""
        taken = self._taken_of
        counts: dict[str, Counter[str]] = {rule: Counter({str(PASSED): n}) for rule, n in self.passed.items()}
        for source, targets in self.ipip_sent.items():
            self.unsettled.setdefault(source, []).extend((p, "sent", "") for p in targets.values())
        self.ipip_sent = {}
        settled: dict[str, list[tuple[Probe, str, str, list[JSONScalar]]]] = {
            source: [(p, status, detail, self.verdict(p, status, detail))
                     for p, status, detail in self.unsettled[source]] for source in sorted(self.unsettled)}
        self.unsettled = {}
        every = [row for rows in settled.values() for row in rows]
        silent = silent_probes(every, self.listening)
        keys = {s.probe.key for s in silent}
        judged = {p.key: v for p, _, _, v in every if p.protocol == "udp" and p.key in keys}
        unprovable = sum(1 for *_, v in every if v[2] is True)
        self.proof = prove(self, silent, judged, self.peers, self.probes_started, probes=self.probes,
                           unprovable=unprovable)
        path = self.exceptions_path()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w") as out:
            for source, rows in settled.items():
                verdicts: dict[str, list[JSONScalar]] = {}
                for p, _status, _detail, verdict in rows:
                    v = judged.get(p.key, verdict) if p.protocol == "udp" else verdict
                    final = Judgement(Outcome(str(v[0])), str(v[1]), v[2] is True)
                    counts.setdefault(p.rule, Counter())[str(final.outcome)] += 1
                    if final.outcome == FAILED and final.message.startswith(DROP_MESSAGES):
                        self.dropped += 1
                    if final != plain_pass(taken, p.target, p.label):
                        verdicts[f"{p.target}>{p.label}"] = list(final)
                if verdicts:
                    out.write(Exceptions.line(source, verdicts))
        tmp.replace(path)
        return {rule: dict(c) for rule, c in sorted(counts.items())}, taken

    def _lifetime(self) -> float:
        # A safety net only: normally the listener ends when its stdin closes.
        return 2 * self.settings.command_timeout + 4 * self.settings.connect_timeout + 60

    def _listen(self, req: ListenRequest) -> None:
        host = self.hosts[req.host]
        params = {"address": req.address, "ports": req.ports, "ipip": req.ipip, "magic": self.magic,
                  "max_seconds": self._lifetime()}
        privilege = None
        try:
            try:
                ready, script = self._start(host, "listener", params, sudo=True)
            except HostError as exc:
                if not sudo_refused(exc):
                    raise
                # Without sudo: unprivileged ports still work; the rest are reported as unprovable, and why.
                privilege = SUDO_REFUSED
                with self.lock:
                    self.no_sudo[req.host] = SUDO_REFUSED
                ready, script = self._start(host, "listener", params, sudo=False)
        except HostError as exc:
            self.listening[req.host] = Listening(error=f"{exc.host}: {exc.cause}")
            return
        served = cast(ListenerReady, ready)  # the listener script's answer (probes/listener.py)
        self.listening[req.host] = Listening(
            bound=frozenset(served.get("bound", ())),
            taken=dict(served.get("taken", {})),
            failed=dict(served.get("failed", {})),
            ipip=served.get("ipip"),
            privilege=privilege,
        )
        with self.lock:
            self.receivers[req.host] = script

    def _start(self, host: RemoteHost, name: str, params: Mapping[str, object], *,
               sudo: bool) -> tuple[JSONValue, Script]:
        limit = self.settings.connect_timeout + READY_MARGIN
        if name == "portprobe":
            limit = self.settings.command_timeout
        return start_and_read(host, name, params, limit, sudo=sudo, on_start=self.streams.add)

    def _receiving(self, target: str, address: str) -> bool:
        """Whether an IPIP receiver on the target will tell if a packet sent to it arrived."""
        listening = self.listening.get(target) if (target, address) in self.known else None
        return bool(listening and listening.ipip == "ready" and target in self.receivers)

    def concurrency(self) -> int:
        """Probes one batch keeps in flight: its share of :data:`IN_FLIGHT` over the batches running at once."""
        at_once = max(1, min(MAX_PARALLEL_HOSTS, len(self.by_source)))
        return max(min(self.settings.concurrency, MIN_CONCURRENCY), min(self.settings.concurrency,
                                                                        IN_FLIGHT // at_once))

    def groups(self, source: str) -> list[tuple[PortRuleCheck, Sequence[Target]]]:
        """The source's checks with the targets its batch probes: a (target, port, protocol) once per source."""
        checks = self.by_source[source]
        shared = Counter((c.port, c.protocol) for c in checks)
        seen: dict[tuple[int | None, str | None], set[str]] = {}
        out: list[tuple[PortRuleCheck, Sequence[Target]]] = []
        for check in checks:
            key = (check.port, check.protocol)
            targets: Sequence[Target] = check.targets
            if shared[key] > 1:  # another rule of this source probes the same port: each target once
                done = seen.setdefault(key, set())
                targets = [t for t in targets if t.name not in done]
                done.update(t.name for t in targets)
            out.append((check, targets))
        return out

    def _retry_flags(self, check: PortRuleCheck, targets: Sequence[Target]) -> int | list[int]:
        """Which targets' silence is probed again (see :func:`suspect`): TCP and ICMP always, UDP where echoed."""
        if check.protocol == "ipip":
            return 0  # the receivers tell, and the IPIP retries are the runner's
        if check.protocol != "udp":
            return 1
        label = port_label(check.port, "udp")
        return [1 if label in self._echoing.get(t.name, ()) and (t.name, t.address) in self.known else 0
                for t in targets]

    @cached_property
    def _held(self) -> dict[str, dict[str, str]]:
        # Port label -> the hosts where a service holds it -> the holder, once all listeners have answered.
        out: dict[str, dict[str, str]] = {}
        for host, lst in self.listening.items():
            for label, holder in lst.taken.items():
                out.setdefault(label, {})[host] = holder
        return out

    @cached_property
    def _echoing(self) -> dict[str, frozenset[str]]:
        # The ports each destination's listener bound, read once all listeners have answered.
        return {h: lst.bound for h, lst in self.listening.items()}

    def _probe(self, job: tuple[int, str]) -> None:
        """One source's batch: probe, then judge each answer at once and keep only what did not pass plainly."""
        index, source = job
        groups = self.groups(source)
        count = sum(len(targets) for _, targets in groups)
        budget = max(self.settings.probe_timeout, self.settings.command_timeout - ANSWER_MARGIN)
        params: dict[str, object] = {
            "timeout": self.settings.probe_timeout, "concurrency": self.concurrency(), "per_target": PER_TARGET,
            "groups": [[c.port, c.protocol, self._retry_flags(c, ts), [t.address for t in ts]] for c, ts in groups],
            "rotate": index, "token": source, "magic": self.magic,
            "source_address": self.hosts.inventory.host(source).address,
            "retries": [list(r) for r in RETRY_PASSES], "budget": budget,
            "lifeline": True, "deadline": self.settings.command_timeout + 5}
        sudo = any(c.protocol == "ipip" for c, _ in groups) and source not in self.no_sudo
        try:
            answer = self._run_probe(self.hosts[source], params, sudo)
            results: list[str | list[str]] = list(answer.get("results", []))
        except HostError as exc:
            cause = f"{exc.host}: {exc.cause}" if exc.host != source else exc.cause
            results = [["unreached", cause]] * count
            answer = {}
        del params
        passed: Counter[str] = Counter()
        unsettled: list[tuple[Probe, str, str]] = []
        sent: dict[str, Probe] = {}
        peers = Peers()
        at = 0
        for check, targets in groups:
            part = results[at:at + len(targets)]
            at += len(targets)
            rule, port, protocol = check.requirement.id, check.port, str(check.protocol)
            held = self._held.get(port_label(port, protocol)) if protocol == "udp" else None
            if held:  # evidence for silent probes of held ports: who answered them (checks/udp_evidence.py)
                for t, result in zip(targets, part, strict=False):
                    if result == "open" and t.name in held and (t.name, t.address) in self.known:
                        peers.answered(source, t.name, port, held[t.name])
            if protocol != "ipip" and part.count("open") == len(targets):
                passed[rule] += len(targets)  # the common case: every target open, a plain pass
                continue
            for t, result in itertools.zip_longest(targets, part):
                if t is None:
                    break
                if result == "open" and protocol != "ipip":
                    passed[rule] += 1
                    continue
                status, detail = (result, "") if isinstance(result, str) else (result or ["error", "not probed"])
                p = Probe(source, t.name, t.address, port, protocol, rule)
                if status == "sent" and protocol == "ipip" and self._receiving(t.name, t.address):
                    sent[t.name] = p
                else:
                    unsettled.append((p, str(status), str(detail)))
        with self.lock:
            self.probes += count
            self.passed.update(passed)
            if unsettled:
                self.unsettled[source] = unsettled
            if sent:
                self.ipip_sent[source] = sent
            if peers.others:
                self.peers.update(peers)
            for k, n in enumerate(answer.get("passes", [])[: len(self.passes)]):
                self.passes[k] += int(n)

    @cached_property
    def _taken_of(self) -> dict[str, dict[str, str]]:
        # The holders as the listeners found them, read once all have answered: what the stored passes name.
        return self._taken()

    def _run_probe(self, host: RemoteHost, params: dict[str, object], sudo: bool) -> ProbeAnswer:
        here = self._probe_in_listener(host.name, params, sudo)
        if here is not None:
            return here
        if host.command("true") is None:
            # Only testinfra can reach this host (paramiko, docker…): no stdin lifeline, one plain run.
            return cast(ProbeAnswer, run_script(host, "portprobe", params | {"lifeline": False},
                                                timeout=self.settings.command_timeout, sudo=sudo))
        try:
            answer, script = self._start(host, "portprobe", params, sudo=sudo)
        except HostError as exc:
            if not (sudo and sudo_refused(exc)):
                raise
            with self.lock:
                self.no_sudo[host.name] = SUDO_REFUSED
            answer, script = self._start(host, "portprobe", params, sudo=False)
        self.streams.done(script.stream, timeout=5)
        return cast(ProbeAnswer, answer)  # the probe script's answer (probes/portprobe.py)

    def _probe_in_listener(self, source: str, params: dict[str, object], sudo: bool) -> ProbeAnswer | None:
        """The source's batch, run by the source's own listener; None where it cannot be (then a session of its own).

        A node is both a destination and a source: its listener already runs there with the privileges the batch
        needs, so running the batch in it spares the host a second session, ``sudo`` and interpreter.
        """
        script, listening = self.receivers.get(source), self.listening.get(source)
        if script is None or listening is None or (sudo and listening.privilege is not None):
            return None
        try:
            script.send("probe " + json.dumps({"script": _portprobe_text(), "params": params}))
            answer = script.read(self.settings.command_timeout)
        except HostError as exc:
            if self.streams.closing:  # the run is being torn down: start nothing more
                raise HostError(source, "the run ended before its probes did", Reason.HUNG) from exc
            if exc.reason == Reason.HUNG:
                # The batch answers within its budget; a host that did not in a whole command timeout would not in
                # a second one either: the source is unreached, as a session of its own that hung would be.
                raise
            return None  # the listener ended: a session of its own tells what is wrong with the host
        probed = answer.get("probed") if isinstance(answer, dict) else None
        return cast(ProbeAnswer, probed) if isinstance(probed, dict) else None

    def _retry_ipip(self) -> None:
        """Send the IPIP probes no receiver saw again, with growing patience: only a repeat is a drop."""
        for k, (factor, _rate) in enumerate(RETRY_PASSES, start=1):
            again = sorted(s for s, targets in self.ipip_sent.items() if targets)
            if not again:
                return
            self.passes[k] += sum(len(self.ipip_sent[s]) for s in again)
            _parallel(again, self._resend_ipip, limit=RETRY_HOSTS)
            self._collect_ipip(self.settings.probe_timeout * factor)

    def _resend_ipip(self, source: str) -> None:
        addresses = [p.address for p in self.ipip_sent.get(source, {}).values()]
        # One group of the batch format (see portprobe.batch); an IPIP packet carries the source's name as its token.
        params: dict[str, object] = {"timeout": self.settings.probe_timeout, "concurrency": MIN_CONCURRENCY,
                                     "per_target": PER_TARGET, "groups": [[None, "ipip", 0, addresses]],
                                     "token": source, "magic": self.magic,
                                     "source_address": self.hosts.inventory.host(source).address,
                                     "lifeline": True, "deadline": self.settings.command_timeout + 5}
        try:
            self._run_probe(self.hosts[source], params, source not in self.no_sudo)
        except HostError:
            return  # the first answer stands

    def _still_listening(self) -> None:
        """Make sure every listener outlived the probes: one that died mid-way would pass for a rejecting firewall."""

        def ask(host: str) -> None:
            script = self.receivers[host]
            try:
                script.send("seen")
                script.read(self.settings.connect_timeout + 5)
            except HostError as exc:
                self.listening[host] = Listening(error=f"{host}: the listener ended during the probes: {exc.cause}")

        _parallel(sorted(self.receivers), ask)

    def _collect_ipip(self, wait: float) -> None:
        """Ask each IPIP receiver which probe packets arrived; wait out ``wait`` only if some are missing."""
        if not any(self.ipip_sent.values()):
            return
        sent_by = time.monotonic()
        self._ask_seen()
        if any(self.ipip_sent.values()):
            time.sleep(max(0.0, sent_by + wait - time.monotonic()))
            self._ask_seen()

    def _seen_at(self, host: str) -> list[list[str]]:
        """The (source address, token) of every IPIP probe packet ``host``'s receiver has seen so far."""
        script = self.receivers[host]
        script.send("seen")
        return list(script.read(self.settings.connect_timeout + 5).get("seen", []))

    def _ask_seen(self) -> None:
        def ask(host: str) -> None:
            try:
                seen = self._seen_at(host)
            except HostError:
                return
            with self.lock:
                for _addr, token in seen:
                    # The token is the source's name: the receiver is the target.
                    probe = self.ipip_sent.get(str(token), {}).pop(host, None)
                    if probe is not None:
                        self.passed[probe.rule] += 1

        receivers = [h for h, r in self.requests.items() if r.ipip and h in self.receivers]
        _parallel(receivers, ask)


@cache
def _portprobe_text() -> str:
    return script_text("portprobe").decode()


def compute(hosts: Hosts, checks: Sequence[PortRuleCheck], settings: Settings, folder: Path | None = None) -> Matrix:
    """Probe the matrix of ``checks``; see :class:`MatrixRun`."""
    return MatrixRun(hosts, checks, settings, folder).compute()


def selected_port_rules(session: pytest.Session) -> list[PortRuleCheck]:
    """The port-rule checks of the session's selected items, each once (every xdist worker collects the same).

    By id: a check that two test modules ask for is probed once, and comparing whole checks (thousands of
    targets each) pairwise grew with the square of the items.
    """
    by_id = {c.id: c for c in selected_checks(session) if isinstance(c, PortRuleCheck)}
    return list(by_id.values())


class PortMatrix:
    """The computed matrix, turned into verdicts per check."""

    def __init__(self, stored: Matrix, folder: Path) -> None:
        self.probes = int(stored.get("probes", 0))
        self.second_pass = int(stored.get("second_pass", 0))
        self.seconds = float(stored.get("seconds", 0.0))
        self.taken = stored.get("taken", {})
        self.checks = frozenset(stored.get("checks", ()))
        self.exceptions = Exceptions(folder / stored.get("exceptions", EXCEPTIONS_FILE))

    def judgement(self, check: PortRuleCheck, target: str) -> Judgement:
        """The stored verdict of ``check``'s probe of ``target``."""
        label = port_label(check.port, str(check.protocol))
        if check.id not in self.checks:
            return Judgement(ERROR, "error: not probed (the item was not selected when the matrix was computed)")
        entry = self.exceptions.of(str(check.source)).get(f"{target}>{label}")
        if entry is None:
            return plain_pass(self.taken, target, label)
        return Judgement(Outcome(str(entry[0])), str(entry[1]), len(entry) > 2 and entry[2] is True)

    def verdicts(self, check: PortRuleCheck) -> list[Verdict]:
        """One verdict per target of ``check``."""
        r = check.requirement
        if check.source is None or check.protocol is None:
            raise ValueError(f"port rule {check.id} names no source or protocol")
        out = []
        for t in check.targets:
            judged = self.judgement(check, t.name)
            out.append(
                Verdict(
                    check=r.area,
                    requirement=r.id,
                    section=r.section,
                    outcome=judged.outcome,
                    message=judged.message,
                    source=check.source,
                    target=t.name,
                    port=check.port,
                    protocol=check.protocol,
                    checked=f"{check.source} -> {t.name} ({t.address}) {port_label(check.port, check.protocol)}",
                    expected=r.summary,
                    fix=r.fix,
                    unprovable=judged.unprovable,
                )
            )
        return out


@pytest.fixture(scope="session")
def port_matrix(request: pytest.FixtureRequest, nova_hosts: Hosts, nova_run_dir: Path) -> PortMatrix:
    """The firewall matrix of this run's selected port rules, computed once per run."""
    settings = session_of(request.config).settings
    run_dir = nova_run_dir
    checks = selected_port_rules(request.session)
    stored = runcache.once(run_dir, CACHE_KEY, lambda: compute(nova_hosts, checks, settings, run_dir))
    return PortMatrix(stored, run_dir)


def summary_line(value: Matrix) -> str:
    """The terminal's line about the matrix: probes, time, the probes of each pass, and where the time went."""
    phases = value.get("phases") or {}
    passes = list(value.get("passes") or [value.get("probes", 0), value.get("second_pass", 0)])
    later = [int(n) for n in passes[1:]] or [0]
    tries = ", ".join(f"{n} a {nth} time" for n, nth in zip(later[1:], ("third", "fourth", "fifth"), strict=False))
    return (f"nova firewall matrix: {value['probes']} probes from {value.get('sources', '?')} sources to "
            f"{value.get('destinations', '?')} listening hosts in {value['seconds']:.2f} s; "
            f"{later[0]} probed a second time{', ' + tries if tries else ''} before "
            f"{value.get('dropped', 0)} were called dropped"
            + (f" ({', '.join(f'{k} {v:.2f} s' for k, v in phases.items())})" if phases else ""))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line on the controller: how many probes the matrix took, how long, and how many each pass."""
    run_dir = session_of(config).run_dir
    stored = runcache.stored(run_dir, CACHE_KEY) if run_dir else None
    if isinstance(stored, dict) and stored:
        terminalreporter.write_line(summary_line(cast(Matrix, stored)))
        proof = cast(Matrix, stored).get("proof")
        if proof:
            terminalreporter.write_line(proof_line(proof))
