"""Ask one DNS server directly for a name's A records, from the runner (dnspython, no local resolver)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

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
