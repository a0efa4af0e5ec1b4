"""Load balancers after installation (docs 3.2): healthchecks through each balancer and on each backend.

Everything runs from the pytest process (nova-ctl). All probes of the plan's ``balancer_check`` items run once
per run as one concurrent batch (``runcache.once``); items only judge the cached answers.

Trust, on purpose:

- API 6443 (``/readyz`` and the passthrough comparison): when the kubeconfig names a CA, the certificate chain
  is verified against it (not the host name: probes go to addresses the certificate need not list) and a chain
  that does not verify fails. Without a CA the answer is taken unverified and the message says so.
- Ingress and infra 443 ``/healthz``: no trust is required, like a balancer's own HTTP check; the requirement
  is the healthcheck answer. The certificate is still reported.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypedDict, cast

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from _pytest_nova import executor, runcache
from _pytest_nova.hosts import HostError
from _pytest_nova.inventory import Inventory
from _pytest_nova.kubeconfig import kubeconfig_ca, kubeconfig_path
from _pytest_nova.model import Outcome
from _pytest_nova.plan import BalancerCheck, Target, fqdn
from _pytest_nova.session import session_of
from _pytest_nova.verdicts import FAILED, PASSED, Verdict
from _pytest_nova.x509 import cert_names, fingerprint

_BODY_CHARS = 80


class Cert(TypedDict, total=False):
    """The certificate an address presents, or the error."""

    sha256: str
    subject: str
    issuer: str
    error: str | None


class HttpProbe(Cert, total=False):
    """A healthcheck GET: the status and start of the body, the certificate seen, whether it verified."""

    url: str
    verified: bool | None
    trust_error: str
    status: int | None
    reason: str
    body: str


class DnsProbe(TypedDict, total=False):
    """A DNS query to a balancer or backend: the response code and A records, or the error."""

    rcode: str
    answer: list[str]
    name: str
    error: str | None


class PassthroughProbe(TypedDict):
    """The certificate the API balancer presents, and each master's own."""

    balancer: Cert
    masters: dict[str, Cert]


# What one balancer_check item's probe found (which one follows from the check).
Probe = HttpProbe | DnsProbe | PassthroughProbe


def describe_cert(probe: Cert) -> str:
    """``subject (issuer), SHA-256 fingerprint`` of the certificate a probe saw."""
    return f"{probe.get('subject')} (issued by {probe.get('issuer')}), SHA-256 {probe.get('sha256')}"


# --- probes ----------------------------------------------------------------------------------------------


def _context(cadata: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Probes go to addresses (balancer, node): the chain is checked, the host name is not.
    ctx.check_hostname = False
    if cadata:
        ctx.load_verify_locations(cadata=cadata)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _error(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, http.client.HTTPException):
        return f"not an HTTP answer ({type(exc).__name__})"
    return str(getattr(exc, "strerror", None) or exc)


def http_get(address: str, port: int, scheme: str, path: str, timeout: float,
             cadata: str | None = None) -> HttpProbe:
    """GET ``scheme://address:port/path``; the status, the start of the body and the certificate seen.

    With ``cadata`` the chain must verify against it; a chain that does not is reported (``trust_error``)
    and the request is repeated without verification, so the answer is known either way.
    """
    out: HttpProbe = {"url": f"{scheme}://{address}:{port}{path}", "verified": None}
    verify = cadata if scheme == "https" else None
    for attempt in ((verify, None) if verify else (None,)):
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=_context(attempt))
        else:
            conn = http.client.HTTPConnection(address, port, timeout=timeout)
        try:
            conn.connect()
            if isinstance(conn.sock, ssl.SSLSocket):
                der = conn.sock.getpeercert(binary_form=True) or b""
                subject, issuer = cert_names(der)
                out.update({"sha256": fingerprint(der), "subject": subject, "issuer": issuer})
                if attempt:
                    out["verified"] = True
            conn.request("GET", path, headers={"Connection": "close", "User-Agent": "pytest-nova"})
            resp = conn.getresponse()
            body = resp.read(_BODY_CHARS).decode("utf-8", "replace").strip()
            out.update({"status": resp.status, "reason": resp.reason, "body": body, "error": None})
            return out
        except ssl.SSLCertVerificationError as exc:
            out.update({"verified": False, "trust_error": str(exc.verify_message)})
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            out.update({"status": None, "error": _error(exc, timeout)})
            return out
        finally:
            conn.close()
    return out


