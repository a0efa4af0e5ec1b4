"""``nova-inventory-from-ansible`` on real Ansible inventories, read by ansible-core and by ansible-inventory.

The public inventories under tests/data/ansible (see its NOTICE.md) convert with the command lines a user
would give, and each result is collected by pytest. Every case runs against the ansible-core in use: CI runs
this file with the lowest and the newest supported ansible-core (.ci/run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from _pytest_nova.errors import SourceError
from _pytest_nova.inventory import Host, Inventory, load_inventory
from pytest_nova.ansible import main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "ansible"
KUBESPRAY = DATA / "kubespray" / "hosts.ini"
YAML_INV = DATA / "yaml" / "hosts.yaml"
VAULT_PASSWORD = DATA / "k3s-vault.password"
KUBESPRAY_ROLES = ["--role", "master=kube_control_plane", "--role", "worker=kube_node", "--role", "infra=infra",
                   "--role", "nova-ctl=bastion"]
YAML_ROLES = ["--role", "master=control", "--role", "worker=workers", "--role", "ingress=edge",
              "--role", "nova-ctl=mgmt", "--role", "workstation=desks"]
COMPLETE = ["--name", "lab", "--dns-base-domain", "nova.example.local", "--dns-server", "198.51.100.53"]
PROG = "nova-inventory-from-ansible"


def _ansible_tool(name: str) -> str | None:
    # The ansible-core of this interpreter (a CI virtualenv's), else the one on PATH.
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


needs_ansible = pytest.mark.skipif(_ansible_tool("ansible-inventory") is None,
                                   reason="ansible-core is installed by pip install -e '.[dev]'")


def convert(tmp_path: Path, *args: str | Path, name: str = "nova.yaml") -> tuple[int, Path, str]:
    out = tmp_path / name
    if out.exists():
        out.unlink()
    code = main([str(a) for a in (*args, "-o", out)])
    return code, out, out.read_text() if out.exists() else ""


def cli(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own (ansible.cfg and ANSIBLE_* are read once per process)."""
    environ = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    return subprocess.run([*prefix, sys.executable, "-m", "pytest_nova.ansible", *map(str, args)], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=120, check=False)


def nodes(inv: Inventory) -> dict[str, tuple[str, tuple[str, ...], str | None, int | None, str | None]]:
    return {n.name: (n.address, n.roles, n.user, n.port, n.identity_file) for n in inv.nodes}


def login(inv: Inventory, host: Host) -> tuple[str, int, str, tuple[str, ...]]:
    """What the ssh transport uses for ``host``: user, port, key, options."""
    return (host.user or inv.ssh.user, host.port or inv.ssh.port, host.identity_file or inv.ssh.identity_file,
            (*host.ssh_options, *inv.ssh.options))


def ansible_list(source: Path, tmp_path: Path, *extra: str) -> Path:
    """The JSON the real ``ansible-inventory --list`` prints for ``source``."""
    tool = _ansible_tool("ansible-inventory")
    assert tool is not None
    done = subprocess.run([tool, "-i", str(source), "--list", *extra], capture_output=True, text=True,
                          timeout=120, check=True)
    out = tmp_path / f"{source.stem}{''.join(extra)}.json"
    out.write_text(done.stdout)
    return out


def _error(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    assert main([str(a) for a in argv]) == 4
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and captured.out == ""
    return err


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# ---- the public inventories of tests/data/ansible

# id -> (source, the conversion's arguments); each converts into a complete inventory.
REAL: dict[str, tuple[Path, list[str]]] = {
    "kubespray-sample": (DATA / "kubespray-sample" / "inventory.ini", [
        "--role", "master=kube_control_plane", "--role", "worker=kube_node", "--nova-ctl", "95.54.0.5",
        "--user", "nova-installer", "--identity-file", "~/.ssh/id_nova"]),
    # The 2021 form with a bastion and kubespray's internal ip=; --skip etcd keeps its hosts (all masters).
    "kubespray-2021": (DATA / "kubespray-2021" / "inventory.ini", [
        "--role", "master=kube_control_plane", "--role", "worker=kube_node", "--role", "nova-ctl=bastion",
        "--address-var", "ip", "--skip", "etcd", "--skip", "calico_rr", "--user", "nova-installer",
        "--identity-file", "~/.ssh/id_nova", "--jump", "bastion"]),
    "k3s-io": (DATA / "k3s-io" / "inventory.yml", [
        "--role", "master=server", "--role", "worker=agent", "--nova-ctl", "192.16.35.5",
        "--identity-file", "~/.ssh/id_nova"]),
    "k3s-vault": (DATA / "k3s-vault" / "hosts.yml", [
        "--role", "master=server", "--role", "worker=agent", "--nova-ctl", "192.16.35.5",
        "--identity-file", "~/.ssh/id_nova", "--vault-password-file", str(VAULT_PASSWORD)]),
    "techno-tim": (DATA / "techno-tim" / "hosts.ini", [
        "--role", "master=master", "--role", "worker=node", "--nova-ctl", "192.168.30.5",
        "--identity-file", "~/.ssh/id_nova"]),
    "deepops": (DATA / "deepops" / "inventory", [
        "--role", "master=kube_control_plane", "--role", "worker=kube_node", "--nova-ctl", "10.0.0.250",
        "--skip", "slurm-cluster"]),
}
KOLLA = DATA / "kolla-ansible" / "multinode"
KOLLA_ARGS = ["--role", "master=control", "--role", "infra=network", "--role", "worker=compute",
              "--role", "nova-ctl=deployment", "--skip", "storage", "--skip", "monitoring", "--resolve",
              "--address", "localhost=10.0.0.5", "--user", "kolla", "--identity-file", "~/.ssh/id_nova"]
# kolla-ansible's hosts are names "resolvable from your deployment host": this machine's /etc/hosts in a mount
# namespace of the conversion's own says what they resolve to.
KOLLA_HOSTS = ("127.0.0.1 localhost\n10.0.0.11 control01\n10.0.0.12 control02\n10.0.0.13 control03\n"
               "10.0.0.21 network01\n10.0.0.22 network02\n10.0.0.31 compute01\n127.0.1.1 storage01\n")


def with_hosts_file(tmp_path: Path) -> tuple[str, ...]:
    hosts = tmp_path / "etc-hosts"
    hosts.write_text(KOLLA_HOSTS)
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hosts))


