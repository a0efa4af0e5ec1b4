"""The cluster engine: kubeconfig reading, kubectl JSON parsing, the verdicts, and kubectl's handling."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from _pytest_nova import kubeconfig
from _pytest_nova.catalog import load_catalog
from _pytest_nova.checks import cluster as c
from _pytest_nova.hosts import HostError
from _pytest_nova.inventory import Inventory, load_inventory
from _pytest_nova.kinds import build
from _pytest_nova.plan import Check
from _pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, Verdict
from nova_lab import kubeapi

REPO = Path(__file__).resolve().parents[1]
PROD = REPO / "inventories" / "example-prod.yaml"
TOKEN = "s3cr3t-token-value"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(PROD)


def _cluster_nodes(inv: Inventory) -> list[dict[str, Any]]:
    return [{"name": h.name, "address": h.address, "roles": list(h.roles)} for h in inv.cluster_nodes]


def _state(inv: Inventory, notready: set[str] = frozenset(), missing: set[str] = frozenset(),  # type: ignore[assignment]
           edit: Any = None) -> c.ClusterState:
    """The state kubectl would report for the example inventory, from the lab's API stand-in."""
    cl = _cluster_nodes(inv)
    nodes = kubeapi.as_list("Node", kubeapi.nodes(cl, notready, missing))
    pods = kubeapi.as_list("Pod", kubeapi.pods(cl))
    if edit:
        edit(nodes, pods)
    data = {"nodes": [asdict(n) for n in c.parse_nodes(cast(c.NodeList, nodes))],
            "pods": [asdict(p) for p in c.parse_pods(cast(c.PodList, pods))],
            "server": "https://10.10.1.100:6443"}
    return c.ClusterState.from_json(json.loads(json.dumps(data)))  # through JSON, like the cache


def _checks(inv: Inventory) -> dict[str, Check]:
    plan = build(load_catalog(), inv)
    return {ch.id: ch for ch in plan.checks if ch.kind in ("cluster_node", "cluster_check")}


def _judge(inv: Inventory, state: c.ClusterState, check_id: str) -> Verdict:
    (v,) = c.judge(_checks(inv)[check_id], state, inv)
    return v


# --- parsing -----------------------------------------------------------------------------------------------


