"""The installed cluster, read from nova-ctl through the Kubernetes API with ``kubectl``.

Two ``kubectl get -o json`` calls per run (nodes, kube-system pods), made by whichever process asks first
(``runcache.once``); items judge the cached, reduced state. ``kubectl`` gets the kubeconfig by path: tokens and
keys stay in that file, never on a command line, in a message or in the cache.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict, cast

import pytest
import yaml

from _pytest_nova import executor, runcache
from _pytest_nova.hosts import HostError
from _pytest_nova.inventory import Host, Inventory
from _pytest_nova.kubeconfig import kubeconfig_path, kubeconfig_problem, kubeconfig_server
from _pytest_nova.model import JSONValue, Outcome
from _pytest_nova.plan import Check, ClusterNodeCheck
from _pytest_nova.session import session_of
from _pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, Verdict

RUNNER = "nova-ctl"
# Inventory roles as node-role.kubernetes.io/<x> labels; kubeadm labels masters control-plane (older: master).
ROLE_ALIASES = {"control-plane": "master"}
# Kubernetes leaves workers unlabelled (ROLES <none>), so the worker role is neither required nor an extra.
OPTIONAL_ROLES = frozenset({"worker"})
_KLOG = re.compile(r"^[EIWF]\d{4} ")


# --- kubectl ---------------------------------------------------------------------------------------------


def summarize_stderr(text: str) -> str:
    """The stderr of kubectl in one line: its last message, without klog's repeated retry lines when possible."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    plain = [ln for ln in lines if not _KLOG.match(ln)]
    last = (plain or lines or ["no error output"])[-1]
    return last if len(last) <= 300 else last[:297] + "..."


def kubectl_argv(kubectl: str, kubeconfig: Path, timeout: float, cache_dir: Path, *args: str) -> list[str]:
    """A read-only ``kubectl get ... -o json`` command line (no credentials on it)."""
    return [kubectl, f"--kubeconfig={kubeconfig}", f"--request-timeout={timeout:g}s", f"--cache-dir={cache_dir}",
            "get", *args, "-o", "json"]


