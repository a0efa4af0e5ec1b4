"""One mapped Ansible host as an inventory v1 node: its address, login values and OpenSSH options.

Nothing is dropped in silence: what pytest-nova cannot carry (a password login, a become password, a
non-ssh connection, an ssh argument without an equivalent) becomes a warning naming the host and what to do.
"""

from __future__ import annotations

import ipaddress
import queue
import re
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from _pytest_nova.ansible import sshargs
from _pytest_nova.ansible.model import AnsibleHost, Problems, Settings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # what inventory v1 accepts as a node name
RESOLVE_DEADLINE = 10.0  # seconds for all --resolve look-ups together
_LOCAL = ("local", "ansible.builtin.local", "ansible.legacy.local")
_SSH = ("ssh", "smart", "ansible.builtin.ssh", "ansible.legacy.ssh")
_PARAMIKO = ("paramiko", "paramiko_ssh", "ansible.builtin.paramiko_ssh", "ansible.legacy.paramiko_ssh")
_WINDOWS = ("winrm", "psrp", "ansible.builtin.winrm", "ansible.builtin.psrp")


@dataclass(frozen=True)
class Node:
    """A converted host: the values the v1 file needs."""

    name: str
    address: str | None  # None: to be filled in (a local host Ansible never needed an address for)
    roles: tuple[str, ...]
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    connection: str | None = None  # None: ssh
    ssh_options: tuple[str, ...] = ()
    accept_new: bool = False
    known_hosts: str | None = None
    note: str = ""  # a comment for its line (where the address came from)


@dataclass
class Notes:
    """Warnings, each with the hosts it concerns: one line per warning."""

    by_text: dict[str, list[str]] = field(default_factory=dict)

    def add(self, host: str, text: str) -> None:
        """Record warning ``text`` (a sentence that fits every host it names) for ``host``."""
        self.by_text.setdefault(text, []).append(host)

    def lines(self) -> list[str]:
        """Each warning with the hosts it concerns (the first ten of many)."""
        return [f"{', '.join(hosts[:10])}{f' and {len(hosts) - 10} more' if len(hosts) > 10 else ''}: {text}"
                for text, hosts in self.by_text.items()]


@dataclass(frozen=True)
class Addressing:
    """How addresses are found: --address overrides, and --resolve's answers."""

    overrides: Mapping[str, str] = field(default_factory=dict)
    resolved: Mapping[str, tuple[str, ...]] | None = None  # None: no --resolve


def is_local(s: Settings) -> bool:
    """Whether Ansible runs this host's tasks on the controller itself."""
    return s.connection in _LOCAL


def names_to_resolve(hosts: Iterable[AnsibleHost], overrides: Mapping[str, str]) -> list[str]:
    """The addresses that are host names, of the hosts --resolve must look up."""
    names = []
    for h in hosts:
        if h.settings is None or h.name in overrides or is_local(h.settings):
            continue
        try:
            ipaddress.ip_address(h.settings.address)
        except ValueError:
            names.append(h.settings.address)
    return sorted(set(names))


def resolve(names: Iterable[str], deadline: float = RESOLVE_DEADLINE, workers: int = 32) -> dict[str, tuple[str, ...]]:
    """IPv4 addresses of ``names`` from the system resolver (getaddrinfo), all within ``deadline`` seconds.

    A name missing from the answer was not answered in time.
    """
    todo = queue.SimpleQueue[str]()
    for name in names:
        todo.put(name)
    found: dict[str, tuple[str, ...]] = {}

    def work() -> None:
        while True:
            try:
                name = todo.get_nowait()
            except queue.Empty:
                return
            try:
                infos = socket.getaddrinfo(name, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError):
                infos = []
            found[name] = tuple(dict.fromkeys(str(i[4][0]) for i in infos))

    # getaddrinfo has no timeout of its own: daemon threads, abandoned at the deadline.
    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(workers, todo.qsize()))]
    for t in threads:
        t.start()
    end = time.monotonic() + deadline
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    return dict(found)


def _address(h: AnsibleHost, s: Settings, how: Addressing, problems: Problems) -> tuple[str | None, str]:
    """The node's IPv4 address and a note, or None for a local host that must be given one."""
    local = is_local(s)
    raw, note = how.overrides.get(h.name, s.address), ""
    if h.name in how.overrides:
        note = "address given by --address"
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        if local:
            return None, ""
        if how.resolved is None:
            problems.add(h.name, "a host name, not an IP address: pass --resolve to look names up with this "
                                 "machine's resolver, set ansible_host, or give --address HOST=IPv4")
            return None, ""
        answers = how.resolved.get(raw)
        if answers is None:
            problems.add(h.name, f"--resolve: no answer for the name within {RESOLVE_DEADLINE:g} s")
            return None, ""
        usable = [a for a in answers if not ipaddress.ip_address(a).is_loopback]
        if not usable:
            what = f"resolves only to {', '.join(answers)} here" if answers else "has no IPv4 address here"
            problems.add(h.name, f"--resolve: the name {what}: set ansible_host to the address the other hosts "
                                 "reach, or give --address HOST=IPv4")
            return None, ""
        others = f" (also {', '.join(usable[1:])})" if len(usable) > 1 else ""
        return usable[0], f"{raw} resolved by this machine's resolver{others}"
    if ip.version == 6:
        problems.add(h.name, "IPv6 address: nodes need IPv4 (IP-in-IP between all nodes carries IPv4, docs 3.1): "
                             "set ansible_host to its IPv4 address, or give --address HOST=IPv4")
        return None, ""
    for bad, what in ((ip.is_loopback, "a loopback"), (ip.is_unspecified, "the unspecified"),
                      (ip.is_multicast, "a multicast"), (str(ip) == "255.255.255.255", "the broadcast")):
        if bad:
            if local:
                return None, ""
            problems.add(h.name, f"{what} address: set ansible_host to the address the other hosts reach, or give "
                                 "--address HOST=IPv4")
            return None, ""
    if s.address_from and not note:
        note = "" if s.address_from in ("ansible_host", "ansible_ssh_host") else f"address from {s.address_from}"
    return str(ip), note