def test_parse_nodes_reads_ready_roles_version_addresses(inv: Inventory) -> None:
    doc = kubeapi.as_list("Node", kubeapi.nodes(_cluster_nodes(inv), {"worker-1"}, set()))
    doc["items"][0]["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = ""
    nodes = {n.name: n for n in c.parse_nodes(cast(c.NodeList, doc))}
    assert nodes["master-1"].roles == ("master",)  # control-plane and master are one role
    assert nodes["master-1"].ready == "True" and nodes["master-1"].kubelet == kubeapi.K8S_VERSION
    assert nodes["worker-1"].ready == "Unknown" and nodes["worker-1"].reason == "NodeStatusUnknown"
    assert "10.10.1.41" in nodes["worker-1"].addresses


def test_parse_pods_keeps_the_reasons_of_unready_containers() -> None:
    pod = kubeapi.pods([{"name": "m", "address": "1.1.1.1", "roles": ["master"]}])[0]
    pod["status"]["containerStatuses"][0].update(ready=False, state={"waiting": {"reason": "CrashLoopBackOff"}})
    (p,) = c.parse_pods(cast(c.PodList, {"items": [pod]}))
    assert (p.phase, p.ready, p.total, p.reasons, p.node) == ("Running", 0, 1, ("CrashLoopBackOff",), "m")


def test_find_node_by_name_short_name_or_address(inv: Inventory) -> None:
    host = inv.host("worker-1")
    node = c.NodeState("worker-1.nova.local", "True", "", "", (), "v1", ("10.9.9.9",))
    assert c.find_node(host, [node]) is node
    by_ip = c.NodeState("ip-10-10-1-41", "True", "", "", (), "v1", ("10.10.1.41",))
    assert c.find_node(host, [by_ip]) is by_ip
    assert c.find_node(host, [replace_addr(by_ip)]) is None


def replace_addr(n: c.NodeState) -> c.NodeState:
    return c.NodeState(n.name, n.ready, n.reason, n.message, n.roles, n.kubelet, ("10.0.0.1",))


# --- verdicts ----------------------------------------------------------------------------------------------


def test_healthy_cluster_passes_every_check(inv: Inventory) -> None:
    state = _state(inv)
    outcomes = {i: c.judge(ch, state, inv)[0].outcome for i, ch in _checks(inv).items()}
    assert set(outcomes.values()) == {PASSED}
    assert len(outcomes) == 2 * len(inv.cluster_nodes) + 2


def test_missing_node_fails_its_ready_check_by_name(inv: Inventory) -> None:
    state = _state(inv, missing={"worker-2"})
    v = _judge(inv, state, "worker-2:k8s-nodes-ready")
    assert v.outcome == FAILED
    assert v.message == "worker-2 is not registered in the cluster (kubectl get nodes lists 7 of 8 inventory nodes)"
    assert v.fix.startswith("on worker-2 (10.10.1.42): systemctl status kubelet")
    assert _judge(inv, state, "worker-2:k8s-node-roles").outcome == SKIPPED
    assert _judge(inv, state, "worker-1:k8s-nodes-ready").outcome == PASSED


def test_notready_node_fails_with_the_condition(inv: Inventory) -> None:
    v = _judge(inv, _state(inv, notready={"infra-2"}), "infra-2:k8s-nodes-ready")
    assert v.outcome == FAILED
    assert v.message == ("infra-2 is NotReady: Ready=Unknown (NodeStatusUnknown: Kubelet stopped posting node "
                         "status.)")
    assert "Observed: infra-2 is NotReady" in v.explain()


def test_roles_mismatch_names_what_differs(inv: Inventory) -> None:
    def relabel(nodes: dict[str, Any], _pods: dict[str, Any]) -> None:
        labels = next(i for i in nodes["items"] if i["metadata"]["name"] == "infra-1")["metadata"]["labels"]
        del labels["node-role.kubernetes.io/infra"]
        labels["node-role.kubernetes.io/control-plane"] = ""

    state = _state(inv, edit=relabel)
    v = _judge(inv, state, "infra-1:k8s-node-roles")
    assert v.outcome == FAILED
    assert v.message == ("infra-1 has roles master in the cluster, inventory says infra: "
                         "it lacks infra and also has master")
    assert "kubectl label node infra-1" in v.fix


def test_unlabelled_worker_is_fine(inv: Inventory) -> None:
    def unlabel(nodes: dict[str, Any], _pods: dict[str, Any]) -> None:
        labels = next(i for i in nodes["items"] if i["metadata"]["name"] == "worker-1")["metadata"]["labels"]
        del labels["node-role.kubernetes.io/worker"]

    v = _judge(inv, _state(inv, edit=unlabel), "worker-1:k8s-node-roles")
    assert (v.outcome, v.message) == (PASSED, "worker-1 has roles <none> (inventory: worker)")


def test_two_kubelet_versions_fail_listing_the_nodes(inv: Inventory) -> None:
    def old(nodes: dict[str, Any], _pods: dict[str, Any]) -> None:
        nodes["items"][-1]["status"]["nodeInfo"]["kubeletVersion"] = "v1.29.8"

    v = _judge(inv, _state(inv, edit=old), "cluster:k8s-kubelet-version-uniform")
    assert v.outcome == FAILED
    assert v.message.startswith("2 kubelet versions: v1.29.8 on worker-2; v1.30.4 on master-1, ")


def test_pods_not_running_are_listed(inv: Inventory) -> None:
    def crash(_nodes: dict[str, Any], pods: dict[str, Any]) -> None:
        pods["items"][0]["status"]["containerStatuses"][0].update(
            ready=False, state={"waiting": {"reason": "CrashLoopBackOff"}})
        pods["items"][1]["status"]["phase"] = "Pending"

    v = _judge(inv, _state(inv, edit=crash), "cluster:k8s-system-pods-running")
    assert v.outcome == FAILED
    assert v.message.startswith("2 of ")
    assert "etcd-master-1 Running 0/1 ready (CrashLoopBackOff) on master-1" in v.message
    assert "Pending" in v.message


# --- kubeconfig --------------------------------------------------------------------------------------------


def _kubeconfig(path: Path, ca: dict[str, str]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "b",
        "clusters": [{"name": "a", "cluster": {"server": "https://a:6443"}},
                     {"name": "b", "cluster": {"server": "https://b:6443", **ca}}],
        "contexts": [{"name": "b", "context": {"cluster": "b", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
    }))
    return path


def test_kubeconfig_ca_inline_or_file_of_the_current_context(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    inline = _kubeconfig(tmp_path / "k1", {"certificate-authority-data": base64.b64encode(pem.encode()).decode()})
    assert kubeconfig.kubeconfig_ca(inline) == pem
    assert kubeconfig.kubeconfig_server(inline) == "https://b:6443"
    (tmp_path / "ca.crt").write_text(pem)
    by_file = _kubeconfig(tmp_path / "k2", {"certificate-authority": "ca.crt"})
    assert kubeconfig.kubeconfig_ca(by_file) == pem
    assert kubeconfig.kubeconfig_ca(tmp_path / "absent") is None


def test_kubeconfig_path_precedence(inv: Inventory, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("x")
    env = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "nope"), str(real)])}
    assert kubeconfig.kubeconfig_path(inv, env) == real
    assert kubeconfig.kubeconfig_path(inv, {}) == Path("~/.kube/config").expanduser()


# --- kubectl -----------------------------------------------------------------------------------------------