def leaf_cert(address: str, port: int, timeout: float) -> Cert:
    """The certificate ``address:port`` presents (fingerprint, subject, issuer), or the error."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw:
            with _context(None).wrap_socket(raw) as tls:
                der = tls.getpeercert(binary_form=True) or b""
    except (OSError, ssl.SSLError) as exc:
        return {"error": _error(exc, timeout)}
    subject, issuer = cert_names(der)
    return {"sha256": fingerprint(der), "subject": subject, "issuer": issuer, "error": None}


def dns_query(address: str, port: int, protocol: str, name: str, timeout: float) -> DnsProbe:
    """Ask ``address`` for ``name`` (A) over udp or tcp; the response code and answer, or the error."""
    query = dns.message.make_query(name, "A")
    try:
        if protocol == "udp":
            resp = dns.query.udp(query, address, port=port, timeout=timeout)
        else:
            resp = dns.query.tcp(query, address, port=port, timeout=timeout)
    except dns.exception.Timeout:
        return {"error": f"no DNS answer within {timeout:g} s"}
    except (OSError, dns.exception.DNSException) as exc:
        return {"error": _error(exc, timeout) if isinstance(exc, OSError) else f"bad DNS answer: {exc}"}
    addrs = sorted({r.to_text() for rrset in resp.answer for r in rrset if rrset.rdtype == 1})
    return {"rcode": dns.rcode.to_text(resp.rcode()), "answer": addrs, "name": name, "error": None}


# --- the batch ---------------------------------------------------------------------------------------------


def _is_api(check: BalancerCheck) -> bool:
    return check.requirement.balancer == "api"


def probe_jobs(checks: list[BalancerCheck], timeout: float, cadata: str | None,
               dns_name: str) -> dict[str, Callable[[], Probe]]:
    """One job per check id: what its item needs to know, as a function run in the batch."""
    jobs: dict[str, Callable[[], Probe]] = {}
    for c in checks:
        r = c.requirement
        port = int(c.port or 0)
        if c.id.endswith(":passthrough"):
            server, masters = str(c.balancer), c.targets

            def passthrough(server: str = server, port: int = port,
                            masters: tuple[Target, ...] = masters) -> PassthroughProbe:
                return {"balancer": leaf_cert(server, port, timeout),
                        "masters": {t.name: leaf_cert(t.address, port, timeout) for t in masters}}

            jobs[c.id] = passthrough
        elif r.scheme == "dns":
            jobs[c.id] = partial(dns_query, c.targets[0].address, port, str(c.protocol), dns_name, timeout)
        else:
            ca = cadata if _is_api(c) else None
            jobs[c.id] = partial(http_get, c.targets[0].address, port, str(r.scheme or "http"), str(r.path or "/"),
                                 timeout, ca)
    return jobs


def run_batch(jobs: dict[str, Callable[[], Probe]]) -> dict[str, Probe]:
    """Run every job concurrently; the results by job id."""
    if not jobs:
        return {}
    return dict(zip(jobs, executor.run_all(lambda fn: fn(), jobs.values(), 32), strict=True))


# --- judging -----------------------------------------------------------------------------------------------


def _verdict(check: BalancerCheck, outcome: Outcome, message: str, fix: str = "") -> Verdict:
    r = check.requirement
    what = f"{r.scheme.upper()} GET {r.path}" if r.scheme in ("http", "https") and r.path else str(r.scheme).upper()
    return Verdict(
        check="lb", requirement=r.id, section=r.section, outcome=outcome, message=message,
        source=check.source, target=check.target, port=check.port, protocol=check.protocol,
        checked=f"{check.target} {check.port}/{check.protocol}: {what}" if not check.id.endswith(":passthrough")
        else f"{check.target} balancer {check.port}/{check.protocol}: certificate vs the masters'",
        expected=r.summary, fix=fix if outcome != PASSED else "",
    )


def _backend_fix(check: BalancerCheck, name: str) -> str:
    r = check.requirement
    if name == check.requirement.balancer:
        # The balancer relays a backend's answer: the backends' own items say which one is unhealthy.
        return f"see the {name} backends' own checks for the unhealthy one; {r.fix}"
    if r.balancer == "api":
        return (f"check kube-apiserver on {name}: kubectl get --raw='/readyz?verbose' --server=https://"
                f"{check.targets[0].address}:{check.port}, or crictl ps / crictl logs of kube-apiserver on the node")
    return (f"check the ingress controller on {name}: kubectl get pods -A -o wide "
            f"--field-selector spec.nodeName={name}, then its logs")


def judge_http(check: BalancerCheck, probe: HttpProbe) -> Verdict:
    """The verdict of one healthcheck: 200 expected, the chain trusted where a CA is known (API)."""
    target = check.targets[0]
    is_lb = target.name == check.requirement.balancer
    who = f"the {target.name} balancer ({target.address})" if is_lb else f"{target.name} ({target.address})"
    fix = _backend_fix(check, target.name)
    req = f"GET {probe['url']}"
    if probe.get("error"):
        return _verdict(check, FAILED, f"{who} did not answer {req}: {probe['error']}", fix)
    if probe.get("verified") is False:
        return _verdict(
            check, FAILED,
            f"{who} presents {describe_cert(probe)}, which does not verify against the kubeconfig's CA "
            f"({probe.get('trust_error')}); it answered {probe.get('status')} on {req}",
            "make the API serve a certificate of the cluster CA, or point the inventory's kubeconfig at this cluster",
        )
    status, reason, body = probe.get("status"), probe.get("reason", ""), probe.get("body", "")
    answered = f"{status} {reason}".strip() + (f" ({body!r})" if body else "")
    trust = ""
    if "sha256" in probe:
        how = ("verified against the kubeconfig's CA" if probe.get("verified")
               else "trust not required" if not _is_api(check) else "not verified: no CA in the kubeconfig")
        trust = f"; certificate {probe.get('subject')} issued by {probe.get('issuer')} ({how})"
    if status != 200:
        via = " (through a balancer, the answer comes from the backend it picked)" if is_lb else ""
        return _verdict(check, FAILED, f"{who} answered {answered} on {req}{via}", fix)
    return _verdict(check, PASSED, f"{who} answered {answered} on {req}{trust}")


def judge_dns(check: BalancerCheck, probe: DnsProbe) -> Verdict:
    """The verdict of one DNS probe: any proper answer (NOERROR or NXDOMAIN) shows DNS is served."""
    target = check.targets[0]
    is_lb = target.name == check.requirement.balancer
    who = f"the {target.name} balancer" if is_lb else target.name
    where = f"{who} ({target.address}) {check.port}/{check.protocol}"
    via = " (through a balancer, the answer comes from the backend it picked)" if is_lb else ""
    tcp = " +tcp" if check.protocol == "tcp" else ""
    fix = (f"see the {target.name} backends' own checks for the unhealthy one; {check.requirement.fix}" if is_lb
           else f"check the DNS service on {target.name} and that its firewall lets {check.port}/{check.protocol} "
                f"in: dig{tcp} @{target.address} <a platform name>")
    if probe.get("error"):
        return _verdict(check, FAILED, f"{where}: {probe['error']}{via}", fix)
    rcode, name = probe.get("rcode"), probe.get("name")
    said = f"{rcode}" + (f" {', '.join(probe.get('answer') or [])}" if probe.get("answer") else "")
    if rcode not in ("NOERROR", "NXDOMAIN"):
        return _verdict(check, FAILED, f"{where} answered {said} for {name}{via}", fix)
    return _verdict(check, PASSED, f"{where} answered {said} for {name}")


def judge_passthrough(check: BalancerCheck, probe: PassthroughProbe) -> Verdict:
    """The API balancer must present one of the masters' own certificates (L4 only, docs 3.2)."""
    lb, masters = probe["balancer"], probe["masters"]
    where = f"api balancer {check.balancer}:{check.port}"
    if lb.get("error"):
        return _verdict(check, FAILED, f"{where}: {lb['error']}", check.requirement.fix)
    seen = {n: m for n, m in masters.items() if not m.get("error")}
    if not seen:
        errs = "; ".join(f"{n}: {m['error']}" for n, m in masters.items()) or "no master in the inventory"
        return _verdict(check, FAILED, f"no master presented a certificate to compare with ({errs})",
                        "check kube-apiserver on the masters")
    same = sorted(n for n, m in seen.items() if m["sha256"] == lb["sha256"])
    if same:
        return _verdict(check, PASSED, f"{where} presents {', '.join(same)}'s own certificate "
                                       f"({lb['subject']}, SHA-256 {lb['sha256']}): TLS passes through")
    return _verdict(
        check, FAILED,
        f"api balancer terminates TLS: it presents {describe_cert(lb)}, not a master's certificate "
        f"(masters present {', '.join(sorted({m['subject'] for m in seen.values()}))}); "
        "configure L4 (raw TCP / SSL passthrough) (docs 3.2)",
        check.requirement.fix,
    )


