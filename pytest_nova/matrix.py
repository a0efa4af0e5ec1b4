"""The firewall matrix: every (source, target, port, protocol) of the selected port rules, probed in one batch.

Before installation nothing listens on the documented ports, so the engine starts one temporary listener
script per destination host (``probes/listener.py``: TCP accept, UDP echo, an IPIP receiver) on the free ports,
then runs one probe script per source host (``probes/portprobe.py``) with all that host's probes at once, every
source in parallel, and closes the listeners whatever happens. After installation (``--nova-phase=postinstall``)
no port is bound: the real services answer, and a refused port means the service is not there. IPIP receivers
bind nothing and run in every phase.

The whole matrix is computed by one process of the run (``shared.once``) and read by the pytest-xdist workers;
the ``test_port`` items only turn it into verdicts.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_nova import shared
from pytest_nova.hosts import HostError, Hosts, RemoteHost, Stream
from pytest_nova.inventory import Inventory
from pytest_nova.options import Settings
from pytest_nova.plan import Check
from pytest_nova.plugin import session_of
from pytest_nova.remote_scripts import parse_line, run_script, start_script
from pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, Verdict

CACHE_KEY = "firewall-matrix"
LISTEN_PROTOCOLS = ("tcp", "udp")
# Controller threads: every source and destination at once, up to this many (each is one ssh session).
MAX_PARALLEL_HOSTS = 128
READY_MARGIN = 15.0  # on top of the connect timeout: python3 start and binding a few dozen ports
_SUDO_REFUSED = ("password is required", "a terminal is required", "sudo:")

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

    @property
    def key(self) -> str:
        """The cache key."""
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


def probes_by_source(checks: Iterable[Check]) -> dict[str, list[Probe]]:
    """Every probe of ``checks``, by source host, each (source, target, port, protocol) once."""
    seen: set[str] = set()
    out: dict[str, list[Probe]] = {}
    for check in checks:
        assert check.source is not None and check.protocol is not None
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


def judge_probe(
    p: Probe,
    status: str,
    detail: str,
    *,
    listening: Listening | None,
    listeners: bool,
    timeout: float,
) -> tuple[str, str]:
    """Outcome and message of one probe, from the probe script's status and what the target served.

    ``status`` is the probe script's word (open, refused, unreachable, blocked, filtered, silent, sent, seen,
    unresolved, error) or ``unreached`` with the source's HostError in ``detail``.
    """
    label = port_label(p.port, p.protocol)
    where = f"{p.target} {label}"
    if status == "unreached":
        return ERROR, f"error: cannot probe from {p.source}: {detail}"
    if status == "unresolved":
        return FAILED, f"name not resolved: {p.address} on {p.source}: {detail}"
    if p.protocol == "ipip":
        return _judge_ipip(p, status, detail, listening, timeout)
    taken = listening.taken.get(label) if listening else None
    ours = bool(listening and label in listening.bound)
    missing = None  # why the temporary listener this probe needed is not there
    if listeners and p.protocol in LISTEN_PROTOCOLS and not ours and not taken:
        missing = (listening.error or listening.failed.get(label)) if listening else None
        missing = missing or "no listener was requested"
    if status == "open":
        return PASSED, f"open: port already in use by {taken}" if taken else "open"
    # TCP and ICMP always answer when the path is open (an RST, a reply); UDP only when our echo listener is there.
    if status == "filtered" or (status == "silent" and ours):
        return FAILED, f"filtered: no answer within {timeout} s"
    if status == "blocked":
        return FAILED, f"filtered: blocked on {p.source} itself ({detail}: a local firewall drops outgoing packets)"
    if status == "unreachable":
        return FAILED, f"unreachable: {detail} (a router or firewall rejected it, or {p.target} is down)"
    if missing:
        return ERROR, f"error: no temporary listener on {where} ({missing}); the probe saw: {status}"
    if status == "refused":
        if ours:
            kind = "ICMP port unreachable" if p.protocol == "udp" else "connection reset"
            return FAILED, f"refused: {kind} although a temporary listener was bound (a firewall rejects it)"
        return FAILED, f"refused: nothing listens on {where} (the packet arrived; is the service running?)"
    if status == "silent":
        owner = f"held by {taken}" if taken else "the service does not answer arbitrary datagrams"
        return SKIPPED, f"skipped: cannot be proven: no UDP answer and no ICMP error from {where} ({owner})"
    return ERROR, f"error: {detail or status}"


def _judge_ipip(
    p: Probe, status: str, detail: str, listening: Listening | None, timeout: float
) -> tuple[str, str]:
    if listening is None or listening.error:
        reason = listening.error if listening else "no receiver was requested"
        return ERROR, f"error: no IPIP receiver on {p.target} ({reason})"
    if listening.ipip != "ready":
        return SKIPPED, f"skipped: cannot be proven: {listening.ipip} on {p.target}"
    if status == "seen":
        return PASSED, "open"
    if status == "sent":
        return FAILED, f"filtered: the IPIP packet did not reach {p.target} within {timeout} s"
    if status == "error" and "raw socket" in detail:
        return SKIPPED, f"skipped: cannot be proven: {detail} on {p.source} (sending IPIP needs root: sudo -n)"
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
            try:
                if s.proc.stdin:
                    s.proc.stdin.close()
            except OSError:
                pass
        for s in streams:
            s.close(timeout=5)


def _parallel(items: Sequence[T], work: Callable[[T], None]) -> None:
    """Run ``work`` on every item at once; on Ctrl-C stop waiting (the caller's cleanup ends the scripts)."""
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=min(len(items), MAX_PARALLEL_HOSTS), thread_name_prefix="nova-matrix")
    try:
        for future in [pool.submit(work, item) for item in items]:
            future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _sudo_refused(exc: HostError) -> bool:
    return any(s in exc.cause for s in _SUDO_REFUSED)


