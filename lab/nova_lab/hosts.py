"""What makes a lab host: the shared /etc and /home layer, the namespace holder, sshd and its keys.

A full host is a long-lived holder process (``sleep infinity``) that owns the host's network, mount and
UTS namespaces; sshd and the installed-mode services are entered into those namespaces by the holder's pid,
so sshd can be stopped and started without losing the host.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Sequence
from pathlib import Path

from nova_lab.addresses import PREFIXLEN, Host
from nova_lab.netns import run

USER = "nova-installer"
HOME = f"/home/{USER}"
SUDOERS_FILE = f"/etc/sudoers.d/99-{USER}-user"
SUDOERS_LINE = f"{USER} ALL=(ALL) NOPASSWD:ALL\n"
CLOUD_INIT_SUDOERS = "/etc/sudoers.d/90-cloud-init-users"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
SSHD = "/usr/sbin/sshd"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


def keygen(path: Path, comment: str) -> str:
    """An ed25519 key pair at ``path`` (+ ``.pub``); returns the public key line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_name(path.name + ".pub").read_text().strip()


def build_layer(layer: Path, public_key: Path, ca_certs: Sequence[tuple[Path, str]], resolv: str) -> None:
    """Prepare once what every host's /etc and /home share, by running the docs' steps in an overlay.

    The commands write into ``layer/etc`` and ``layer/home`` (the overlay's upper dirs), which then become
    a lower layer of every host. ``ca_certs`` are (certificate, subject hash) pairs added to the system
    trust store by hand: ``update-ca-certificates`` is slow, and once is enough.
    """
    for d in ("etc", "home", ".work/etc", ".work/home"):
        (layer / d).mkdir(parents=True, exist_ok=True)
    trust = "".join(
        f"install -m 0644 {shlex.quote(str(crt))} /etc/ssl/certs/nova-lab-{i}.pem\n"
        f"ln -sf nova-lab-{i}.pem /etc/ssl/certs/{h}.0\n"
        f"cat {shlex.quote(str(crt))} >> /etc/ssl/certs/ca-certificates.crt\n"
        for i, (crt, h) in enumerate(ca_certs)
    )
    q = shlex.quote
    script = f"""
{overlay("/etc", [], layer / "etc", layer / ".work/etc")}
{overlay("/home", [], layer / "home", layer / ".work/home")}
useradd -m -s /bin/bash {USER}
install -d -m 0700 -o {USER} -g {USER} {HOME}/.ssh
install -m 0600 -o {USER} -g {USER} {q(str(public_key))} {HOME}/.ssh/authorized_keys
printf '%s' {q(SUDOERS_LINE)} > {SUDOERS_FILE}
chmod 0440 {SUDOERS_FILE}
rm -f /etc/resolv.conf
printf '%s' {q(resolv)} > /etc/resolv.conf
mkdir -p /etc/ssl/certs
{trust}
"""
    run(["unshare", "--mount", "--propagation", "private", "sh", "-ec", script], timeout=60)
    run(["rm", "-rf", str(layer / ".work")])


def overlay(target: str, lower: Sequence[Path], upper: Path, work: Path) -> str:
    """A mount command putting ``lower`` layers and a writable ``upper`` over ``target`` (itself the bottom)."""
    lowers = ":".join([*(str(p) for p in lower), target])
    opts = f"lowerdir={lowers},upperdir={upper},workdir={work}"
    return f"mount -t overlay overlay -o {shlex.quote(opts)} {target}"


def neighbour_lines(hosts: Sequence[Host]) -> list[str]:
    """Permanent ARP entries for every lab address: no neighbour table overflow at 60+ hosts."""
    return [f"neigh replace {h.address} lladdr {h.mac} dev eth0 nud permanent" for h in hosts]


def net_script(host: Host, neigh_file: Path) -> str:
    """Shell lines that configure a host's network namespace from inside it."""
    return f"""
ip link set lo up
ip addr add {host.address}/{PREFIXLEN} dev eth0
ip link set eth0 up
ip -force -batch {shlex.quote(str(neigh_file))}
echo 1 > /proc/sys/net/ipv4/ip_forward
echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range
if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
fi
"""


def prepare_host_dir(hdir: Path, host: Host, lab_hosts_line: str) -> str:
    """Pre-populate a host's upper /etc (hostname, hosts, ssh host key); returns its host key line."""
    etc = hdir / "upper/etc"
    for d in ("upper/etc/ssh", "upper/home", "work/etc", "work/home"):
        (hdir / d).mkdir(parents=True, exist_ok=True)
    (etc / "hostname").write_text(host.name + "\n")
    (etc / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n{host.address}\t{host.name}\n{lab_hosts_line}"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    (hdir / "product_uuid").write_text(str(uuid.uuid4()) + "\n")
    return keygen(etc / "ssh/ssh_host_ed25519_key", f"root@{host.name}")


def holder_script(host: Host, hdir: Path, layer: Path, neigh_file: Path) -> str:
    """The script the holder runs in its fresh namespaces before it becomes ``sleep infinity``.

    ``/sys`` is remounted so it shows this network namespace. Where the machine has no DMI data (VMs
    without SMBIOS) ``/sys/class`` is rebuilt on a tmpfs with a ``dmi/id`` of our own; otherwise the
    host's product_uuid is bind-mounted over the real one.
    """
    q = shlex.quote
    h = str(hdir)
    return net_script(host, neigh_file) + f"""
hostname {q(host.name)}
umount -l /sys
mount -t sysfs sysfs /sys
{overlay("/etc", [layer / "etc"], hdir / "upper/etc", hdir / "work/etc")}
{overlay("/home", [layer / "home"], hdir / "upper/home", hdir / "work/home")}
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/sshd /run/containerd /run/nova-lab/sys
chmod 0755 /run/sshd
if [ -e /sys/class/dmi/id/product_uuid ]; then
  mount --bind {q(h + '/product_uuid')} /sys/class/dmi/id/product_uuid
else
  mount -t sysfs sysfs /run/nova-lab/sys
  mount -t tmpfs -o mode=0755 tmpfs /sys/class
  ln -s /run/nova-lab/sys/class/* /sys/class/
  mkdir -p /sys/class/dmi/id
  install -m 0400 {q(h + '/product_uuid')} /sys/class/dmi/id/product_uuid
fi
echo ready
exec sleep infinity
"""


def sshd_argv(log_file: Path, extra: Sequence[str] = ()) -> list[str]:
    """Sshd in the foreground with the host's own ed25519 key, logging logins to ``log_file``.

    ``extra`` options come first: sshd keeps the first value it is given for an option.
    """
    return [
        SSHD, "-D", "-h", HOST_KEY, "-E", str(log_file), *extra,
        "-o", "LogLevel=INFO", "-o", "PidFile=none", "-o", "UseDNS=no", "-o", "ListenAddress=0.0.0.0",
        # Many xdist workers open sessions at once; the default 10:30:100 would drop some.
        "-o", "MaxStartups=200:30:400", "-o", "MaxSessions=200",
    ]
