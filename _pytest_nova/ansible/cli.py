"""The ``nova-inventory-from-ansible`` command: read, map, convert, check, and only then write."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from _pytest_nova.ansible.convert import (
    Addressing,
    Node,
    Notes,
    jump_through,
    key_path,
    names_to_resolve,
    node,
    resolve,
)
from _pytest_nova.ansible.mapping import TARGETS, parse_roles, read_mapping_file, select
from _pytest_nova.ansible.model import AnsibleInventory, ConvertError, Problems
from _pytest_nova.ansible.reading import ReadOptions, read
from _pytest_nova.ansible.render import Details, is_ipv4, render, todos
from _pytest_nova.errors import SourceError
from _pytest_nova.inventory import parse
from _pytest_nova.yamlsource import parse_text

PROG = "nova-inventory-from-ansible"
EXIT_USAGE = 4  # like pytest's usage error: bad input, one line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    """The command's options."""
    p = _Parser(
        prog=PROG,
        description="Write a pytest-nova inventory (format v1) from an Ansible inventory, mapping groups or hosts "
                    "to roles. Each host keeps the user, port, key and ssh options Ansible would use for it.",
        epilog="example: nova-inventory-from-ansible hosts.ini --role master=kube_control_plane "
               "--role worker=kube_node --role nova-ctl=deploy -o prod.yaml",
    )
    p.add_argument("source", nargs="*", help="INI or YAML inventory file or directory (read by ansible-core), or "
                                             "ansible-inventory --list JSON ('-' for stdin); default: ansible.cfg's "
                                             "inventory")
    p.add_argument("--role", action="append", default=[], metavar="ROLE=NAME[,NAME]",
                   help=f"hosts of group NAME, or host NAME, get ROLE ({', '.join(TARGETS)}); repeat for each role")
    p.add_argument("--mapping", type=Path, metavar="FILE", help="YAML file of role: group or host (or a list); "
                                                                "merged with --role")
    p.add_argument("--skip", action="append", default=[], metavar="HOST|GROUP",
                   help="leave out this host, or the hosts of this group that no mapped group holds")
    p.add_argument("--vault-password-file", action="append", default=[], metavar="FILE",
                   help="vault password file (or script), as ansible's; default: ANSIBLE_VAULT_PASSWORD_FILE or "
                        "ansible.cfg's vault_password_file")
    p.add_argument("--resolve", action="store_true",
                   help="look up host names with this machine's resolver and write their IPv4 addresses")
    p.add_argument("--address", action="append", default=[], metavar="HOST=IPv4",
                   help="the address of this host (e.g. a local host); repeat for each")
    p.add_argument("--address-var", metavar="VAR", help="take each host's address from this variable when it has "
                                                       "it (e.g. kubespray's internal 'ip'), else ansible_host")
    p.add_argument("--jump", metavar="HOST", help="reach every ssh node through this Ansible host (kubespray's "
                                                  "bastion), logging in to it as Ansible would")
    p.add_argument("--nova-ctl", metavar="IPv4", help="add this machine as nova-ctl (connection: local) at this "
                                                      "address, when no Ansible host is nova-ctl")
    p.add_argument("--name", help="the cluster name (else a TODO)")
    p.add_argument("--dns-base-domain", help="the platform's dnsBaseDomain (else a TODO)")
    p.add_argument("--dns-server", action="append", default=[], metavar="ADDRESS",
                   help="a DNS server the nodes use; repeat for each (else a TODO)")
    p.add_argument("--user", help="the ssh account of the hosts Ansible names no user for (else a TODO)")
    p.add_argument("--identity-file", metavar="KEY", help="nova-ctl's private key for the hosts Ansible names no "
                                                          "key for (else a TODO)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    return p


def _addresses(specs: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for spec in specs:
        host, _, address = spec.partition("=")
        if not host or not is_ipv4(address) or ipaddress.ip_address(address).is_loopback:
            raise ConvertError(f"--address {spec}: expected HOST=IPv4 (not loopback), e.g. --address deploy=10.0.0.5")
        found[host] = address
    return found


def _nova_ctl(nodes: list[Node], address: str | None, source: str) -> None:
    if address is not None:
        if not is_ipv4(address) or ipaddress.ip_address(address).is_loopback:
            raise ConvertError(f"--nova-ctl {address}: expected this machine's IPv4 address that the nodes reach")
        if any("nova-ctl" in n.roles for n in nodes):
            raise ConvertError(f"--nova-ctl {address}: an Ansible host is already mapped to nova-ctl")
        if any(n.name == "nova-ctl" for n in nodes):
            raise ConvertError(f"--nova-ctl {address}: a host of the inventory is already called nova-ctl; map it "
                               "with --role nova-ctl=nova-ctl instead")
        nodes.insert(0, Node("nova-ctl", address, ("nova-ctl",), connection="local"))
    if not any("nova-ctl" in n.roles for n in nodes):
        raise ConvertError(f"{source}: no host maps to nova-ctl, the machine that runs pytest-nova: map its Ansible "
                           "host or group with --role nova-ctl=NAME (a host with ansible_connection=local is this "
                           "machine), or add this machine with --nova-ctl ITS_IPv4")
    if not any("master" in n.roles for n in nodes):
        raise ConvertError(f"{source}: no host maps to the master role; map the control-plane group, e.g. "
                           "--role master=kube_control_plane")


def _jump(inv: AnsibleInventory, nodes: list[Node], name: str | None, cwd: Path, notes: Notes) -> list[Node]:
    if name is None:
        if "bastion" in {h.name for h in inv.hosts} and not any("ProxyCommand=" in " ".join(n.ssh_options)
                                                                 or "ProxyJump=" in " ".join(n.ssh_options)
                                                                 for n in nodes):
            notes.add("bastion", "kubespray reaches every other host through the host 'bastion' (its default "
                                 "ansible_ssh_common_args): if these nodes are reached only through it, pass "
                                 "--jump bastion")
        return nodes
    jump = next((h for h in inv.hosts if h.name == name), None)
    if jump is None:
        raise ConvertError(f"--jump {name}: no host {name!r} in {inv.source}")
    if jump.settings is None:
        raise ConvertError(f"--jump {name}: {jump.problem}")
    return jump_through(nodes, name, jump.settings, cwd)


def convert(args: argparse.Namespace, argv: Sequence[str]) -> tuple[str, list[Node], list[str]]:
    """The inventory text, its nodes and the warnings; any problem is a :class:`ConvertError`."""
    mapping = read_mapping_file(args.mapping) if args.mapping else {}
    for role, groups in parse_roles(args.role).items():
        mapping.setdefault(role, []).extend(groups)
    overrides = _addresses(args.address)
    inv = read(args.source, ReadOptions(tuple(args.vault_password_file), args.address_var))
    unknown = sorted(set(overrides) - {h.name for h in inv.hosts})
    if unknown:
        raise ConvertError(f"--address {unknown[0]}={overrides[unknown[0]]}: no host {unknown[0]!r} in {inv.source}")
    problems = Problems()
    kept = select(inv, mapping, args.skip, problems)
    for h, _ in kept:
        if h.settings is None:
            problems.add(h.name, h.problem)
    live = [h for h, _ in kept if h.settings is not None]
    resolved = resolve(names_to_resolve(live, overrides)) if args.resolve else None
    how, notes, cwd = Addressing(overrides, resolved), Notes(), Path.cwd()
    nodes: list[Node] = []
    for h, roles in kept:
        if h.settings is not None:
            n = node(h, h.settings, roles, how, cwd, notes, problems)
            if n is not None:
                nodes.append(n)
    by_address: dict[str, list[str]] = {}
    for n in nodes:
        if n.address is not None:
            by_address.setdefault(n.address, []).append(n.name)
    for address, names in by_address.items():
        if len(names) > 1:
            problems.add(", ".join(names), f"share the address {address}: give each host its own ansible_host")
    if problems:
        raise ConvertError(f"{inv.source}: {problems.line()}")
    nodes.sort(key=lambda n: (TARGETS.index(n.roles[0]), n.name))
    nodes = _jump(inv, nodes, args.jump, cwd, notes)
    known = {n.known_hosts for n in nodes if n.connection != "local"}
    if len(known) > 1:  # ssh.knownHostsFile is one file for every node: a file some hosts name cannot be kept
        for n in nodes:
            if n.known_hosts is not None:
                notes.add(n.name, f"left out UserKnownHostsFile={n.known_hosts} of its ssh arguments: it is not "
                                  "every node's, and ssh.knownHostsFile is one file for all: set it by hand to a "
                                  "file that holds every node's host key")
    _nova_ctl(nodes, args.nova_ctl, inv.source)
    details = Details(args.name, args.dns_base_domain, tuple(args.dns_server), args.user,
                      key_path(args.identity_file, cwd))
    header = []
    if any(n.identity_file and n.identity_file.startswith(str(cwd) + os.sep) for n in nodes):
        header.append(f"Relative key paths are taken from {cwd}, as Ansible run there takes them.")
    command = " ".join([PROG, *argv])
    text = render(inv.source, nodes, details, command, header=header)
    where = str(args.output) if args.output else "<standard output>"
    try:  # the text, its TODOs filled with stand-ins, must load before anything is written
        parse(parse_text(Path(where), render(inv.source, nodes, details, command, fill=True, header=header)
                         .encode()))
    except SourceError as exc:
        raise ConvertError(f"the converted inventory would not load, so nothing was written: {exc}") from None
    return text, nodes, [*inv.warnings, *notes.lines()]


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Convert, and write the result only when it loads (TODO lines aside)."""
    if args.output is not None and args.output.exists():
        inputs = [Path(s) for s in args.source if s != "-"] + [Path(f) for f in args.vault_password_file]
        inputs += [args.mapping] if args.mapping else []
        if any(p.exists() and p.is_file() and p.samefile(args.output) for p in inputs):
            raise ConvertError(f"{args.output}: is one of the command's inputs; write the inventory to another file")
        if not args.force:
            raise ConvertError(f"{args.output}: exists; choose another file or pass --force to overwrite it")
    text, nodes, warnings = convert(args, argv)
    if args.output is None:
        sys.stdout.write(text)
    else:
        with args.output.open("w" if args.force else "x", encoding="utf-8") as f:
            f.write(text)
    for w in warnings:
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    left = todos(text)
    counts = Counter(r for n in nodes for r in n.roles)
    summary = ", ".join(f"{counts[r]} {r}" for r in TARGETS if counts[r])
    where = args.output or "standard output"
    if left:
        status = (f"fill in the TODO lines ({', '.join(left)}), then check it: pytest "
                  f"--nova-inventory={args.output or 'FILE'} --collect-only -q")
    else:
        status = "a valid inventory v1"
    print(f"{PROG}: wrote {where}: {len(nodes)} hosts ({summary}); {status}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: a conversion problem is one line on stderr and exit code 4, never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        return run(args, argv)
    except ConvertError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if not type(exc).__module__.startswith("ansible"):
            raise
        # ansible-core failed in a way the converter does not know: still one line, never its traceback.
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        print(f"{PROG}: error: ansible-core: {first}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
