"""The pure node rules: :class:`Finding`, :class:`Context` and the :data:`RULES` registry of catalog checks.

Each rule says what the probe must gather (``needs``) and judges a node's facts (``judge``) without any I/O.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from _pytest_nova.catalog import Requirement
from _pytest_nova.checks import sudo_rules
from _pytest_nova.checks.facts import (
    Account,
    Binary,
    Connect,
    Endpoint,
    Facts,
    Http,
    Listing,
    Needs,
    Resolved,
    Run,
    Stat,
    Text,
)
from _pytest_nova.checks.node_registry import gathered
from _pytest_nova.checks.sudo_rules import SUDO_RIGHTS
from _pytest_nova.hosts import HostError
from _pytest_nova.inventory import Inventory
from _pytest_nova.model import JSONValue
from _pytest_nova.plan import Check, EndpointCheck, NamesOnNodeCheck, NodeCheck
from _pytest_nova.verdicts import ERROR, FAILED, PASSED, SKIPPED, Finding
from _pytest_nova.x509 import cert_names

# A catalog entry's ``params`` (validated as a mapping when the catalog is loaded).
Params = Mapping[str, JSONValue]
# Checks that compare a node with the other nodes, so every node's facts must include what they compare.
PEER_CHECKS = ("hostname_unique", "product_uuid_unique")
# Endpoint statuses reported by the probe, in the words a failure message uses.
CAUSES = {
    "unresolved": "name not resolved",
    "refused": "refused",
    "filtered": "filtered (timed out)",
    "unreachable": "unreachable",
    "untrusted": "TLS not trusted",
    "tls-failed": "TLS handshake failed",
    "proxy-refused": "refused by the proxy",
    "proxy-unreachable": "proxy unreachable",
}


@dataclass(frozen=True)
class Context:
    """What rules need besides a node's facts: who the node is and what the inventory says."""

    inventory: Inventory
    host: str
    user: str
    public_key: str | None = None  # base64 blob of ssh.identityFile's public key, or None if unreadable
    public_key_error: str = ""
    peers: Callable[[], dict[str, Facts | HostError]] = field(default=lambda: {})

    def fill(self, text: str) -> str:
        """A catalog text with its <placeholders> filled from the inventory."""
        inv = self.inventory
        node = inv.host(self.host).address if self.host in _names(inv) else self.host
        values = {
            "<user>": self.user,
            "<node name>": self.host,
            "<node>": node,
            "<ssh.identityFile>": inv.ssh.identity_file,
            "<dnsBaseDomain>": inv.dns_base_domain,
            "<dnsServers>": " ".join(inv.dns_servers),
            "<universe domain>": inv.universe.dns_base_domain if inv.universe else "<universe domain>",
        }
        for key, value in values.items():
            text = text.replace(key, value)
        return text


def _names(inv: Inventory) -> set[str]:
    return {h.name for h in (*inv.nodes, *inv.workstations)}


NeedsOf = Callable[[Params, Context], Needs]
Judge = Callable[[Facts, Params, Context], Finding]


def no_needs(params: Params, ctx: Context) -> Needs:
    """A rule that needs nothing beyond the facts every run gathers."""
    return {}


@dataclass(frozen=True)
class Rule:
    """How one catalog ``check`` is judged (pure) and what the node's facts run must gather for it.

    ``needs`` gives probe parameters of the built-in facts (paths to stat, sysctls…); ``facts`` names the
    facts a plugin added (:class:`~_pytest_nova.checks.node_registry.NodeFact`) that ``judge`` reads.
    """

    judge: Judge
    needs: NeedsOf = no_needs
    facts: tuple[str, ...] = ()


# The built-in rules, registered with @rule; the run's registry (kinds.Registry.node_rules) starts from them.
RULES: dict[str, Rule] = {}


def rule(name: str, needs: NeedsOf | None = None, facts: tuple[str, ...] = ()) -> Callable[[Judge], Judge]:
    """Register the judge of built-in catalog check ``name``, what the probe gathers for it, the facts it reads.

    ``facts`` are registered node facts (:data:`~_pytest_nova.checks.sudo_rules.NODE_FACTS`).
    """

    def register(fn: Judge) -> Judge:
        RULES[name] = Rule(fn, needs or no_needs, facts)
        return fn

    return register


