"""What the converter knows of an Ansible inventory: hosts, their groups and connection settings, and problems."""

from __future__ import annotations

from dataclasses import dataclass, field


class ConvertError(Exception):
    """Something in the Ansible inventory or the mapping that cannot be converted; one line for the user."""


class HostProblem(Exception):
    """One host's value cannot be converted; collected with the others into one line."""


@dataclass(frozen=True)
class Settings:
    """One host's connection values as Ansible resolves them: plain, templated and decrypted."""

    address: str  # ansible_host, ansible_ssh_host, the --address-var variable, or the inventory name
    address_from: str  # the variable the address came from, or "" for the inventory name
    user: str | None = None
    port: int | None = None
    key: str | None = None
    ssh_args: tuple[tuple[str, str], ...] = ()  # (variable, its shell-quoted OpenSSH arguments)
    host_key_checking: bool = True
    connection: str = "ssh"
    passwords: tuple[str, ...] = ()  # names of the login password variables set (never their values)
    become_passwords: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnsibleHost:
    """One host as Ansible sees it: its groups (ancestors included) and its connection settings."""

    name: str
    groups: frozenset[str]
    settings: Settings | None  # None when its values cannot be used: then ``problem`` says why
    problem: str = ""


@dataclass(frozen=True)
class AnsibleInventory:
    """The hosts and group names of one or more Ansible inventory sources."""

    source: str
    hosts: tuple[AnsibleHost, ...]
    groups: frozenset[str]
    warnings: tuple[str, ...] = ()


@dataclass
class Problems:
    """Hosts that cannot be converted, grouped by what is wrong: reported together in one line."""

    by_kind: dict[str, list[str]] = field(default_factory=dict)

    def add(self, host: str, what: str) -> None:
        """Record that ``host`` has problem ``what`` (a sentence that fits every host it names)."""
        hosts = self.by_kind.setdefault(what, [])
        if host not in hosts:
            hosts.append(host)

    def __bool__(self) -> bool:
        return bool(self.by_kind)

    def line(self) -> str:
        """Every problem, each with its hosts: ``a, b: what; c: other``."""
        return "; ".join(f"{', '.join(hosts)}: {what}" for what, hosts in self.by_kind.items())