REFUSED = "The connection to the server 127.0.0.1:1 was refused - did you specify the right host or port?"
KLOG = (
    'E1122 00:36:10.977041   12564 memcache.go:265] "Unhandled Error" err="couldn\'t get current server API group"\n'
    'E1122 00:36:10.978454   12564 memcache.go:265] "Unhandled Error" err="couldn\'t get current server API group"\n'
    f"{REFUSED}\n"
)


def test_stderr_summary_keeps_kubectls_own_message() -> None:
    assert c.summarize_stderr(KLOG) == REFUSED
    assert c.summarize_stderr("") == "no error output"


def _fake_kubectl(tmp_path: Path, inv: Inventory, rc: int = 0) -> Path:
    """A kubectl stand-in that records its argv and prints what the API stand-in would."""
    cl = _cluster_nodes(inv)
    (tmp_path / "nodes.json").write_text(json.dumps(kubeapi.as_list("Node", kubeapi.nodes(cl, set(), set()))))
    (tmp_path / "pods.json").write_text(json.dumps(kubeapi.as_list("Pod", kubeapi.pods(cl))))
    script = tmp_path / "kubectl"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {tmp_path}/argv
if [ {rc} -ne 0 ]; then echo 'error: You must be logged in to the server (Unauthorized)' >&2; exit {rc}; fi
for a in "$@"; do case $a in
  nodes) cat {tmp_path}/nodes.json; exit 0;;
  pods) cat {tmp_path}/pods.json; exit 0;;
esac; done
exit 3
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_fetch_reads_nodes_and_pods_without_credentials_on_the_command_line(inv: Inventory, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", {})
    kubectl = _fake_kubectl(tmp_path, inv)
    data = c.fetch(kubeconfig, "kube-system", 2, tmp_path / "cache", "node-role.kubernetes.io/", str(kubectl))
    state = c.ClusterState.from_json(data)
    assert len(state.nodes) == len(inv.cluster_nodes) and state.server == "https://b:6443"
    argv = (tmp_path / "argv").read_text()
    assert f"--kubeconfig={kubeconfig}" in argv and "--request-timeout=2s" in argv and "-n kube-system" in argv
    assert TOKEN not in argv and TOKEN not in json.dumps(data)


def test_kubectl_failure_is_one_line_naming_the_call(inv: Inventory, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", {})
    kubectl = _fake_kubectl(tmp_path, inv, rc=1)
    with pytest.raises(HostError) as exc:
        c.fetch(kubeconfig, "kube-system", 2, tmp_path / "cache", "p/", str(kubectl))
    assert exc.value.cause.startswith("kubectl ")
    assert exc.value.cause.endswith(": error: You must be logged in to the server (Unauthorized)")


def test_missing_kubectl_or_kubeconfig_is_said_in_one_line(inv: Inventory, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HostError, match=r"^nova-ctl: kubectl not found on nova-ctl: install it"):
        c.fetch(tmp_path / "k", "kube-system", 2, tmp_path, "p/")
    with pytest.raises(HostError, match=r"kubeconfig .*/absent not found: set 'kubeconfig:' in the inventory"):
        c.fetch(tmp_path / "absent", "kube-system", 2, tmp_path, "p/", str(_fake_kubectl(tmp_path, inv)))


def test_unreadable_cluster_is_one_error_per_item(inv: Inventory) -> None:
    def fail() -> c.StoredState:
        raise HostError("nova-ctl", "kubectl get nodes: no answer within 2 s")

    engine = c.Cluster(inv, fail)
    (v,) = engine.verdicts(_checks(inv)["master-1:k8s-nodes-ready"])
    assert (v.outcome, v.message) == (ERROR, "kubectl get nodes: no answer within 2 s")


def test_an_unreadable_cluster_fails_the_postinstall_gate_without_strict(tmp_path: Path) -> None:
    """The node items are the post-install gate (required): kubectl that cannot read the cluster is an error there,
    so the run is NOT ACCEPTED; the advisory cluster items list the same cause as warnings."""
    data = yaml.safe_load(PROD.read_text())
    data["kubeconfig"] = str(tmp_path / "absent-kubeconfig")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    results = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", f"--nova-inventory={inventory}", "--nova-phase=postinstall",
                           f"--nova-json={results}", "-p", "no:cacheprovider", "-q", "--pyargs",
                           "pytest_nova.suites.test_cluster"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    records = json.loads(results.read_text())["results"]
    by_outcome: dict[str, set[str]] = {}
    for r in records:
        by_outcome.setdefault(r["outcome"], set()).add(r["requirement"])
    assert by_outcome == {"error": {"k8s-nodes-ready", "k8s-node-roles"},
                          "warning": {"k8s-kubelet-version-uniform", "k8s-system-pods-running"}}, by_outcome
    assert "nova verdict: NOT ACCEPTED" in proc.stdout