def _strings(params: Params, key: str) -> list[str]:
    """A list parameter as strings (empty when absent)."""
    value = params.get(key)
    return [str(v) for v in value] if isinstance(value, list) else []


def _mode_text(st: Stat) -> str:
    return f"mode {st.get('mode')}, owner {st.get('owner')}"


def _missing(st: Stat | Text) -> bool:
    return st.get("errno") == 2  # ENOENT


def _account(facts: Facts) -> Account:
    return facts.get("account") or {}


def sudoers_path(params: Params, ctx: Context) -> str:
    """The sudoers drop-in of the node's user."""
    return str(params.get("path", "/etc/sudoers.d/99-{user}-user")).replace("{user}", ctx.user)


def private_key_path(ctx: Context) -> str:
    """ssh.identityFile as nova-ctl sees it: ``~`` left for the host to expand, relative paths resolved."""
    raw = ctx.inventory.ssh.identity_file
    return raw if raw.startswith("~") or raw.startswith("/") else str(ctx.inventory.resolve_file(raw))


def universe_hub(ctx: Context) -> tuple[str, int]:
    """The endpoint whose TLS handshake proves the Universe CA is trusted."""
    domain = ctx.inventory.universe.dns_base_domain if ctx.inventory.universe else "universe.invalid"
    return f"hub.{domain}", 443


def _unusable(path: str, st: Stat, *, label: str = "", hint: str = "", fix: str = "") -> Finding | None:
    """The finding for a file that is missing or cannot be examined; None when its stat is there to judge."""
    if _missing(st):
        return Finding(FAILED, f"{label}{path} is missing", fix)
    if "error" in st:
        return Finding(ERROR, f"cannot stat {path}: {st['error']}{hint}")
    return None


# ---- OS account (docs "account 1", "account 2")


@rule("user_account")
def user_account(facts: Facts, params: Params, ctx: Context) -> Finding:
    """The user exists with the expected shell and an existing home directory."""
    acct = _account(facts)
    if not acct.get("exists"):
        return Finding(FAILED, f"user {ctx.user} does not exist")
    shell = params.get("shell", "/bin/bash")
    problems, fixes = [], []
    if acct.get("shell") != shell:
        problems.append(f"login shell is {acct.get('shell') or '(empty)'}, not {shell}")
        fixes.append(f"usermod -s {shell} {ctx.user}")
    if params.get("home", True) and not acct.get("home_is_dir"):
        problems.append(f"home directory {acct.get('home')} does not exist")
        fixes.append(f"mkhomedir_helper {ctx.user}")
    if problems:
        return Finding(FAILED, f"user {ctx.user}: " + "; ".join(problems), " && ".join(fixes))
    return Finding(PASSED, f"user {ctx.user} exists, shell {acct.get('shell')}, home {acct.get('home')}")


@rule("sudoers_dropin", needs=lambda p, c: {"stat": [sudoers_path(p, c)], "read": [sudoers_path(p, c)]},
      facts=(SUDO_RIGHTS.name,))