can_unshare = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                 reason="a private /etc/hosts needs root and unshare (util-linux)")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Each public inventory converted (kolla-ansible only where a private /etc/hosts can be made)."""
    if _ansible_tool("ansible-inventory") is None:
        pytest.skip("ansible-core is installed by pip install -e '.[dev]'")
    folder = tmp_path_factory.mktemp("real")
    out: dict[str, Path] = {}
    for name, (source, args) in REAL.items():
        code, path, _ = convert(folder, source, *args, *COMPLETE, name=f"{name}.yaml")
        assert code == 0, name
        out[name] = path
    if os.geteuid() == 0 and shutil.which("unshare"):
        done = cli(KOLLA, *KOLLA_ARGS, *COMPLETE, "-o", folder / "kolla-ansible.yaml",
                   prefix=with_hosts_file(folder))
        assert done.returncode == 0, done.stderr
        out["kolla-ansible"] = folder / "kolla-ansible.yaml"
    yield out


@pytest.mark.nova_suites
def test_each_public_inventory_converts_and_pytest_collects_it(real: dict[str, Path],
                                                               pytester: pytest.Pytester) -> None:
    for name, path in real.items():
        result = pytester.runpytest_inprocess(f"--nova-inventory={path}", "--collect-only", "-q")
        assert result.ret == pytest.ExitCode.OK, f"{name}: {result.stdout.str()[-1500:]}"
        assert sum("::" in ln for ln in result.stdout.lines) > 100, name
    assert set(real) >= set(REAL)


def test_kubespray_sample_and_2021_form(real: dict[str, Path]) -> None:
    sample = load_inventory(real["kubespray-sample"])
    assert {n: v[:2] for n, v in nodes(sample).items()} == {
        "nova-ctl": ("95.54.0.5", ("nova-ctl",)),
        **{f"node{i}": (f"95.54.0.{11 + i}", ("master",)) for i in (1, 2, 3)},
        **{f"node{i}": (f"95.54.0.{11 + i}", ("worker",)) for i in (4, 5, 6)},
    }
    assert (sample.ssh.user, sample.ssh.identity_file) == ("nova-installer", "~/.ssh/id_nova")  # --user, no TODO
    old = load_inventory(real["kubespray-2021"])
    # --address-var ip: kubespray's internal addresses; --skip etcd kept the etcd members, all masters.
    assert {n.name: n.address for n in old.nodes} == {"bastion": "95.54.0.2",
                                                      **{f"node{i}": f"10.3.0.{i}" for i in range(1, 7)}}
    assert [n.name for n in old.with_role("master")] == ["node1", "node2", "node3"]
    # The bastion's user is its own; no other host gets it.
    assert old.host("bastion").user == "some_user" and old.ssh.user == "nova-installer"
    assert [n.name for n in old.nodes if n.user is not None] == ["bastion"]
    # --jump bastion: every other node through it, as kubespray's own ansible_ssh_common_args does.
    proxy = ("ProxyCommand=ssh -o BatchMode=yes -W %h:%p -p 22 some_user@95.54.0.2",)
    assert {n.name: n.ssh_options for n in old.nodes} == {"bastion": (), **{f"node{i}": proxy for i in range(1, 7)}}


@needs_ansible
def test_a_kubespray_bastion_without_jump_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    source, args = REAL["kubespray-2021"]
    assert main([str(source), *args[:-2], *COMPLETE]) == 0
    assert (f"{PROG}: warning: bastion: kubespray reaches every other host through the host 'bastion' (its default "
            "ansible_ssh_common_args): if these nodes are reached only through it, pass --jump bastion"
            ) in capsys.readouterr().err.splitlines()


def test_k3s_inventories_plain_and_vaulted_are_the_same(real: dict[str, Path]) -> None:
    plain, vaulted = load_inventory(real["k3s-io"]), load_inventory(real["k3s-vault"])
    assert (plain.ssh.user, plain.ssh.port) == ("debian", 22)  # its group vars
    assert plain.nodes == vaulted.nodes and plain.ssh == vaulted.ssh
    assert [(n.name, n.roles) for n in plain.nodes] == [("nova-ctl", ("nova-ctl",)), ("192.16.35.11", ("master",)),
                                                        ("192.16.35.12", ("worker",)), ("192.16.35.13", ("worker",))]
    tim = load_inventory(real["techno-tim"])
    assert tim.ssh.user == "ansibleuser" and len(tim.with_role("master")) == 3


def test_deepops_bastion_becomes_an_ssh_option(real: dict[str, Path]) -> None:
    inv = load_inventory(real["deepops"])
    assert inv.ssh.options == ("ProxyCommand=ssh -W %h:%p -q ubuntu@10.0.0.1",)
    assert (inv.ssh.user, inv.ssh.identity_file) == ("ubuntu", "~/.ssh/id_rsa")
    assert "login01" not in {n.name for n in inv.nodes}  # --skip slurm-cluster: in no mapped group
    assert {n.name for n in inv.nodes} == {"nova-ctl", "mgmt01", "mgmt02", "mgmt03", "gpu01", "gpu02"}


@can_unshare
def test_kolla_host_names_resolve_with_the_system_resolver(real: dict[str, Path]) -> None:
    inv = load_inventory(real["kolla-ansible"])
    assert {n.name: n.address for n in inv.nodes} == {
        "localhost": "10.0.0.5", "control01": "10.0.0.11", "control02": "10.0.0.12", "control03": "10.0.0.13",
        "network01": "10.0.0.21", "network02": "10.0.0.22", "compute01": "10.0.0.31"}
    assert inv.host("localhost").connection == "local" and inv.host("localhost").has("nova-ctl")
    text = real["kolla-ansible"].read_text()
    assert "{name: control01, address: 10.0.0.11, roles: [master]}  # control01 resolved by this machine's " \
           "resolver" in text


@needs_ansible
def test_kolla_host_names_are_refused_together_without_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, KOLLA, *[a for a in KOLLA_ARGS if a != "--resolve"])
    assert err == (f"{PROG}: error: {KOLLA}: compute01, control01, control02, control03, network01, network02: a "
                   "host name, not an IP address: pass --resolve to look names up with this machine's resolver, "
                   "set ansible_host, or give --address HOST=IPv4")


@can_unshare
@needs_ansible
def test_a_name_that_resolves_to_loopback_is_refused(tmp_path: Path) -> None:
    args = ["--role", "master=control", "--role", "worker=compute,storage", "--role", "nova-ctl=deployment",
            "--skip", "network", "--skip", "monitoring", "--resolve", "--address", "localhost=10.0.0.5"]
    done = cli(KOLLA, *args, *COMPLETE, prefix=with_hosts_file(tmp_path))
    assert done.returncode == 4 and done.stdout == ""
    assert done.stderr.strip() == (f"{PROG}: error: {KOLLA}: storage01: --resolve: the name resolves only to "
                                   "127.0.1.1 here: set ansible_host to the address the other hosts reach, or give "
                                   "--address HOST=IPv4")


# ---- connection values as Ansible resolves them

@needs_ansible
def test_ini_with_groups_of_groups_host_vars_and_host_vars_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, text = convert(tmp_path, KUBESPRAY, *KUBESPRAY_ROLES, *COMPLETE)
    assert code == 0
    # The bastion has no ansible_user: the shared user is not assumed for it, it is a TODO naming it.
    assert "  user:                                        # TODO: the account of bastion (Ansible names none)" \
           in text
    assert "fill in the TODO lines (user, identityFile)" in capsys.readouterr().err
    code, out, text = convert(tmp_path, KUBESPRAY, *KUBESPRAY_ROLES, *COMPLETE, "--user", "ops",
                              "--identity-file", "/keys/ops")
    assert code == 0, capsys.readouterr().err
    inv = load_inventory(out)
    assert (inv.ssh.user, inv.ssh.identity_file, inv.ssh.port) == ("ops", "/keys/ops", 22)
    kube = ("nova-installer", 22, "~/.ssh/id_nova", ())
    assert {n.name: login(inv, n) for n in inv.nodes} == {
        "bastion": ("ops", 22, "/keys/ops", ()),
        "master-1": kube, "master-2": kube, "master-3": kube, "infra-1": kube, "worker-1": kube,
        # ansible_user inline, ansible_port from host_vars/worker-2.yml.
        "worker-2": ("admin", 2222, "~/.ssh/id_nova", ()),
    }
    # infra-1 is in infra and in kube_node (a child group of k8s_cluster): both roles.
    assert inv.host("infra-1").roles == ("infra", "worker")
    assert "TODO:" not in text
    assert "a valid inventory v1" in capsys.readouterr().err


@needs_ansible
def test_one_hosts_user_and_key_are_never_everyones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path / "pis.ini", """\
        [cp]
        pi1 ansible_host=192.0.2.1 ansible_user=pi ansible_ssh_private_key_file=~/.ssh/pi_ed25519
        pi2 ansible_host=192.0.2.2
        [nodes]
        pi3 ansible_host=192.0.2.3
        pi4 ansible_host=192.0.2.4
        pi5 ansible_host=192.0.2.5
        pi6 ansible_host=192.0.2.6
        """)
    code, out, text = convert(tmp_path, src, "--role", "master=cp", "--role", "worker=nodes",
                              "--nova-ctl", "192.0.2.100", *COMPLETE)
    assert code == 0
    assert "# TODO: the account of pi2, pi3, pi4, pi5 and 1 more (Ansible names none)" in text
    assert "{name: pi1, address: 192.0.2.1, roles: [master], user: pi, identityFile: ~/.ssh/pi_ed25519}" in text
    assert "{name: pi2, address: 192.0.2.2, roles: [master]}" in text
    with pytest.raises(SourceError, match=r"nova.yaml:\d+: ssh.user: no value given; fill it in"):
        load_inventory(out)
    code, out, _ = convert(tmp_path, src, "--role", "master=cp", "--role", "worker=nodes",
                           "--nova-ctl", "192.0.2.100", *COMPLETE, "--user", "ubuntu", "--identity-file", "~/k")
    inv = load_inventory(out)
    assert login(inv, inv.host("pi1")) == ("pi", 22, "~/.ssh/pi_ed25519", ())
    assert {login(inv, inv.host(f"pi{i}")) for i in range(2, 7)} == {("ubuntu", 22, "~/k", ())}


ANSIBLE_CFG = """\
    [defaults]
    inventory = inv/hosts
    remote_user = cfguser
    remote_port = 2022
    private_key_file = keys/cfg_key
    vault_password_file = vault.pw
    """


@needs_ansible
def test_ansible_cfg_environment_and_old_names_as_ansible_resolves_them(tmp_path: Path) -> None:
    _write(tmp_path / "ansible.cfg", ANSIBLE_CFG)
    (tmp_path / "vault.pw").write_text("pw\n")
    _write(tmp_path / "inv" / "hosts", """\
        [cp]
        m1 ansible_host=192.0.2.11
        m2 ansible_host=192.0.2.12 ansible_user=new ansible_ssh_user=old
        [nodes]
        w1 ansible_host=192.0.2.21 ansible_ssh_private_key_file=keys/w1 ansible_ssh_port=2200
        [ctl]
        here ansible_host=192.0.2.5 ansible_connection=local
        """)
    vaulted = _write(tmp_path / "inv" / "group_vars" / "nodes.yml", "ansible_become_password: s3cret-pw\n")
    tool = _ansible_tool("ansible-vault")
    assert tool is not None
    subprocess.run([tool, "encrypt", "--vault-password-file", str(tmp_path / "vault.pw"), str(vaulted)],
                   check=True, capture_output=True, timeout=60)
    roles = ["--role", "master=cp", "--role", "worker=nodes", "--role", "nova-ctl=ctl", *COMPLETE]
    # No source: ansible.cfg's inventory; its vault_password_file decrypts group_vars/nodes.yml.
    done = cli(*roles, "-o", "out.yaml", cwd=tmp_path, env={"ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")})
    assert done.returncode == 0, done.stderr
    inv = load_inventory(tmp_path / "out.yaml")
    assert {n.name: login(inv, n)[:3] for n in inv.nodes if n.connection != "local"} == {
        "m1": ("cfguser", 2022, f"{tmp_path}/keys/cfg_key"),  # ansible.cfg; its key relative to where Ansible runs
        "m2": ("old", 2022, f"{tmp_path}/keys/cfg_key"),  # ansible_ssh_user wins over ansible_user, as in Ansible
        "w1": ("cfguser", 2200, f"{tmp_path}/keys/w1"),
    }
    assert "w1: sudo asks for a password (ansible_become_password)" in done.stderr
    assert "s3cret" not in done.stderr + (tmp_path / "out.yaml").read_text()
    # ANSIBLE_REMOTE_USER and ANSIBLE_REMOTE_PORT win over ansible.cfg, host variables over both.
    done = cli(*roles, cwd=tmp_path, env={"ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),
                                          "ANSIBLE_REMOTE_USER": "envuser", "ANSIBLE_REMOTE_PORT": "2023"})
    assert done.returncode == 0, done.stderr
    assert "  user: envuser\n  identityFile: " in done.stdout and "  port: 2023\n" in done.stdout
    assert "{name: m2, address: 192.0.2.12, roles: [master], user: old}" in done.stdout
    # ANSIBLE_VAULT_PASSWORD_FILE, with an ansible.cfg that names no password file.
    (tmp_path / "other.cfg").write_text(ANSIBLE_CFG.replace("    vault_password_file = vault.pw\n", "")
                                        .replace("    ", ""))
    done = cli("inv/hosts", *roles, cwd=tmp_path, env={"ANSIBLE_CONFIG": str(tmp_path / "other.cfg"),
                                                       "ANSIBLE_VAULT_PASSWORD_FILE": str(tmp_path / "vault.pw")})
    assert done.returncode == 0, done.stderr
    assert "w1: sudo asks for a password (ansible_become_password)" in done.stderr


@needs_ansible
def test_no_source_and_no_configured_inventory_is_one_line(tmp_path: Path) -> None:
    done = cli("--role", "master=cp", cwd=tmp_path, env={"ANSIBLE_CONFIG": str(tmp_path / "none.cfg")})
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith(f"{PROG}: error: no inventory given, and Ansible has none configured")
    assert len(done.stderr.strip().splitlines()) == 1


# ---- vault

@needs_ansible
def test_vault_values_and_files_need_their_password(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    vault = DATA / "vault.yaml"
    err = _error(capsys, vault, "--role", "master=masters", "--nova-ctl", "192.0.2.5")
    assert err == (f"{PROG}: error: {vault}: m1: ansible_user (in {vault.resolve()}:8) is vault-encrypted and no "
                   "vault password decrypts it: pass --vault-password-file FILE, or set ANSIBLE_VAULT_PASSWORD_FILE "
                   "or vault_password_file in ansible.cfg")
    password = tmp_path / "pw"
    password.write_text("secret\n")
    code, out, _ = convert(tmp_path, vault, "--role", "master=masters", "--nova-ctl", "192.0.2.5", *COMPLETE,
                           "--identity-file", "k", "--vault-password-file", password)
    assert code == 0 and load_inventory(out).ssh.user == "deploy"
    capsys.readouterr()
    # The JSON of ansible-inventory --list keeps the value encrypted: decrypted here with the same password.
    listed = ansible_list(vault, tmp_path)
    code, out, _ = convert(tmp_path, listed, "--role", "master=masters", "--nova-ctl", "192.0.2.5", *COMPLETE,
                           "--identity-file", "k", "--vault-password-file", password)
    assert code == 0 and load_inventory(out).ssh.user == "deploy"
    capsys.readouterr()
    assert ": m1: ansible_user is vault-encrypted and no vault password decrypts it" in _error(
        capsys, listed, "--role", "master=masters", "--nova-ctl", "192.0.2.5")
    # A vault-encrypted group_vars file: named, never a traceback; a wrong password says so.
    source = DATA / "k3s-vault" / "hosts.yml"
    assert _error(capsys, source, "--role", "master=server", "--nova-ctl", "192.16.35.5") == (
        f"{PROG}: error: {DATA}/k3s-vault/group_vars/k3s_cluster.yml: vault-encrypted, and no vault password was "
        "given: pass --vault-password-file FILE, or set ANSIBLE_VAULT_PASSWORD_FILE or vault_password_file in "
        "ansible.cfg")
    assert "k3s_cluster.yml: the vault password given does not decrypt it" in _error(
        capsys, source, "--role", "master=server", "--nova-ctl", "192.16.35.5", "--vault-password-file", password)


# ---- mapping

def _listing(hosts: dict[str, dict[str, object]], groups: dict[str, list[str]], tmp_path: Path) -> Path:
    data: dict[str, object] = {"_meta": {"hostvars": hosts}, **{g: {"hosts": h} for g, h in groups.items()}}
    path = tmp_path / "list.json"
    path.write_text(json.dumps(data))
    return path


def test_roles_take_groups_or_hosts_and_skip_leaves_mapped_hosts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # openshift-ansible's shape: the first master also serves NFS; --skip nfs must not lose it.
    src = _listing({"m1": {"ansible_host": "10.60.0.11"}, "m2": {"ansible_host": "10.60.0.12"},
                    "n1": {"ansible_host": "10.60.0.21"}, "nfs2": {"ansible_host": "10.60.0.31"},
                    "lb": {"ansible_host": "10.60.0.5"}},
                   {"masters": ["m1", "m2"], "nodes": ["n1"], "nfs": ["m1", "nfs2"], "lbs": ["lb"]}, tmp_path)
    code, out, _ = convert(tmp_path, src, "--role", "master=masters", "--role", "worker=nodes",
                           "--role", "nova-ctl=lb", "--skip", "nfs", *COMPLETE, "--user", "u", "--identity-file", "k")
    assert code == 0, capsys.readouterr().err
    assert {n.name: n.roles for n in load_inventory(out).nodes} == {
        "lb": ("nova-ctl",), "m1": ("master",), "m2": ("master",), "n1": ("worker",)}
    # A host name as well as a group name; --skip HOST leaves out that host whatever its groups.
    code, out, _ = convert(tmp_path, src, "--role", "master=masters", "--role", "worker=n1,nfs2",
                           "--role", "nova-ctl=lb", "--skip", "m2", *COMPLETE, "--user", "u", "--identity-file", "k")
    assert code == 0
    assert {n.name: n.roles for n in load_inventory(out).nodes} == {
        "lb": ("nova-ctl",), "m1": ("master",), "n1": ("worker",), "nfs2": ("worker",)}


def test_every_unmapped_host_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _listing({h: {"ansible_host": f"192.0.2.{i}"} for i, h in enumerate(["m1", "b1", "n1", "n2"], 1)},
                   {"cp": ["m1"], "bastion": ["b1"], "nfs": ["n1", "n2"]}, tmp_path)
    assert _error(capsys, src, "--role", "master=cp") == (
        f"{PROG}: error: {src}: b1 (bastion), n1 (nfs), n2 (nfs): in no mapped group: map them with "
        "--role ROLE=GROUP|HOST, or leave them out with --skip HOST|GROUP")


def test_nova_ctl_a_local_host_or_this_machine(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _listing({"m1": {"ansible_host": "192.0.2.1", "ansible_user": "u", "ansible_ssh_private_key_file": "/k"},
                    "localhost": {"ansible_connection": "local"}}, {"cp": ["m1"], "deployment": ["localhost"]},
                   tmp_path)
    assert _error(capsys, src, "--role", "master=cp", "--skip", "deployment") == (
        f"{PROG}: error: {src}: no host maps to nova-ctl, the machine that runs pytest-nova: map its Ansible host "
        "or group with --role nova-ctl=NAME (a host with ansible_connection=local is this machine), or add this "
        "machine with --nova-ctl ITS_IPv4")
    # The local host (no address Ansible needed): a TODO, and stdout does not call the file valid.
    assert main([str(src), "--role", "master=cp", "--role", "nova-ctl=localhost", *COMPLETE]) == 0
    captured = capsys.readouterr()
    assert "  - name: localhost\n    address:" in captured.out and "# TODO: the IPv4 address of this machine" \
           in captured.out
    assert "fill in the TODO lines (address)" in captured.err and "valid" not in captured.err
    code, out, _ = convert(tmp_path, src, "--role", "master=cp", "--role", "nova-ctl=localhost", *COMPLETE,
                           "--address", "localhost=192.0.2.9")
    assert code == 0 and load_inventory(out).host("localhost") == Host(
        "localhost", "192.0.2.9", ("nova-ctl",), connection="local")
    code, out, _ = convert(tmp_path, src, "--role", "master=cp", "--skip", "localhost", "--nova-ctl", "192.0.2.8",
                           *COMPLETE)
    assert code == 0 and load_inventory(out).nova_ctl == Host("nova-ctl", "192.0.2.8", ("nova-ctl",),
                                                               connection="local")


def test_a_file_that_would_not_load_is_never_written(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _listing({"m1": {"ansible_host": "192.0.2.1"}}, {"cp": ["m1"]}, tmp_path)
    args: list[str | Path] = [src, "--role", "master=cp", "--nova-ctl", "192.0.2.8", "--name", "my cluster!"]
    err = _error(capsys, *args)
    assert err == (f"{PROG}: error: the converted inventory would not load, so nothing was written: <standard "
                   "output>:6: cluster.name: 'my cluster!' is not a valid cluster name")
    assert main([str(a) for a in (*args, "-o", tmp_path / "out.yaml")]) == 4
    assert not (tmp_path / "out.yaml").exists()


def test_mapping_file_and_its_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _listing({"m1": {"ansible_host": "192.0.2.1"}, "w1": {"ansible_host": "192.0.2.2"}},
                   {"cp": ["m1"], "nodes": ["w1"]}, tmp_path)
    mapping = tmp_path / "roles.yaml"
    mapping.write_text("master: cp\n")
    # The file and --role are merged.
    assert main([str(src), "--mapping", str(mapping), "--role", "worker=nodes", "--nova-ctl", "192.0.2.9"]) == 0
    assert "{name: w1, address: 192.0.2.2, roles: [worker]}" in capsys.readouterr().out
    mapping.write_text("master: cp\nwrker: [nodes]\n")
    assert _error(capsys, src, "--mapping", mapping).endswith(
        f"{mapping}:2: wrker: unknown role (expected one of: nova-ctl, master, infra, ingress, worker, workstation)")


@needs_ansible
def test_unknown_group_and_unknown_role(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, KUBESPRAY, "--role", "master=kube_master")
    assert err.endswith("no group or host 'kube_master' in this inventory (its groups: bastion, etcd, infra, "
                        "k8s_cluster, kube_control_plane, kube_node; 7 hosts)")
    assert _error(capsys, KUBESPRAY, "--role", "mastr=kube_control_plane").endswith(
        "--role mastr=kube_control_plane: unknown role 'mastr' (expected one of: nova-ctl, master, infra, ingress, "
        "worker, workstation)")


# ---- connection settings: carried, or a warning

@needs_ansible
def test_ssh_arguments_become_options_and_the_rest_a_warning_per_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _write(tmp_path / "hosts", """\
        [cp]
        m1 ansible_host=192.0.2.1
        m2 ansible_host=192.0.2.2 ansible_ssh_extra_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'
        [nodes]
        w1 ansible_host=192.0.2.11 ansible_ssh_common_args='-J ops@192.0.2.100 -o ControlPersist=60s'
        w2 ansible_host=192.0.2.12 ansible_password=hunter2 ansible_become_pass=hunter3
        w3 ansible_host=192.0.2.13 ansible_connection=community.docker.docker
        w4 ansible_host=192.0.2.14 ansible_connection=winrm
        w5 ansible_host=192.0.2.15 ansible_connection=paramiko
        w6 ansible_host=192.0.2.16 ansible_ssh_extra_args='-o UserKnownHostsFile=w6_known_hosts'
        [all:vars]
        ansible_user=nova
        ansible_ssh_private_key_file=/keys/nova
        ansible_ssh_common_args='-o ProxyCommand="ssh -W %h:%p -q ubuntu@192.0.2.100" -F ssh-bastion.conf'
        """)
    code, out, text = convert(tmp_path, src, "--role", "master=cp", "--role", "worker=nodes",
                              "--nova-ctl", "192.0.2.200", *COMPLETE)
    assert code == 0
    err = capsys.readouterr().err
    inv = load_inventory(out)
    proxy = ("ProxyCommand=ssh -W %h:%p -q ubuntu@192.0.2.100",)
    assert {n.name: login(inv, n)[3] for n in inv.nodes if n.name != "nova-ctl"} == {
        "m1": proxy, "m2": proxy, "w2": proxy, "w3": proxy, "w4": proxy, "w6": proxy,
        "w1": ("ProxyJump=ops@192.0.2.100",),  # its own ansible_ssh_common_args replace the group's, as in Ansible
        "w5": (),  # paramiko: Ansible does not use the ssh arguments
    }
    assert inv.host("w5").connection == "paramiko" and inv.ssh.host_key_policy == "accept-new"
    warnings = sorted(ln.removeprefix(f"{PROG}: warning: ") for ln in err.splitlines() if ": warning: " in ln)
    assert warnings == sorted([
        "m1, m2, w2, w3, w4, w6: -F ssh-bastion.conf in its ssh arguments: pytest-nova's ssh reads ~/.ssh/config, not "
        "that file: carry the settings the nodes need into ssh.options (e.g. ProxyJump=…) or nova-ctl's "
        "~/.ssh/config",
        "m2: StrictHostKeyChecking=no in its ssh arguments: written as ssh.hostKeyPolicy: accept-new for every "
        "node (a new host key is accepted and remembered; a changed one still fails)",
        "w1: left out ControlPersist=60s of ansible_ssh_common_args (pytest-nova sets it itself)",
        "w2: logs in with a password (ansible_password); pytest-nova logs in with a key only: put nova-ctl's "
        "public key in the account's authorized_keys (docs account 2) and set its identityFile",
        "w2: sudo asks for a password (ansible_become_pass); the installer account needs NOPASSWD sudo (docs "
        "account 1): the os checks fail until its sudoers drop-in says NOPASSWD",
        "w3: ansible_connection=community.docker.docker: Ansible does not reach it over ssh; written as an ssh "
        "node at its address: check that its sshd answers, or write its connection as a testinfra URL "
        "(docker://…), or --skip it",
        "w4: ansible_connection=winrm: a Windows host; Nova nodes are Linux machines reached over ssh: leave it "
        "out with --skip HOST, or map another host",
        f"w6: left out UserKnownHostsFile={Path.cwd()}/w6_known_hosts of its ssh arguments: it is not every node's, "
        "and ssh.knownHostsFile is one file for all: set it by hand to a file that holds every node's host key",
        "w5: Ansible's paramiko connection ignores ansible_ssh_common_args/extra_args; so does the converted node "
        "(connection: paramiko)",
    ])
    assert "hunter" not in err + text


# ---- addresses

def test_ipv6_loopback_and_names_are_refused_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = _listing({"m1": {"ansible_host": "2001:db8::1"}, "m2": {"ansible_host": "127.0.0.1"},
                    "m3": {"ansible_host": "m3.example.com"}, "m4": {}, "m5": {"ansible_host": "192.0.2.5"},
                    "m6": {"ansible_host": "192.0.2.5"}}, {"cp": ["m1", "m2", "m3", "m4", "m5", "m6"]}, tmp_path)
    assert _error(capsys, src, "--role", "master=cp", "--nova-ctl", "192.0.2.9") == (
        f"{PROG}: error: {src}: m1: IPv6 address: nodes need IPv4 (IP-in-IP between all nodes carries IPv4, docs "
        "3.1): set ansible_host to its IPv4 address, or give --address HOST=IPv4; m2: a loopback address: set "
        "ansible_host to the address the other hosts reach, or give --address HOST=IPv4; m3, m4: a host name, not "
        "an IP address: pass --resolve to look names up with this machine's resolver, set ansible_host, or give "
        "--address HOST=IPv4; m5, m6: share the address 192.0.2.5: give each host its own ansible_host")
    src = _listing({"m1": {"ansible_host": "192.0.2.1"}, "m 2": {"ansible_host": "192.0.2.2"}},
                   {"cp": ["m1", "m 2"]}, tmp_path)
    assert _error(capsys, src, "--role", "master=cp", "--nova-ctl", "192.0.2.9").endswith(
        "m 2: a name inventory v1 cannot have (letters, digits, '-', '_', '.'): rename the host")
    src = _listing({"m1": {"ansible_host": "{{ ip_of_m1 }}"}}, {"cp": ["m1"]}, tmp_path)
    err = _error(capsys, src, "--role", "master=cp", "--nova-ctl", "192.0.2.9")
    assert f"{src}: m1: ansible_host '{{{{ ip_of_m1 }}}}' " in err and "give the plain value" in err


# ---- sources

@needs_ansible
def test_a_directory_skips_stray_files_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mycluster"
    _write(folder / "hosts.yaml", "all:\n  children:\n    cp:\n      hosts:\n        m1: {ansible_host: 192.0.2.1}\n")
    stray = _write(folder / "artifacts" / "admin.conf", "apiVersion: v1\nclusters:\n- name: c\nkind: Config\n")
    code, _, _ = convert(tmp_path, folder, "--role", "master=cp", "--nova-ctl", "192.0.2.9", *COMPLETE)
    assert code == 0
    err = capsys.readouterr().err
    assert f"{PROG}: warning: skipped {stray}: not an inventory ansible-core can parse: " in err
    assert "Ansible skips it too" in err


@needs_ansible
def test_a_broken_yaml_inventory_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bad = _write(tmp_path / "hosts.yml", "all:\n  hosts:\n    a: {ansible_host: 1.2.3.4\n    b:\n")
    monkeypatch.chdir(tmp_path)  # given as a relative path, named by ansible-core with its absolute one
    assert _error(capsys, "hosts.yml", "--role", "master=all").startswith(f"{PROG}: error: {bad}:4: invalid YAML: ")
    shape = _write(tmp_path / "shape.yml", "all:\n  hosts: [a, b]\n")
    assert _error(capsys, shape, "--role", "master=all").startswith(
        f"{PROG}: error: {shape}: not an inventory ansible-core can parse: Invalid \"hosts\" entry for \"all\" group")
    ini = _write(tmp_path / "hosts.ini", "[cp]\nm1 ansible_host\n")
    err = _error(capsys, ini, "--role", "master=cp")
    assert err.startswith(f"{PROG}: error: {ini}: not an inventory ansible-core can parse: ") and "ansible_host" in err


@needs_ansible
@pytest.mark.parametrize(("source", "roles"), [(KUBESPRAY, KUBESPRAY_ROLES),
                                               (YAML_INV, YAML_ROLES)], ids=["ini", "yaml"])
def test_ansible_inventory_list_and_export_json_give_the_same_inventory(
    source: Path, roles: list[str], tmp_path: Path
) -> None:
    complete = [*COMPLETE, "--user", "u", "--identity-file", "k"]
    assert main([str(source), *roles, *complete, "-o", str(tmp_path / "from-file.yaml")]) == 0
    from_file = load_inventory(tmp_path / "from-file.yaml")
    # --export leaves group variables in their groups: merged per host as Ansible merges them.
    for extra in ((), ("--export",)):
        listed = ansible_list(source, tmp_path, *extra)
        out = tmp_path / f"from-json{''.join(extra)}.yaml"
        assert main([str(listed), *roles, *complete, "-o", str(out)]) == 0
        from_json = load_inventory(out)
        assert from_json.nodes == from_file.nodes and from_json.ssh == from_file.ssh, extra
        assert from_json.workstations == from_file.workstations
    assert len(from_file.nodes) >= 5


def test_list_json_on_stdin_and_list_form_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    hostvars = {"a": {"ansible_host": "192.0.2.1", "ansible_user": "u", "ansible_ssh_private_key_file": "/k"},
                "b": {"ansible_host": "192.0.2.2", "ansible_connection": "local"}}
    listing = {"_meta": {"hostvars": hostvars}, "all": {"children": ["ungrouped", "k8s"]},
               "k8s": {"children": ["cp"]}, "cp": {"hosts": ["a"]},
               "ctl": ["b"]}  # a dynamic inventory script's list form
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(json.dumps(listing)))
    assert main(["-", "--role", "master=k8s", "--role", "nova-ctl=ctl"]) == 0
    out = capsys.readouterr().out
    assert "  - {name: a, address: 192.0.2.1, roles: [master]}" in out and "  user: u" in out
    assert "  - {name: b, address: 192.0.2.2, roles: [nova-ctl], connection: local}" in out


def test_usage_errors_exit_4_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exists.yaml"
    out.write_text("keep me\n")
    for argv, expected in (
        ([str(tmp_path / "none.ini"), "--role", "master=cp"], "none.ini: no such file"),
        ([str(KUBESPRAY), "--role", "master=kube_control_plane", "--skip", "bastion", "-o", str(out)],
         "exists.yaml: exists; choose another file or pass --force to overwrite it"),
        ([str(KUBESPRAY)], "no mapping: give --role ROLE=GROUP"),
        ([str(KUBESPRAY), "--role", "master=kube_control_plane", "--address", "m=::1"], "--address m=::1: expected"),
        ([str(KUBESPRAY), "--role", "master=kube_control_plane", "--address", "m=192.0.2.1"],
         f"--address m=192.0.2.1: no host 'm' in {KUBESPRAY}"),
    ):
        assert expected in _error(capsys, *argv)
    with pytest.raises(SystemExit) as exited:
        main(["--bogus"])
    assert exited.value.code == 4 and "error: unrecognized arguments: --bogus" in capsys.readouterr().err
    assert out.read_text() == "keep me\n"
    # Not even with --force over one of its own inputs.
    assert _error(capsys, KUBESPRAY, "--role", "master=kube_control_plane", "-o", KUBESPRAY, "--force").endswith(
        f"{KUBESPRAY}: is one of the command's inputs; write the inventory to another file")
    # The installed command's own process: one line, exit 4.
    done = cli(tmp_path / "none.ini", "--role", "master=cp")
    assert (done.returncode, done.stderr) == (4, f"{PROG}: error: {tmp_path / 'none.ini'}: no such file\n")


def test_a_warning_about_many_hosts_names_the_first_ten() -> None:
    from _pytest_nova.ansible.convert import Notes

    notes = Notes()
    for i in range(12):
        notes.add(f"w{i}", "sudo asks for a password")
    notes.add("m1", "other")
    assert notes.lines() == ["w0, w1, w2, w3, w4, w5, w6, w7, w8, w9 and 2 more: sudo asks for a password",
                             "m1: other"]


def test_a_pipe_is_read_as_listing_json_and_special_files_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from _pytest_nova.ansible import reading

    fifo = tmp_path / "listing"
    os.mkfifo(fifo)
    listing = {"_meta": {"hostvars": {"m1": {"ansible_host": "192.0.2.1"}}}, "cp": {"hosts": ["m1"]}}
    writer = threading.Thread(target=fifo.write_text, args=(json.dumps(listing),), daemon=True)
    writer.start()  # as <(ansible-inventory -i hosts --list) gives it
    assert main([str(fifo), "--role", "master=cp", "--nova-ctl", "192.0.2.9"]) == 0
    assert "{name: m1, address: 192.0.2.1, roles: [master]}" in capsys.readouterr().out
    monkeypatch.setattr(reading, "PIPE_DEADLINE", 0.5)
    assert _error(capsys, fifo, "--role", "master=cp") == (
        f"{PROG}: error: {fifo}: is a pipe or FIFO that did not deliver its content within 0.5 s; start its writer "
        "first, or name a regular file")
    # A FIFO where ansible-core reads group variables would block it: refused before it reads anything.
    hosts = _write(tmp_path / "inv" / "hosts", "[cp]\nm1 ansible_host=192.0.2.1\n")
    (tmp_path / "inv" / "group_vars").mkdir()
    os.mkfifo(tmp_path / "inv" / "group_vars" / "cp.yml")
    assert _error(capsys, hosts, "--role", "master=cp") == (
        f"{PROG}: error: {tmp_path}/inv/group_vars/cp.yml: not a regular file (a FIFO, socket or device) among the "
        "inventory's files; ansible-core would wait on it: move it out of the inventory")
    assert "group_vars/cp.yml: not a regular file" in _error(capsys, tmp_path / "inv", "--role", "master=cp")
