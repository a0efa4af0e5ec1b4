"""Each host's connection values as Ansible resolves them.

With ansible-core installed, its own configuration manager answers, for the ``ssh`` connection plugin, with
Ansible's precedence: host and group variables (of two spellings, ``ansible_ssh_user`` over ``ansible_user``
as Ansible has it), then ``ANSIBLE_REMOTE_USER``-style environment variables, then ansible.cfg. Variables are
templated and vault values decrypted by ansible-core. Without it (``ansible-inventory --list`` JSON only), the
same variables and environment variables are read in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from _pytest_nova.ansible.model import HostProblem, Settings

# The ssh plugin's options and the variables that set them (ansible-core 2.15-2.19): the last one set wins.
OPTION_VARS = {
    "host": ("inventory_hostname", "ansible_host", "ansible_ssh_host"),
    "remote_user": ("ansible_user", "ansible_ssh_user"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "private_key_file": ("ansible_private_key_file", "ansible_ssh_private_key_file"),
    "ssh_common_args": ("ansible_ssh_common_args",),
    "ssh_extra_args": ("ansible_ssh_extra_args",),
    "host_key_checking": ("ansible_host_key_checking", "ansible_ssh_host_key_checking"),
}
OPTION_ENV = {
    "remote_user": ("ANSIBLE_REMOTE_USER",),
    "port": ("ANSIBLE_REMOTE_PORT",),
    "private_key_file": ("ANSIBLE_PRIVATE_KEY_FILE",),
    "ssh_common_args": ("ANSIBLE_SSH_COMMON_ARGS",),
    "ssh_extra_args": ("ANSIBLE_SSH_EXTRA_ARGS",),
    "host_key_checking": ("ANSIBLE_HOST_KEY_CHECKING", "ANSIBLE_SSH_HOST_KEY_CHECKING"),
}
PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
BECOME_PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass")
CONNECTION_VAR = "ansible_connection"
_NEEDED = tuple(dict.fromkeys(v for names in OPTION_VARS.values() for v in names if v != "inventory_hostname"))
VAULT_HELP = "pass --vault-password-file FILE, or set ANSIBLE_VAULT_PASSWORD_FILE or vault_password_file in ansible.cfg"


class Resolver(Protocol):
    """Turns one host's variables into its :class:`Settings`."""

    def settings(self, name: str, variables: Mapping[str, object]) -> Settings:
        """The host's settings; :class:`HostProblem` when one of its values cannot be used."""


def is_template(value: object) -> bool:
    """Whether ``value`` is a Jinja template (Ansible renders it when it runs)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def is_vault(value: object) -> bool:
    """Whether ``value`` is a vault-encrypted value (as ansible-inventory prints it, or ansible-core keeps it)."""
    if isinstance(value, dict):
        return "__ansible_vault" in value
    name = type(value).__name__
    return "Vault" in name or "Encrypted" in name or (isinstance(value, str) and value.startswith("$ANSIBLE_VAULT;"))


def _bool(value: object) -> bool:
    return str(value).strip().lower() not in ("false", "no", "off", "0", "n", "f")


def build(name: str, values: Mapping[str, object], default_transport: str, address_var: str | None,
          plain: Callable[[str], object]) -> Settings:
    """:class:`Settings` from the ssh plugin's resolved option ``values`` and the host's plain variables."""
    address, address_from = str(values.get("host") or name), ""
    for var in ("ansible_host", "ansible_ssh_host"):
        if plain(var) is not None and str(plain(var)) == address:
            address_from = var
    if address_var and plain(address_var) is not None:
        address, address_from = str(plain(address_var)), address_var
    port = values.get("port")
    if port is not None:
        try:
            port = int(str(port))
        except ValueError:
            raise HostProblem(f"ansible_port {port!r} is not a port number") from None
    args = tuple((var, str(values[opt])) for opt, var in (("ssh_common_args", "ansible_ssh_common_args"),
                                                           ("ssh_extra_args", "ansible_ssh_extra_args"))
                 if str(values.get(opt) or "").strip())
    user, key = values.get("remote_user"), values.get("private_key_file")
    return Settings(
        address=address,
        address_from=address_from,
        user=str(user) if user else None,
        port=port,
        key=str(key) if key else None,
        ssh_args=args,
        host_key_checking=_bool(values.get("host_key_checking", True)),
        connection=str(plain(CONNECTION_VAR) or default_transport),
        passwords=tuple(v for v in PASSWORD_VARS if plain(v) is not None),
        become_passwords=tuple(v for v in BECOME_PASSWORD_VARS if plain(v) is not None),
    )


class PlainResolver:
    """Without ansible-core: the variables of ``ansible-inventory --list`` and the environment, in Ansible's order."""

    def __init__(self, address_var: str | None = None) -> None:
        self.address_var = address_var

    def _plain(self, variables: Mapping[str, object], var: str) -> object:
        value = variables.get(var)
        if value is None or var in PASSWORD_VARS or var in BECOME_PASSWORD_VARS:
            return value
        if is_vault(value):
            raise HostProblem(f"{var} is vault-encrypted; decrypting it needs ansible-core: "
                              "pip install 'pytest-nova[ansible]', then " + VAULT_HELP)
        if is_template(value):
            raise HostProblem(f"{var} '{value}' is a Jinja template, rendered by ansible-core: "
                              "pip install 'pytest-nova[ansible]', or give the plain value")
        return value

    def settings(self, name: str, variables: Mapping[str, object]) -> Settings:
        """The host's settings from its variables, else the environment (ansible.cfg needs ansible-core)."""
        values: dict[str, object] = {}
        for option, names in OPTION_VARS.items():
            for env in OPTION_ENV.get(option, ()):
                if os.environ.get(env):
                    values[option] = os.environ[env]
            for var in names:
                value = name if var == "inventory_hostname" else self._plain(variables, var)
                if value is not None:
                    values[option] = value
        return build(name, values, "ssh", self.address_var, lambda var: self._plain(variables, var))