def sudoers_dropin(facts: Facts, params: Params, ctx: Context) -> Finding:
    """The docs' drop-in holds the docs' line, and sudo reads it.

    sudo's own rule: owned by root, not writable by others, writable by its group only when that group is root.
    The docs give no mode (``cat << EOF >`` leaves 0644).
    """
    path = sudoers_path(params, ctx)
    st = (facts.get("stat") or {}).get(path) or Stat(error="not gathered")
    line = ctx.fill(sudo_rules.DOCS_LINE.replace("{user}", "<user>"))
    fix = f"echo '{line}' > {path} && chmod 0440 {path} && visudo -cf {path}"
    elsewhere = sudo_rules.judge_rights(_sudo_list(facts), ctx.user, str(facts.get("whoami") or ""))[0]
    source = "; sudo grants NOPASSWD: ALL through another file" if elsewhere else ""
    if _missing(st):
        return Finding(FAILED, f"{path} is missing{source}", fix)
    if "error" in st:
        return Finding(ERROR, f"cannot stat {path}: {st['error']} (sudo -n was refused too)")
    if st.get("type") != "file":
        return Finding(FAILED, f"{path} is not a regular file{source}", f"rm -rf {path} && {fix}")
    problems = sudo_rules.sudo_mode_problems(st)
    if problems:
        return Finding(FAILED, f"{path} has mode {st.get('mode')}, owner {st.get('owner')}:{st.get('group')}: "
                               f"{'; '.join(problems)}, so sudo ignores it{source}",
                       f"chown root:root {path} && chmod 0440 {path}")
    seen = f"mode {st.get('mode')}, owner {st.get('owner')}:{st.get('group')}"
    text = (facts.get("read") or {}).get(path) or Text(error="not gathered")
    if "text" not in text:
        return Finding(PASSED, f"{path} has {seen}, which sudo accepts (its text not read: {text.get('error')})")
    if not sudo_rules.holds_docs_line(str(text.get("text")), ctx.user):
        return Finding(FAILED, f"{path} has {seen} but no line '{line}'{source}", fix)
    return Finding(PASSED, f"{path} has {seen}, which sudo accepts, and the line '{line}'")


def _sudo_list(facts: Facts) -> Run | None:
    got = gathered(facts, SUDO_RIGHTS.name)
    if not isinstance(got, dict):
        return None
    if "error" in got and "rc" not in got:
        return Run(rc=None, out="", err=str(got["error"]))
    rc = got.get("rc")
    return Run(rc=rc if isinstance(rc, int) else None, out=str(got.get("out") or ""), err=str(got.get("err") or ""))


def _unsafe(st: Stat, owners: tuple[str, ...]) -> str:
    """Why a file or directory fails sshd's StrictModes rule: a wrong owner, or writable by group/others."""
    problems = []
    if st.get("owner") not in owners:
        problems.append(f"owned by {st.get('owner')}, not {' or '.join(owners)}")
    try:
        writable = int(str(st.get("mode")), 8) & 0o022
    except ValueError:
        writable = 0o022
    if writable:
        who = {0o020: "group", 0o002: "others", 0o022: "group and others"}[writable]
        problems.append(f"writable by {who}")
    return "; ".join(problems)


@rule("sudo_nopasswd", facts=(SUDO_RIGHTS.name,))
def sudo_nopasswd(facts: Facts, params: Params, ctx: Context) -> Finding:
    """What ``sudo -n -l`` lists includes (ALL) NOPASSWD: ALL, whatever file grants it (account 1)."""
    ok, seen = sudo_rules.judge_rights(_sudo_list(facts), ctx.user, str(facts.get("whoami") or ""))
    if ok:
        return Finding(PASSED, seen)
    return Finding(FAILED, seen)


def _home_stat(facts: Facts, ctx: Context) -> tuple[str, Stat]:
    home = str(_account(facts).get("home"))
    stats = facts.get("stat") or {}
    return home, stats.get(home) or stats.get(f"~{ctx.user}") or Stat(error="not gathered")


@rule("ssh_dir", needs=lambda p, c: {"stat": [f"~{c.user}"]})
def ssh_dir(facts: Facts, params: Params, ctx: Context) -> Finding:
    """~/.ssh and the home pass sshd's StrictModes: owned by the user or root, not writable by group or others.

    The docs give no mode for either (a plain mkdir leaves 0755); OpenSSH's auth_secure_path is the rule.
    """
    acct = _account(facts)
    if not acct.get("exists"):
        return Finding(FAILED, f"user {ctx.user} does not exist")
    path = f"{acct.get('home')}/.ssh"
    st = acct.get("ssh_dir") or Stat()
    unusable = _unusable(path, st, fix=f"install -d -o {ctx.user} -g {ctx.user} {path}")
    if unusable:
        return unusable
    owners = (ctx.user, "root")
    if st.get("type") != "dir":
        return Finding(FAILED, f"{path} is not a directory", f"mv {path} {path}.old && install -d -o {ctx.user} "
                                                             f"-g {ctx.user} {path}")
    problems = _unsafe(st, owners)
    if problems:
        return Finding(FAILED, f"{path} has {_mode_text(st)}: {problems}; sshd (StrictModes) then ignores "
                               "authorized_keys", f"chown {ctx.user}: {path} && chmod go-w {path}")
    home, hst = _home_stat(facts, ctx)
    # A symlinked home (lstat sees the link) is left to sshd; only a real directory is judged here.
    home_problems = _unsafe(hst, owners) if hst.get("type") == "dir" else ""
    if home_problems:
        return Finding(FAILED, f"home {home} has {_mode_text(hst)}: {home_problems}; sshd (StrictModes) then "
                               "ignores authorized_keys", f"chown {ctx.user}: {home} && chmod go-w {home}")
    seen = _mode_text(hst) if hst.get("type") == "dir" else f"not examined ({hst.get('error') or 'not a directory'})"
    return Finding(PASSED, f"{path} has {_mode_text(st)}; home {home}: {seen}")


