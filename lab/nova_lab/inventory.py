"""The files a lab hands to its users: inventory (format v1), kubeconfig and known_hosts."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from nova_lab.addresses import DOMAIN, UNIVERSE_DOMAIN, Host, LabSpec


def inventory(spec: LabSpec, hosts: Sequence[Host], state: Path, kubeconfig: Path) -> dict[str, Any]:
    """The lab's inventory, in the exact shape of spec/inventory-v1.yaml (plus ``kubeconfig``)."""
    by_name = {h.name: h for h in hosts}
    network: dict[str, Any] = {"mode": spec.mode,
                               "dnsServers": [by_name["dns-1"].address, by_name["dns-2"].address]}
    if spec.proxy:
        network["httpProxy"] = f"http://{by_name['proxy'].address}:3128"
        network["noProxy"] = [f".{DOMAIN}", by_name["lb-api"].address]
    inv: dict[str, Any] = {
        "cluster": {"name": "lab", "dnsBaseDomain": DOMAIN, "modules": list(spec.modules)},
        "network": network,
    }
    if spec.mode == "closed":
        inv["universe"] = {"dnsBaseDomain": UNIVERSE_DOMAIN, "address": by_name["universe"].address}
    inv["ssh"] = {"user": "nova-installer", "identityFile": str(state / "id_nova"), "port": 22,
                  "knownHostsFile": str(state / "known_hosts"), "hostKeyPolicy": "strict"}
    inv["loadBalancers"] = {r: {"address": by_name[f"lb-{r}"].address} for r in ("api", "infra", "ingress")}
    nodes: list[dict[str, Any]] = []
    for h in hosts:
        if h.kind == "runner":
            nodes.append({"name": h.name, "address": h.address, "roles": list(h.roles), "connection": "local"})
        elif h.kind == "node":
            nodes.append({"name": h.name, "address": h.address, "roles": list(h.roles)})
    inv["nodes"] = nodes
    inv["workstations"] = [{"name": h.name, "address": h.address} for h in hosts if h.kind == "workstation"]
    inv["kubeconfig"] = str(kubeconfig)
    return inv


def write_inventory(path: Path, data: dict[str, Any], spec: LabSpec) -> None:
    """Write the inventory with a header saying which lab it describes."""
    head = (f"# Inventory of the nova-lab {spec.name!r} ({spec.masters} masters, {spec.infra} infra, "
            f"{spec.ingress} ingress, {spec.workers} workers, mode {spec.mode}{', proxy' if spec.proxy else ''}).\n"
            "# Written by `nova-lab up`; removed by `nova-lab down`.\n")
    # Sections in block style; one flow-style line per host, like the documented example.
    body = ""
    for key, value in data.items():
        if key in ("nodes", "workstations"):
            rows = "".join(f"  - {yaml.safe_dump(v, sort_keys=False, default_flow_style=True, width=1000)}"
                           for v in value)
            body += f"{key}:\n{rows}"
        else:
            body += yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False, width=120)
    path.write_text(head + body)


def kubeconfig(server: str, ca_cert: Path, token: str) -> dict[str, Any]:
    """A kubeconfig for the lab's API (through the api balancer) with a bearer token."""
    ca = base64.b64encode(ca_cert.read_bytes()).decode()
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "lab", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "lab-admin", "user": {"token": token}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab-admin"}}],
        "current-context": "lab",
    }


def known_hosts(entries: Sequence[tuple[Host, str]]) -> str:
    """known_hosts lines (name and address) for every host with sshd."""
    out = []
    for h, key in entries:
        kind, blob = key.split()[:2]
        out.append(f"{h.name},{h.address} {kind} {blob}\n")
    return "".join(out)
