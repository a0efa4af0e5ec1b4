"""The node engine: one fact-gathering script run per host, judged into verdicts.

Gather: ``probes/node_facts.py`` runs once per host per run (shared by every pytest-xdist worker through
:func:`_pytest_nova.runcache.once`). Judge: each catalog ``check`` name maps to a pure
:class:`~_pytest_nova.checks.node_rules.Rule` (what the probe must gather, how its facts are judged); names and
endpoints seen from the node are judged by :mod:`~_pytest_nova.checks.dns` and :mod:`~_pytest_nova.checks.endpoints`.
Fixture: ``node_facts``, for the ``node_requirement``, ``dns_on_node`` and ``endpoint`` checks.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import pytest

from _pytest_nova import executor, runcache
from _pytest_nova.catalog import Requirement
from _pytest_nova.checks.dns import judge_name
from _pytest_nova.checks.endpoints import endpoint_fix, judge_endpoint
from _pytest_nova.checks.facts import Facts, Needs
from _pytest_nova.checks.node_rules import (
    PEER_CHECKS,
    RULES,
    Context,
    Rule,
    judge_requirement,
    needs_of,
)
from _pytest_nova.hosts import HostError, Hosts, host_fix
from _pytest_nova.inputs import read_small
from _pytest_nova.model import JSONObject
from _pytest_nova.plan import Check, EndpointCheck, NamesOnNodeCheck, NodeCheck, dns_allowed
from _pytest_nova.remote_scripts import run_script
from _pytest_nova.session import selected_checks, session_of
from _pytest_nova.verdicts import ERROR, PASSED, Finding, Verdict

PROBE = "node_facts"
FACT_TYPES = (NodeCheck, NamesOnNodeCheck, EndpointCheck)
# Hosts whose facts one process gathers at once (each is one SSH session running one short script).
PREFETCH = 16


def _verdict(check: Check, req: Requirement, finding: Finding, ctx: Context | None, checked: str, *,
             area: str | None = None, target: str | None = None, port: int | None = None,
             protocol: str | None = None) -> Verdict:
    fix = finding.fix or (ctx.fill(req.fix) if ctx else req.fix)
    return Verdict(
        check=area or req.area,
        requirement=req.id,
        section=req.section,
        outcome=finding.outcome,
        message=finding.message,
        source=check.source or check.host,
        target=target if target is not None else check.target,
        port=port if port is not None else check.port,
        protocol=protocol if protocol is not None else check.protocol,
        checked=checked,
        expected=ctx.fill(req.summary) if ctx else req.summary,
        fix="" if finding.outcome == PASSED else fix,
    )


class NodeFacts:
    """Each host's facts, gathered once per run, and the verdicts of the checks that read them."""

    def __init__(self, hosts: Hosts, run_dir: Path, probe_timeout: float, command_timeout: float,
                 selected: Iterable[Check], rules: Mapping[str, Rule] = RULES,
                 facts: Mapping[str, JSONObject | None] | None = None) -> None:
        self.hosts, self.inventory, self.run_dir = hosts, hosts.inventory, run_dir
        # The run's rules and the probe specs of the facts plugins added (None: a built-in fact).
        self.rules, self.facts = rules, facts or {}
        self.probe_timeout, self.command_timeout = probe_timeout, command_timeout
        self._by_host: dict[str, list[Check]] = {}
        for c in selected:
            if isinstance(c, FACT_TYPES) and c.host:
                self._by_host.setdefault(c.host, []).append(c)
        self._memo: dict[str, Facts | HostError] = {}
        self._prefetching: executor.Batch[str, None] | None = None
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[str | None, str]] = {}
        self._cluster = [n.name for n in self.inventory.cluster_nodes]
        self._peer_needs: Needs = {}
        for checks in self._by_host.values():
            for c in checks:
                if isinstance(c, NodeCheck) and c.requirement.check in PEER_CHECKS and c.requirement.check in rules:
                    self._peer_needs.update(rules[str(c.requirement.check)].needs(c.requirement.params,
                                                                                  self.context(c.host or "")))

    def user(self, host: str) -> str:
        """The account checked on ``host``: the node's own user, else ssh.user."""
        return self.inventory.host(host).user or self.inventory.ssh.user

    def context(self, host: str) -> Context:
        """The rule context of ``host``."""
        blob, err = self.public_key(host)
        return Context(self.inventory, host, self.user(host), blob, err, lambda: self.peers(host))

    def params(self, host: str) -> JSONObject:
        """The probe parameters for ``host``: what its selected checks need, plus what peers compare."""
        params = needs_of(self._by_host.get(host, []), self.context(host), self.rules)
        wanted = params.pop("facts", [])
        extra: JSONObject = {}
        for name in wanted if isinstance(wanted, list) else []:
            spec = self.facts.get(str(name))
            if spec is not None:  # a built-in fact: the probe gathers it anyway
                extra[str(name)] = spec
        if extra:
            params["extra"] = extra
        if host in self._cluster:
            for key, value in self._peer_needs.items():
                mine = params.get(key)
                # Peer checks need paths and names: lists of strings.
                params[key] = [*sorted({str(v) for v in [*(mine if isinstance(mine, list) else []),
                                                          *(value if isinstance(value, list) else [])]})]
        proxy: JSONObject | None = None
        if self.inventory.http_proxy:
            parts = urlsplit(self.inventory.http_proxy)
            proxy = {"host": parts.hostname, "port": parts.port or (443 if parts.scheme == "https" else 80)}
        budget = 3 * self.probe_timeout + 2
        return {**params, "user": self.user(host), "timeout": self.probe_timeout, "budget": budget,
                "proxy": proxy, "no_proxy": [*self.inventory.no_proxy]}

    def prefetch(self) -> None:
        """Start gathering every host's facts in the background, a few hosts at a time.

        Items of one host run one after another on one worker, so gathering host by host would serialize the
        run on the slowest logins; the cross-process lock of :func:`runcache.once` keeps it one login per host
        even when every worker prefetches.
        """
        with self._lock:
            if self._prefetching is not None:
                return
            wanted = list(dict.fromkeys([*self._by_host, *(self._cluster if self._peer_needs else [])]))
            self._prefetching = executor.start_all(self._quiet_get, wanted, PREFETCH)

    def _quiet_get(self, host: str) -> None:
        try:
            self.get(host, prefetch=False)
        except HostError:
            pass  # cached; reported by the host's own checks

    def get(self, host: str, *, prefetch: bool = True) -> Facts:
        """The facts of ``host``; raises :class:`HostError` when it cannot be reached (once per run)."""
        if prefetch:
            self.prefetch()
        with self._lock:
            cached = self._memo.get(host)
        if cached is None:
            try:
                cached = runcache.once(self.run_dir, f"facts-{host}", lambda: self._gather(host))
            except HostError as exc:
                cached = exc
            with self._lock:
                self._memo[host] = cached
        if isinstance(cached, HostError):
            raise cached
        return cached

    def _gather(self, host: str) -> Facts:
        params = self.params(host)
        # Long enough for the probe's own budget plus the privileged call; a hung host costs this once.
        budget = params.get("budget")
        seconds = float(budget) if isinstance(budget, float | int) else 3 * self.probe_timeout + 2
        limit = min(self.command_timeout, seconds + self.hosts.access.connect_timeout + 15)
        facts = run_script(self.hosts[host], PROBE, params, timeout=limit)
        if not isinstance(facts, dict):
            raise HostError(host, f"{PROBE} probe answered {type(facts).__name__}, not facts")
        return cast(Facts, facts)  # the probe's JSON, in the shapes checks/facts.py declares

    def peers(self, host: str) -> dict[str, Facts | HostError]:
        """The facts (or the error) of every other cluster node, for uniqueness checks."""
        out: dict[str, Facts | HostError] = {}
        for name in self._cluster:
            if name == host:
                continue
            try:
                out[name] = self.get(name)
            except HostError as exc:
                out[name] = exc
        return out

    def public_key(self, host: str) -> tuple[str | None, str]:
        """The base64 blob of the public key of the identity used for ``host`` (from .pub or ssh-keygen -y)."""
        node = self.inventory.host(host)
        path = self.inventory.resolve_file(node.identity_file or self.inventory.ssh.identity_file)
        key = str(path)
        with self._lock:
            if key in self._keys:
                return self._keys[key]
        result = read_public_key(path)
        with self._lock:
            self._keys[key] = result
        return result

    def verdicts(self, check: Check) -> list[Verdict]:
        """The verdicts of a ``node_requirement``, ``dns_on_node`` or ``endpoint`` check."""
        host = check.host or ""
        req = check.requirement
        try:
            facts = self.get(host)
        except HostError as exc:
            return self._unreachable(check, exc)
        ctx = self.context(host)
        if isinstance(check, NodeCheck):
            finding = judge_requirement(req, facts, ctx, self.rules)
            return [_verdict(check, req, finding, ctx, f"{host}: {req.id} ({req.check})")]
        if isinstance(check, NamesOnNodeCheck):
            return [
                _verdict(check, r, judge_name(facts, name, self.allowed(r)), ctx,
                         f"{host}: {name} through the node's resolver", area="dns", target=name)
                for name, r in check.records
            ]
        if isinstance(check, EndpointCheck):
            name, port = check.name, int(check.port or 0)
            trust = "ext-tls-trusted"
            if self.inventory.universe and req.mode == "closed":
                ctl = "nova-ctl" in self.inventory.host(host).roles
                trust = "os-universe-ca-nova-ctl" if ctl else "os-universe-ca"
            finding = judge_endpoint(facts, name, port, trust)
            if finding.outcome != PASSED:
                finding = Finding(finding.outcome, finding.message,
                                  endpoint_fix(finding.message, name, port, ctx, req.fix, facts))
            return [_verdict(check, req, finding, ctx, f"{host}: TCP + TLS to {name}:{port}")]
        raise ValueError(f"node_facts does not judge checks of kind {check.kind}")

    def allowed(self, req: Requirement) -> tuple[str, ...]:
        """Where a name may point: Universe names to the Universe address, the platform's to the infra nodes."""
        if req.area == "external" and self.inventory.universe:
            return (self.inventory.universe.address,)
        return dns_allowed(self.inventory)

    def _unreachable(self, check: Check, exc: HostError) -> list[Verdict]:
        finding = Finding(ERROR, str(exc), _host_fix(exc))
        if isinstance(check, NamesOnNodeCheck):
            return [_verdict(check, r, finding, None, f"{check.host}: {name}", area="dns", target=name)
                    for name, r in check.records]
        return [_verdict(check, check.requirement, finding, None, f"{check.host}: {check.requirement.id}")]


