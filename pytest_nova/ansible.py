"""``nova-inventory-from-ansible``: turn an Ansible inventory into a pytest-nova inventory (format v1).

Ansible groups map to Nova roles (``--role master=kube_control_plane``); each host keeps its
``ansible_host``, ``ansible_user``, ``ansible_port`` and ``ansible_ssh_private_key_file``. What Ansible does not
know (cluster name, dnsBaseDomain, DNS servers) is written as a TODO for the user to fill in. INI and YAML
inventories are read with ansible-core's own inventory loader (the ``ansible`` extra); the JSON of
``ansible-inventory -i FILE --list`` is read without it.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import yaml

from pytest_nova.errors import SourceError
from pytest_nova.inventory import ROLES, load_inventory
from pytest_nova.yamlsource import load

PROG = "nova-inventory-from-ansible"
EXIT_USAGE = 4  # like pytest's usage error: bad input, one line
WORKSTATION = "workstation"  # a pseudo-role: hosts listed under workstations (traffic sources only)
TARGETS = (*ROLES, WORKSTATION)
# Carried variable -> its older spelling, read when the current one is not set.
CARRIED = {
    "ansible_host": "ansible_ssh_host",
    "ansible_user": "ansible_ssh_user",
    "ansible_port": "ansible_ssh_port",
    "ansible_ssh_private_key_file": "ansible_private_key_file",
}
_VAULT_HEADER = "$ANSIBLE_VAULT;"
H = TypeVar("H", bound=Hashable)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # what inventory v1 accepts as a node name


class ConvertError(Exception):
    """Something in the Ansible inventory or the mapping that cannot be converted; one line for the user."""


@dataclass(frozen=True)
class AnsibleHost:
    """One host as Ansible sees it: its groups (ancestors included) and its variables."""

    name: str
    groups: frozenset[str]
    vars: dict[str, object]  # as Ansible gives them: plain values, or its own (vault) objects


@dataclass(frozen=True)
class AnsibleInventory:
    """The hosts and group names of one Ansible inventory source."""

    source: str
    hosts: tuple[AnsibleHost, ...]
    groups: frozenset[str]


# ---- reading

def read_source(source: str) -> AnsibleInventory:
    """Read ``source``: ``-`` or a file holding ``ansible-inventory --list`` JSON, else an INI or YAML inventory."""
    if source == "-":
        return read_list_json(sys.stdin.read(), "<stdin>")
    path = Path(source)
    if not path.exists():
        raise ConvertError(f"{source}: no such file")
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConvertError(f"{source}: cannot read it: {exc}") from None
        if text.lstrip().startswith("{"):
            return read_list_json(text, source)
    return read_with_ansible(path)


def read_list_json(text: str, source: str) -> AnsibleInventory:
    """Hosts from the JSON that ``ansible-inventory --list`` prints (groups of groups resolved)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg}); expected ansible-inventory --list "
                           "output") from None
    if not isinstance(data, dict):
        raise ConvertError(f"{source}: expected the JSON object of ansible-inventory --list")
    meta = data.get("_meta") or {}
    hostvars: dict[str, object] = meta.get("hostvars") or {} if isinstance(meta, dict) else {}
    groups = {k: v for k, v in data.items() if k != "_meta" and isinstance(v, dict)}

    def members(group: str, seen: frozenset[str]) -> set[str]:
        if group in seen or group not in groups:  # a cycle, or a child with no entry of its own
            return set()
        g = groups[group]
        found = {str(h) for h in g.get("hosts") or []}
        for child in g.get("children") or []:
            found |= members(str(child), seen | {group})
        return found

    of_host: dict[str, set[str]] = {}
    for group in groups:
        for h in members(group, frozenset()):
            of_host.setdefault(h, set()).add(group)
    for h in hostvars:
        of_host.setdefault(str(h), {"all"})
    hosts = tuple(
        AnsibleHost(h, frozenset(g | {"all"}), _mapping(hostvars.get(h))) for h, g in sorted(of_host.items())
    )
    return AnsibleInventory(source, hosts, frozenset(groups) | {"all"})


