"""A Kubernetes API stand-in: real-shaped JSON for the few read calls the post-install checks make.

Pure functions of the cluster description (``cluster.json``: nodes with names, addresses, roles) and the
fault flags; ``servers.py`` puts them behind TLS on every master's 6443.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

K8S_VERSION = "v1.30.4"
CREATED = "2025-01-01T00:00:00Z"

Json = dict[str, Any]


def _uid(*parts: str) -> str:
    h = f"{zlib.crc32('/'.join(parts).encode()):08x}"
    return f"{h}-0000-4000-8000-{h}{h[:4]}"


def version() -> Json:
    """GET /version."""
    return {"major": "1", "minor": "30", "gitVersion": K8S_VERSION, "gitCommit": "0" * 40,
            "gitTreeState": "clean", "buildDate": CREATED, "goVersion": "go1.22.5", "compiler": "gc",
            "platform": "linux/amd64"}


def api_versions(server_address: str) -> Json:
    """GET /api (legacy discovery: kubectl falls back to it when aggregated discovery is absent)."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_groups() -> Json:
    """GET /apis: no API groups beyond core v1."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}


def api_resources() -> Json:
    """GET /api/v1: the resources this stand-in serves."""
    def res(name: str, kind: str, namespaced: bool, short: list[str]) -> Json:
        return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                "verbs": ["get", "list"], "shortNames": short}
    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        res("nodes", "Node", False, ["no"]), res("namespaces", "Namespace", False, ["ns"]),
        res("pods", "Pod", True, ["po"])]}


def node(n: Json, ready: bool) -> Json:
    """One Node object for cluster node ``n`` ({name, address, roles})."""
    labels = {"kubernetes.io/hostname": n["name"], "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
    labels.update({f"node-role.kubernetes.io/{r}": "" for r in n["roles"]})
    status = "True" if ready else "Unknown"
    reason = "KubeletReady" if ready else "NodeStatusUnknown"
    message = "kubelet is posting ready status" if ready else "Kubelet stopped posting node status."
    return {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": n["name"], "uid": _uid("node", n["name"]), "resourceVersion": "1",
                     "creationTimestamp": CREATED, "labels": labels},
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure"},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID"},
                {"type": "Ready", "status": status, "reason": reason, "message": message,
                 "lastHeartbeatTime": CREATED, "lastTransitionTime": CREATED},
            ],
            "addresses": [{"type": "InternalIP", "address": n["address"]}, {"type": "Hostname", "address": n["name"]}],
            "nodeInfo": {"kubeletVersion": K8S_VERSION, "kubeProxyVersion": K8S_VERSION,
                         "containerRuntimeVersion": "containerd://1.7.20", "osImage": "Debian GNU/Linux 12",
                         "kernelVersion": "6.1.0", "operatingSystem": "linux", "architecture": "amd64",
                         "machineID": _uid("machine", n["name"]).replace("-", ""),
                         "systemUUID": _uid("system", n["name"]), "bootID": _uid("boot", n["name"])},
        },
    }


def nodes(cluster: list[Json], notready: set[str], missing: set[str]) -> list[Json]:
    """The Node objects the API reports, after the node-notready and node-missing faults."""
    return [node(n, n["name"] not in notready) for n in cluster if n["name"] not in missing]


def pods(cluster: list[Json]) -> list[Json]:
    """Running kube-system pods: control plane on masters, cilium and kube-proxy everywhere, coredns."""
    out: list[Json] = []

    def pod(name: str, node_name: str, app: str) -> None:
        out.append({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "kube-system", "uid": _uid("pod", name),
                         "creationTimestamp": CREATED, "labels": {"k8s-app": app}},
            "spec": {"nodeName": node_name, "containers": [{"name": app, "image": f"hub.nova-platform.io/{app}"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": app, "ready": True, "restartCount": 0,
                                              "state": {"running": {"startedAt": CREATED}}}],
                       "startTime": CREATED},
        })

    for n in cluster:
        if "master" in n["roles"]:
            for comp in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
                pod(f"{comp}-{n['name']}", n["name"], comp)
        suffix = f"{zlib.crc32(n['name'].encode()) & 0xFFFFF:05x}"
        pod(f"cilium-{suffix}", n["name"], "cilium")
        pod(f"kube-proxy-{suffix}", n["name"], "kube-proxy")
    infra = [n for n in cluster if "infra" in n["roles"]] or cluster
    for i in range(2):
        pod(f"coredns-5d78c9869d-{i}", infra[i % len(infra)]["name"], "coredns")
    return out


def namespaces() -> list[Json]:
    """The namespaces of a fresh cluster."""
    return [{"kind": "Namespace", "apiVersion": "v1",
             "metadata": {"name": n, "uid": _uid("ns", n), "creationTimestamp": CREATED},
             "status": {"phase": "Active"}} for n in ("default", "kube-node-lease", "kube-public", "kube-system")]


def as_list(kind: str, items: list[Json]) -> Json:
    """A ``<Kind>List`` wrapper."""
    return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}


def as_table(kind: str, items: list[Json]) -> Json:
    """A ``meta.k8s.io/v1`` Table, which ``kubectl get`` asks for and prints as is."""
    cols: list[tuple[str, str]] = [("Name", "name")]
    if kind == "Node":
        cols += [("Status", ""), ("Roles", ""), ("Age", ""), ("Version", "")]
    elif kind == "Pod":
        cols += [("Ready", ""), ("Status", ""), ("Restarts", ""), ("Age", "")]
    else:
        cols += [("Status", ""), ("Age", "")]
    rows = []
    for it in items:
        meta = it["metadata"]
        if kind == "Node":
            ready = next(c for c in it["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
            roles = ",".join(sorted(k.rsplit("/", 1)[1] for k in meta["labels"] if "node-role" in k)) or "<none>"
            cells: list[Any] = [meta["name"], "Ready" if ready else "NotReady", roles, "1d",
                                it["status"]["nodeInfo"]["kubeletVersion"]]
        elif kind == "Pod":
            cells = [meta["name"], "1/1", it["status"]["phase"], 0, "1d"]
        else:
            cells = [meta["name"], it["status"]["phase"], "1d"]
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
        rows.append({"cells": cells, "object": partial})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1"},
            "columnDefinitions": [{"name": n, "type": "string", "format": f, "description": "", "priority": 0}
                                  for n, f in cols],
            "rows": rows}


def status(code: int, reason: str, message: str) -> Json:
    """A ``Status`` error body."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def route(path: str, accept: str, cluster: list[Json], notready: set[str], missing: set[str],
          server_address: str) -> tuple[int, Json]:
    """Answer GET ``path`` (query string removed): (HTTP status, JSON body)."""
    table = "as=Table" in accept
    path = path.rstrip("/") or "/"
    if path == "/version":
        return 200, version()
    if path == "/api":
        return 200, api_versions(server_address)
    if path == "/apis":
        return 200, api_groups()
    if path == "/api/v1":
        return 200, api_resources()
    listing: dict[str, tuple[str, list[Json]]] = {
        "/api/v1/nodes": ("Node", nodes(cluster, notready, missing)),
        "/api/v1/namespaces": ("Namespace", namespaces()),
        "/api/v1/pods": ("Pod", pods(cluster)),
        "/api/v1/namespaces/kube-system/pods": ("Pod", pods(cluster)),
    }
    if path in listing:
        kind, items = listing[path]
        return 200, as_table(kind, items) if table else as_list(kind, items)
    for prefix, (kind, items) in listing.items():
        if path.startswith(prefix + "/") and "/" not in path[len(prefix) + 1:]:
            name = path[len(prefix) + 1:]
            found = [i for i in items if i["metadata"]["name"] == name]
            if found:
                return 200, as_table(kind, found) if table else found[0]
            return 404, status(404, "NotFound", f'{kind.lower()}s "{name}" not found')
    return 404, status(404, "NotFound", "the server could not find the requested resource")


def dumps(body: Json) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(body, separators=(",", ":")).encode()
