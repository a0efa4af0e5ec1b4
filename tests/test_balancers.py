"""The balancer engine: certificates, HTTP(S) and DNS probes against local servers, and the verdicts."""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import dns.message
import dns.rrset
import pytest

from _pytest_nova import x509
from _pytest_nova.catalog import load_catalog
from _pytest_nova.checks import balancers as b
from _pytest_nova.inventory import load_inventory
from _pytest_nova.kinds import build
from _pytest_nova.plan import BalancerCheck, Target
from _pytest_nova.verdicts import FAILED, PASSED
from nova_lab import pki

REPO = Path(__file__).resolve().parents[1]
PROD = REPO / "inventories" / "example-prod.yaml"
LOCAL = "127.0.0.1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pki.KeyPair]:
    folder = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca(folder, "ca", "Test Cluster CA")
    other = pki.make_ca(folder, "other", "Other CA")
    return {"ca": ca, "other": other,
            "master": pki.make_cert(folder, "master", ca, ["master-1", LOCAL]),
            "lb": pki.make_cert(folder, "lb", ca, ["nova-api-lb", LOCAL])}


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b"ok" if self.status == 200 else b"unhealthy"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(status: int, pair: pki.KeyPair | None) -> Iterator[int]:
    handler = type("H", (_Handler,), {"status": status})
    srv = http.server.ThreadingHTTPServer((LOCAL, 0), handler)
    if pair is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pair.cert, pair.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def master(certs: dict[str, pki.KeyPair]) -> Iterator[int]:
    yield from _serve(200, certs["master"])


@pytest.fixture
def lb_own_cert(certs: dict[str, pki.KeyPair]) -> Iterator[int]:
    yield from _serve(200, certs["lb"])


@pytest.fixture
def sick(certs: dict[str, pki.KeyPair]) -> Iterator[int]:
    yield from _serve(503, certs["master"])


@pytest.fixture
def plain() -> Iterator[int]:
    yield from _serve(200, None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def _check(req_id: str, target: str, port: int, targets: tuple[Target, ...] | None = None) -> BalancerCheck:
    req = load_catalog().get(req_id)
    passthrough = req_id.endswith("passthrough")
    return BalancerCheck(id=f"{req.balancer}:{port}/{req.protocol}:{'passthrough' if passthrough else target}",
                         requirement=req, phases=("postinstall",), target=target if not passthrough else req.balancer,
                         port=port, protocol=req.protocol, targets=targets or (Target(target, LOCAL),), balancer=LOCAL)


# --- certificates ------------------------------------------------------------------------------------------


def test_fingerprint_is_sha256_of_der_like_openssl(certs: dict[str, pki.KeyPair]) -> None:
    der = ssl.PEM_cert_to_DER_cert(certs["master"].cert.read_text())
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(certs["master"].cert)],
                         capture_output=True, text=True, check=True)
    assert x509.fingerprint(der) == out.stdout.strip().split("=", 1)[1]


def test_cert_names_reads_subject_and_issuer(certs: dict[str, pki.KeyPair]) -> None:
    der = ssl.PEM_cert_to_DER_cert(certs["master"].cert.read_text())
    assert x509.cert_names(der) == ("O=Nova Lab, CN=master-1", "O=Nova Lab, CN=Test Cluster CA")
    assert x509.cert_names(b"\x30\x03\x02\x01") == ("?", "?")


# --- HTTP(S) probes ----------------------------------------------------------------------------------------


def test_https_probe_verifies_against_the_given_ca(master: int, certs: dict[str, pki.KeyPair]) -> None:
    p = b.http_get(LOCAL, master, "https", "/readyz", 2, certs["ca"].cert.read_text())
    assert (p["status"], p["verified"], p["subject"]) == (200, True, "O=Nova Lab, CN=master-1")


