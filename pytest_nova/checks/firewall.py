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

import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple, NotRequired, TypedDict, TypeVar, cast

import pytest

from pytest_nova import executor, runcache
from pytest_nova.checks.udp_evidence import Proof, proof_line, prove
from pytest_nova.hosts import HostError, Hosts, RemoteHost, Stream
from pytest_nova.inventory import Inventory
from pytest_nova.model import JSONScalar, JSONValue, Outcome
from pytest_nova.options import Settings
from pytest_nova.plan import PortRuleCheck
from pytest_nova.remote_scripts import SUDO_REFUSED, Script, run_script, start_and_read, sudo_refused
from pytest_nova.session import selected_checks, session_of
from pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, UNPROVABLE, Verdict

CACHE_KEY = "firewall-matrix"
LISTEN_PROTOCOLS = ("tcp", "udp")
# Controller threads: every source and destination at once, up to this many (each is one ssh session).
MAX_PARALLEL_HOSTS = 128
READY_MARGIN = 15.0  # on top of the connect timeout: python3 start and binding a few dozen ports
# Probes one source keeps in flight to any one destination: bounds the load the batches put on a host.
PER_TARGET = 8
# The second pass over apparent drops: this many times the timeout, this many times fewer probes at once,
# and at most this many sources at a time.
SECOND_PASS_SLOWER = 2
SECOND_PASS_HOSTS = 16
# The first-pass answers :func:`suspect` may send to the second pass.
LOOKS_DROPPED = frozenset({"filtered", "sent", "silent"})

T = TypeVar("T")


def probe_key(source: str, target: str, port: int | None, protocol: str) -> str:
    """The cache key of one probe (a JSON object key)."""
    return f"{source}>{target}>{'' if port is None else port}/{protocol}"


def port_label(port: int | None, protocol: str) -> str:
    """``2379/tcp``, or ``icmp`` for a rule without a port."""
    return protocol if port is None else f"{port}/{protocol}"


@dataclass(frozen=True)
class Probe:
    """One (source, target, port, protocol) of the matrix."""

    source: str
    target: str
    address: str
    port: int | None
    protocol: str

    @cached_property
    def key(self) -> str:
        """The cache key (made once: a run looks it up several times for each of its 300,000 probes at 200 nodes)."""
        return probe_key(self.source, self.target, self.port, self.protocol)


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


def probes_by_source(checks: Iterable[PortRuleCheck]) -> dict[str, list[Probe]]:
    """Every probe of ``checks``, by source host, each (source, target, port, protocol) once."""
    seen: set[str] = set()
    out: dict[str, list[Probe]] = {}
    for check in checks:
        if check.source is None or check.protocol is None:
            raise ValueError(f"port rule {check.id} names no source or protocol")
        for t in check.targets:
            p = Probe(check.source, t.name, t.address, check.port, check.protocol)
            if p.key not in seen:
                seen.add(p.key)
                out.setdefault(p.source, []).append(p)
    return out


def inventory_hosts(inv: Inventory) -> frozenset[tuple[str, str]]:
    """(name, address) of every inventory host: the only targets the engine starts anything on."""
    return frozenset((h.name, h.address) for h in (*inv.nodes, *inv.workstations))


def listen_requests(
    by_source: dict[str, list[Probe]], *, listeners: bool, known: Collection[tuple[str, str]] | None = None
) -> dict[str, ListenRequest]:
    """Per destination: the ports to serve (only when ``listeners``) and whether an IPIP receiver is needed.

    With ``known`` (see :func:`inventory_hosts`) a target that is not one of them (the HTTP proxy) gets nothing:
    it is probed as it is, the service already listening.
    """
    ports: dict[str, set[tuple[int, str]]] = {}
    ipip: dict[str, bool] = {}
    address: dict[str, str] = {}
    for probes in by_source.values():
        for p in probes:
            if known is not None and (p.target, p.address) not in known:
                continue
            address[p.target] = p.address
            if p.protocol == "ipip":
                ipip[p.target] = True
            elif listeners and p.protocol in LISTEN_PROTOCOLS and p.port is not None:
                ports.setdefault(p.target, set()).add((p.port, p.protocol))
    hosts = sorted(set(ports) | set(ipip))
    return {
        h: ListenRequest(h, address[h], tuple(sorted(ports.get(h, ()))), ipip.get(h, False)) for h in hosts
    }