@rule("authorized_keys_mode")
def authorized_keys_mode(facts: Facts, params: Params, ctx: Context) -> Finding:
    """~/.ssh/authorized_keys is owned by the user with the expected mode."""
    acct = _account(facts)
    if not acct.get("exists"):
        return Finding(FAILED, f"user {ctx.user} does not exist")
    path = str(acct.get("authorized_keys_path"))
    st = acct.get("authorized_keys") or Stat()
    mode = str(params.get("mode", "0600"))
    unusable = _unusable(path, st)
    if unusable:
        return unusable
    if st.get("mode") != mode or st.get("owner") != ctx.user:
        return Finding(FAILED, f"{path} has {_mode_text(st)}; expected mode {mode}, owner {ctx.user}")
    return Finding(PASSED, f"{path} has {_mode_text(st)}")


@rule("authorized_key_present")
def authorized_key_present(facts: Facts, params: Params, ctx: Context) -> Finding:
    """authorized_keys holds the public key of ssh.identityFile."""
    acct = _account(facts)
    if not acct.get("exists"):
        return Finding(FAILED, f"user {ctx.user} does not exist")
    if ctx.public_key is None:
        key = ctx.inventory.ssh.identity_file
        return Finding(ERROR, f"cannot read the public key of {key}: {ctx.public_key_error}")
    if "keys" not in acct:
        err = (acct.get("keys_error") or Text()).get("error", "unreadable")
        return Finding(FAILED, f"{acct.get('authorized_keys_path')} cannot be read: {err}")
    keys = list(acct["keys"])
    if ctx.public_key in keys:
        return Finding(PASSED, f"{acct.get('authorized_keys_path')} holds the key ({len(keys)} keys in all)")
    return Finding(
        FAILED,
        f"{acct.get('authorized_keys_path')} holds {len(keys)} keys, none of them the public key of "
        f"{ctx.inventory.ssh.identity_file}",
    )


@rule("private_key", needs=lambda p, c: {"stat": [private_key_path(c)]})
def private_key(facts: Facts, params: Params, ctx: Context) -> Finding:
    """On nova-ctl the private key exists with an accepted mode."""
    stats = facts.get("stat") or {}
    raw = private_key_path(ctx)
    # The probe reports the path with ~ expanded on the host.
    path, st = next(((p, s) for p, s in stats.items() if p == raw or (raw.startswith("~") and
                                                                        p.endswith(raw[1:]))),
                    (raw, Stat(error="not gathered")))
    unusable = _unusable(path, st, label="private key ", fix=f"ssh-keygen -f {path}")
    if unusable:
        return unusable
    if st.get("type") != "file":
        return Finding(FAILED, f"private key {path} is not a regular file", f"ssh-keygen -f {path}")
    # ssh refuses a private key that group or others may access at all (mode & 077).
    if int(str(st.get("mode") or "777"), 8) & 0o077:
        return Finding(FAILED, f"private key {path} has {_mode_text(st)}; ssh refuses a key that group or others "
                               "can access", f"chmod 600 {path}")
    return Finding(PASSED, f"private key {path} has {_mode_text(st)}")


# ---- resolver and Universe trust (docs 2.1, universe 2.7)