def test_https_probe_with_a_foreign_ca_reports_trust_and_still_the_answer(
        master: int, certs: dict[str, pki.KeyPair]) -> None:
    p = b.http_get(LOCAL, master, "https", "/readyz", 2, certs["other"].cert.read_text())
    assert p["verified"] is False and p["status"] == 200
    v = b.judge_http(_check("lb-api-6443", "master-1", master), p)
    assert v.outcome == FAILED
    assert "does not verify against the kubeconfig's CA" in v.message


def test_healthz_443_needs_no_trust(master: int) -> None:
    v = b.judge_http(_check("lb-infra-https", "infra-1", master), b.http_get(LOCAL, master, "https", "/healthz", 2))
    assert v.outcome == PASSED
    assert "trust not required" in v.message


def test_503_names_the_backend_and_its_answer(sick: int) -> None:
    check = _check("lb-api-6443", "master-2", sick)
    v = b.judge_http(check, b.http_get(LOCAL, sick, "https", "/readyz", 2))
    assert v.outcome == FAILED
    assert v.message.startswith("master-2 (127.0.0.1) answered 503 Service Unavailable ('unhealthy') on GET https://")
    assert v.fix.startswith("check kube-apiserver on master-2")
    assert "Observed: master-2" in v.explain() and "(docs 3.2)" in v.explain()


def test_503_through_the_balancer_says_so(sick: int) -> None:
    v = b.judge_http(_check("lb-ingress-https", "ingress", sick), b.http_get(LOCAL, sick, "https", "/healthz", 2))
    assert v.outcome == FAILED and v.message.startswith("the ingress balancer (127.0.0.1) answered 503")
    assert v.fix.endswith(load_catalog().get("lb-ingress-https").fix)


def test_refused_and_wrong_protocol_are_failures_that_say_why(plain: int) -> None:
    refused = b.http_get(LOCAL, _free_port(), "http", "/healthz", 2)
    assert refused["error"] == "connection refused"
    tls_to_plain = b.http_get(LOCAL, plain, "https", "/healthz", 2)
    assert str(tls_to_plain["error"]).startswith("TLS handshake failed")
    v = b.judge_http(_check("lb-infra-http", "infra-1", 1), refused)
    assert v.outcome == FAILED and "did not answer GET http://127.0.0.1:" in v.message


def test_plain_http_200_passes(plain: int) -> None:
    v = b.judge_http(_check("lb-infra-http", "infra-1", plain), b.http_get(LOCAL, plain, "http", "/healthz", 2))
    assert (v.outcome, v.target, v.port, v.protocol) == (PASSED, "infra-1", plain, "tcp")


def test_timeout_is_bounded() -> None:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        s.listen(1)  # accepts the connection, never answers
        p = b.http_get(LOCAL, s.getsockname()[1], "http", "/healthz", 0.3)
    assert p["error"] == "no answer within 0.3 s"


# --- passthrough ---------------------------------------------------------------------------------------------


def test_passthrough_matches_a_masters_certificate(master: int) -> None:
    check = _check("lb-api-l4-passthrough", "api", master, (Target("master-1", LOCAL),))
    probe = b.PassthroughProbe(balancer=b.leaf_cert(LOCAL, master, 2),
                               masters={"master-1": b.leaf_cert(LOCAL, master, 2)})
    v = b.judge_passthrough(check, probe)
    assert v.outcome == PASSED and "master-1's own certificate" in v.message


def test_terminating_balancer_fails_naming_what_it_presents(master: int, lb_own_cert: int) -> None:
    check = _check("lb-api-l4-passthrough", "api", lb_own_cert, (Target("master-1", LOCAL),))
    probe = b.PassthroughProbe(balancer=b.leaf_cert(LOCAL, lb_own_cert, 2),
                               masters={"master-1": b.leaf_cert(LOCAL, master, 2)})
    v = b.judge_passthrough(check, probe)
    assert v.outcome == FAILED
    assert v.message.startswith("api balancer terminates TLS: it presents O=Nova Lab, CN=nova-api-lb (issued by ")
    assert v.message.endswith("configure L4 (raw TCP / SSL passthrough) (docs 3.2)")
    assert probe["balancer"]["sha256"] in v.message


