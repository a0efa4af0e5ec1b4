"""The few facts of a DER certificate the messages name: its SHA-256 fingerprint, subject and issuer.

A few lines of DER walking instead of a dependency: only the names are needed, for messages.
"""

from __future__ import annotations

import hashlib

# X.520 attribute OIDs (DER content bytes) shown in certificate names.
_NAME_OIDS = {b"\x55\x04\x03": "CN", b"\x55\x04\x0a": "O", b"\x55\x04\x0b": "OU"}


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, as colon-separated upper-case hex (like openssl)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """One DER element at ``pos``: (tag, start of content, end of content)."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, s, e = _tlv(data, start)
        out.append((tag, s, e))
        start = e
    return out


def _name(data: bytes, start: int, end: int) -> str:
    parts = []
    for _, ss, se in _children(data, start, end):  # SET of AttributeTypeAndValue
        for _, as_, ae in _children(data, ss, se):
            (_, os_, oe), (_, vs, ve) = _children(data, as_, ae)[:2]
            label = _NAME_OIDS.get(data[os_:oe])
            if label:
                parts.append(f"{label}={data[vs:ve].decode('utf-8', 'replace')}")
    return ", ".join(parts) or "(empty name)"


def cert_names(der: bytes) -> tuple[str, str]:
    """(subject, issuer) of a DER certificate as ``CN=..., O=...``; unreadable parts give ``?``.

    A few lines of DER walking instead of a dependency: only the names are needed, for messages.
    """
    try:
        _, s, e = _tlv(der, 0)
        _, ts, te = _children(der, s, e)[0]  # tbsCertificate
        fields = _children(der, ts, te)
        if fields and fields[0][0] == 0xA0:  # explicit version
            fields = fields[1:]
        issuer, subject = fields[2], fields[4]
        return _name(der, subject[1], subject[2]), _name(der, issuer[1], issuer[2])
    except (IndexError, ValueError):
        return "?", "?"