class ListenerReady(TypedDict, total=False):
    """The listener script's first answer: the ports it bound, those a service holds, those it could not bind."""

    bound: list[str]  # "2379/tcp"
    taken: dict[str, str]  # port label -> the process holding it
    failed: dict[str, str]  # port label -> why it could not be bound
    ipip: str | None  # "ready", or why there is no IPIP receiver


class ProbeAnswer(TypedDict, total=False):
    """The probe script's answer: per probe key, its status word and detail."""

    results: dict[str, list[str]]


class Matrix(TypedDict):
    """The computed matrix as the run cache stores it."""

    verdicts: dict[str, list[JSONScalar]]  # probe key -> [outcome, message, unprovable]
    probes: int
    sources: int
    destinations: int
    seconds: float
    second_pass: int
    phases: NotRequired[dict[str, float]]  # seconds per phase: listeners, probes, second pass, closing
    proof: NotRequired[Proof]  # how silent UDP probes of held ports were decided (checks/udp_evidence.py)


class Judgement(NamedTuple):
    """The outcome of one probe and its message; ``unprovable`` when skipped because nothing could tell."""

    outcome: Outcome
    message: str
    unprovable: bool = False


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
        return Judgement(FAILED, f"filtered: no answer within {timeout} s (nor on a second, slower try)")
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
    if listening is None or listening.error:
        reason = listening.error if listening else "no receiver was requested"
        return Judgement(ERROR, f"error: no IPIP receiver on {p.target} ({reason})")
    if listening.ipip != "ready":
        if listening.privilege:
            return _unproven(f"{p.target}: {listening.privilege}: {listening.needs_root()}")
        return _unproven(f"{listening.ipip} on {p.target}")
    if status == "seen":
        return Judgement(PASSED, "open")
    if status == "sent":
        return Judgement(FAILED,
                         f"filtered: the IPIP packet did not reach {p.target} within {timeout} s (nor on a second try)")
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

    def close_all(self) -> None:
        """Close every stream at once: stdin first, so the remote scripts exit and release their ports."""
        with self._lock:
            self._closed = True
            streams, self._open = list(self._open), set()
        for s in streams:
            s.close_input()
        for s in streams:
            s.close(timeout=5)


def _parallel(items: Sequence[T], work: Callable[[T], None], limit: int = MAX_PARALLEL_HOSTS) -> None:
    """Run ``work`` on every item at once; on Ctrl-C stop waiting (the caller's cleanup ends the scripts)."""
    executor.run_all(work, items, limit)


def staggered(probes: Sequence[Probe], offset: int) -> list[Probe]:
    """``probes`` grouped by destination, the destinations rotated by ``offset``.

    Every source starts on a different destination, so the batches running at once spread their load over
    the hosts instead of all hitting the first one together.
    """
    targets = list(dict.fromkeys(p.target for p in probes))
    if not targets:
        return []
    k = offset % len(targets)
    order = {t: i for i, t in enumerate(targets[k:] + targets[:k])}
    return sorted(probes, key=lambda p: order[p.target])


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