class AnsibleResolver:
    """ansible-core's own answer: its templating, its vault and its configuration manager for the ssh plugin."""

    def __init__(self, loader: Any, secrets: list[Any], address_var: str | None = None) -> None:
        from ansible import constants as C
        from ansible.plugins.loader import connection_loader

        connection_loader.get("ssh", class_only=True)  # registers the plugin's options with the config manager
        self.loader, self.secrets, self.address_var, self.config = loader, secrets, address_var, C.config
        self.default_transport = str(C.DEFAULT_TRANSPORT)
        if self.default_transport == "smart":  # ansible-core < 2.17: "smart" is ssh wherever ssh works
            self.default_transport = "ssh"

    def _plain(self, var: str, value: object, templar: Any) -> object:
        from ansible.errors import AnsibleError

        if isinstance(value, dict) and "__ansible_vault" in value:
            value = self._decrypt(var, str(value["__ansible_vault"]))
        try:
            plain = templar.template(value)
            plain = str(plain) if is_vault(plain) else plain  # ansible-core < 2.19 decrypts on str()
        except (AnsibleError, ReferenceError) as exc:  # 2.19: ReferenceError when no vault secret is loaded
            if is_vault(value) or "vault" in str(exc).lower() or "decrypt" in str(exc).lower():
                raise HostProblem(f"{var}{origin(value)} is vault-encrypted and no vault password decrypts it: "
                                  + VAULT_HELP) from None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HostProblem(f"{var} '{value}' cannot be rendered before Ansible runs ({first}); give the plain "
                              "value") from None
        if is_template(plain):  # ansible-core >= 2.19 renders no template of untrusted input (a JSON listing)
            raise HostProblem(f"{var} '{value}' is a Jinja template, rendered only when Ansible runs; give the plain "
                              "value")
        return plain

    def _decrypt(self, var: str, text: str) -> str:
        from ansible.errors import AnsibleError
        from ansible.parsing.vault import VaultLib

        try:
            return str(VaultLib(self.secrets).decrypt(text).decode())
        except AnsibleError:
            raise HostProblem(f"{var} is vault-encrypted and no vault password decrypts it: {VAULT_HELP}") from None

    def settings(self, name: str, variables: Mapping[str, object]) -> Settings:
        """The host's settings as the ssh connection plugin would see them."""
        from ansible.errors import AnsibleError
        from ansible.template import Templar

        templar = Templar(loader=self.loader, variables=dict(variables))
        needed = (*_NEEDED, CONNECTION_VAR, *((self.address_var,) if self.address_var else ()))
        plain: dict[str, object] = {"inventory_hostname": name}
        for var in needed:
            if var in variables and variables[var] is not None:
                plain[var] = self._plain(var, variables[var], templar)
        for var in (*PASSWORD_VARS, *BECOME_PASSWORD_VARS):
            if var in variables:
                plain[var] = True  # only whether it is set: a password is never read
        values: dict[str, object] = {}
        for option in OPTION_VARS:
            try:
                values[option] = self.config.get_config_value(option, plugin_type="connection",
                                                              plugin_name="ssh", variables=plain)
            except AnsibleError as exc:
                raise HostProblem(str(exc).strip().splitlines()[0]) from None
        return build(name, values, self.default_transport, self.address_var, plain.get)


def origin(value: object) -> str:
    """`` (in FILE:LINE)`` where ansible-core recorded where ``value`` was read, else ``""``."""
    pos = getattr(value, "ansible_pos", None)  # ansible-core < 2.19
    if isinstance(pos, tuple) and len(pos) >= 2 and pos[0]:
        return f" (in {pos[0]}:{pos[1]})"
    try:
        from ansible._internal._datatag._tags import Origin  # ansible-core >= 2.19

        tag = Origin.get_tag(value)
    except Exception:  # not ansible-core's own value, or another layout of its internals
        return ""
    return f" (in {tag.path}:{tag.line_num})" if tag is not None and tag.path else ""