@rule("node_resolver")
def node_resolver(facts: Facts, params: Params, ctx: Context) -> Finding:
    """Every nameserver the node uses is one of network.dnsServers; none is public."""
    res = facts.get("resolver") or {}
    servers = list(res.get("upstream") or res.get("resolv_conf") or [])
    where = "systemd-resolved upstream" if res.get("upstream") else "/etc/resolv.conf"
    if not servers:
        return Finding(FAILED, f"{where} lists no nameserver")
    allowed = set(ctx.inventory.dns_servers)
    public = [s for s in servers if _is_public(s)]
    foreign = [s for s in servers if s not in allowed]
    if public:
        return Finding(FAILED, f"{where} uses {', '.join(public)}, a public resolver (allowed: "
                               f"{', '.join(ctx.inventory.dns_servers)})")
    if foreign:
        return Finding(FAILED, f"{where} uses {', '.join(foreign)}, not in network.dnsServers "
                               f"({', '.join(ctx.inventory.dns_servers)})")
    return Finding(PASSED, f"{where} uses {', '.join(servers)}")


def _is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def issuer_of(got: Endpoint | dict[str, object]) -> str:
    """Who issued the certificate an endpoint presented (from its DER), or what the probe said."""
    raw = got.get("cert")
    if isinstance(raw, str) and raw:
        try:
            return cert_names(base64.b64decode(raw))[1] or "an unnamed issuer"
        except (ValueError, IndexError):
            pass
    return str(got.get("issuer") or "an unknown issuer")


def universe_ca_fix(facts: Facts, ctx: Context) -> str:
    """The docs' CA download and trust-store update, for the host's OS family (universe 2.7)."""
    from _pytest_nova.checks.firewall_fixes import DEBIAN, RHEL, os_family

    url = ctx.fill("https://repo.<universe domain>/ca/ca.crt")
    rhel = f"curl -kfo /etc/pki/ca-trust/source/anchors/universe-ca.crt {url} && update-ca-trust"
    debian = f"curl -kfo /usr/local/share/ca-certificates/universe-ca.crt {url} && update-ca-certificates"
    family = os_family(facts)
    if family == RHEL:
        return rhel
    if family == DEBIAN:
        return debian
    return f"{rhel}  (Debian-like: {debian})"


@rule("universe_ca_trusted", needs=lambda p, c: {"endpoints": [list(universe_hub(c))]})
def universe_ca_trusted(facts: Facts, params: Params, ctx: Context) -> Finding:
    """A TLS handshake with the Universe hub verifies against the node's own trust store (universe 2.7).

    Reaching the hub is the endpoint check's (required); this one only judges the chain, so the two never
    contradict: an unreachable hub is skipped here.
    """
    name, port = universe_hub(ctx)
    got = (facts.get("endpoints") or {}).get(f"{name}:{port}") or Endpoint(status="error", error="not probed")
    status = got.get("status")
    if status == "ok":
        issuer = got.get("issuer")
        return Finding(PASSED, f"TLS to {name}:{port} verifies with the node's trust store (issuer {issuer})")
    if status == "untrusted" and got.get("handshake", True):
        return Finding(FAILED, f"TLS not trusted: {name}:{port} presents a chain issued by {issuer_of(got)}, which "
                               f"the node's trust store does not hold ({got.get('error')}): install the Universe root "
                               "CA", universe_ca_fix(facts, ctx))
    # Unreachable: the endpoint check reports why; the trust store cannot be judged.
    return Finding(SKIPPED, f"not checked: {name}:{port} {CAUSES.get(str(status), status)}: {got.get('error')}")


def vendor_endpoints() -> list[tuple[str, int]]:
    """The internet-mode endpoints of docs 2 (host, port), from the packaged catalog."""
    from _pytest_nova.catalog import load_catalog

    return sorted({(str(r.host), int(r.port)) for r in load_catalog().by_area("external")
                   if r.mode == "internet" and r.host and r.port})


