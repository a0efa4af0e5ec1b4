"""Which Ansible hosts become which Nova roles: ``--role ROLE=GROUP|HOST``, ``--mapping FILE``, ``--skip``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from _pytest_nova.ansible.model import AnsibleHost, AnsibleInventory, ConvertError, Problems
from _pytest_nova.errors import SourceError
from _pytest_nova.inventory import ROLES
from _pytest_nova.yamlsource import load

WORKSTATION = "workstation"  # a pseudo-role: hosts listed under workstations (traffic sources only)
TARGETS = (*ROLES, WORKSTATION)


def parse_roles(specs: Sequence[str]) -> dict[str, list[str]]:
    """``ROLE=NAME[,NAME...]`` options (a group or a host each) as role -> names."""
    mapping: dict[str, list[str]] = {}
    for spec in specs:
        role, sep, groups = spec.partition("=")
        names = [g.strip() for g in groups.split(",") if g.strip()]
        if not sep or not names:
            raise ConvertError(f"--role {spec}: expected ROLE=GROUP|HOST[,...], e.g. --role master=kube_control_plane")
        if role not in TARGETS:
            raise ConvertError(f"--role {spec}: unknown role {role!r} (expected one of: {', '.join(TARGETS)})")
        mapping.setdefault(role, []).extend(names)
    return mapping


def read_mapping_file(path: Path) -> dict[str, list[str]]:
    """A YAML mapping file: ``{master: kube_control_plane, worker: [kube_node], nova-ctl: deploy-host}``."""
    try:
        doc = load(path)
    except SourceError as exc:
        raise ConvertError(str(exc)) from None
    if not isinstance(doc.data, dict) or not doc.data:
        raise ConvertError(str(doc.error((), "expected a mapping of Nova roles to Ansible groups or hosts, e.g. "
                                             "'master: kube_control_plane'")))
    mapping: dict[str, list[str]] = {}
    for role, groups in doc.data.items():
        if role not in TARGETS:
            raise ConvertError(str(doc.error((role,), f"unknown role (expected one of: {', '.join(TARGETS)})")))
        names = [groups] if isinstance(groups, str) else groups
        if not isinstance(names, list) or not names or not all(isinstance(g, str) and g for g in names):
            raise ConvertError(str(doc.error((role,), "expected a group or host name, or a list of them")))
        mapping[role] = list(names)
    return mapping


def _listed(inv: AnsibleInventory) -> str:
    groups = ", ".join(sorted(inv.groups - {"all", "ungrouped"})) or "none but all"
    return f"its groups: {groups}; {len(inv.hosts)} hosts"


def select(inv: AnsibleInventory, mapping: dict[str, list[str]], skip: Sequence[str],
           problems: Problems) -> list[tuple[AnsibleHost, tuple[str, ...]]]:
    """Every host that is kept, with its roles; unmapped hosts and conflicts are recorded in ``problems``."""
    if not mapping:
        raise ConvertError("no mapping: give --role ROLE=GROUP (e.g. --role master=kube_control_plane "
                           "--role worker=kube_node) or --mapping FILE")
    hosts = {h.name for h in inv.hosts}
    for name in [g for groups in mapping.values() for g in groups] + list(skip):
        if name not in inv.groups and name not in hosts:
            raise ConvertError(f"{inv.source}: no group or host {name!r} in this inventory ({_listed(inv)})")
    skipped_hosts = set(skip) & hosts
    skipped_groups = set(skip) - hosts
    kept: list[tuple[AnsibleHost, tuple[str, ...]]] = []
    unmapped: list[str] = []
    for host in inv.hosts:
        if host.name in skipped_hosts:
            continue
        names = host.groups | {host.name}
        roles = tuple(r for r in TARGETS if names & set(mapping.get(r, ())))
        if not roles:
            if not host.groups & skipped_groups:  # --skip GROUP leaves out only hosts no mapped group holds
                unmapped.append(f"{host.name} ({', '.join(sorted(host.groups - {'all'})) or 'no group'})")
            continue
        if WORKSTATION in roles and len(roles) > 1:
            problems.add(host.name, f"mapped to {', '.join(roles)}; a workstation is not a cluster node: map its "
                                    "groups to one or the other")
            continue
        kept.append((host, roles))
    if unmapped:
        problems.add(", ".join(unmapped), "in no mapped group: map them with --role ROLE=GROUP|HOST, or leave them "
                                          "out with --skip HOST|GROUP")
    ctl = [h.name for h, roles in kept if "nova-ctl" in roles]
    if len(ctl) > 1:
        raise ConvertError(f"{inv.source}: {', '.join(ctl)}: several hosts map to nova-ctl; only one runs the "
                           "installer: map that host by name, e.g. --role nova-ctl=" + ctl[0])
    return kept
