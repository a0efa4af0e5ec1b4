"""The DNS engine: the platform's names asked directly at each DNS server of the inventory (docs 1).

Gather: one query per name and server from the runner (dnspython, no local resolver), all names of one server
at once, cached once per run. Judge: pure functions of an answer (and of a node's own lookups, which the node
engine gathers). Fixture: ``nova_dns``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from _pytest_nova import executor, runcache
from _pytest_nova.checks.facts import Facts, Resolved
from _pytest_nova.plan import Check, DnsRecordCheck
from _pytest_nova.session import selected_checks, session_of
from _pytest_nova.verdicts import FAILED, PASSED, Finding, Verdict

OK, NXDOMAIN, NODATA, TIMEOUT, REFUSED, SERVFAIL, ERROR = (
    "ok",
    "nxdomain",
    "nodata",
    "timeout",
    "refused",
    "servfail",
    "error",
)


@dataclass(frozen=True)
class Answer:
    """What one server said about one name."""

    status: str
    addresses: tuple[str, ...] = ()
    detail: str = ""

    def describe(self, name: str, server: str) -> str:
        """One sentence for a failure message."""
        if self.status == OK:
            return f"{server} resolves {name} to {', '.join(self.addresses)}"
        return {
            NXDOMAIN: f"{server} answers NXDOMAIN for {name}: the record does not exist",
            NODATA: f"{server} knows {name} but returns no A record",
            TIMEOUT: f"{server} did not answer within {self.detail}",
            REFUSED: f"{server} refused the query for {name}{': ' + self.detail if self.detail else ''}",
            SERVFAIL: f"{server} answered SERVFAIL for {name} (its upstream or zone is broken)",
        }.get(self.status, f"query to {server} for {name} failed: {self.detail}")


class StoredAnswer(TypedDict):
    """An :class:`Answer` as the run cache stores it."""

    status: str
    addresses: list[str]
    detail: str


def query_a(name: str, server: str, timeout: float, port: int = 53) -> Answer:
    """The A records of ``name`` at ``server``: UDP with a timeout, TCP when the answer is truncated."""
    query = dns.message.make_query(name, dns.rdatatype.A)
    try:
        response = dns.query.udp(query, server, timeout=timeout, port=port)
        if response.flags & dns.flags.TC:
            response = dns.query.tcp(query, server, timeout=timeout, port=port)
    except dns.exception.Timeout:
        return Answer(TIMEOUT, detail=f"{timeout:g} s")
    except ConnectionRefusedError:
        # ICMP port unreachable: nothing listens on the DNS port of that address.
        return Answer(REFUSED, detail=f"nothing listens on {server}:{port}")
    except (OSError, dns.exception.DNSException) as exc:
        return Answer(ERROR, detail=str(exc) or type(exc).__name__)
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return Answer(NXDOMAIN)
    if rcode == dns.rcode.REFUSED:
        return Answer(REFUSED, detail="the server is not authoritative for it and does not recurse")
    if rcode == dns.rcode.SERVFAIL:
        return Answer(SERVFAIL)
    if rcode != dns.rcode.NOERROR:
        return Answer(ERROR, detail=f"rcode {dns.rcode.to_text(rcode)}")
    # The answer may be a CNAME chain; the A records at its end are what clients get.
    addresses = sorted(
        {item.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for item in rrset},
        key=socket.inet_aton,
    )
    return Answer(OK, tuple(addresses)) if addresses else Answer(NODATA)


class NameChecks:
    """Direct queries to the inventory's DNS servers, all names of one server at once, cached per run."""

    def __init__(self, run_dir: Path, timeout: float, selected: Iterable[Check]) -> None:
        self.run_dir, self.timeout = run_dir, timeout
        self._names: dict[str, list[str]] = {}
        for c in selected:
            if isinstance(c, DnsRecordCheck):
                names = self._names.setdefault(c.server, [])
                if c.name not in names:
                    names.append(c.name)

    def answers(self, server: str) -> dict[str, Answer]:
        """Every selected name's answer at ``server``, queried concurrently once per run."""
        names = self._names.get(server, [])

        def ask() -> dict[str, StoredAnswer]:
            found = dict(zip(names, executor.run_all(lambda n: query_a(n, server, self.timeout), names, 16),
                             strict=True))
            return {n: {"status": a.status, "addresses": list(a.addresses), "detail": a.detail}
                    for n, a in found.items()}

        raw = runcache.once(self.run_dir, f"dns-{server}", ask)
        return {n: Answer(a["status"], tuple(a["addresses"]), a["detail"]) for n, a in raw.items()}

    def verdicts(self, check: DnsRecordCheck) -> list[Verdict]:
        """The verdict of one ``dns_record`` check: the name resolves at the server, only to allowed addresses."""
        name, server = check.name, check.server
        answer = self.answers(server).get(name) or query_a(name, server, self.timeout)
        finding = judge_record(answer, name, server, check.allowed)
        req = check.requirement
        fix = finding.fix or req.fix
        return [Verdict(check="dns", requirement=req.id, section=req.section, outcome=finding.outcome,
                        message=finding.message, source=server, target=name,
                        checked=f"A {name} at DNS server {server}",
                        expected=f"{name} resolves only to {', '.join(check.allowed)}",
                        fix="" if finding.outcome == PASSED else fix)]


# ---- judge (pure)


def judge_record(answer: Answer, name: str, server: str, allowed: Iterable[str]) -> Finding:
    """Judge one server's answer for ``name`` against the allowed addresses."""
    ok = set(allowed)
    text = answer.describe(name, server)
    if answer.status == OK:
        wrong = [a for a in answer.addresses if a not in ok]
        if wrong:
            return Finding(FAILED, f"{text}; {', '.join(wrong)} is not an allowed address ({', '.join(sorted(ok))})",
                           f"point {name} at {', '.join(sorted(ok))} only (remove the A record for "
                           f"{', '.join(wrong)})")
        return Finding(PASSED, text)
    if answer.status in (TIMEOUT, ERROR) or (
        answer.status == REFUSED and "listens" in answer.detail
    ):
        return Finding(FAILED, text, f"make DNS server {server} answer on port 53 (udp and tcp) from this host")
    return Finding(FAILED, text, f"add an A record {name} -> {', '.join(sorted(ok))} on {server}")


def judge_name(facts: Facts, name: str, allowed: Iterable[str]) -> Finding:
    """Whether ``name`` resolved on the node, and only to ``allowed`` addresses."""
    ok = set(allowed)
    got = (facts.get("names") or {}).get(name) or Resolved(status="unresolved", error="not looked up")
    if got.get("status") != "ok":
        return Finding(FAILED, f"name not resolved: {name} through the node's resolver: {got.get('error')}")
    addrs = got.get("addresses") or []
    wrong = [a for a in addrs if a not in ok]
    if wrong:
        return Finding(FAILED, f"{name} resolves to {', '.join(wrong)}, not an allowed address "
                               f"({', '.join(sorted(ok))})",
                       f"point {name} at {', '.join(sorted(ok))} only, on every DNS server the node uses")
    return Finding(PASSED, f"{name} resolves to {', '.join(addrs)}")


# ---- fixture


@pytest.fixture(scope="session")
def nova_dns(request: pytest.FixtureRequest, nova_run_dir: Path) -> NameChecks:
    """Direct DNS queries from the runner to every DNS server of the inventory; ``.verdicts(check)``."""
    settings = session_of(request.config).settings
    return NameChecks(nova_run_dir, settings.probe_timeout, selected_checks(request.session))