@rule("endpoints_trusted", needs=lambda p, c: {"endpoints": [list(e) for e in vendor_endpoints()]})
def endpoints_trusted(facts: Facts, params: Params, ctx: Context) -> Finding:
    """Every vendor endpoint the host reaches presents a chain its trust store verifies (advisory)."""
    seen = facts.get("endpoints") or {}
    by_issuer: dict[str, list[str]] = {}
    trusted, unknown = [], []
    for name, port in vendor_endpoints():
        got = seen.get(f"{name}:{port}") or Endpoint(status="error")
        if got.get("status") == "ok":
            trusted.append(f"{name}:{port}")
        elif got.get("status") == "untrusted" and got.get("handshake", True):
            by_issuer.setdefault(issuer_of(got), []).append(f"{name}:{port}")
        else:
            unknown.append(f"{name}:{port}")
    if by_issuer:
        via = " through the proxy (if the issuer is the proxy's own CA, it intercepts TLS)" \
            if ctx.inventory.http_proxy else ""
        chains = "; ".join(f"{', '.join(eps)} (issued by {issuer})" for issuer, eps in by_issuer.items())
        return Finding(FAILED, f"the node's trust store does not verify the chain of {chains}{via}")
    if not trusted:
        return Finding(SKIPPED, f"not checked: no vendor endpoint answered TLS ({', '.join(unknown)}): the endpoint "
                                "checks say why")
    note = f" ({', '.join(unknown)} not reached: not judged)" if unknown else ""
    return Finding(PASSED, f"the node's trust store verifies {', '.join(trusted)}{note}")


# ---- vendor addresses (docs 2)


def documented_ips() -> dict[str, tuple[str, ...]]:
    """Each internet-mode vendor name of docs 2 and the networks its row lists."""
    from _pytest_nova.catalog import load_catalog  # the packaged catalog; no I/O beyond reading it once

    out: dict[str, tuple[str, ...]] = {}
    for r in load_catalog().by_area("external"):
        if r.mode == "internet" and r.host and r.ips:
            for name in r.host.split():
                out[name] = r.ips
    return out


def _in_networks(address: str, networks: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)
    except ValueError:
        return False


@rule("documented_ips", needs=lambda p, c: {"names": [*sorted(documented_ips())]})
def documented_ips_match(facts: Facts, params: Params, ctx: Context) -> Finding:
    """Every vendor name resolves, through the host's resolver, only to the addresses its docs row lists."""
    names = facts.get("names") or {}
    off: list[str] = []
    unresolved: list[str] = []
    for name, networks in documented_ips().items():
        got = names.get(name) or Resolved()
        if got.get("status") != "ok":
            unresolved.append(name)
            continue
        extra = [a for a in got.get("addresses") or [] if not _in_networks(str(a), networks)]
        if extra:
            off.append(f"{name} -> {', '.join(extra)} (docs: {', '.join(networks)})")
    if off:
        via = " (the host goes through the HTTP proxy, whose own allow-list matters)" if ctx.inventory.http_proxy \
            else ""
        return Finding(FAILED, "resolves outside the documented IP list: " + "; ".join(off) + ": a firewall "
                       "allow-list built from the docs' IP column would block these addresses" + via)
    if len(unresolved) == len(documented_ips()):
        return Finding(SKIPPED, "not compared: the host resolves none of the vendor names itself"
                       + (" (it reaches them through the HTTP proxy)" if ctx.inventory.http_proxy else ""))
    note = f" ({', '.join(unresolved)} not resolved here: not compared)" if unresolved else ""
    return Finding(PASSED, f"every resolved vendor name is inside the documented IP list{note}")


# ---- Kubernetes node prerequisites (seed 002)


@rule("swap_off")
def swap_off(facts: Facts, params: Params, ctx: Context) -> Finding:
    """No active swap in /proc/swaps."""
    swaps = facts.get("swaps") or []
    if swaps:
        return Finding(FAILED, f"swap is on: {', '.join(swaps)} (/proc/swaps)")
    return Finding(PASSED, "no active swap")


