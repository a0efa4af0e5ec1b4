"""In the lab: a host prepared word for word by the docs passes; advisories warn and gate only when strict.

A small internet-mode lab (1 master, 1 infra, 1 ingress, 1 worker) for the module, always torn down. pytest runs
inside nova-ctl's namespace, like a user's run; the exit code and the results JSON are the evidence.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from nova_lab import Lab, LabSpec
from tests.lab_fixtures import booted, lab_name, run_suite, ssh_argv

pytestmark = pytest.mark.lab
NODES = ("master-1", "infra-1", "ingress-1", "worker-1")
OS, K8S = "pytest_nova/suites/test_os.py", "pytest_nova/suites/test_k8s_nodes.py"


@pytest.fixture(scope="module")
def small_lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    yield from booted(LabSpec(name=lab_name("sv", pytestconfig), masters=1, infra=1, ingress=1, workers=1))


def _outcomes(results: dict[str, Any], outcome: str) -> dict[str, str]:
    return {r["nodeid"]: r["message"] for r in results.get("results", []) if r["outcome"] == outcome}


def _mode(lab: Lab, host: str, path: str) -> str:
    return lab.exec(host, ["stat", "-c", "%a %U", path]).stdout.strip()


def test_host_prepared_by_the_docs_commands_passes(small_lab: Lab) -> None:
    """Every node re-prepared with the docs' own commands (sudoers 0644, ~/.ssh 0755): exit 0, ACCEPTED."""
    lab = small_lab
    applied = []
    try:
        for host in NODES:
            applied.append(lab.apply("docs-literal", host=host))
        for host in NODES:
            assert _mode(lab, host, "/etc/sudoers.d/99-nova-installer-user") == "644 root"
            assert _mode(lab, host, "/home/nova-installer/.ssh") == "755 nova-installer"
            assert _mode(lab, host, "/home/nova-installer/.ssh/authorized_keys") == "600 nova-installer"
        # Every preinstall suite: DNS, endpoints, account, node prerequisites, the whole firewall matrix.
        rc, results, output = run_suite(lab, "-n", "2")
    finally:
        for f in reversed(applied):
            lab.revert(f)
    assert rc == 0, output[-3000:]
    assert results["verdict"] == "ACCEPTED"
    assert not _outcomes(results, "failed") and not _outcomes(results, "error")
    passed = _outcomes(results, "passed")
    for host in NODES:
        assert "has mode 0644, owner root" in passed[f"{OS}::test_os[{host}:os-sudoers-file]"]
        assert "/home/nova-installer/.ssh has mode 0755, owner nova-installer" in \
            passed[f"{OS}::test_os[{host}:os-ssh-dir]"]
    assert {r["check"] for r in results["results"]} >= {"dns", "external", "os", "k8s", "firewall"}


def test_writable_ssh_dir_is_what_sshd_refuses(small_lab: Lab) -> None:
    """The rule is sshd's own: a ~/.ssh others may write (0757) stops the key login (0755 above did not)."""
    lab = small_lab

    def login() -> subprocess.CompletedProcess[str]:
        return subprocess.run(ssh_argv(lab, "worker-1", "true"), capture_output=True, text=True, timeout=30,
                              check=False)

    assert login().returncode == 0
    with lab.fault("wrong-mode-ssh-dir", host="worker-1"):
        refused = login()
        rc, results, _ = run_suite(lab, OS, "-k", "worker-1")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    assert rc == 1
    errors = _outcomes(results, "error")
    assert errors and all("ssh: login as 'nova-installer' with key" in m and "refused" in m
                          for m in errors.values()), errors
    assert login().returncode == 0


def test_only_advisories_failing_is_accepted_with_warnings_and_strict_fails(small_lab: Lab) -> None:
    lab = small_lab
    with lab.fault("ip-forward-off", host="worker-1"):
        rc, results, output = run_suite(lab, OS, K8S, "-n", "2")
        strict_rc, strict, strict_output = run_suite(lab, OS, K8S, "-n", "2", "--nova-strict")
    assert rc == 0, output[-3000:]
    assert results["verdict"] == "ACCEPTED" and results["summary"]["warning"] == 1
    forward = f"{K8S}::test_k8s_node[worker-1:k8s-ip-forward]"
    assert _outcomes(results, "warning") == {forward: "net.ipv4.ip_forward = 0"}
    assert "nova verdict: ACCEPTED" in output
    assert "warning: k8s-ip-forward (docs k8s-basics): 1 result(s) at worker-1: net.ipv4.ip_forward = 0" in output

    assert strict_rc == 1, strict_output[-3000:]
    assert strict["verdict"] == "NOT ACCEPTED" and strict["summary"]["warning"] == 0
    assert _outcomes(strict, "failed") == {forward: "net.ipv4.ip_forward = 0"}
    assert "nova verdict: NOT ACCEPTED" in strict_output
