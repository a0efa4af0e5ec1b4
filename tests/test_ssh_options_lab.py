"""OpenSSH options of the inventory in the lab: a node that nova-ctl reaches only through a jump host.

nftables on worker-1 drops ssh from nova-ctl; its sshOptions send the login through master-1 (ProxyCommand,
as Ansible users write it in ansible_ssh_common_args). pytest runs inside nova-ctl's namespace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from nova_lab import Lab
from tests.lab_fixtures import FaultFactory, run_suite

pytestmark = pytest.mark.lab
OS = "pytest_nova/suites/test_os.py"


def proxy_command(lab: Lab, jump: str) -> str:
    """``ProxyCommand=ssh ... -W %h:%p nova-installer@JUMP`` with the lab's key and known_hosts."""
    sd = lab.state_dir
    return (f"ProxyCommand=ssh -i {sd / 'id_nova'} -o UserKnownHostsFile={sd / 'known_hosts'} -o BatchMode=yes "
            f"-o StrictHostKeyChecking=yes -o ConnectTimeout=5 -W %h:%p -q nova-installer@{lab.hosts[jump].address}")


def worker_1(data: dict[str, Any]) -> dict[str, str]:
    """worker-1's OS records: requirement -> outcome."""
    return {r["requirement"]: r["outcome"] for r in data["results"] if r["source"] == "worker-1"}


def test_a_node_reached_only_through_a_jump_host(lab: Lab, fault: FaultFactory, tmp_path: Path) -> None:
    fault("fw-drop", source="nova-ctl", destination="worker-1", port=22, protocol="tcp")
    # Without its options worker-1 is unreachable: every check of it errors, naming the timeout.
    rc, data, out = run_suite(lab, OS, "-k", "worker-1", "--nova-connect-timeout=3")
    assert rc == 1, out[-2000:]
    direct = worker_1(data)
    assert direct and set(direct.values()) == {"error"}, direct
    assert all("timed out" in r["message"] for r in data["results"] if r["source"] == "worker-1")

    inv = yaml.safe_load(lab.inventory_path.read_text())
    for node in inv["nodes"]:
        if node["name"] == "worker-1":
            node["sshOptions"] = [proxy_command(lab, "master-1")]
    jumped = tmp_path / "jump.yaml"
    jumped.write_text(yaml.safe_dump(inv))
    rc, data, out = run_suite(lab, OS, "-k", "worker-1", f"--nova-inventory={jumped}")
    assert rc == 0, out[-2000:]
    through = worker_1(data)
    assert through.keys() == direct.keys() and set(through.values()) == {"passed"}, through
