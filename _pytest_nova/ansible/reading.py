"""Reading Ansible inventory sources as Ansible reads them.

INI and YAML files and directories go through ansible-core's own inventory manager, with group_vars and
host_vars, the vault password Ansible would use and ansible.cfg; a stray file in a directory is skipped with a
warning, as Ansible skips it. The JSON of ``ansible-inventory --list`` (with or without ``--export``) is read
without ansible-core.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _pytest_nova.ansible.model import AnsibleHost, AnsibleInventory, ConvertError, HostProblem
from _pytest_nova.ansible.settings import VAULT_HELP, AnsibleResolver, PlainResolver, Resolver
from _pytest_nova.errors import SourceError
from _pytest_nova.inputs import read_pipe
from _pytest_nova.yamlsource import load

PIPE_DEADLINE = 60.0  # seconds for a pipe given as the source to be written and closed
PIPE_BYTES = 256 << 20  # ansible-inventory --list of a very large inventory
NEEDS_ANSIBLE = "needs ansible-core: pip install 'pytest-nova[ansible]'"
_FAILED_215 = re.compile(r"^\s*\* Failed to parse (.+) with (\w+) plugin: (.*)", re.S)
_FAILED_219 = re.compile(r"Failed to parse inventory with '(\w+)' plugin")
_UNPARSED = re.compile(r"^Unable to parse (.+) as an inventory source$")
_VAULT_FILE = re.compile(r" in file (\S+)")
_YAML_KEY = re.compile(r"^[A-Za-z_][\w.-]*:(\s|$)")  # "all:" or "apiVersion: v1", not INI's "host:2222 ..."


@dataclass(frozen=True)
class ReadOptions:
    """How to read: vault password files and the variable that holds each host's address."""

    vault_password_files: tuple[str, ...] = ()
    address_var: str | None = None


