"""The lab's DNS data and the dnsmasq command lines that serve it."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from nova_lab.addresses import DOMAIN, UNIVERSE_NAMES, VENDOR_NAMES, Host, LabSpec

# Docs section 1: seven base records, three more with the OpenSearch and NeuVector modules.
FALLBACK_RECORDS: tuple[tuple[str, str | None], ...] = (
    ("nova-cilium-hubble", None),
    ("nova-release-git-main", None),
    ("nova-console", None),
    ("nova-oauth", None),
    ("nova-alertmanager-main", None),
    ("nova-grafana-main", None),
    ("nova-prometheus-main", None),
    ("nova-neuvector-ui", "neuvector"),
    ("nova-neuvector-api-docs", "neuvector"),
    ("nova-logs-main", "opensearch"),
)


def platform_records(modules: Sequence[str]) -> list[str]:
    """Short names of the platform records (from the catalog when it has them all, else the docs' list)."""
    rows: list[tuple[str, str | None]] = []
    with contextlib.suppress(Exception):  # the catalog is optional for the lab; any load error -> fallback
        from _pytest_nova.catalog import load_catalog

        rows = [(str(r.record), r.module) for r in load_catalog().by_area("dns") if r.record]
    if len(rows) < len(FALLBACK_RECORDS):
        rows = list(FALLBACK_RECORDS)
    names = [name for name, module in rows if module is None or module in modules]
    return list(dict.fromkeys(n.removesuffix("." + DOMAIN) for n in names))


def lab_records(spec: LabSpec, hosts: Sequence[Host]) -> dict[str, list[str]]:
    """Every name the lab's DNS servers answer, with its addresses, before any fault."""
    by_name = {h.name: h for h in hosts}
    infra = [h.address for h in hosts if "infra" in h.roles]
    records = {f"{r}.{DOMAIN}": list(infra) for r in platform_records(spec.modules)}
    records[f"api.{DOMAIN}"] = [by_name["lb-api"].address]
    if "vendor" in by_name:
        records.update({n: [by_name["vendor"].address] for n in VENDOR_NAMES})
    if "universe" in by_name:
        records.update({n: [by_name["universe"].address] for n in UNIVERSE_NAMES})
    if "proxy" in by_name:
        records[f"proxy.{DOMAIN}"] = [by_name["proxy"].address]
    return records


def hosts_file(records: Mapping[str, Sequence[str]]) -> str:
    """``records`` in /etc/hosts format, the form dnsmasq re-reads on SIGHUP."""
    return "".join(f"{addr} {name}\n" for name, addrs in sorted(records.items()) for addr in addrs)


def dnsmasq_argv(address: str, records_file: Path, log_file: Path) -> list[str]:
    """A foreground dnsmasq answering only from ``records_file`` on ``address``: no upstream, no /etc/hosts.

    ``local=/#/`` makes every name local, so a name not in the file is NXDOMAIN instead of a forward.
    """
    return [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--no-poll", f"--addn-hosts={records_file}", "--local=/#/", f"--listen-address={address}",
        "--bind-interfaces", "--except-interface=lo", "--user=root", "--group=root", "--pid-file=",
        "--cache-size=0", "--no-negcache", "--log-queries", f"--log-facility={log_file}",
    ]