@rule("sysctl", needs=lambda p, c: {"sysctls": [p["key"]]})
def sysctl(facts: Facts, params: Params, ctx: Context) -> Finding:
    """A sysctl has the expected value."""
    key, want = str(params["key"]), str(params["value"])
    value = (facts.get("sysctl") or {}).get(key)
    if value is None:
        return Finding(FAILED, f"{key} does not exist on this kernel")
    if str(value) != want:
        return Finding(FAILED, f"{key} = {value}", f"sysctl -w {key}={want} && echo '{key} = {want}' > "
                                                  f"/etc/sysctl.d/99-kubernetes.conf")
    return Finding(PASSED, f"{key} = {value}")


@rule("br_netfilter", needs=lambda p, c: {"sysctls": [p["key"]], "modules": [p["module"]]})
def br_netfilter(facts: Facts, params: Params, ctx: Context) -> Finding:
    """br_netfilter is loaded (its sysctl exists) and bridged traffic passes iptables."""
    key, want, module = str(params["key"]), str(params["value"]), str(params["module"])
    value = (facts.get("sysctl") or {}).get(key)
    if value is None:
        return Finding(FAILED, f"{module} is not loaded ({key} does not exist)")
    if str(value) != want:
        return Finding(FAILED, f"{module} is loaded but {key} = {value}")
    return Finding(PASSED, f"{module} loaded, {key} = {value}")


def _peer_values(ctx: Context, pick: Callable[[Facts], str | None]) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    unknown: list[str] = []
    for name, facts in ctx.peers().items():
        value = None if isinstance(facts, HostError) else pick(facts)
        if value is None:
            unknown.append(name)
        else:
            values[name] = value
    return values, unknown


def _unique(what: str, mine: str, ctx: Context, pick: Callable[[Facts], str | None]) -> Finding:
    values, unknown = _peer_values(ctx, pick)
    same = sorted(name for name, v in values.items() if v == mine)
    note = f" (not compared: {', '.join(sorted(unknown))})" if unknown else ""
    if same:
        return Finding(FAILED, f"{what} {mine} is also the {what} of {', '.join(same)}{note}")
    return Finding(PASSED, f"{what} {mine} differs from the other {len(values)} nodes'{note}")


@rule("hostname_unique")
def hostname_unique(facts: Facts, params: Params, ctx: Context) -> Finding:
    """The node's hostname is not another node's."""
    mine = str(facts.get("hostname") or "")
    if not mine:
        return Finding(ERROR, "the hostname could not be read")
    return _unique("hostname", mine, ctx, lambda f: str(f.get("hostname") or "") or None)


def product_uuid(facts: Facts, path: str) -> tuple[str | None, Text]:
    """The node's product_uuid (lower case) and the raw read result."""
    got = (facts.get("read") or {}).get(path) or Text(error="not gathered")
    text = str(got.get("text") or "").strip().lower()
    return (text or None), got


@rule("product_uuid_unique", needs=lambda p, c: {"read": [p.get("path", "/sys/class/dmi/id/product_uuid")]})
def product_uuid_unique(facts: Facts, params: Params, ctx: Context) -> Finding:
    """The node's product_uuid is not another node's."""
    path = str(params.get("path", "/sys/class/dmi/id/product_uuid"))
    mine, got = product_uuid(facts, path)
    if mine is None:
        if _missing(got):
            return Finding(SKIPPED, f"{path} does not exist on this host: nothing to compare")
        return Finding(ERROR, f"cannot read {path}: {got.get('error')} (it is root-only; sudo -n was refused)")
    return _unique("product_uuid", mine, ctx, lambda f: product_uuid(f, path)[0])


@rule("container_runtime", needs=lambda p, c: {"sockets": list(_strings(p, "sockets"))})
def container_runtime(facts: Facts, params: Params, ctx: Context) -> Finding:
    """One of the CRI sockets accepts a connection."""
    socks = facts.get("sockets") or {}
    for path in _strings(params, "sockets"):
        if (socks.get(path) or Connect()).get("ok"):
            return Finding(PASSED, f"the CRI socket {path} accepts connections")
    seen = [f"{p}: {(socks.get(p) or Connect()).get('error', 'not probed')}" for p in _strings(params, "sockets")]
    return Finding(FAILED, "no CRI socket answers (" + "; ".join(seen) + ")")