def run_kubectl(argv: list[str], what: str, timeout: float) -> JSONValue:
    """Run one kubectl call; its JSON output, or ``HostError`` naming the call and kubectl's message."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)
    except subprocess.TimeoutExpired:
        raise HostError(RUNNER, f"kubectl {what}: no answer within {timeout:g} s") from None
    if proc.returncode != 0:
        raise HostError(RUNNER, f"kubectl {what}: {summarize_stderr(proc.stderr)}")
    try:
        doc: JSONValue = yaml.safe_load(proc.stdout)  # JSON is YAML; avoids a second parser for one call
        return doc
    except yaml.YAMLError:
        raise HostError(RUNNER, f"kubectl {what}: output is not JSON") from None


# --- parsing ---------------------------------------------------------------------------------------------


class _Meta(TypedDict, total=False):
    name: str
    labels: dict[str, str]


class _Condition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str


class _Address(TypedDict, total=False):
    type: str
    address: str


class _NodeStatus(TypedDict, total=False):
    conditions: list[_Condition]
    nodeInfo: dict[str, str]
    addresses: list[_Address]


class KubeNode(TypedDict, total=False):
    """The part of a Kubernetes Node object the checks read."""

    metadata: _Meta
    status: _NodeStatus


class _ContainerStatus(TypedDict, total=False):
    ready: bool
    state: dict[str, dict[str, str]]  # waiting / running / terminated -> reason, message…


class _PodStatus(TypedDict, total=False):
    phase: str
    containerStatuses: list[_ContainerStatus]


class _PodSpec(TypedDict, total=False):
    nodeName: str
    containers: list[dict[str, JSONValue]]


class KubePod(TypedDict, total=False):
    """The part of a Kubernetes Pod object the checks read."""

    metadata: _Meta
    spec: _PodSpec
    status: _PodStatus


class NodeList(TypedDict, total=False):
    """``kubectl get nodes -o json``."""

    items: list[KubeNode]


class PodList(TypedDict, total=False):
    """``kubectl get pods -o json``."""

    items: list[KubePod]


@dataclass(frozen=True)
class NodeState:
    """What the cluster says about one node."""

    name: str
    ready: str  # the Ready condition's status: True, False, Unknown (or "absent")
    reason: str
    message: str
    roles: tuple[str, ...]
    kubelet: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class PodState:
    """What the cluster says about one pod."""

    name: str
    node: str
    phase: str
    ready: int
    total: int
    reasons: tuple[str, ...]  # waiting/terminated reasons of its containers (CrashLoopBackOff, ...)


def parse_nodes(doc: NodeList | None, label_prefix: str = "node-role.kubernetes.io/") -> list[NodeState]:
    """``kubectl get nodes -o json`` reduced to what the checks use."""
    out = []
    for item in (doc or {}).get("items") or []:
        meta, status = item.get("metadata") or {}, item.get("status") or {}
        cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), _Condition())
        labels = meta.get("labels") or {}
        roles = sorted({ROLE_ALIASES.get(k[len(label_prefix):], k[len(label_prefix):])
                        for k in labels if k.startswith(label_prefix) and k[len(label_prefix):]})
        out.append(NodeState(
            name=str(meta.get("name", "")), ready=str(cond.get("status", "absent")),
            reason=str(cond.get("reason", "")), message=str(cond.get("message", "")), roles=tuple(roles),
            kubelet=str((status.get("nodeInfo") or {}).get("kubeletVersion", "")),
            addresses=tuple(str(a.get("address")) for a in status.get("addresses") or [] if a.get("address")),
        ))
    return out


def parse_pods(doc: PodList | None) -> list[PodState]:
    """``kubectl get pods -o json`` reduced to phase, readiness and the reasons of unready containers."""
    out = []
    for item in (doc or {}).get("items") or []:
        status = item.get("status") or {}
        statuses = status.get("containerStatuses") or []
        reasons = []
        for cs in statuses:
            for key in ("waiting", "terminated"):
                why = ((cs.get("state") or {}).get(key) or {}).get("reason")
                if why and not cs.get("ready"):
                    reasons.append(str(why))
        total = len(statuses) or len((item.get("spec") or {}).get("containers") or [])
        out.append(PodState(
            name=str((item.get("metadata") or {}).get("name", "")),
            node=str((item.get("spec") or {}).get("nodeName", "")),
            phase=str(status.get("phase", "Unknown")), ready=sum(1 for cs in statuses if cs.get("ready")),
            total=total, reasons=tuple(dict.fromkeys(reasons)),
        ))
    return out


def find_node(host: Host, nodes: list[NodeState]) -> NodeState | None:
    """The cluster node of an inventory host: same name (or short name), else same address."""
    for n in nodes:
        if n.name.lower() == host.name.lower() or n.name.lower().split(".", 1)[0] == host.name.lower():
            return n
    return next((n for n in nodes if host.address in n.addresses), None)


# --- judging ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterState:
    """The cached cluster state of one run."""

    nodes: list[NodeState]
    pods: list[PodState]
    server: str

    @classmethod
    def from_json(cls, data: StoredState) -> ClusterState:
        """Rebuild from the cached JSON."""
        return cls(
            [NodeState(name=n["name"], ready=n["ready"], reason=n["reason"], message=n["message"],
                       roles=tuple(n["roles"]), kubelet=n["kubelet"], addresses=tuple(n["addresses"]))
             for n in data["nodes"]],
            [PodState(name=p["name"], node=p["node"], phase=p["phase"], ready=p["ready"], total=p["total"],
                      reasons=tuple(p["reasons"])) for p in data["pods"]],
            data["server"],
        )


class StoredNode(TypedDict):
    """A :class:`NodeState` as the run cache stores it."""

    name: str
    ready: str
    reason: str
    message: str
    roles: Sequence[str]
    kubelet: str
    addresses: Sequence[str]


class StoredPod(TypedDict):
    """A :class:`PodState` as the run cache stores it."""

    name: str
    node: str
    phase: str
    ready: int
    total: int
    reasons: Sequence[str]


class StoredState(TypedDict):
    """The reduced cluster state in the run cache."""

    nodes: list[StoredNode]
    pods: list[StoredPod]
    server: str


# What each check reads, for the "Checked:" line.
_CHECKED = {
    "node_ready": "{node}: registered and its Ready condition (kubectl get nodes)",
    "node_roles": "{node}: its node-role.kubernetes.io/* labels (kubectl get nodes)",
    "kubelet_version_uniform": "the kubelet version of every node (kubectl get nodes)",
    "system_pods_running": "the pods of {namespace} (kubectl -n {namespace} get pods)",
}


def _verdict(check: Check, outcome: Outcome, message: str, target: str | None = None, fix: str = "") -> Verdict:
    r = check.requirement
    checked = _CHECKED.get(str(r.check), r.id).format(
        node=check.target, namespace=r.params.get("namespace", "kube-system"))
    return Verdict(
        check="k8s", requirement=r.id, section=r.section, outcome=outcome, message=message, source=None,
        target=target if target is not None else check.target, checked=checked,
        expected=r.summary, fix=fix if outcome in (FAILED, ERROR) else "",
    )


def _fix(check: Check, node: str) -> str:
    return check.requirement.fix.replace("<node>", node)


def judge_ready(check: Check, host: Host, state: ClusterState, inv: Inventory) -> Verdict:
    """The inventory node is registered in the cluster and its Ready condition is True."""
    node = find_node(host, state.nodes)
    if node is None:
        found = sum(1 for h in inv.cluster_nodes if find_node(h, state.nodes))
        return _verdict(check, FAILED, f"{host.name} is not registered in the cluster (kubectl get nodes lists "
                                       f"{found} of {len(inv.cluster_nodes)} inventory nodes)",
                        fix=f"on {host.name} ({host.address}): systemctl status kubelet; journalctl -u kubelet -n 50; "
                            "a node that never joined has to (re)join the cluster")
    alias = f" (registered as {node.name})" if node.name != host.name else ""
    if node.ready != "True":
        why = ": ".join(p for p in (node.reason, node.message) if p)
        observed = f"{host.name}{alias} is NotReady: Ready={node.ready}" + (f" ({why})" if why else "")
        return _verdict(check, FAILED, observed, fix=_fix(check, node.name))
    return _verdict(check, PASSED, f"{host.name}{alias} is Ready (kubelet {node.kubelet})")


def judge_roles(check: Check, host: Host, state: ClusterState) -> Verdict:
    """The node's node-role labels match its inventory roles (worker optional, control-plane = master)."""
    node = find_node(host, state.nodes)
    if node is None:
        return _verdict(check, SKIPPED, f"{host.name} is not registered in the cluster, so its roles cannot be "
                                        "read (see k8s-nodes-ready)")
    expected = set(host.roles) - {"nova-ctl"}
    actual = set(node.roles)
    missing = sorted(expected - actual - OPTIONAL_ROLES)
    extra = sorted(actual - expected - OPTIONAL_ROLES)
    shown = ", ".join(node.roles) or "<none>"
    if missing or extra:
        parts = [f"lacks {', '.join(missing)}"] if missing else []
        parts += [f"also has {', '.join(extra)}"] if extra else []
        return _verdict(check, FAILED, f"{node.name} has roles {shown} in the cluster, inventory says "
                                       f"{', '.join(sorted(expected))}: it {' and '.join(parts)}",
                        fix=_roles_fix(node.name, missing, extra))
    return _verdict(check, PASSED, f"{node.name} has roles {shown} (inventory: {', '.join(sorted(expected))})")