class MatrixRun:
    """One computation of the matrix: listeners, probes, IPIP collection, cleanup."""

    def __init__(self, hosts: Hosts, checks: Sequence[Check], settings: Settings) -> None:
        self.hosts, self.settings = hosts, settings
        self.listeners = settings.phase != "postinstall"
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
        self.receivers: dict[str, Stream] = {}
        self.lock = threading.Lock()

    def compute(self) -> dict[str, Any]:
        """Probe everything; return ``{"verdicts": {key: [outcome, message]}, ...}`` (stored as JSON)."""
        started = time.monotonic()
        try:
            _parallel(sorted(self.requests.values(), key=lambda r: r.host), self._listen)
            _parallel(sorted(self.by_source), self._probe)
            self._collect_ipip()
        finally:
            self.streams.close_all()
        verdicts: dict[str, list[str]] = {}
        for probes in self.by_source.values():
            for p in probes:
                status, detail = self.raw.get(p.key, ("error", "not probed"))
                outcome, message = judge_probe(
                    p,
                    status,
                    detail,
                    listening=self.listening.get(p.target) if (p.target, p.address) in self.known else None,
                    listeners=self.listeners and (p.target, p.address) in self.known,
                    timeout=self.settings.probe_timeout,
                )
                verdicts[p.key] = [outcome, message]
        return {"verdicts": verdicts, "probes": len(verdicts), "sources": len(self.by_source),
                "destinations": len(self.requests), "seconds": round(time.monotonic() - started, 3)}

    def _lifetime(self) -> float:
        # A safety net only: normally the listener ends when its stdin closes.
        return 2 * self.settings.command_timeout + 4 * self.settings.connect_timeout + 60

    def _listen(self, req: ListenRequest) -> None:
        host = self.hosts[req.host]
        params = {"address": req.address, "ports": req.ports, "ipip": req.ipip, "magic": self.magic,
                  "max_seconds": self._lifetime()}
        try:
            try:
                ready, stream = self._start(host, "listener", params, sudo=True)
            except HostError as exc:
                if not _sudo_refused(exc):
                    raise
                # Without sudo: ports above 1023 still work; the rest say why they could not be served.
                ready, stream = self._start(host, "listener", params, sudo=False)
        except HostError as exc:
            self.listening[req.host] = Listening(error=f"{exc.host}: {exc.cause}")
            return
        self.listening[req.host] = Listening(
            bound=frozenset(ready.get("bound", ())),
            taken=dict(ready.get("taken", {})),
            failed=dict(ready.get("failed", {})),
            ipip=ready.get("ipip"),
        )
        with self.lock:
            self.receivers[req.host] = stream

    def _start(self, host: RemoteHost, name: str, params: dict[str, Any], *, sudo: bool) -> tuple[Any, Stream]:
        stream = start_script(host, name, params, sudo=sudo)
        self.streams.add(stream)
        try:
            limit = self.settings.connect_timeout + READY_MARGIN
            if name == "portprobe":
                limit = self.settings.command_timeout
            return parse_line(host, name, stream.readline(limit)), stream
        except HostError:
            self.streams.done(stream, timeout=2)
            raise

    def _probe(self, source: str) -> None:
        probes = self.by_source[source]
        host = self.hosts[source]
        rows = []
        for i, p in enumerate(probes):
            token = f"{source}/{i}"
            self.tokens[token] = p.key
            rows.append([p.key, p.address, p.port, p.protocol, token])
        src = self.hosts.inventory.host(source).address
        params: dict[str, Any] = {"timeout": self.settings.probe_timeout, "concurrency": self.settings.concurrency,
                                  "probes": rows, "magic": self.magic, "source_address": src, "lifeline": True,
                                  "deadline": self.settings.command_timeout + 5}
        sudo = any(p.protocol == "ipip" for p in probes)
        try:
            answer = self._run_probe(host, params, sudo)
        except HostError as exc:
            cause = f"{exc.host}: {exc.cause}" if exc.host != source else exc.cause
            with self.lock:
                self.raw.update({p.key: ("unreached", cause) for p in probes})
            return
        with self.lock:
            for key, (status, detail) in answer.get("results", {}).items():
                self.raw[key] = (str(status), str(detail))

    def _run_probe(self, host: RemoteHost, params: dict[str, Any], sudo: bool) -> Any:
        if host.command("true") is None:
            # Only testinfra can reach this host (paramiko, docker…): no stdin lifeline, one plain run.
            return run_script(host, "portprobe", params | {"lifeline": False},
                              timeout=self.settings.command_timeout, sudo=sudo)
        try:
            answer, stream = self._start(host, "portprobe", params, sudo=sudo)
        except HostError as exc:
            if not (sudo and _sudo_refused(exc)):
                raise
            answer, stream = self._start(host, "portprobe", params, sudo=False)
        self.streams.done(stream, timeout=5)
        return answer

    def _collect_ipip(self) -> None:
        """Ask each IPIP receiver which probe packets arrived; wait out the timeout only if some are missing."""
        sent = [k for k, (status, _) in self.raw.items() if status == "sent"]
        if not sent:
            return
        probes_sent_by = time.monotonic()
        self._ask_seen()
        if any(self.raw[k][0] == "sent" for k in sent):
            time.sleep(max(0.0, probes_sent_by + self.settings.probe_timeout - time.monotonic()))
            self._ask_seen()

    def _ask_seen(self) -> None:
        def ask(host: str) -> None:
            stream = self.receivers[host]
            try:
                assert stream.proc.stdin is not None
                stream.proc.stdin.write(b"seen\n")
                stream.proc.stdin.flush()
                seen = parse_line(stream.remote, "listener", stream.readline(self.settings.connect_timeout + 5))
            except (HostError, OSError):
                return
            with self.lock:
                for _addr, token in seen.get("seen", []):
                    key = self.tokens.get(str(token))
                    if key is not None and self.raw.get(key, ("", ""))[0] == "sent":
                        self.raw[key] = ("seen", "")

        receivers = [h for h, r in self.requests.items() if r.ipip and h in self.receivers]
        _parallel(receivers, ask)


