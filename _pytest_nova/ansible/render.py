"""The commented inventory v1 text of the converted nodes; unknowns are TODO lines for the user to fill in.

A value goes to ``ssh.*`` only when it is every ssh host's own value; the others keep theirs per node, so no
host ever gets another host's user, key or options.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import yaml

from _pytest_nova.ansible.convert import Node
from _pytest_nova.ansible.mapping import WORKSTATION

T = TypeVar("T")
_COL = 47
# Stand-ins for the TODO values when the text is checked before it is written (they are never written).
_FILL = {"name": "todo", "dnsBaseDomain": "todo.example", "dnsServers": "[192.0.2.53]", "user": "todo",
         "identityFile": "todo"}


@dataclass(frozen=True)
class Details:
    """What the user gives on the command line instead of a TODO."""

    name: str | None = None
    dns_base_domain: str | None = None
    dns_servers: tuple[str, ...] = ()
    user: str | None = None  # for the hosts Ansible names no user for
    identity_file: str | None = None  # for the hosts Ansible names no key for


def scalar(value: str | int) -> str:
    """``value`` as a YAML scalar, quoted only where it must be."""
    text = str(value)
    plain = (isinstance(value, int) or yaml.safe_load(text) == text) and not any(c in text for c in ",[]{}#:'\"")
    return text if plain and text.strip() == text and text else json.dumps(text)


def _shared(values: Sequence[T | None], fallback: T | None) -> T | None:
    """Every host's value when all have one (the most common, others then given per node), else ``fallback``."""
    if values and all(v is not None for v in values):
        return Counter(values).most_common(1)[0][0]
    return fallback


def _few(names: Sequence[str]) -> str:
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def render(source: str, nodes: Sequence[Node], details: Details, command: str, *, fill: bool = False,
           header: Sequence[str] = ()) -> str:
    """The inventory v1 text; with ``fill``, stand-ins replace the TODO values (to check the rest)."""
    ssh_nodes = [n for n in nodes if n.connection != "local"]
    user = _shared([n.user for n in ssh_nodes], details.user)
    key = _shared([n.identity_file for n in ssh_nodes], details.identity_file)
    port = Counter(n.port or 22 for n in ssh_nodes).most_common(1)[0][0] if ssh_nodes else 22
    option_sets = {n.ssh_options for n in ssh_nodes}
    options = next(iter(option_sets)) if len(option_sets) == 1 else ()
    known = {n.known_hosts for n in ssh_nodes}
    known_hosts = next(iter(known)) if len(known) == 1 else None
    used = {n.address for n in nodes}
    spare = (f"192.0.2.{i}" for i in range(254, 0, -1) if f"192.0.2.{i}" not in used)

    def line(text: str, comment: str = "") -> str:
        return f"{text:<{_COL}}# {comment}" if comment else text

    def todo(key_text: str, value: str | None, comment: str, indent: str = "  ") -> str:
        if value:
            return f"{indent}{key_text}: {value}"
        if fill:
            return f"{indent}{key_text}: {_FILL.get(key_text) or next(spare)}"
        return line(f"{indent}{key_text}:", f"TODO: {comment}")

    no_user = [n.name for n in ssh_nodes if n.user is None]
    no_key = [n.name for n in ssh_nodes if n.identity_file is None]
    servers = f"[{', '.join(details.dns_servers)}]" if details.dns_servers else None
    out = [
        "# pytest-nova inventory (format v1), converted from the Ansible inventory",
        f"#   {source}",
        f"# by: {command}",
        *(f"# {h}" for h in header),
        "# Fill in every TODO (if any), then check it: pytest --nova-inventory=THIS_FILE --collect-only -q",
        "cluster:",
        todo("name", scalar(details.name) if details.name else None, "the cluster's name, shown in reports "
             "(e.g. prod), or pass --name"),
        todo("dnsBaseDomain", scalar(details.dns_base_domain) if details.dns_base_domain else None,
             "the dnsBaseDomain of nova-deployment-conf.yaml, or pass --dns-base-domain"),
        "network:",
        line("  mode: internet", "internet | closed (closed: add a universe section)"),
        todo("dnsServers", servers, "the internal DNS servers the nodes use, e.g. [10.10.0.53, 10.10.0.54], or "
             "pass --dns-server"),
        "ssh:",
        todo("user", scalar(user) if user else None, f"the account of {_few(no_user)} (Ansible names none), or "
             "pass --user"),
        todo("identityFile", scalar(key) if key else None, f"nova-ctl's private key for {_few(no_key)} (Ansible "
             "names none), or pass --identity-file"),
    ]
    if port != 22:
        out.append(f"  port: {port}")
    if known_hosts:
        out.append(f"  knownHostsFile: {scalar(known_hosts)}")
    if any(n.accept_new for n in nodes):
        out.append(line("  hostKeyPolicy: accept-new", "Ansible checked no host keys (see the warnings)"))
    if options:
        out.append(f"  options: [{', '.join(json.dumps(o) for o in options)}]")
    out.append("nodes:")

    def entry(n: Node, node: bool) -> str:
        parts = [f"name: {scalar(n.name)}"]
        if n.address is not None:
            parts.append(f"address: {n.address}")
        if node:
            parts.append(f"roles: [{', '.join(n.roles)}]")
        if n.connection is not None:
            parts.append(f"connection: {n.connection}")
        if n.user is not None and n.user != user:
            parts.append(f"user: {scalar(n.user)}")
        if (n.port or 22) != port and n.connection != "local":
            parts.append(f"port: {n.port or 22}")
        if n.identity_file is not None and n.identity_file != key:
            parts.append(f"identityFile: {scalar(n.identity_file)}")
        if n.ssh_options and n.ssh_options != options:
            parts.append(f"sshOptions: [{', '.join(json.dumps(o) for o in n.ssh_options)}]")
        if n.address is None:  # block form: the address line carries its TODO
            rest = [p for p in parts if not p.startswith("name:")]
            return "\n".join([f"  - {parts[0]}",
                              todo("address", None, "the IPv4 address of this machine that the nodes reach, or pass "
                                   f"--address {n.name}=IPv4", indent="    "),
                              *(f"    {p}" for p in rest)])
        text = f"  - {{{', '.join(parts)}}}"
        return line(text + "  ", n.note) if n.note else text

    out += [entry(n, True) for n in nodes if WORKSTATION not in n.roles]
    stations = [n for n in nodes if WORKSTATION in n.roles]
    if stations:
        out.append("workstations:")
        out += [entry(n, False) for n in stations]
    return "\n".join(out) + "\n"


def todos(text: str) -> list[str]:
    """The keys still marked TODO in a rendered file."""
    return [ln.split(":")[0].strip().lstrip("- ") for ln in text.splitlines()
            if "# TODO:" in ln and not ln.lstrip().startswith("#")]


def is_ipv4(text: str) -> bool:
    """Whether ``text`` is an IPv4 address."""
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False