def _roles_fix(node: str, missing: list[str], extra: list[str]) -> str:
    labels = [f"node-role.kubernetes.io/{r}=" for r in missing] + [f"node-role.kubernetes.io/{r}-" for r in extra]
    return f"fix the inventory's roles for {node}, or label the node: kubectl label node {node} {' '.join(labels)}"


def judge_versions(check: Check, state: ClusterState) -> Verdict:
    """One kubelet version across the registered nodes."""
    by_version: dict[str, list[str]] = {}
    for n in state.nodes:
        by_version.setdefault(n.kubelet or "unknown", []).append(n.name)
    if not by_version:
        return _verdict(check, FAILED, "kubectl get nodes lists no nodes", target="cluster",
                        fix=check.requirement.fix)
    if len(by_version) > 1:
        listed = "; ".join(f"{v} on {', '.join(ns)}" for v, ns in sorted(by_version.items()))
        return _verdict(check, FAILED, f"{len(by_version)} kubelet versions: {listed}", target="cluster",
                        fix=check.requirement.fix)
    (version, names), = by_version.items()
    return _verdict(check, PASSED, f"all {len(names)} nodes run kubelet {version}", target="cluster")


def judge_pods(check: Check, state: ClusterState) -> Verdict:
    """Every pod of the namespace is Running with all containers ready (or Succeeded)."""
    ns = str(check.requirement.params.get("namespace", "kube-system"))
    bad = [p for p in state.pods if not (p.phase == "Succeeded" or (p.phase == "Running" and p.ready == p.total))]
    if not state.pods:
        return _verdict(check, FAILED, f"{ns} has no pods", target=ns, fix=check.requirement.fix)
    if bad:
        shown = ", ".join(
            f"{p.name} {p.phase} {p.ready}/{p.total} ready" + (f" ({', '.join(p.reasons)})" if p.reasons else "")
            + (f" on {p.node}" if p.node else "") for p in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        first = bad[0]
        return _verdict(check, FAILED, f"{len(bad)} of {len(state.pods)} {ns} pods are not running: {shown}{more}",
                        target=ns, fix=f"kubectl -n {ns} describe pod {first.name}"
                        + (f" (and the other {len(bad) - 1})" if len(bad) > 1 else "")
                        + f"; kubectl -n {ns} get pods -o wide")
    return _verdict(check, PASSED, f"all {len(state.pods)} {ns} pods are Running and ready", target=ns)


def judge(check: Check, state: ClusterState, inv: Inventory) -> list[Verdict]:
    """The verdicts of one ``cluster_node`` or ``cluster_check`` item."""
    kind = check.requirement.check
    if isinstance(check, ClusterNodeCheck):
        host = inv.host(str(check.target))
        return [judge_ready(check, host, state, inv) if kind == "node_ready" else judge_roles(check, host, state)]
    if kind == "kubelet_version_uniform":
        return [judge_versions(check, state)]
    if kind == "system_pods_running":
        return [judge_pods(check, state)]
    return [_verdict(check, ERROR, f"no cluster check named {kind!r} in this version of pytest-nova")]


# --- fetching and fixtures -------------------------------------------------------------------------------


def fetch(kubeconfig: Path, namespace: str, timeout: float, cache_dir: Path, label_prefix: str,
          kubectl: str | None = None) -> StoredState:
    """Read nodes and ``namespace``'s pods with kubectl (two calls, in parallel); the reduced state as JSON."""
    kubectl = kubectl or shutil.which("kubectl")
    if kubectl is None:
        raise HostError(RUNNER, "kubectl not found on nova-ctl: install it or put it on the PATH "
                                "(the post-install cluster checks read the Kubernetes API with it)")
    if not kubeconfig.is_file():
        raise HostError(RUNNER, f"kubeconfig {kubeconfig} not found: set 'kubeconfig:' in the inventory, "
                                "set $KUBECONFIG, or copy the cluster's admin kubeconfig to ~/.kube/config")
    problem = kubeconfig_problem(kubeconfig)
    if problem:
        raise HostError(RUNNER, f"kubeconfig {problem}; kubectl cannot use it: fix it or point 'kubeconfig:' in "
                                "the inventory at the cluster's admin kubeconfig")
    # Each call may retry discovery a few times, each bounded by --request-timeout.
    outer = 6 * timeout + 10
    calls = {"get nodes": ["nodes"], f"-n {namespace} get pods": ["pods", "-n", namespace]}
    nodes, pods = executor.run_all(
        lambda call: run_kubectl(kubectl_argv(kubectl, kubeconfig, timeout, cache_dir, *call[1]), call[0], outer),
        calls.items(), 2)
    # kubectl's JSON, trusted to be the objects it asked for; what the checks read is then checked field by field.
    return {"nodes": [cast(StoredNode, asdict(n)) for n in parse_nodes(cast(NodeList, nodes), label_prefix)],
            "pods": [cast(StoredPod, asdict(p)) for p in parse_pods(cast(PodList, pods))],
            "server": kubeconfig_server(kubeconfig) or "?"}


class Cluster:
    """The run's cluster state, read once (shared by xdist workers) and judged per item."""

    def __init__(self, inv: Inventory, compute: Callable[[], StoredState]) -> None:
        self._inv, self._compute = inv, compute

    def verdicts(self, check: Check) -> list[Verdict]:
        """The verdicts of ``check``; an unreadable cluster is one clear error per item."""
        try:
            state = ClusterState.from_json(self._compute())
        except HostError as exc:
            return [_verdict(check, ERROR, exc.cause, fix="")]
        return judge(check, state, self._inv)


@pytest.fixture(scope="session")
def nova_cluster(pytestconfig: pytest.Config, nova_inventory: Inventory, nova_run_dir: Path) -> Cluster:
    """The Kubernetes cluster as kubectl on nova-ctl sees it (nodes, kube-system pods), read once per run."""
    state = session_of(pytestconfig)
    cat = state.catalog
    pods_req = next((r for r in cat.by_area("k8s") if r.check == "system_pods_running"), None)
    roles_req = next((r for r in cat.by_area("k8s") if r.check == "node_roles"), None)
    namespace = str(pods_req.params.get("namespace", "kube-system")) if pods_req else "kube-system"
    prefix = str(roles_req.params.get("label_prefix", "node-role.kubernetes.io/")) if roles_req else \
        "node-role.kubernetes.io/"
    kubeconfig = kubeconfig_path(nova_inventory)

    def compute() -> StoredState:
        return fetch(kubeconfig, namespace, state.settings.probe_timeout, nova_run_dir / "kube-cache", prefix)

    return Cluster(nova_inventory, lambda: runcache.once(nova_run_dir, "cluster-state", compute))