def read(sources: Sequence[str], opts: ReadOptions) -> AnsibleInventory:
    """Read ``sources`` (none: ansible.cfg's ``inventory``); ``-`` or a JSON file is ansible-inventory output."""
    sources = list(sources) or default_sources()
    if sources == ["-"]:
        return read_list_json(sys.stdin.read(), "<stdin>", opts)
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise ConvertError(f"{source}: no such file")
        if not path.is_file() and not path.is_dir():  # a pipe, e.g. <(ansible-inventory -i hosts --list)
            text = _read_pipe(path)
            if len(sources) > 1 or not text.lstrip().startswith("{"):
                raise ConvertError(f"{source}: not a regular file: only the JSON of ansible-inventory --list is read "
                                   "from a pipe; give INI and YAML inventories as files")
            return read_list_json(text, source, opts)
    special = _special_files(sources)
    if special:
        raise ConvertError(f"{', '.join(special[:5])}: not a regular file (a FIFO, socket or device) among the "
                           "inventory's files; ansible-core would wait on it: move it out of the inventory")
    if len(sources) == 1 and Path(sources[0]).is_file():
        try:
            text = Path(sources[0]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConvertError(f"{sources[0]}: cannot read it: {exc}") from None
        if text.lstrip().startswith("{"):
            return read_list_json(text, sources[0], opts)
    return read_with_ansible(sources, opts)


def _read_pipe(path: Path) -> str:
    """The text of a pipe, or a ConvertError when no writer finishes within PIPE_DEADLINE seconds."""
    try:
        data = read_pipe(path, PIPE_BYTES, PIPE_DEADLINE)
    except SourceError as exc:
        raise ConvertError(f"{path}: {exc.message}") from None
    except OSError as exc:
        raise ConvertError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > PIPE_BYTES:
        raise ConvertError(f"{path}: more than {PIPE_BYTES >> 20} MiB of ansible-inventory output")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConvertError(f"{path}: cannot read it: {exc}") from None


def _special_files(sources: Sequence[str]) -> list[str]:
    """FIFOs, sockets and devices where ansible-core reads: in source folders, group_vars/ and host_vars/."""
    found: list[str] = []
    for source in sources:
        base = Path(source) if Path(source).is_dir() else Path(source).parent
        roots = [Path(source)] if Path(source).is_dir() else [base / "group_vars", base / "host_vars"]
        for root in roots:
            for folder, _, files in os.walk(root):
                found += [str(Path(folder, f)) for f in sorted(files)
                          if Path(folder, f).exists() and not Path(folder, f).is_file()]
    return found


def default_sources() -> list[str]:
    """The inventory Ansible reads when none is named: ansible.cfg's ``inventory`` (or ANSIBLE_INVENTORY)."""
    try:
        from ansible import constants as C
    except ImportError:
        raise ConvertError("no inventory given: name the inventory file or directory") from None
    value, origin = C.config.get_config_value_and_origin("DEFAULT_HOST_LIST")
    found = [str(s) for s in value or [] if str(s).strip()]
    if origin == "default":
        found = [s for s in found if Path(s).exists()]
    if not found:
        where = f"ansible.cfg ({C.CONFIG_FILE})" if C.CONFIG_FILE else "no ansible.cfg was found"
        raise ConvertError(f"no inventory given, and Ansible has none configured ({where}): name the inventory, "
                           "or set inventory in ansible.cfg's [defaults] or ANSIBLE_INVENTORY")
    return found


# ---- ansible-inventory --list JSON

def read_list_json(text: str, source: str, opts: ReadOptions) -> AnsibleInventory:
    """Hosts from ``ansible-inventory --list`` JSON; with ``--export``, group variables are merged as Ansible does."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg}); expected ansible-inventory --list "
                           "output") from None
    if not isinstance(data, dict):
        raise ConvertError(f"{source}: expected the JSON object of ansible-inventory --list")
    meta = data.get("_meta")
    meta = meta if isinstance(meta, dict) else {}
    hostvars = meta.get("hostvars")
    hostvars = hostvars if isinstance(hostvars, dict) else {}
    # A group is {"hosts": [...], "children": [...], "vars": {...}}, or (dynamic inventory scripts) a list of hosts.
    groups = {str(k): ({"hosts": v} if isinstance(v, list) else v) for k, v in data.items()
              if k != "_meta" and isinstance(v, dict | list)}
    parents: dict[str, set[str]] = {}
    for g, body in groups.items():
        for child in _names(body.get("children")):
            parents.setdefault(child, set()).add(g)

    @functools.cache
    def depth(group: str, seen: frozenset[str] = frozenset()) -> int:
        up = parents.get(group, set()) - seen - {group}
        return 0 if group == "all" else 1 + max((depth(p, seen | {group}) for p in up), default=0)

    def ancestors(group: str) -> set[str]:
        found, todo = {group}, [group]
        while todo:
            for p in parents.get(todo.pop(), set()) - found:
                found.add(p)
                todo.append(p)
        return found

    of_host: dict[str, set[str]] = {}
    for g, body in groups.items():
        for h in _names(body.get("hosts")):
            of_host.setdefault(h, set()).update(ancestors(g))
    for h in hostvars:
        of_host.setdefault(str(h), set())
    resolver = _json_resolver(opts)
    hosts = []
    for name, member_of in sorted(of_host.items()):
        member_of = member_of | {"all"}

        def order(g: str) -> tuple[int, int, str]:
            gvars = groups.get(g, {}).get("vars")
            priority = gvars.get("ansible_group_priority", 1) if isinstance(gvars, dict) else 1
            return (depth(g), int(priority) if str(priority).lstrip("-").isdigit() else 1, g)

        merged: dict[str, object] = {}
        for g in sorted(member_of, key=order):  # as Ansible: parents first, then by priority and name
            gvars = groups.get(g, {}).get("vars")
            if isinstance(gvars, dict):
                merged.update(gvars)
        own = hostvars.get(name)
        if isinstance(own, dict):
            merged.update(own)
        hosts.append(_host(resolver, name, frozenset(member_of), merged))
    return AnsibleInventory(source, tuple(hosts), frozenset(groups) | {"all"})


def _names(value: object) -> list[str]:
    if isinstance(value, dict):  # YAML-like {"host": {...}}
        return [str(k) for k in value]
    return [str(v) for v in value] if isinstance(value, list) else []


def _json_resolver(opts: ReadOptions) -> Resolver:
    try:
        from ansible.parsing.dataloader import DataLoader
    except ImportError:
        return PlainResolver(opts.address_var)
    _init_ansible()
    loader = DataLoader()
    return AnsibleResolver(loader, _vault_secrets(loader, opts.vault_password_files), opts.address_var)


def _host(resolver: Resolver, name: str, groups: frozenset[str], variables: Mapping[str, object]) -> AnsibleHost:
    try:
        return AnsibleHost(name, groups, resolver.settings(name, variables))
    except HostProblem as exc:
        return AnsibleHost(name, groups, None, str(exc))


# ---- ansible-core

@functools.cache
def _init_ansible() -> None:
    os.environ.setdefault("ANSIBLE_LOCALHOST_WARNING", "False")
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader()  # once per process: a second call warns


def _vault_secrets(loader: Any, files: Sequence[str]) -> list[Any]:
    """The vault secrets Ansible would use: the files given, else ANSIBLE_VAULT_PASSWORD_FILE or ansible.cfg's."""
    from ansible import constants as C
    from ansible.cli import CLI
    from ansible.errors import AnsibleError

    try:
        from ansible.parsing.vault import VaultSecretsContext  # ansible-core >= 2.19: process-wide secrets
    except ImportError:
        context: Any = None
    else:
        context = VaultSecretsContext
    try:
        secrets = CLI.setup_vault_secrets(loader, vault_ids=list(C.DEFAULT_VAULT_IDENTITY_LIST or []),
                                          vault_password_files=list(files), ask_vault_pass=False, auto_prompt=False,
                                          **({"initialize_context": False} if context is not None else {}))
    except AnsibleError as exc:
        raise ConvertError(f"vault password: {_first_line(exc)}") from None
    loader.set_vault_secrets(secrets)
    if context is not None:
        current = context.current(optional=True)
        if current is None:
            context.initialize(context(secrets))
        else:  # a later conversion in the same process: its own secrets
            current.secrets = secrets
    return list(secrets)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


@contextmanager
def _ansible_warnings() -> Iterator[list[tuple[str, str]]]:
    """Collect ansible-core's warnings as (plugin failure or warning, text) instead of printing them."""
    from ansible.utils.display import Display

    display = Display()
    seen: list[tuple[str, str]] = []

    def as_warning(msg: object = None, exception: BaseException | None = None, **_: object) -> None:
        # The innermost cause names the problem ("Expected key=value host variable assignment, got: ...").
        while exception is not None and exception.__cause__ is not None:
            exception = exception.__cause__
        m = _FAILED_219.search(str(msg))
        seen.append((f"plugin:{m.group(1)}" if m else "warning", _first_line(exception) if exception else str(msg)))

    def warning(msg: object, *_: object, **__: object) -> None:
        m = _FAILED_215.match(str(msg))
        if m:
            seen.append((f"plugin:{m.group(2)}", m.group(3).strip().splitlines()[0]))
        else:
            seen.append(("warning", str(msg).strip()))

    patched = {"warning": warning, "error_as_warning": as_warning}
    for name, fn in patched.items():
        setattr(display, name, fn)
    try:
        yield seen
    finally:
        for name in patched:
            delattr(display, name)  # the class's own methods show again


def _unparsed(seen: list[tuple[str, str]]) -> list[tuple[str, dict[str, str]]]:
    """The sources ansible-core could not parse, each with every plugin's reason."""
    found: list[tuple[str, dict[str, str]]] = []
    reasons: dict[str, str] = {}
    for kind, text in seen:
        if kind.startswith("plugin:"):
            reasons[kind.split(":", 1)[1]] = text
            continue
        m = _UNPARSED.match(text)
        if m:
            found.append((m.group(1), reasons))
            reasons = {}
    return found


def _looks_yaml(path: Path) -> bool:
    if path.suffix in (".yml", ".yaml", ".json"):
        return True
    if not path.is_file():  # never block reading a FIFO or a device
        return False
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    except (OSError, UnicodeDecodeError):
        return False
    return bool(lines) and (lines[0].startswith(("---", "{")) or _YAML_KEY.match(lines[0]) is not None)


def explain(path: str, reasons: dict[str, str]) -> str:
    """Why ``path`` is not an inventory, in one line naming it.

    A YAML syntax error names its line; otherwise the plugin that reads files of its kind says why.
    """
    p = Path(path)
    if _looks_yaml(p) and p.is_file():
        try:
            load(p)
        except SourceError as exc:
            return str(exc)  # FILE:LINE: invalid YAML: ...
        reason = reasons.get("yaml") or reasons.get("ini")
    else:
        reason = reasons.get("ini") or reasons.get("yaml")
    return f"{path}: not an inventory ansible-core can parse: " + (
        reason or next(iter(reasons.values()), "not INI or YAML"))


def read_with_ansible(sources: Sequence[str], opts: ReadOptions) -> AnsibleInventory:
    """Hosts of INI and YAML inventories (with their group_vars/host_vars), read by ansible-core itself."""
    try:
        from ansible.errors import AnsibleError
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.vars.manager import VariableManager
    except ImportError:
        raise ConvertError(f"{sources[0]}: reading INI or YAML inventories {NEEDS_ANSIBLE}, or pass the JSON of: "
                           f"ansible-inventory -i {sources[0]} --list") from None
    _init_ansible()
    shown = ", ".join(sources)
    loader = DataLoader()
    secrets = _vault_secrets(loader, opts.vault_password_files)
    with _ansible_warnings() as seen:
        try:
            manager = InventoryManager(loader=loader, sources=list(sources))
        except AnsibleError as exc:
            bad = _unparsed(seen)
            raise ConvertError(explain(*bad[-1]) if bad else f"{shown}: {_first_line(exc)}") from None
    warnings: list[str] = []
    given = {Path(s).resolve() for s in sources}
    for path, reasons in _unparsed(seen):
        if Path(path).resolve() in given and Path(path).is_file():
            raise ConvertError(explain(path, reasons))
        if not Path(path).is_dir():
            warnings.append(f"skipped {explain(path, reasons)}; Ansible skips it too")
    if not manager.get_hosts():
        raise ConvertError(f"{shown}: no hosts in it")
    variables = VariableManager(loader=loader, inventory=manager)
    resolver = AnsibleResolver(loader, secrets, opts.address_var)
    hosts = []
    for host in manager.get_hosts():
        try:
            # stage "all": group_vars/ and host_vars/ beside the inventory count, as ansible-inventory --list.
            found = variables.get_vars(host=host, include_hostvars=False, stage="all")
        except AnsibleError as exc:
            raise ConvertError(_vars_error(exc, sources, bool(secrets))) from None
        groups = frozenset(g.name for g in host.get_groups()) | {"all"}
        hosts.append(_host(resolver, host.name, groups, found))
    return AnsibleInventory(shown, tuple(sorted(hosts, key=lambda h: h.name)), frozenset(manager.groups),
                            tuple(warnings))


def _vars_error(exc: BaseException, sources: Sequence[str], have_secrets: bool) -> str:
    """One line for a group_vars/host_vars file ansible-core cannot load: which file, and what to do."""
    text = str(exc)
    if "vault" not in text.lower() and "decrypt" not in text.lower():
        return f"{', '.join(sources)}: ansible-core cannot read its variables: {_first_line(exc)}"
    m = _VAULT_FILE.search(text)
    files = [m.group(1)] if m else _vaulted_files(sources)
    where = ", ".join(files) or ", ".join(sources)
    if have_secrets:
        return f"{where}: the vault password given does not decrypt it ({_first_line(exc)})"
    return f"{where}: vault-encrypted, and no vault password was given: {VAULT_HELP}"


def _vaulted_files(sources: Sequence[str]) -> list[str]:
    """The vault-encrypted files of group_vars/ and host_vars/ beside the sources (where Ansible looks)."""
    found: list[str] = []
    for source in sources:
        base = Path(source) if Path(source).is_dir() else Path(source).parent
        for sub in ("group_vars", "host_vars"):
            for path in sorted((base / sub).rglob("*")) if (base / sub).is_dir() else []:
                if not path.is_file():  # a regular file: never block on a FIFO or a device
                    continue
                try:
                    with path.open("rb") as f:
                        if f.read(15) == b"$ANSIBLE_VAULT;":
                            found.append(str(path))
                except OSError:
                    continue
    return found
