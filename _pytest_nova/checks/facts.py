"""The facts ``probes/node_facts.py`` reports about a node, as types.

The probe runs on the node (Python 3.6 and later, no imports from this package), so the shapes are declared
here, where the rules read them. Every key is optional: a probe only gathers what the plan asked for, and an
older or failed probe may leave a key out. The JSON it prints is trusted to have these shapes
(:func:`_pytest_nova.checks.node.NodeFacts` reads it at that one boundary).
"""

from __future__ import annotations

from typing import TypedDict

from _pytest_nova.model import JSONValue


class OSError_(TypedDict, total=False):
    """An ``OSError`` as the probe reports it."""

    error: str
    errno: int | None


class Stat(OSError_, total=False):
    """``stat`` of a path: mode (``0600``), owner, group, type (file, dir, other), or the error."""

    mode: str
    uid: int
    owner: str
    gid: int
    group: str
    type: str


class Text(OSError_, total=False):
    """The start of a file, or the error."""

    text: str


class Connect(OSError_, total=False):
    """Whether a unix socket accepted a connection, or the error."""

    ok: bool


class Listing(OSError_, total=False):
    """The names in a directory, or the error."""

    entries: list[str]


class Run(TypedDict):
    """A command's exit code (None when it could not run or timed out) and the start of its output."""

    rc: int | None
    out: str
    err: str


class Account(TypedDict, total=False):
    """The passwd entry of the node's user, its home, ~/.ssh and authorized_keys."""

    exists: bool
    uid: int
    shell: str
    home: str
    home_is_dir: bool
    ssh_dir: Stat
    authorized_keys: Stat
    authorized_keys_path: str
    keys: list[str]  # base64 key blobs of authorized_keys
    keys_error: Text


class Resolver(TypedDict, total=False):
    """The nameservers of /etc/resolv.conf, and systemd-resolved's upstream ones behind 127.0.0.53."""

    resolv_conf: list[str]
    upstream: list[str]


class Resolved(TypedDict, total=False):
    """A name resolved on the node: ``ok`` with its addresses, or ``unresolved`` with the error."""

    status: str
    error: str
    addresses: list[str]


class Endpoint(TypedDict, total=False):
    """A TCP connect and verified TLS handshake to name:port (through the proxy when one is set)."""

    name: str
    port: int
    via: str  # proxy host:port
    status: str  # ok, or one of checks.node_rules.CAUSES
    error: str
    addresses: list[str]
    address: str
    tls: str | None
    issuer: str | None
    handshake: bool  # status untrusted: whether a handshake without verifying the chain completed
    handshake_error: str
    cert: str  # status untrusted: the certificate presented, base64 DER


class Http(TypedDict, total=False):
    """A GET of a local health endpoint: its status and the start of its body, or the error."""

    status: int
    body: str
    error: str


class Binary(TypedDict, total=False):
    """Where a binary is and what its version command printed."""

    found: bool
    path: str
    rc: int | None
    version: str


class Facts(TypedDict, total=False):
    """What the node probe reports about one node."""

    probe: str
    python: str
    whoami: str
    hostname: str
    os_release: dict[str, str]  # id and id_like of /etc/os-release
    account: Account
    resolver: Resolver
    swaps: list[str]
    sysctl: dict[str, str | None]
    modules: dict[str, bool]
    dirs: dict[str, Listing]
    stat: dict[str, Stat]
    read: dict[str, Text]
    sockets: dict[str, Connect]
    names: dict[str, Resolved]
    endpoints: dict[str, Endpoint]  # "name:port"
    http: dict[str, Http]
    binaries: dict[str, Binary]
    sudo: Run
    privileged: bool
    privileged_error: str
    elapsed: float
    # The facts plugins add (checks/node_registry.py), by name: a command's Run, a gatherer's JSON, or {"error": …}.
    extra: dict[str, JSONValue]


# What the probe is asked to gather (its parameters): keys of lists, merged over the checks of a node.
Needs = dict[str, JSONValue]