def judge(check: BalancerCheck, probe: Probe) -> list[Verdict]:
    """The verdicts of one ``balancer_check`` item from its cached probe result (its shape follows the check)."""
    if check.id.endswith(":passthrough"):
        return [judge_passthrough(check, cast(PassthroughProbe, probe))]
    if check.requirement.scheme == "dns":
        return [judge_dns(check, cast(DnsProbe, probe))]
    return [judge_http(check, cast(HttpProbe, probe))]


# --- fixtures ----------------------------------------------------------------------------------------------


def dns_probe_name(inv: Inventory, records: list[str]) -> str:
    """The name asked of the infra balancer's DNS: a platform record (any proper answer will do)."""
    return fqdn(records[0], inv.dns_base_domain) if records else inv.dns_base_domain


class Balancers:
    """The run's balancer probes, computed once (shared by xdist workers) and judged per item."""

    def __init__(self, compute: Callable[[], dict[str, Probe]]) -> None:
        self._compute = compute

    def verdicts(self, check: BalancerCheck) -> list[Verdict]:
        """The verdicts of ``check``."""
        try:
            results = self._compute()
        except HostError as exc:
            return [_verdict(check, FAILED, str(exc))]
        if check.id not in results:
            return [_verdict(check, FAILED, "this check was not probed (the plan changed during the run?)")]
        return judge(check, results[check.id])


@pytest.fixture(scope="session")
def nova_balancers(pytestconfig: pytest.Config, nova_inventory: Inventory, nova_run_dir: Path) -> Balancers:
    """Healthchecks through the load balancers and on their backends, probed once per run from nova-ctl."""
    state = session_of(pytestconfig)
    timeout = state.settings.probe_timeout

    def compute() -> dict[str, Probe]:
        checks = state.plan.of_type(BalancerCheck) if state.plan is not None else []
        cadata = None
        if any(_is_api(c) for c in checks):
            cadata = kubeconfig_ca(kubeconfig_path(nova_inventory))
        records = [str(r.record) for r in state.catalog.by_area("dns") if r.module is None and r.record]
        jobs = probe_jobs(checks, timeout, cadata, dns_probe_name(nova_inventory, records))
        return run_batch(jobs)

    return Balancers(lambda: runcache.once(nova_run_dir, "balancer-probes", compute))