def _host_fix(exc: HostError) -> str:
    return host_fix(exc)


def read_public_key(path: Path) -> tuple[str | None, str]:
    """The base64 blob of the public key of private key ``path``: ``<path>.pub``, else ``ssh-keygen -y``."""
    pub = path.with_name(path.name + ".pub")
    raw = read_small(pub, 1 << 16)  # a regular file only: a FIFO there would block the run
    parts = raw.decode("utf-8", "replace").split() if raw is not None else []
    if len(parts) >= 2:
        return parts[1], ""
    try:
        # -P '' : never prompt; a passphrase-protected key without its .pub is reported, not asked for.
        proc = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(path)], capture_output=True, timeout=10,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"ssh-keygen -y failed: {exc}"
    parts = proc.stdout.decode(errors="replace").split()
    if proc.returncode == 0 and len(parts) >= 2:
        return parts[1], ""
    return None, f"no {pub.name} and ssh-keygen -y -f {path} failed: {proc.stderr.decode(errors='replace').strip()}"


# ---- fixture


@pytest.fixture(scope="session")
def node_facts(request: pytest.FixtureRequest, nova_hosts: Hosts, nova_run_dir: Path) -> NodeFacts:
    """Each host's facts, gathered in one run per host per test run; ``.verdicts(check)`` judges a check."""
    state = session_of(request.config)
    settings, registry = state.settings, state.registry
    return NodeFacts(nova_hosts, nova_run_dir, settings.probe_timeout, settings.command_timeout,
                     selected_checks(request.session), registry.node_rules, registry.node_facts)

