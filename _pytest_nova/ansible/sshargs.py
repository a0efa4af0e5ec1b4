"""Ansible's ``ansible_ssh_common_args`` / ``ansible_ssh_extra_args`` as inventory values and OpenSSH options."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from _pytest_nova.inventory import OWN_SSH_OPTIONS

# ssh flags with an ``-o`` equivalent.
_FLAGS = {
    "-C": "Compression=yes", "-A": "ForwardAgent=yes", "-a": "ForwardAgent=no", "-4": "AddressFamily=inet",
    "-6": "AddressFamily=inet6", "-x": "ForwardX11=no", "-X": "ForwardX11=yes", "-Y": "ForwardX11Trusted=yes",
    "-k": "GSSAPIDelegateCredentials=no", "-K": "GSSAPIDelegateCredentials=yes",
}
# Flags about output and the terminal, not the connection: pytest-nova sets its own.
_QUIET = {"-q", "-v", "-vv", "-vvv", "-t", "-tt", "-T", "-n", "-N", "-f", "-s"}
# Flags with a value, and the option each one sets ("" when there is none).
_VALUED = {"-o": "", "-J": "ProxyJump", "-i": "IdentityFile", "-p": "Port", "-l": "User", "-c": "Ciphers",
           "-m": "MACs", "-b": "BindAddress", "-B": "BindInterface", "-F": "", "-E": "", "-S": "ControlPath",
           "-L": "", "-R": "", "-D": "", "-W": "", "-w": "", "-e": "", "-O": "", "-Q": "", "-I": "", "-P": ""}
_NO_CHECK = ("no", "off", "false", "accept-new")
_KEY_VALUE = re.compile(r"^([A-Za-z][A-Za-z0-9]*)\s*(?:=|\s)\s*(\S.*)$")


@dataclass
class SshArgs:
    """What a host's OpenSSH arguments say, split into inventory values and the options kept as they are."""

    options: list[str] = field(default_factory=list)
    user: str | None = None
    port: str | None = None
    key: str | None = None
    accept_new: bool = False  # StrictHostKeyChecking=no or accept-new
    known_hosts: str | None = None
    left_out: list[str] = field(default_factory=list)  # "what (why)" for each argument not carried over
    config_file: str | None = None  # -F FILE


def parse(var: str, text: str, into: SshArgs | None = None) -> SshArgs:
    """Parse ``text`` (shell words, as Ansible splits them) of variable ``var`` into ``into``."""
    out = into if into is not None else SshArgs()
    try:
        words = shlex.split(text)
    except ValueError as exc:
        out.left_out.append(f"{var} ({exc}: not shell words)")
        return out
    i = 0
    while i < len(words):
        word = words[i]
        flag, value = word[:2], word[2:]
        if word in _FLAGS:
            _option(out, var, _FLAGS[word])
        elif word in _QUIET:
            pass
        elif flag in _VALUED:
            if not value:
                i += 1
                value = words[i] if i < len(words) else ""
            if flag == "-o":
                _option(out, var, value)
            elif flag == "-F":
                out.config_file = value
            elif _VALUED[flag]:
                _option(out, var, f"{_VALUED[flag]}={value}")
            else:
                out.left_out.append(f"{flag} {value} of {var} (no inventory equivalent)")
        else:
            out.left_out.append(f"{word} of {var} (not an ssh option pytest-nova can carry)")
        i += 1
    return out


def _option(out: SshArgs, var: str, option: str) -> None:
    m = _KEY_VALUE.match(option.strip())
    if m is None:
        out.left_out.append(f"-o {option} of {var} (not Key=Value)")
        return
    key, value = m.group(1), m.group(2).strip()
    low = key.lower()
    if low == "stricthostkeychecking":
        out.accept_new = out.accept_new or value.lower() in _NO_CHECK
    elif low == "userknownhostsfile":
        out.known_hosts = value
    elif low == "user":
        out.user = out.user or value
    elif low == "port":
        out.port = out.port or value
    elif low == "identityfile":
        out.key = out.key or value
    elif low in OWN_SSH_OPTIONS:
        hint = OWN_SSH_OPTIONS[low]
        why = f"the inventory gives it as {hint}" if hint else "pytest-nova sets it itself"
        out.left_out.append(f"{key}={value} of {var} ({why})")
    else:
        out.options.append(f"{key}={value}")