def compute(hosts: Hosts, checks: Sequence[Check], settings: Settings) -> dict[str, Any]:
    """Probe the matrix of ``checks``; see :class:`MatrixRun`."""
    return MatrixRun(hosts, checks, settings).compute()


def selected_port_rules(items: Iterable[pytest.Item]) -> list[Check]:
    """The port-rule checks of the session's selected items (every xdist worker collects the same)."""
    checks: list[Check] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        check = callspec.params.get("port_rule") if callspec is not None else None
        if isinstance(check, Check) and check not in checks:
            checks.append(check)
    return checks


class PortMatrix:
    """The computed matrix, turned into verdicts per check."""

    def __init__(self, stored: dict[str, Any]) -> None:
        self.verdicts_by_key: dict[str, list[str]] = stored["verdicts"]
        self.probes = int(stored.get("probes", 0))
        self.seconds = float(stored.get("seconds", 0.0))

    def verdicts(self, check: Check) -> list[Verdict]:
        """One verdict per target of ``check``."""
        r = check.requirement
        assert check.source is not None and check.protocol is not None
        out = []
        for t in check.targets:
            outcome, message = self.verdicts_by_key.get(
                probe_key(check.source, t.name, check.port, check.protocol),
                [ERROR, "error: not probed (the item was not selected when the matrix was computed)"],
            )
            out.append(
                Verdict(
                    check="firewall",
                    requirement=r.id,
                    section=r.section,
                    outcome=outcome,
                    message=message,
                    source=check.source,
                    target=t.name,
                    port=check.port,
                    protocol=check.protocol,
                    checked=f"{check.source} -> {t.name} ({t.address}) {port_label(check.port, check.protocol)}",
                    expected=r.summary,
                    fix=r.fix,
                )
            )
        return out


@pytest.fixture(scope="session")
def port_matrix(request: pytest.FixtureRequest, nova_hosts: Hosts, nova_run_dir: Path) -> PortMatrix:
    """The firewall matrix of this run's selected port rules, computed once per run."""
    settings = session_of(request.config).settings
    run_dir = nova_run_dir
    checks = selected_port_rules(request.session.items)
    stored = shared.once(run_dir, CACHE_KEY, lambda: compute(nova_hosts, checks, settings))
    return PortMatrix(stored)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line on the controller: how many probes the matrix took and how long."""
    run_dir = session_of(config).run_dir
    stored = run_dir / f"{CACHE_KEY}.json" if run_dir else None
    if stored is None or not stored.exists():
        return
    value = json.loads(stored.read_text()).get("value")
    if value:
        terminalreporter.write_line(
            f"nova firewall matrix: {value['probes']} probes from {value.get('sources', '?')} sources to "
            f"{value.get('destinations', '?')} listening hosts in {value['seconds']:.2f} s"
        )
