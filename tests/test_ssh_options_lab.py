"""OpenSSH options of the inventory in the lab: a node that nova-ctl reaches only through a jump host.

nftables on worker-1 drops ssh from nova-ctl; its sshOptions send the login through master-1 (ProxyCommand).
The inventory is converted by nova-inventory-from-ansible from an Ansible inventory that says so the way
Ansible users write it (ansible_ssh_common_args), and with --jump (kubespray's bastion). pytest runs inside
nova-ctl's namespace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from _pytest_nova.inventory import load_inventory
from nova_lab import Lab
from pytest_nova.ansible import main as from_ansible
from tests.lab_fixtures import FaultFactory, run_suite

pytestmark = pytest.mark.lab
OS = "pytest_nova/suites/test_os.py"


def proxy_command(lab: Lab, jump: str) -> str:
    """``ssh ... -W %h:%p nova-installer@JUMP`` with the lab's key and known_hosts."""
    sd = lab.state_dir
    return (f"ssh -i {sd / 'id_nova'} -o UserKnownHostsFile={sd / 'known_hosts'} -o BatchMode=yes "
            f"-o StrictHostKeyChecking=yes -o ConnectTimeout=5 -W %h:%p -q nova-installer@{lab.hosts[jump].address}")


def ansible_inventory(lab: Lab, path: Path, *, proxy: bool) -> Path:
    """The lab as an Ansible user describes it; ``proxy``: worker-1 is reached through master-1."""
    sd, a = lab.state_dir, {h: lab.hosts[h].address for h in ("nova-ctl", "master-1", "worker-1")}
    args = f" ansible_ssh_common_args='-o ProxyCommand=\"{proxy_command(lab, 'master-1')}\"'" if proxy else ""
    path.write_text(
        f"[deploy]\nnova-ctl ansible_host={a['nova-ctl']} ansible_connection=local\n"
        f"[kube_control_plane]\nmaster-1 ansible_host={a['master-1']}\n"
        f"[kube_node]\nworker-1 ansible_host={a['worker-1']}{args}\n"
        f"[all:vars]\nansible_user=nova-installer\nansible_ssh_private_key_file={sd / 'id_nova'}\n"
        f"ansible_ssh_extra_args='-o UserKnownHostsFile={sd / 'known_hosts'}'\n"
    )
    return path


def convert(lab: Lab, tmp_path: Path, name: str, *extra: str, proxy: bool = False) -> Path:
    """nova-inventory-from-ansible on the lab's Ansible inventory."""
    out = tmp_path / f"{name}.yaml"
    assert from_ansible([str(ansible_inventory(lab, tmp_path / f"{name}.ini", proxy=proxy)),
                         "--role", "nova-ctl=deploy", "--role", "master=kube_control_plane",
                         "--role", "worker=kube_node", "--name", "lab", "--dns-base-domain", "lab.local",
                         "--dns-server", lab.hosts["dns-1"].address, *extra, "-o", str(out)]) == 0
    return out


def worker_1(data: dict[str, Any]) -> dict[str, str]:
    """worker-1's OS records: requirement -> outcome."""
    return {r["requirement"]: r["outcome"] for r in data["results"] if r["source"] == "worker-1"}


def test_a_node_reached_only_through_a_jump_host(lab: Lab, fault: FaultFactory, tmp_path: Path) -> None:
    fault("fw-drop", source="nova-ctl", destination="worker-1", port=22, protocol="tcp")
    # Without its options worker-1 is unreachable: each required check of it errors (an advisory one warns),
    # naming the timeout.
    rc, data, out = run_suite(lab, OS, "-k", "worker-1", "--nova-connect-timeout=3")
    assert rc == 1, out[-2000:]
    direct = worker_1(data)
    mine = [r for r in data["results"] if r["source"] == "worker-1"]
    assert {(r["severity"], r["outcome"]) for r in mine} <= {("required", "error"), ("advisory", "warning")}, direct
    assert "error" in direct.values() and all("timed out" in r["message"] for r in mine)

    # ansible_ssh_common_args with a ProxyCommand, and kubespray's way: --jump HOST for every node.
    common = convert(lab, tmp_path, "common-args", proxy=True)
    inv = load_inventory(common)
    assert inv.host("worker-1").ssh_options == (f"ProxyCommand={proxy_command(lab, 'master-1')}",)
    assert inv.host("master-1").ssh_options == () and inv.ssh.known_hosts_file == str(lab.state_dir / "known_hosts")
    jump = convert(lab, tmp_path, "jump", "--jump", "master-1")
    sd = lab.state_dir
    assert load_inventory(jump).host("worker-1").ssh_options == (
        f"ProxyCommand=ssh -o BatchMode=yes -o UserKnownHostsFile={sd / 'known_hosts'} -i {sd / 'id_nova'} "
        f"-W %h:%p -p 22 nova-installer@{lab.hosts['master-1'].address}",)
    for converted in (common, jump):
        rc, data, out = run_suite(lab, OS, "-k", "worker-1", f"--nova-inventory={converted}")
        assert rc == 0, out[-2000:]
        through = worker_1(data)
        assert through.keys() == direct.keys() and set(through.values()) == {"passed"}, (converted.name, through)
