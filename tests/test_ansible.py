"""``nova-inventory-from-ansible`` on real Ansible inventories, read by ansible-core and by ansible-inventory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_nova.ansible import main
from pytest_nova.errors import SourceError
from pytest_nova.inventory import Inventory, load_inventory

DATA = Path(__file__).parent / "data" / "ansible"
KUBESPRAY = DATA / "kubespray" / "hosts.ini"
YAML_INV = DATA / "yaml" / "hosts.yaml"
KUBESPRAY_ROLES = ["--role", "master=kube_control_plane", "--role", "worker=kube_node", "--role", "infra=infra",
                   "--role", "nova-ctl=bastion"]
YAML_ROLES = ["--role", "master=control", "--role", "worker=workers", "--role", "ingress=edge",
              "--role", "nova-ctl=mgmt", "--role", "workstation=desks"]
COMPLETE = ["--name", "lab", "--dns-base-domain", "nova.example.local", "--dns-server", "198.51.100.53"]

needs_ansible = pytest.mark.skipif(shutil.which("ansible-inventory") is None,
                                   reason="ansible-core is installed by pip install -e '.[dev]'")


def convert(tmp_path: Path, *args: str | Path) -> tuple[int, Path, str]:
    out = tmp_path / "nova.yaml"
    if out.exists():
        out.unlink()
    code = main([str(a) for a in (*args, "-o", out)])
    return code, out, out.read_text() if out.exists() else ""


def nodes(inv: Inventory) -> dict[str, tuple[str, tuple[str, ...], str | None, int | None, str | None]]:
    return {n.name: (n.address, n.roles, n.user, n.port, n.identity_file) for n in inv.nodes}


def ansible_list(source: Path, tmp_path: Path) -> Path:
    """The JSON the real ``ansible-inventory --list`` prints for ``source``."""
    done = subprocess.run(["ansible-inventory", "-i", str(source), "--list"], capture_output=True, text=True,
                          timeout=120, check=True)
    out = tmp_path / f"{source.stem}.json"
    out.write_text(done.stdout)
    return out


@needs_ansible
def test_ini_with_groups_of_groups_host_vars_and_host_vars_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, text = convert(tmp_path, KUBESPRAY, *KUBESPRAY_ROLES, *COMPLETE)
    assert code == 0, capsys.readouterr().err
    inv = load_inventory(out)
    assert inv.ssh.user == "nova-installer" and inv.ssh.identity_file == "~/.ssh/id_nova" and inv.ssh.port == 22
    assert nodes(inv) == {
        "bastion": ("198.51.100.5", ("nova-ctl",), None, None, None),
        "master-1": ("198.51.100.11", ("master",), None, None, None),
        "master-2": ("198.51.100.12", ("master",), None, None, None),
        "master-3": ("198.51.100.13", ("master",), None, None, None),
        # infra-1 is in infra and in kube_node (a child group of k8s_cluster): both roles.
        "infra-1": ("198.51.100.21", ("infra", "worker"), None, None, None),
        "worker-1": ("198.51.100.41", ("worker",), None, None, None),
        # ansible_user inline, ansible_port from host_vars/worker-2.yml.
        "worker-2": ("198.51.100.42", ("worker",), "admin", 2222, None),
    }
    assert "TODO:" not in text
    assert "valid inventory v1" in capsys.readouterr().err


@needs_ansible
def test_yaml_with_host_vars_leaves_todos_that_load_inventory_rejects(tmp_path: Path) -> None:
    code, out, text = convert(tmp_path, YAML_INV, *YAML_ROLES)
    assert code == 0
    with pytest.raises(SourceError, match=r"nova.yaml:5: cluster: missing required key 'name'"):
        load_inventory(out)
    filled = (text.replace("  name:  ", "  name: lab", 1)
              .replace("  dnsBaseDomain:  ", "  dnsBaseDomain: nova.example.local", 1)
              .replace("  dnsServers:  ", "  dnsServers: [203.0.113.53]", 1))
    out.write_text(filled)
    inv = load_inventory(out)
    assert (inv.name, inv.dns_base_domain, inv.dns_servers) == ("lab", "nova.example.local", ("203.0.113.53",))
    assert inv.ssh.user == "nova-installer" and inv.ssh.identity_file == "~/.ssh/id_nova"  # group_vars/all.yml
    assert nodes(inv) == {
        "cp1": ("203.0.113.11", ("master",), None, None, None),
        "cp2": ("203.0.113.12", ("master",), None, 2200, None),
        "ctl": ("203.0.113.5", ("nova-ctl",), None, None, None),
        "w1": ("203.0.113.41", ("worker",), None, None, "/etc/nova/keys/w1"),
        "w2": ("203.0.113.42", ("ingress", "worker"), None, None, None),
    }
    assert inv.host("ctl").connection == "local"
    assert [(w.name, w.address) for w in inv.workstations] == [("203.0.113.70", "203.0.113.70")]


@needs_ansible
@pytest.mark.parametrize(("source", "roles"), [(KUBESPRAY, KUBESPRAY_ROLES),
                                               (YAML_INV, YAML_ROLES)], ids=["ini", "yaml"])
def test_ansible_inventory_list_json_gives_the_same_inventory(
    source: Path, roles: list[str], tmp_path: Path
) -> None:
    listed = ansible_list(source, tmp_path)
    assert main([str(listed), *roles, *COMPLETE, "-o", str(tmp_path / "from-json.yaml")]) == 0
    assert main([str(source), *roles, *COMPLETE, "-o", str(tmp_path / "from-file.yaml")]) == 0
    from_json, from_file = load_inventory(tmp_path / "from-json.yaml"), load_inventory(tmp_path / "from-file.yaml")
    assert from_json.nodes == from_file.nodes and from_json.ssh == from_file.ssh
    assert from_json.workstations == from_file.workstations
    assert len(from_json.nodes) >= 5


def test_list_json_on_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    listing = {"_meta": {"hostvars": {"a": {"ansible_host": "192.0.2.1", "ansible_user": "u",
                                            "ansible_ssh_private_key_file": "k"}}},
               "all": {"children": ["ungrouped", "k8s"]}, "k8s": {"children": ["cp"]}, "cp": {"hosts": ["a"]}}
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(json.dumps(listing)))
    assert main(["-", "--role", "master=k8s"]) == 0
    out = capsys.readouterr().out
    assert "  - {name: a, address: 192.0.2.1, roles: [master]}" in out and "  user: u" in out


def _error(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    assert main([str(a) for a in argv]) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@needs_ansible
def test_unmapped_host_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert _error(capsys, KUBESPRAY, *KUBESPRAY_ROLES[:-2]) == (
        f"nova-inventory-from-ansible: error: {KUBESPRAY}: bastion: in no mapped group (bastion); map one with "
        "--role ROLE=GROUP, or leave the host out with --skip HOST"
    )


@needs_ansible
def test_unknown_group_and_unknown_role(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, KUBESPRAY, "--role", "master=kube_master")
    assert err.endswith("no group 'kube_master' in this inventory (its groups: bastion, etcd, infra, k8s_cluster, "
                        "kube_control_plane, kube_node)")
    assert _error(capsys, KUBESPRAY, "--role", "mastr=kube_control_plane").endswith(
        "--role mastr=kube_control_plane: unknown role 'mastr' (expected one of: nova-ctl, master, infra, ingress, "
        "worker, workstation)")


@needs_ansible
def test_vault_encrypted_value_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _error(capsys, DATA / "vault.yaml", "--role", "master=masters")
    assert ": m1: ansible_user is vault-encrypted and is not decrypted here" in err
    listed = ansible_list(DATA / "vault.yaml", tmp_path)
    assert ": m1: ansible_user is vault-encrypted" in _error(capsys, listed, "--role", "master=masters")


def _listing(hosts: dict[str, dict[str, object]], groups: dict[str, list[str]], tmp_path: Path) -> Path:
    data: dict[str, object] = {"_meta": {"hostvars": hosts}, **{g: {"hosts": h} for g, h in groups.items()}}
    path = tmp_path / "list.json"
    path.write_text(json.dumps(data))
    return path


def test_missing_address_conflicts_and_templates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _listing({"m1": {}}, {"cp": ["m1"]}, tmp_path)
    assert _error(capsys, src, "--role", "master=cp").endswith(
        "m1: no ansible_host, and the host name is not an IP address; set ansible_host to the node's IP address")
    src = _listing({"m1": {"ansible_host": "m1.example.com"}}, {"cp": ["m1"]}, tmp_path)
    assert _error(capsys, src, "--role", "master=cp").endswith(
        "m1: ansible_host 'm1.example.com' is not an IP address; set ansible_host to the node's IP address")
    src = _listing({"m1": {"ansible_host": "192.0.2.1"}}, {"cp": ["m1"], "desks": ["m1"]}, tmp_path)
    assert "m1: mapped to master, workstation; a workstation is not a cluster node" in _error(
        capsys, src, "--role", "master=cp", "--role", "workstation=desks")
    src = _listing({"m1": {"ansible_host": "192.0.2.1"}, "c1": {"ansible_host": "192.0.2.2"},
                    "c2": {"ansible_host": "192.0.2.3"}}, {"cp": ["m1"], "ctl": ["c1", "c2"]}, tmp_path)
    assert "c1, c2: several hosts map to nova-ctl" in _error(capsys, src, "--role", "master=cp",
                                                             "--role", "nova-ctl=ctl")
    src = _listing({"w1": {"ansible_host": "192.0.2.1"}}, {"nodes": ["w1"]}, tmp_path)
    assert "no host maps to the master role" in _error(capsys, src, "--role", "worker=nodes")
    src = _listing({"m1": {"ansible_host": "{{ lookup('env', 'IP') }}"}}, {"cp": ["m1"]}, tmp_path)
    assert "m1: ansible_host: '{{ lookup('env', 'IP') }}' is a Jinja template" in _error(
        capsys, src, "--role", "master=cp")


def test_mapping_file_and_its_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _listing({"m1": {"ansible_host": "192.0.2.1"}, "w1": {"ansible_host": "192.0.2.2"}},
                   {"cp": ["m1"], "nodes": ["w1"]}, tmp_path)
    mapping = tmp_path / "roles.yaml"
    mapping.write_text("master: cp\nworker: [nodes]\n")
    assert main([str(src), "--mapping", str(mapping)]) == 0
    assert "{name: w1, address: 192.0.2.2, roles: [worker]}" in capsys.readouterr().out
    mapping.write_text("master: cp\nwrker: [nodes]\n")
    assert _error(capsys, src, "--mapping", mapping).endswith(
        f"{mapping}:2: wrker: unknown role (expected one of: nova-ctl, master, infra, ingress, worker, workstation)")


def test_usage_errors_exit_4_without_traceback(tmp_path: Path) -> None:
    out = tmp_path / "exists.yaml"
    out.write_text("keep me\n")
    for argv, expected in (
        ([str(tmp_path / "none.ini"), "--role", "master=cp"], "none.ini: no such file"),
        ([str(KUBESPRAY), "--role", "master=kube_control_plane", "--skip", "bastion", "-o", str(out)],
         "exists.yaml: exists; choose another file or pass --force to overwrite it"),
        ([str(KUBESPRAY)], "no mapping: give --role ROLE=GROUP"),
        (["--bogus"], "error: the following arguments are required: source"),
    ):
        done = subprocess.run([sys.executable, "-m", "pytest_nova.ansible", *argv], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 4, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr
    assert out.read_text() == "keep me\n"


@needs_ansible
def test_unparsable_inventory_names_the_reason(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "hosts.ini"
    bad.write_text("[cp]\nm1 ansible_host\n")
    err = _error(capsys, bad, "--role", "master=cp")
    assert err.startswith(f"nova-inventory-from-ansible: error: {bad}: ansible-core cannot parse it: ")
    assert "ansible_host" in err