@contextmanager
def _ansible_warnings() -> Iterator[list[str]]:
    """Collect ansible-core's warnings instead of printing them; the last one explains a parse failure."""
    from ansible.utils.display import Display

    display = Display()
    seen: list[str] = []

    def as_warning(msg: object = None, exception: BaseException | None = None, **_: object) -> None:
        # The innermost cause names the problem ("Expected key=value host variable assignment, got: ...").
        while exception is not None and exception.__cause__ is not None:
            exception = exception.__cause__
        seen.append(str(exception) if exception is not None else str(msg))

    patched = {"warning": lambda msg, *a, **k: seen.append(str(msg)), "error_as_warning": as_warning}
    for name, fn in patched.items():
        setattr(display, name, fn)
    try:
        yield seen
    finally:
        for name in patched:
            delattr(display, name)  # the class's own methods show again


def _reason(warnings: list[str]) -> str:
    for w in reversed(warnings):
        lines = [ln.strip() for ln in w.splitlines() if ln.strip() and not ln.strip().startswith(("Origin:", "<<<"))]
        if lines and not lines[0].startswith("Unable to parse"):
            return lines[0]
    return "not an INI or YAML inventory"


@functools.cache
def _init_ansible() -> None:
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader()  # once per process: a second call warns


def read_with_ansible(path: Path) -> AnsibleInventory:
    """Hosts of an INI or YAML inventory (with its group_vars/host_vars), read by ansible-core itself."""
    # Read before ansible's constants are imported: fail on a source no plugin parses, and no localhost noise.
    os.environ.setdefault("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "True")
    os.environ.setdefault("ANSIBLE_LOCALHOST_WARNING", "False")
    try:
        from ansible.errors import AnsibleError
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.vars.manager import VariableManager
    except ImportError:
        raise ConvertError(
            f"{path}: reading INI or YAML inventories needs ansible-core: pip install 'pytest-nova[ansible]', or "
            f"pass the JSON of: ansible-inventory -i {path} --list"
        ) from None
    _init_ansible()
    loader = DataLoader()
    with _ansible_warnings() as warnings:
        try:
            manager = InventoryManager(loader=loader, sources=[str(path)])
        except AnsibleError:
            raise ConvertError(f"{path}: ansible-core cannot parse it: {_reason(warnings)}") from None
        variables = VariableManager(loader=loader, inventory=manager)
        hosts = []
        for host in manager.get_hosts():
            # stage "all": group_vars/ and host_vars/ beside the inventory count, as ansible-inventory --list.
            found = variables.get_vars(host=host, include_hostvars=False, stage="all")
            carried = {k: found[k] for k in (*CARRIED, *CARRIED.values(), "ansible_connection") if k in found}
            groups = frozenset(g.name for g in host.get_groups()) | {"all"}
            hosts.append(AnsibleHost(host.name, groups, carried))
    return AnsibleInventory(str(path), tuple(sorted(hosts, key=lambda h: h.name)), frozenset(manager.groups))


# ---- the mapping from groups to roles

def parse_roles(specs: Sequence[str]) -> dict[str, list[str]]:
    """``ROLE=GROUP[,GROUP...]`` options as role -> groups."""
    mapping: dict[str, list[str]] = {}
    for spec in specs:
        role, sep, groups = spec.partition("=")
        names = [g.strip() for g in groups.split(",") if g.strip()]
        if not sep or not names:
            raise ConvertError(f"--role {spec}: expected ROLE=GROUP[,GROUP], e.g. --role master=kube_control_plane")
        if role not in TARGETS:
            raise ConvertError(f"--role {spec}: unknown role {role!r} (expected one of: {', '.join(TARGETS)})")
        mapping.setdefault(role, []).extend(names)
    return mapping


def read_mapping_file(path: Path) -> dict[str, list[str]]:
    """A YAML mapping file: ``{master: kube_control_plane, worker: [kube_node], ...}``."""
    try:
        doc = load(path)
    except SourceError as exc:
        raise ConvertError(str(exc)) from None
    if not isinstance(doc.data, dict) or not doc.data:
        raise ConvertError(str(doc.error((), "expected a mapping of Nova roles to Ansible groups, e.g. "
                                             "'master: kube_control_plane'")))
    mapping: dict[str, list[str]] = {}
    for role, groups in doc.data.items():
        if role not in TARGETS:
            raise ConvertError(str(doc.error((role,), f"unknown role (expected one of: {', '.join(TARGETS)})")))
        names = [groups] if isinstance(groups, str) else groups
        if not isinstance(names, list) or not names or not all(isinstance(g, str) and g for g in names):
            raise ConvertError(str(doc.error((role,), "expected a group name or a list of group names")))
        mapping[role] = list(names)
    return mapping


# ---- conversion

@dataclass(frozen=True)
class Node:
    """A converted host: the values the v1 file needs."""

    name: str
    address: str
    roles: tuple[str, ...]
    user: str | None
    port: int | None
    identity_file: str | None
    local: bool


def _mapping(value: object) -> dict[str, object]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _value(inv: AnsibleInventory, host: AnsibleHost, key: str) -> object:
    for k in (key, CARRIED.get(key, "")):
        if k not in host.vars:
            continue
        v = host.vars[k]
        if _is_vault(v):
            raise ConvertError(
                f"{inv.source}: {host.name}: {k} is vault-encrypted and is not decrypted here; write its plain value "
                "in the generated file (it is not a secret: an address, user, port or key path)"
            )
        if v is None:
            return None
        if isinstance(v, str) and ("{{" in v or "{%" in v):
            raise ConvertError(f"{inv.source}: {host.name}: {k}: '{v}' is a Jinja template; give the plain value")
        return v
    return None


def _is_vault(value: object) -> bool:
    if isinstance(value, dict):
        return "__ansible_vault" in value
    # ansible-core's encrypted values (EncryptedString, AnsibleVaultEncryptedUnicode) cannot be read without a key.
    if "Vault" in type(value).__name__ or "Encrypted" in type(value).__name__:
        return True
    return isinstance(value, str) and value.lstrip().startswith(_VAULT_HEADER)


def _node(inv: AnsibleInventory, host: AnsibleHost, roles: tuple[str, ...]) -> Node:
    where = f"{inv.source}: {host.name}"
    if not _NAME.match(host.name):
        raise ConvertError(f"{where}: the host name has characters a node name cannot have (letters, digits, '-', "
                           "'_', '.')")
    raw = _value(inv, host, "ansible_host")
    address = str(raw) if raw is not None else host.name
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        what = f"ansible_host '{raw}' is" if raw is not None else "no ansible_host, and the host name is"
        raise ConvertError(f"{where}: {what} not an IP address; set ansible_host to the node's IP address") from None
    raw_port = _value(inv, host, "ansible_port")
    port = None
    if raw_port is not None:
        try:
            port = int(str(raw_port))
        except ValueError:
            raise ConvertError(f"{where}: ansible_port {raw_port!r} is not a port number") from None
    user, key = _value(inv, host, "ansible_user"), _value(inv, host, "ansible_ssh_private_key_file")
    return Node(
        name=host.name,
        address=address,
        roles=roles,
        user=str(user) if user is not None else None,
        port=port,
        identity_file=str(key) if key is not None else None,
        local=str(host.vars.get("ansible_connection", "")) == "local",
    )


def map_hosts(inv: AnsibleInventory, mapping: dict[str, list[str]], skip: Sequence[str] = ()) -> list[Node]:
    """Every host with its Nova roles; an unmapped host, an unknown group or a conflict is a ConvertError."""
    if not mapping:
        raise ConvertError("no mapping: give --role ROLE=GROUP (e.g. --role master=kube_control_plane "
                           "--role worker=kube_node) or --mapping FILE")
    known = inv.groups | {h.name for h in inv.hosts}
    for name in [g for groups in mapping.values() for g in groups] + list(skip):
        if name not in known:
            listed = ", ".join(sorted(inv.groups - {"all", "ungrouped"})) or "none"
            raise ConvertError(f"{inv.source}: no group {name!r} in this inventory (its groups: {listed})")
    nodes: list[Node] = []
    for host in inv.hosts:
        if host.name in skip or host.groups & set(skip):
            continue
        roles = tuple(r for r in TARGETS if host.groups & set(mapping.get(r, ())))
        if not roles:
            groups = ", ".join(sorted(host.groups - {"all"})) or "no group"
            raise ConvertError(f"{inv.source}: {host.name}: in no mapped group ({groups}); map one with "
                               "--role ROLE=GROUP, or leave the host out with --skip HOST")
        if WORKSTATION in roles and len(roles) > 1:
            raise ConvertError(f"{inv.source}: {host.name}: mapped to {', '.join(roles)}; a workstation is not a "
                               "cluster node: map its groups to one or the other")
        nodes.append(_node(inv, host, roles))
    nodes.sort(key=lambda n: (TARGETS.index(n.roles[0]), n.name))
    ctl = [n.name for n in nodes if "nova-ctl" in n.roles]
    if len(ctl) > 1:
        raise ConvertError(f"{inv.source}: {', '.join(ctl)}: several hosts map to nova-ctl; only one runs the "
                           "installer: map a group holding that one host")
    if not any("master" in n.roles for n in nodes):
        raise ConvertError(f"{inv.source}: no host maps to the master role; map the control-plane group, e.g. "
                           "--role master=kube_control_plane")
    seen: dict[str, str] = {}
    for n in nodes:
        if n.address in seen:
            raise ConvertError(f"{inv.source}: {n.name}: address {n.address} is also {seen[n.address]}'s; give each "
                               "host its own ansible_host")
        seen[n.address] = n.name
    return nodes


# ---- writing

def _scalar(value: str | int) -> str:
    text = str(value)
    plain = (isinstance(value, int) or yaml.safe_load(text) == text) and not any(c in text for c in ",[]{}#:'\"")
    return text if plain and text.strip() == text and text else json.dumps(text)


def _common(values: Sequence[H | None]) -> H | None:
    present = [v for v in values if v is not None]
    return Counter(present).most_common(1)[0][0] if present else None


@dataclass(frozen=True)
class Details:
    """What the user may already know and give on the command line instead of a TODO."""

    name: str | None = None
    dns_base_domain: str | None = None
    dns_servers: tuple[str, ...] = ()


def render(inv: AnsibleInventory, nodes: list[Node], details: Details, command: str) -> str:
    """The commented inventory v1 text; unknowns are empty values marked TODO, which load_inventory rejects."""
    cluster = [n for n in nodes if WORKSTATION not in n.roles]
    stations = [n for n in nodes if WORKSTATION in n.roles]
    user = _common([n.user for n in cluster])
    key = _common([n.identity_file for n in cluster])
    port = _common([n.port or 22 for n in cluster])
    col = 47

    def line(text: str, comment: str = "") -> str:
        return f"{text:<{col}}# {comment}" if comment else text

    def todo(key_text: str, value: str | None, comment: str) -> str:
        if value:
            return f"  {key_text}: {value}"
        return line(f"  {key_text}:", f"TODO: {comment}")

    servers = f"[{', '.join(details.dns_servers)}]" if details.dns_servers else None
    out = [
        "# pytest-nova inventory (format v1), converted from the Ansible inventory",
        f"#   {inv.source}",
        f"# by: {command}",
        "# Fill in every TODO (if any), then check it: pytest --nova-inventory=THIS_FILE --collect-only -q",
        "cluster:",
        todo("name", _scalar(details.name) if details.name else None, "the cluster's name, shown in reports "
             "(e.g. prod)"),
        todo("dnsBaseDomain", _scalar(details.dns_base_domain) if details.dns_base_domain else None,
             "the dnsBaseDomain of nova-deployment-conf.yaml"),
        "network:",
        line("  mode: internet", "internet | closed (closed: add a universe section)"),
        todo("dnsServers", servers, "the internal DNS servers the nodes use, e.g. [10.10.0.53, 10.10.0.54]"),
        "ssh:",
        todo("user", _scalar(user) if user else None, "the account prepared on every node (no ansible_user "
             "was set)"),
        todo("identityFile", _scalar(key) if key else None, "nova-ctl's private key for that account (no "
             "ansible_ssh_private_key_file was set)"),
    ]
    if port != 22:
        out.append(f"  port: {port}")
    out.append("nodes:")
    if not any("nova-ctl" in n.roles for n in cluster):
        out += [
            "  # TODO (optional): the nova-ctl host that runs pytest; its rules of docs 3.1.1 are checked from it:",
            "  # - {name: nova-ctl, address: 10.10.0.5, roles: [nova-ctl], connection: local}",
        ]

    def entry(n: Node, node: bool) -> str:
        parts = [f"name: {_scalar(n.name)}", f"address: {n.address}"]
        if node:
            parts.append(f"roles: [{', '.join(r for r in n.roles)}]")
        if n.local:
            parts.append("connection: local")
        if n.user is not None and n.user != user:
            parts.append(f"user: {_scalar(n.user)}")
        if (n.port or 22) != port:
            parts.append(f"port: {n.port or 22}")
        if n.identity_file is not None and n.identity_file != key:
            parts.append(f"identityFile: {_scalar(n.identity_file)}")
        return f"  - {{{', '.join(parts)}}}"

    out += [entry(n, True) for n in cluster]
    if stations:
        out.append("workstations:")
        out += [entry(n, False) for n in stations]
    return "\n".join(out) + "\n"


def todos(text: str) -> list[str]:
    """The keys still marked TODO in a rendered file (the optional nova-ctl line aside)."""
    return [ln.split(":")[0].strip() for ln in text.splitlines() if "# TODO:" in ln and not ln.lstrip().startswith("#")]


# ---- the command

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Write a pytest-nova inventory (format v1) from an Ansible inventory, mapping groups to roles.",
        epilog="example: nova-inventory-from-ansible hosts.ini --role master=kube_control_plane "
               "--role worker=kube_node -o prod.yaml",
    )
    p.add_argument("source", help="INI or YAML inventory (read by ansible-core), or ansible-inventory --list JSON "
                                  "('-' for stdin)")
    p.add_argument("--role", action="append", default=[], metavar="ROLE=GROUP[,GROUP]",
                   help=f"hosts of GROUP get ROLE ({', '.join(TARGETS)}); repeat for each role")
    p.add_argument("--mapping", type=Path, metavar="FILE", help="YAML file of role: group (or list of groups)")
    p.add_argument("--skip", action="append", default=[], metavar="HOST|GROUP",
                   help="leave out this host, or every host of this group")
    p.add_argument("--name", help="the cluster name (else a TODO)")
    p.add_argument("--dns-base-domain", help="the platform's dnsBaseDomain (else a TODO)")
    p.add_argument("--dns-server", action="append", default=[], metavar="ADDRESS",
                   help="a DNS server the nodes use; repeat for each (else a TODO)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    return p


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Convert, write, and validate the result when nothing is left to fill in."""
    mapping = read_mapping_file(args.mapping) if args.mapping else {}
    for role, groups in parse_roles(args.role).items():
        mapping.setdefault(role, []).extend(groups)
    if args.output is not None and args.output.exists() and not args.force:
        raise ConvertError(f"{args.output}: exists; choose another file or pass --force to overwrite it")
    inv = read_source(args.source)
    nodes = map_hosts(inv, mapping, args.skip)
    details = Details(args.name, args.dns_base_domain, tuple(args.dns_server))
    text = render(inv, nodes, details, " ".join([PROG, *argv]))
    left = todos(text)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        if not left:
            try:
                load_inventory(args.output)
            except SourceError as exc:
                raise ConvertError(f"the written inventory does not validate: {exc}") from None
    counts = Counter(r for n in nodes for r in n.roles)
    summary = ", ".join(f"{counts[r]} {r}" for r in TARGETS if counts[r])
    where = args.output or "standard output"
    status = f"fill in the TODO lines: {', '.join(left)}" if left else "valid inventory v1"
    print(f"{PROG}: wrote {where}: {len(nodes)} hosts ({summary}); {status}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: a conversion problem is one line on stderr and exit code 4, never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        return run(args, argv)
    except ConvertError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
