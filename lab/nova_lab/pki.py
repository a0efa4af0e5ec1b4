"""The lab's certificate authorities and server certificates, made with the ``openssl`` CLI.

Three CAs: the lab CA (trusted by every host; signs vendor, API, ingress and balancer certificates), the
Nova Universe CA (trusted too, served at https://repo.<universe>/ca/ca.crt like the real server), and a
rogue CA nobody trusts (for the untrusted-ca fault). EC P-256 keys: fast to make, accepted by Go and OpenSSL.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nova_lab.netns import run

_KEYOPTS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def make_ca(folder: Path, name: str, common_name: str) -> KeyPair:
    """A self-signed CA certificate valid for ten years."""
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    run(["openssl", "req", "-x509", *_KEYOPTS, "-keyout", str(pair.key), "-out", str(pair.cert),
         "-days", "3650", "-subj", f"/O=Nova Lab/CN={common_name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return pair


def make_cert(folder: Path, name: str, ca: KeyPair, names: Iterable[str]) -> KeyPair:
    """A server certificate for ``names`` (DNS names and IP addresses), signed by ``ca``."""
    sans = []
    for n in names:
        try:
            ipaddress.ip_address(n)
            sans.append(f"IP:{n}")
        except ValueError:
            sans.append(f"DNS:{n}")
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    csr = folder / f"{name}.csr"
    first = next((s.split(":", 1)[1] for s in sans), name)
    run(["openssl", "req", "-new", *_KEYOPTS, "-keyout", str(pair.key), "-out", str(csr),
         "-subj", f"/O=Nova Lab/CN={first}", "-addext", "subjectAltName=" + ",".join(sans),
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
         "-addext", "extendedKeyUsage=serverAuth"])
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
         "-set_serial", str(secrets.randbits(63)), "-days", "825", "-copy_extensions", "copy",
         "-out", str(pair.cert)])
    csr.unlink()
    pair.key.chmod(0o600)
    return pair


def build(folder: Path, leaves: dict[str, tuple[str, list[str]]]) -> dict[str, KeyPair]:
    """Make the three CAs, then every leaf ``name -> (ca name, SANs)``, in parallel.

    The result maps ``lab-ca``, ``universe-ca``, ``rogue-ca`` and every leaf name to its key pair.
    """
    folder.mkdir(parents=True, exist_ok=True)
    cas = {"lab-ca": "Nova Lab CA", "universe-ca": "Nova Universe CA", "rogue-ca": "Untrusted Rogue CA"}
    with ThreadPoolExecutor(max_workers=4) as pool:
        made = dict(zip(cas, pool.map(lambda kv: make_ca(folder, *kv), cas.items()), strict=True))
        futures = {n: pool.submit(make_cert, folder, n, made[ca], sans) for n, (ca, sans) in leaves.items()}
        made.update({n: f.result() for n, f in futures.items()})
    return made


def fingerprint_name(cert: Path) -> str:
    """The OpenSSL subject hash of ``cert`` (the name of its ``/etc/ssl/certs`` symlink, without ``.0``)."""
    return run(["openssl", "x509", "-noout", "-subject_hash", "-in", str(cert)]).stdout.strip()
