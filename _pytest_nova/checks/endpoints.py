"""The endpoint checks (docs 2, 2.1): a node's TCP connect and TLS handshake to a vendor or Universe endpoint.

Gather: the node engine's one script run per host probes every endpoint the host's checks name
(:mod:`_pytest_nova.checks.node`). Judge: the pure functions here, each failure with its cause and fix.
"""

from __future__ import annotations

from _pytest_nova.checks.facts import Facts
from _pytest_nova.checks.node_rules import CAUSES, Context, issuer_of, universe_ca_fix
from _pytest_nova.verdicts import FAILED, PASSED, Finding


def judge_endpoint(facts: Facts, name: str, port: int, trust_check: str = "") -> Finding:
    """The node's TCP connect and TLS handshake to name:port (docs 2, 2.1: access), with the cause of a failure.

    Trust of the chain by the node's store is not this check's: a handshake that completes passes, noting that
    ``trust_check`` (the advisory requirement that names the CA to install) reports the chain.
    """
    got = dict((facts.get("endpoints") or {}).get(f"{name}:{port}") or {"status": "error", "error": "not probed"})
    status = str(got.get("status"))
    via = f" via proxy {got['via']}" if got.get("via") else f" at {got.get('address')}"
    if status == "ok":
        return Finding(PASSED, f"TLS to {name}:{port}{via} verified ({got.get('tls')}, issuer {got.get('issuer')})")
    if status == "untrusted" and got.get("handshake", True):
        later = f"; {trust_check} (advisory) names the CA to install" if trust_check else ""
        return Finding(PASSED, f"TCP and TLS handshake to {name}:{port}{via} ({got.get('tls')}); the chain, issued "
                               f"by {issuer_of(got)}, does not verify with the node's trust store{later}")
    if status == "untrusted":
        why = got.get("handshake_error") or got.get("error")
        return Finding(FAILED, f"TLS handshake failed: {name}:{port}{via}: {why} (also without verifying the chain)")
    cause = CAUSES.get(status, status)
    via = f" (via proxy {got['via']})" if got.get("via") else ""
    return Finding(FAILED, f"{cause}: {name}:{port}{via}: {got.get('error')}")


def endpoint_fix(status_message: str, name: str, port: int, ctx: Context, default: str,
                 facts: Facts | None = None) -> str:
    """The fix for an endpoint failure, by its cause (and the host's OS family, from ``facts``)."""
    inv = ctx.inventory
    if status_message.startswith("name not resolved"):
        return (f"add an A record for {name} on the DNS servers the node uses ({', '.join(inv.dns_servers)}), "
                "or point the node's resolver at them")
    if status_message.startswith("TLS not trusted"):
        if inv.universe and name.endswith("." + inv.universe.dns_base_domain):
            return "install the Universe root CA on the node: " + universe_ca_fix(facts or {}, ctx)
        return (f"add the CA that signed {name}'s certificate to the node's trust store (update-ca-trust or "
                "update-ca-certificates), or stop the proxy from intercepting TLS")
    if status_message.startswith("refused by the proxy"):
        return f"allow CONNECT to {name}:{port} on the proxy {inv.http_proxy}, or list {name} in network.noProxy"
    if status_message.startswith("proxy unreachable"):
        return f"allow outbound traffic from the node to the HTTP proxy {inv.http_proxy} (docs 2)"
    return ctx.fill(default)