@rule("kubelet_healthz", needs=lambda p, c: {"http": [p["url"]]})
def kubelet_healthz(facts: Facts, params: Params, ctx: Context) -> Finding:
    """The kubelet's healthz endpoint answers 200 ok."""
    url = str(params["url"])
    got = (facts.get("http") or {}).get(url) or Http(error="no answer in time")
    if got.get("status") == 200 and str(got.get("body", "")).strip() == "ok":
        return Finding(PASSED, f"{url} answered ok")
    if "status" in got:
        return Finding(FAILED, f"{url} answered HTTP {got['status']}: {str(got.get('body') or got.get('error'))[:80]}")
    return Finding(FAILED, f"{url}: {got.get('error')} (the kubelet is not running)")


@rule("binaries_installed", needs=lambda p, c: {"binaries": list(_strings(p, "binaries"))})
def binaries_installed(facts: Facts, params: Params, ctx: Context) -> Finding:
    """Each binary is on the PATH and prints its version."""
    bins = facts.get("binaries") or {}
    missing, broken, ok = [], [], []
    for name in _strings(params, "binaries"):
        got = bins.get(name) or Binary()
        if not got.get("found"):
            missing.append(name)
        elif got.get("rc") != 0:
            broken.append(f"{name} ({got.get('path')}: exit {got.get('rc')})")
        else:
            ok.append(f"{name} {str(got.get('version', '')).splitlines()[0] if got.get('version') else ''}".strip())
    if missing or broken:
        parts = ([f"not installed: {', '.join(missing)}"] if missing else []) + (
            [f"does not run: {', '.join(broken)}"] if broken else [])
        return Finding(FAILED, "; ".join(parts))
    return Finding(PASSED, "; ".join(ok))


@rule("cni_configured", needs=lambda p, c: {"dirs": [p.get("path", "/etc/cni/net.d")]})
def cni_configured(facts: Facts, params: Params, ctx: Context) -> Finding:
    """The CNI config directory holds a network config."""
    path = str(params.get("path", "/etc/cni/net.d"))
    got = (facts.get("dirs") or {}).get(path) or Listing(error="not gathered")
    if "error" in got:
        return Finding(FAILED, f"{path}: {got['error']}")
    confs = [n for n in got.get("entries", []) if n.endswith((".conf", ".conflist", ".json"))]
    if not confs:
        return Finding(FAILED, f"{path} holds no CNI config (.conf, .conflist or .json)")
    return Finding(PASSED, f"{path}: {', '.join(confs)}")


# ---- dispatch: one requirement's judge, one host's probe parameters


def judge_requirement(req: Requirement, facts: Facts, ctx: Context,
                      rules: Mapping[str, Rule] = RULES) -> Finding:
    """Judge one node requirement from the node's facts with the rule ``rules`` has for its check."""
    if req.check not in rules:
        return Finding(ERROR, f"no rule implements check {req.check!r} (requirement {req.id})")
    return rules[str(req.check)].judge(facts, req.params, ctx)


def needs_of(checks: Iterable[Check], ctx: Context, rules: Mapping[str, Rule] = RULES) -> Needs:
    """The probe parameters that gather everything ``checks`` (all of one host) need.

    ``facts`` lists the plugin facts their rules read (the node engine sends those facts' gatherers).
    """
    lists: dict[str, list[JSONValue]] = {}
    flags: dict[str, bool] = {}

    def add(extra: Needs) -> None:
        for key, value in extra.items():
            if isinstance(value, list):
                bucket = lists.setdefault(key, [])
                bucket.extend(v for v in value if v not in bucket)
            else:
                flags[key] = bool(value) or flags.get(key, False)

    for c in checks:
        if isinstance(c, NodeCheck) and c.requirement.check in rules:
            chosen = rules[str(c.requirement.check)]
            add(chosen.needs(c.requirement.params, ctx))
            if chosen.facts:
                add({"facts": list(chosen.facts)})
        elif isinstance(c, NamesOnNodeCheck):
            add({"names": [n for n, _ in c.records]})
        elif isinstance(c, EndpointCheck) and c.port:
            add({"endpoints": [[c.name, c.port]]})
    return {**lists, **flags}