def key_path(key: str | None, cwd: Path) -> str | None:
    """``key`` absolute: ssh is given Ansible's value as it is, so a relative path is relative to ``cwd``."""
    if key is None or key.startswith("~") or Path(key).is_absolute():
        return key
    return str(cwd / key)


def node(h: AnsibleHost, s: Settings, roles: tuple[str, ...], how: Addressing, cwd: Path, notes: Notes,
         problems: Problems) -> Node | None:
    """The node of ``h``, or None when a problem about it was recorded."""
    if not _NAME.match(h.name):
        problems.add(h.name, "a name inventory v1 cannot have (letters, digits, '-', '_', '.'): rename the host")
        return None
    address, note = _address(h, s, how, problems)
    if address is None and not is_local(s):
        return None
    if is_local(s):
        return Node(h.name, address, roles, connection="local", note=note)
    args = sshargs.SshArgs()
    for var, text in s.ssh_args:
        sshargs.parse(var, text, args)
    connection: str | None = None
    if s.connection in _PARAMIKO:
        connection = "paramiko"
        if s.ssh_args:
            notes.add(h.name, "Ansible's paramiko connection ignores ansible_ssh_common_args/extra_args; so does "
                              "the converted node (connection: paramiko)")
            args = sshargs.SshArgs()
    elif s.connection in _WINDOWS:
        notes.add(h.name, f"ansible_connection={s.connection}: a Windows host; Nova nodes are Linux machines "
                          "reached over ssh: leave it out with --skip HOST, or map another host")
    elif s.connection not in _SSH:
        notes.add(h.name, f"ansible_connection={s.connection}: Ansible does not reach it over ssh; written as an "
                          "ssh node at its address: check that its sshd answers, or write its connection as a "
                          f"testinfra URL ({s.connection.rsplit('.', 1)[-1]}://…), or --skip it")
    if s.passwords:
        notes.add(h.name, f"logs in with a password ({', '.join(s.passwords)}); pytest-nova logs in with a key "
                          "only: put nova-ctl's public key in the account's authorized_keys (docs account 2) "
                          "and set its identityFile")
    if s.become_passwords:
        notes.add(h.name, f"sudo asks for a password ({', '.join(s.become_passwords)}); the installer account "
                          "needs NOPASSWD sudo (docs account 1): the os checks fail until its sudoers drop-in "
                          "says NOPASSWD")
    if args.config_file:
        notes.add(h.name, f"-F {args.config_file} in its ssh arguments: pytest-nova's ssh reads ~/.ssh/config, "
                          "not that file: carry the settings the nodes need into ssh.options (e.g. ProxyJump=…) "
                          "or nova-ctl's ~/.ssh/config")
    for what in args.left_out:
        notes.add(h.name, f"left out {what}")
    accept_new = args.accept_new or not s.host_key_checking
    if accept_new:
        why = ("host_key_checking is off" if not s.host_key_checking
               else "StrictHostKeyChecking=no in its ssh arguments")
        notes.add(h.name, f"{why}: written as ssh.hostKeyPolicy: accept-new for every node (a new host key is "
                          "accepted and remembered; a changed one still fails)")
    known = key_path(args.known_hosts, cwd) if args.known_hosts not in (None, "/dev/null") else None
    port = s.port
    if port is None and args.port is not None:
        port = int(args.port) if args.port.isdigit() else None
    return Node(
        name=h.name,
        address=address,
        roles=roles,
        user=s.user or args.user,
        port=port,
        identity_file=key_path(s.key or args.key, cwd),
        connection=connection,
        ssh_options=tuple(args.options),
        accept_new=accept_new,
        known_hosts=known,
        note=note,
    )


def _proxied(n: Node) -> bool:
    return any(o.lower().startswith(("proxyjump=", "proxycommand=")) for o in n.ssh_options)


def jump_through(nodes: list[Node], jump: str, s: Settings, cwd: Path) -> list[Node]:
    """``nodes`` with every ssh node reached through host ``jump`` (kubespray's bastion), as kubespray does.

    The login to the jump host is the one Ansible would make to it (its address, user, port, key, known_hosts),
    in batch mode so that it never prompts; a node that has a jump host of its own keeps it.
    """
    args = sshargs.SshArgs()
    for var, text in s.ssh_args:
        sshargs.parse(var, text, args)
    words = ["ssh", "-o", "BatchMode=yes"]
    known = key_path(args.known_hosts, cwd) if args.known_hosts else None
    if known:
        words += ["-o", f"UserKnownHostsFile={known}"]
    key = key_path(s.key or args.key, cwd)
    if key:
        words += ["-i", key]
    words += ["-W", "%h:%p", "-p", str(s.port or 22), f"{s.user}@{s.address}" if s.user else s.address]
    option = "ProxyCommand=" + " ".join(words)
    return [n if n.connection is not None or n.name == jump or _proxied(n)
            else replace(n, ssh_options=(option, *n.ssh_options)) for n in nodes]