class MatrixRun:
    """One computation of the matrix: listeners, probes, a second pass over apparent drops, cleanup."""

    def __init__(self, hosts: Hosts, checks: Sequence[PortRuleCheck], settings: Settings) -> None:
        self.hosts, self.settings = hosts, settings
        # In every phase: after installation the free ports still need a listener to prove the firewall.
        self.listeners = True
        self.by_source = probes_by_source(checks)
        # Targets outside the inventory (the HTTP proxy) are probed as they are, with no listener.
        self.known = inventory_hosts(hosts.inventory)
        self.requests = listen_requests(self.by_source, listeners=self.listeners, known=self.known)
        # Per run, so a listener never echoes or records anything but this run's probes.
        self.magic = f"nova-probe-{secrets.token_hex(4)}"
        self.streams = Streams()
        self.listening: dict[str, Listening] = {}
        self.raw: dict[str, tuple[str, str]] = {}
        self.tokens: dict[str, str] = {}
        self.receivers: dict[str, Script] = {}
        self.no_sudo: dict[str, str] = {}  # host -> why sudo -n was refused there
        self.second_pass = 0
        self.lock = threading.Lock()
        self.phases: dict[str, float] = {}  # seconds per phase of :meth:`compute`, for the summary line
        self._phase_start = 0.0
        self.probes_started = 0.0  # when the first probe may have left: bounds the age of a conntrack entry

    def _phase(self, name: str) -> None:
        """Close the phase called ``name``: its time since the previous one ended."""
        now = time.monotonic()
        self.phases[name] = round(now - self._phase_start, 3)
        self._phase_start = now

    def compute(self) -> Matrix:
        """Probe everything; return ``{"verdicts": {key: [outcome, message, unprovable]}, ...}`` (stored as JSON)."""
        started = self._phase_start = time.monotonic()
        try:
            _parallel(sorted(self.requests.values(), key=lambda r: r.host), self._listen)
            self._phase("listeners")
            self.probes_started = time.monotonic()
            sources = sorted(self.by_source)
            _parallel([(i, s, self.by_source[s], False) for i, s in enumerate(sources)], self._probe)
            self._collect_ipip()
            self._phase("probes")
            self._second_pass()
            self._phase("second pass")
            self._still_listening()
        finally:
            self.streams.close_all()
            self._phase("closing")
        verdicts: dict[str, list[JSONScalar]] = {}
        for probes in self.by_source.values():
            for p in probes:
                status, detail = self.raw.get(p.key, ("error", "not probed"))
                inside = (p.target, p.address) in self.known
                judged = judge_probe(
                    p,
                    status,
                    detail,
                    listening=self.listening.get(p.target) if inside else None,
                    listeners=self.listeners and inside,
                    timeout=self.settings.probe_timeout,
                    source_sudo=self.no_sudo.get(p.source),
                )
                verdicts[p.key] = list(judged)
        proof = prove(self, verdicts, self.probes_started)
        return Matrix(verdicts=verdicts, probes=len(verdicts), sources=len(self.by_source),
                      destinations=len(self.requests), seconds=round(time.monotonic() - started, 3),
                      second_pass=self.second_pass, phases=self.phases, proof=proof)

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

    def _probe(self, job: tuple[int, str, Sequence[Probe], bool]) -> None:
        index, source, probes, again = job
        host = self.hosts[source]
        rows = []
        for i, p in enumerate(staggered(probes, index)):
            token = f"{source}/{i}{'b' if again else ''}"
            with self.lock:
                self.tokens[token] = p.key
            rows.append([p.key, p.address, p.port, p.protocol, token])
        src = self.hosts.inventory.host(source).address
        timeout = self.settings.probe_timeout * (SECOND_PASS_SLOWER if again else 1)
        concurrency = max(1, self.settings.concurrency // SECOND_PASS_SLOWER) if again else self.settings.concurrency
        params: dict[str, object] = {"timeout": timeout, "concurrency": concurrency, "per_target": PER_TARGET,
                                  "probes": rows, "magic": self.magic, "source_address": src, "lifeline": True,
                                  "deadline": self.settings.command_timeout + 5}
        sudo = any(p.protocol == "ipip" for p in probes) and source not in self.no_sudo
        try:
            answer = self._run_probe(host, params, sudo)
        except HostError as exc:
            cause = f"{exc.host}: {exc.cause}" if exc.host != source else exc.cause
            if not again:
                with self.lock:
                    self.raw.update({p.key: ("unreached", cause) for p in probes})
            return
        with self.lock:
            for key, (status, detail) in answer.get("results", {}).items():
                if not again or str(status) not in ("filtered", "silent", "sent"):
                    self.raw[key] = (str(status), str(detail))

    def _run_probe(self, host: RemoteHost, params: dict[str, object], sudo: bool) -> ProbeAnswer:
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

    def _second_pass(self) -> None:
        """Probe again, slower and fewer at a time, everything that looked dropped: only a repeat is a drop."""
        again: dict[str, list[Probe]] = {}
        for source, probes in self.by_source.items():
            for p in probes:
                status = self.raw.get(p.key, ("", ""))[0]
                if status not in LOOKS_DROPPED:
                    continue
                inside = (p.target, p.address) in self.known
                if suspect(status, self.listening.get(p.target) if inside else None, p):
                    again.setdefault(source, []).append(p)
        self.second_pass = sum(len(v) for v in again.values())
        if not again:
            return
        sources = sorted(again)
        _parallel([(i, s, again[s], True) for i, s in enumerate(sources)], self._probe,
                  limit=SECOND_PASS_HOSTS)
        if any(p.protocol == "ipip" for ps in again.values() for p in ps):
            self._collect_ipip(self.settings.probe_timeout * SECOND_PASS_SLOWER)

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

    def _collect_ipip(self, timeout: float | None = None) -> None:
        """Ask each IPIP receiver which probe packets arrived; wait out the timeout only if some are missing."""
        ready = {h for h, r in self.receivers.items() if self.listening.get(h, Listening()).ipip == "ready"}
        targets = {p.key: p.target for ps in self.by_source.values() for p in ps}
        sent = [k for k, (status, _) in self.raw.items() if status == "sent" and targets.get(k) in ready]
        if not sent:
            return
        probes_sent_by = time.monotonic()
        self._ask_seen()
        if any(self.raw[k][0] == "sent" for k in sent):
            wait = self.settings.probe_timeout if timeout is None else timeout
            time.sleep(max(0.0, probes_sent_by + wait - time.monotonic()))
            self._ask_seen()

    def _ask_seen(self) -> None:
        def ask(host: str) -> None:
            script = self.receivers[host]
            try:
                script.send("seen")
                seen = script.read(self.settings.connect_timeout + 5)
            except HostError:
                return
            with self.lock:
                for _addr, token in seen.get("seen", []):
                    key = self.tokens.get(str(token))
                    if key is not None and self.raw.get(key, ("", ""))[0] == "sent":
                        self.raw[key] = ("seen", "")

        receivers = [h for h, r in self.requests.items() if r.ipip and h in self.receivers]
        _parallel(receivers, ask)


def compute(hosts: Hosts, checks: Sequence[PortRuleCheck], settings: Settings) -> Matrix:
    """Probe the matrix of ``checks``; see :class:`MatrixRun`."""
    return MatrixRun(hosts, checks, settings).compute()


def selected_port_rules(session: pytest.Session) -> list[PortRuleCheck]:
    """The port-rule checks of the session's selected items, each once (every xdist worker collects the same).

    By id: a check that two test modules ask for is probed once, and comparing whole checks (thousands of
    targets each) pairwise grew with the square of the items.
    """
    by_id = {c.id: c for c in selected_checks(session) if isinstance(c, PortRuleCheck)}
    return list(by_id.values())


class PortMatrix:
    """The computed matrix, turned into verdicts per check."""

    def __init__(self, stored: Matrix) -> None:
        self.verdicts_by_key = stored["verdicts"]
        self.probes = int(stored.get("probes", 0))
        self.second_pass = int(stored.get("second_pass", 0))
        self.seconds = float(stored.get("seconds", 0.0))

    def verdicts(self, check: PortRuleCheck) -> list[Verdict]:
        """One verdict per target of ``check``."""
        r = check.requirement
        if check.source is None or check.protocol is None:
            raise ValueError(f"port rule {check.id} names no source or protocol")
        out = []
        for t in check.targets:
            entry = self.verdicts_by_key.get(probe_key(check.source, t.name, check.port, check.protocol))
            judged = Judgement(ERROR, "error: not probed (the item was not selected when the matrix was computed)")
            if entry:
                judged = Judgement(Outcome(str(entry[0])), str(entry[1]), len(entry) > 2 and entry[2] is True)
            out.append(
                Verdict(
                    check="firewall",
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
    stored = runcache.once(run_dir, CACHE_KEY, lambda: compute(nova_hosts, checks, settings))
    return PortMatrix(stored)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line on the controller: how many probes the matrix took and how long."""
    run_dir = session_of(config).run_dir
    stored = runcache.stored(run_dir, CACHE_KEY) if run_dir else None
    if isinstance(stored, dict) and stored:
        value = cast(Matrix, stored)
        phases = value.get("phases") or {}
        terminalreporter.write_line(
            f"nova firewall matrix: {value['probes']} probes from {value.get('sources', '?')} sources to "
            f"{value.get('destinations', '?')} listening hosts in {value['seconds']:.2f} s; "
            f"{value.get('second_pass', 0)} probed a second time before being called dropped"
            + (f" ({', '.join(f'{k} {v:.2f} s' for k, v in phases.items())})" if phases else "")
        )
        if value.get("proof"):
            terminalreporter.write_line(proof_line(value["proof"]))