def test_passthrough_without_masters_to_compare_fails() -> None:
    check = _check("lb-api-l4-passthrough", "api", 1, (Target("master-1", LOCAL),))
    probe = b.PassthroughProbe(balancer={"sha256": "AA", "subject": "x", "issuer": "y", "error": None},
                               masters={"master-1": {"error": "connection refused"}})
    v = b.judge_passthrough(check, probe)
    assert v.outcome == FAILED and "master-1: connection refused" in v.message


# --- DNS -----------------------------------------------------------------------------------------------------


class _Dns:
    """A UDP+TCP DNS responder on one port: A 198.18.0.1 for every name, or an echo of the query."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((LOCAL, 0))
        self.port = int(self.udp.getsockname()[1])
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((LOCAL, self.port))
        self.tcp.listen(4)
        for fn in (self._udp, self._tcp):
            threading.Thread(target=fn, daemon=True).start()

    def answer(self, wire: bytes) -> bytes:
        if self.echo:
            return wire
        q = dns.message.from_wire(wire)
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "198.18.0.1"))
        return r.to_wire()

    def _udp(self) -> None:
        while True:
            try:
                data, addr = self.udp.recvfrom(4096)
            except OSError:
                return
            self.udp.sendto(self.answer(data), addr)

    def _tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                n = int.from_bytes(conn.recv(2), "big")
                out = self.answer(conn.recv(n))
                conn.sendall(len(out).to_bytes(2, "big") + out)

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_dns_answer_passes(proto: str) -> None:
    srv = _Dns()
    try:
        p = b.dns_query(LOCAL, srv.port, proto, "nova-console.nova.lab.local", 1)
    finally:
        srv.close()
    check = _check(f"lb-infra-dns-{proto}", "infra", srv.port)
    v = b.judge_dns(check, p)
    assert v.outcome == PASSED
    name = "nova-console.nova.lab.local"
    assert v.message == f"the infra balancer (127.0.0.1) {srv.port}/{proto} answered NOERROR 198.18.0.1 for {name}"


def test_dns_echo_is_not_an_answer() -> None:
    srv = _Dns(echo=True)
    try:
        p = b.dns_query(LOCAL, srv.port, "tcp", "nova-console.nova.lab.local", 1)
    finally:
        srv.close()
    assert str(p["error"]).startswith("bad DNS answer")
    assert b.judge_dns(_check("lb-infra-dns-tcp", "infra-1", srv.port), p).outcome == FAILED


def test_dns_silence_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCAL, 0))
        p = b.dns_query(LOCAL, s.getsockname()[1], "udp", "x.lab", 0.3)
    assert p == {"error": "no DNS answer within 0.3 s"}


# --- the batch ---------------------------------------------------------------------------------------------


def test_batch_probes_every_check_once_and_judges_from_the_cache(master: int, sick: int) -> None:
    checks = [_check("lb-api-6443", "master-1", master), _check("lb-api-6443", "master-2", sick),
              _check("lb-api-l4-passthrough", "api", master, (Target("master-1", LOCAL),))]
    checks[1] = replace(checks[1], id="api:x/tcp:master-2")
    results = b.run_batch(b.probe_jobs(checks, 2, None, "x.lab"))
    assert set(results) == {c.id for c in checks}
    engine = b.Balancers(lambda: results)
    outcomes = [engine.verdicts(c)[0].outcome for c in checks]
    assert outcomes == [PASSED, FAILED, PASSED]


def test_plan_for_the_example_probes_api_backends_with_the_cluster_ca() -> None:
    plan = build(load_catalog(), load_inventory(PROD))
    checks = plan.of_type(BalancerCheck, "postinstall")
    jobs = b.probe_jobs(checks, 1, "CA", "x")
    api, web = jobs["api:6443/tcp:master-1"], jobs["infra:443/tcp:infra-1"]
    assert isinstance(api, partial) and isinstance(web, partial)
    assert api.args[-1] == "CA"  # API checks carry the kubeconfig CA
    assert web.args[-1] is None  # ingress/infra: no trust required
