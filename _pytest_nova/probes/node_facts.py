"""Gather one host's facts in a single run: account, sudo, kernel, resolver, names, endpoints, node agents.

Runs on the checked host with python3 (3.6+, standard library only). The script arrives on stdin, followed by
one JSON line of parameters; it prints one JSON line after the frame marker of the parameters. It changes
nothing and writes no file: it only reads, resolves and connects. Privileged reads (a sudoers drop-in behind a
0750 directory, product_uuid, a root-only CRI socket) go through one ``sudo -n`` call, made only when an
unprivileged attempt was refused. Every step has its own timeout; name lookups and endpoint probes run in
threads, so one slow endpoint costs one timeout, not one per endpoint.
"""
# ruff: noqa: UP006, UP007, UP035, UP041, UP045
# (typing.Dict, List, Optional, Tuple, Union, and socket.timeout, not TimeoutError before 3.10: this file runs on
# the hosts' python3, which may be as old as 3.6)

import __future__

import base64
import errno
import grp
import json
import os
import pwd
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

# A JSON object: the parameters this script reads, and each fact it reports.
Facts = Dict[str, Any]
# What a Pool result is stored under: ("name", name), ("endpoint", name, port), ("http", url), ("binary", name)
# or ("sudo",).
PoolKey = Tuple[Union[str, int], ...]

# The TLS contexts every endpoint thread shares: loading the trust store parses the whole CA bundle, tens of ms
# of CPU each time, which was most of what this script cost a host.
_CONTEXTS = {}  # type: Dict[str, ssl.SSLContext]
_CONTEXTS_LOCK = threading.Lock()
_TRUST_DIR = []  # type: List[Optional[str]]  # found once: see trust_dir

# The privileged helper run through ``sudo -n``: stat files, read small files, connect to unix sockets.
_PRIV = r"""
import json, os, pwd, grp, socket, stat, sys
req = json.loads(sys.argv[1]); out = {"stat": {}, "read": {}, "connect": {}}
for p in req.get("stat", []):
    try:
        st = os.lstat(p)
        kind = "file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "other"
        mode = "%04o" % stat.S_IMODE(st.st_mode)
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        out["stat"][p] = {"mode": mode, "uid": st.st_uid, "owner": owner, "gid": st.st_gid, "group": group,
                          "type": kind}
    except OSError as e:
        out["stat"][p] = {"error": e.strerror, "errno": e.errno}
for p in req.get("read", []):
    try:
        with open(p) as f:
            out["read"][p] = {"text": f.read(4096)}
    except OSError as e:
        out["read"][p] = {"error": e.strerror, "errno": e.errno}
for p in req.get("connect", []):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(float(req.get("timeout", 2)))
    try:
        s.connect(p); out["connect"][p] = {"ok": True}
    except OSError as e:
        out["connect"][p] = {"error": e.strerror or str(e), "errno": e.errno}
    finally:
        s.close()
print(json.dumps(out))
"""


def _err(exc: OSError) -> Facts:
    """A short description of an OSError."""
    return {"error": exc.strerror or str(exc), "errno": exc.errno}


def stat_path(path: str) -> Facts:
    """Mode, owner and type of ``path`` (not following a final symlink), or the error."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return _err(exc)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    kind = "file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "other"
    return {"mode": f"{stat.S_IMODE(st.st_mode):04o}", "uid": st.st_uid, "owner": owner, "gid": st.st_gid,
            "group": group, "type": kind}


def read_file(path: str, limit: int = 65536) -> Facts:
    """The start of a text file, or the error."""
    try:
        with open(path, "rb") as fh:
            return {"text": fh.read(limit).decode("utf-8", "replace")}
    except OSError as exc:
        return _err(exc)


def run(argv: List[str], timeout: float) -> Facts:
    """Run a command without a shell; returns rc, stdout and stderr (rc None when it could not run in time)."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return {"rc": None, "out": "", "err": exc.strerror or str(exc)}
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"rc": None, "out": "", "err": f"timed out after {timeout:g} s"}
    return {"rc": proc.returncode, "out": out.decode("utf-8", "replace")[:4096],
            "err": err.decode("utf-8", "replace")[-2048:]}


def key_blobs(text: str) -> List[str]:
    """The (type, base64 blob) of every key line in an authorized_keys text, options skipped."""
    keys: List[str] = []
    for line in text.splitlines():
        parts = line.strip().split()
        if not parts or parts[0].startswith("#"):
            continue
        for i, part in enumerate(parts[:-1]):
            if part.startswith(("ssh-", "ecdsa-", "sk-")):
                keys.append(parts[i + 1])
                break
    return keys


def account(user: str) -> Facts:
    """The passwd entry of ``user``, its home, ~/.ssh and authorized_keys."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return {"exists": False}
    home = pw.pw_dir
    ssh_dir = os.path.join(home, ".ssh")
    keys_path = os.path.join(ssh_dir, "authorized_keys")
    facts: Facts = {"exists": True, "uid": pw.pw_uid, "shell": pw.pw_shell, "home": home,
                    "home_is_dir": os.path.isdir(home), "ssh_dir": stat_path(ssh_dir),
                    "authorized_keys": stat_path(keys_path), "authorized_keys_path": keys_path}
    text = read_file(keys_path)
    if "text" in text:
        facts["keys"] = key_blobs(text["text"])
    else:
        facts["keys_error"] = text
    return facts


def sysctl(key: str) -> Optional[str]:
    """The value of a sysctl key from /proc/sys, or None when the key does not exist."""
    path = "/proc/sys/" + key.replace(".", "/")
    got = read_file(path)
    if "text" not in got:
        return None
    text: str = got["text"]
    return text.strip()


def nameservers() -> Dict[str, List[str]]:
    """The resolver's nameservers: /etc/resolv.conf, or systemd-resolved's upstream list behind 127.0.0.53."""
    def parse(path: str) -> Optional[List[str]]:
        got = read_file(path)
        if "text" not in got:
            return None
        text: str = got["text"]
        return [ln.split()[1] for ln in text.splitlines() if ln.strip().startswith("nameserver")
                and len(ln.split()) > 1]

    servers = parse("/etc/resolv.conf") or []
    result: Dict[str, List[str]] = {"resolv_conf": servers}
    if servers and all(s.startswith("127.0.0.5") for s in servers):
        upstream = parse("/run/systemd/resolve/resolv.conf")
        if upstream is not None:
            result["upstream"] = upstream
    return result


def resolve(name: str) -> Facts:
    """IPv4 addresses of ``name`` through the host's own resolver (nsswitch, resolv.conf)."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return {"status": "unresolved", "error": exc.strerror or str(exc)}
    return {"status": "ok", "addresses": sorted({i[4][0] for i in infos})}


def _no_proxy(name: str, patterns: List[str]) -> bool:
    for p in patterns:
        p = p.strip().lower()
        if not p:
            continue
        if p == "*" or name == p.lstrip(".") or name.endswith("." + p.lstrip(".")):
            return True
    return False


def _recv_headers(sock: socket.socket, limit: int = 16384) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _open(name: str, port: int, proxy: Optional[Facts], no_proxy: List[str], timeout: float,
          res: Facts) -> Optional[socket.socket]:
    """A TCP connection to name:port (through the proxy's CONNECT when set), or None with the cause in ``res``."""
    if proxy and not _no_proxy(name, no_proxy):
        res["via"] = f"{proxy['host']}:{proxy['port']}"
        try:
            sock = socket.create_connection((proxy["host"], proxy["port"]), timeout)
        except socket.gaierror as exc:
            res.update(status="proxy-unreachable", error=f"cannot resolve {proxy['host']}: {exc.strerror}")
            return None
        except socket.timeout:
            res.update(status="proxy-unreachable", error=f"timed out after {timeout:g} s")
            return None
        except OSError as exc:
            res.update(status="proxy-unreachable", error=exc.strerror or str(exc))
            return None
        target = f"{name}:{port}"
        try:
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            head = _recv_headers(sock)
        except socket.timeout:
            sock.close()
            res.update(status="proxy-refused", error=f"no answer to CONNECT within {timeout:g} s")
            return None
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(None, 2)
        if len(parts) < 2 or parts[1] != "200":
            sock.close()
            res.update(status="proxy-refused", error=line or "connection closed")
            return None
        return sock
    addrs = resolve(name)
    if addrs["status"] != "ok":
        res.update(status="unresolved", error=addrs["error"])
        return None
    res["addresses"] = addrs["addresses"]
    last = ("unreachable", f"{name} has no address")
    for addr in addrs["addresses"]:
        try:
            sock = socket.create_connection((addr, port), timeout)
            res["address"] = addr
            return sock
        except socket.timeout:
            last = ("filtered", f"no answer from {addr}:{port} within {timeout:g} s")
        except ConnectionRefusedError:
            last = ("refused", f"{addr}:{port} refused the connection")
        except OSError as exc:
            last = ("unreachable", f"{addr}:{port}: {exc.strerror or exc}")
    res.update(status=last[0], error=last[1])
    return None


def trust_dir() -> Optional[str]:
    """The trust store's directory of hashed certificate names (OpenSSL's capath, ``SSL_CERT_DIR``), if any.

    Verifying against it alone reads only the CAs a chain names; the full default store also parses the whole
    CA bundle file, about 25 ms of CPU, most of what the endpoints cost a run.
    """
    with _CONTEXTS_LOCK:
        if not _TRUST_DIR:
            path = ssl.get_default_verify_paths().capath
            try:
                hashed = bool(path) and any(len(n) > 9 and n[8] == "." and n[9:].isdigit() and
                                            all(c in "0123456789abcdef" for c in n[:8]) for n in os.listdir(path))
            except OSError:
                hashed = False
            _TRUST_DIR.append(path if hashed else None)
        return _TRUST_DIR[0]


def tls_context(store: str) -> ssl.SSLContext:
    """The run's one context per trust store, shared by the endpoint threads.

    ``dir``: the hashed directory alone; ``all``: the node's whole default store (bundle file and directory);
    ``none``: verifies nothing.
    """
    directory = trust_dir() if store == "dir" else None
    with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.get(store)
        if ctx is None:
            if store == "none":
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            elif store == "dir" and directory:
                ctx = ssl.create_default_context(capath=directory)
            else:
                ctx = ssl.create_default_context()
            _CONTEXTS[store] = ctx
        return ctx


def _not_verified(exc: Exception) -> Optional[str]:
    """Why the chain or the name did not verify, if that is what ``exc`` says; else None."""
    # SSLCertVerificationError (3.7+) carries verify_message; 3.6 says CERTIFICATE_VERIFY_FAILED.
    message = getattr(exc, "verify_message", None)
    if message or isinstance(exc, ssl.CertificateError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return str(message or exc)
    return None


def endpoint(name: str, port: int, proxy: Optional[Facts], no_proxy: List[str], timeout: float) -> Facts:
    """TCP connect (through an HTTP proxy's CONNECT when set) and a TLS handshake to name:port.

    ``ok``: the handshake verified against the node's trust store. ``untrusted``: it did not, and a second
    handshake without verification completed (``handshake``), with the certificate it presented (``cert``, base64
    DER) so the controller can name its issuer: reaching the endpoint and trusting its chain are two facts.
    The hashed directory is tried first; only a chain it cannot verify is tried against the whole store.
    """
    res: Facts = {"name": name, "port": port}
    stores = ["dir", "all"] if trust_dir() else ["all"]
    for store in stores:
        sock = _open(name, port, proxy, no_proxy, timeout, res)
        if sock is None:
            return res
        try:
            sock.settimeout(timeout)
            try:
                tls = tls_context(store).wrap_socket(sock, server_hostname=name)
            except socket.timeout:
                res.update(status="tls-failed", error=f"TLS handshake timed out after {timeout:g} s")
                return res
            except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
                reason = _not_verified(exc)
                if reason is None:
                    res.update(status="tls-failed", error=str(exc))
                elif store != stores[-1]:
                    continue  # the directory may lack a CA that the bundle file holds
                else:
                    res.update(status="untrusted", error=reason)
                    res.update(_unverified(name, port, proxy, no_proxy, timeout))
                return res
            sock = tls
            cert = tls.getpeercert() or {}
            # A tuple of relative distinguished names, each a tuple of (attribute, value) pairs.
            issuer_rdns = cert.get("issuer", ())
            issuer = dict(x[0] for x in issuer_rdns if x and isinstance(x[0], tuple))
            res.update(status="ok", tls=tls.version(),
                       issuer=issuer.get("commonName") or issuer.get("organizationName"))
            return res
        finally:
            try:
                sock.close()
            except OSError:
                pass
    return res


def _unverified(name: str, port: int, proxy: Optional[Facts], no_proxy: List[str], timeout: float) -> Facts:
    """A handshake that does not verify the chain: whether TLS itself works, and the certificate presented."""
    out: Facts = {}
    sock = _open(name, port, proxy, no_proxy, timeout, {})
    if sock is None:
        return {"handshake": False, "handshake_error": "the second connection failed"}
    try:
        ctx = tls_context("none")
        sock.settimeout(timeout)
        tls = ctx.wrap_socket(sock, server_hostname=name)
        sock = tls
        der = tls.getpeercert(binary_form=True) or b""
        out.update(handshake=True, tls=tls.version(), cert=base64.b64encode(der).decode("ascii"))
    except (ssl.SSLError, OSError) as exc:
        out.update(handshake=False, handshake_error=str(exc))
    finally:
        try:
            sock.close()
        except OSError:
            pass
    return out


def http_ok(url: str, timeout: float) -> Facts:
    """GET ``url`` (a local health endpoint) directly, whatever proxy the environment names; status, body start."""
    # Imported here: urllib.request costs every run about 20 ms of CPU, and only post-install health checks fetch.
    from urllib.request import ProxyHandler, build_opener

    try:
        with build_opener(ProxyHandler({})).open(url, timeout=timeout) as resp:
            return {"status": resp.status, "body": resp.read(256).decode("utf-8", "replace")}
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        code = getattr(exc, "code", None)
        out: Facts = {"error": str(reason)}
        if code is not None:
            out["status"] = code
        return out


def unix_connect(path: str, timeout: float) -> Facts:
    """Whether a unix socket accepts a connection (the error otherwise)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return {"ok": True}
    except OSError as exc:
        return _err(exc)
    finally:
        s.close()


def _gather(paths: List[str], look: Callable[[str], Facts], denied: List[str]) -> Dict[str, Facts]:
    """``look`` at each path; paths the user may not see are added to ``denied`` for the one sudo pass."""
    out: Dict[str, Facts] = {}
    for path in paths:
        out[path] = got = look(path)
        if got.get("errno") == errno.EACCES:
            denied.append(path)
    return out


def binary(name: str, timeout: float) -> Facts:
    """Where ``name`` is and whether it prints a version."""
    path: Optional[str] = None
    for d in [*os.environ.get("PATH", "").split(":"), "/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin"]:
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            path = candidate
            break
    if path is None:
        return {"found": False}
    flag = "version" if name in ("kubeadm",) else "--version"
    argv = [path, flag] if name != "kubectl" else [path, "version", "--client"]
    got = run(argv, timeout)
    return {"found": True, "path": path, "rc": got["rc"], "version": (got["out"] or got["err"]).strip()[:200]}


def os_release() -> Dict[str, str]:
    """ID and ID_LIKE of /etc/os-release: which firewall commands a fix should name."""
    out: Dict[str, str] = {}
    for line in (read_file("/etc/os-release").get("text") or "").splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "ID_LIKE"):
            out[key.lower()] = value.strip().strip("'\"")
    return out


def list_dir(path: str) -> Facts:
    """Names in a directory, or the error."""
    try:
        return {"entries": sorted(os.listdir(path))}
    except OSError as exc:
        return _err(exc)


class Pool:
    """Run callables in threads; collect what finished by a deadline (threads are daemons: no hang at exit)."""

    def __init__(self) -> None:
        self.results: Dict[PoolKey, Facts] = {}
        self.threads: List[Tuple[PoolKey, threading.Thread]] = []

    def add(self, key: PoolKey, fn: Callable[..., Facts], *args: Any) -> None:
        """Start ``fn(*args)``; its result is stored under ``key``."""
        def target() -> None:
            try:
                self.results[key] = fn(*args)
            except Exception as exc:  # a fact that cannot be read is reported, never a crash
                self.results[key] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}

        t = threading.Thread(target=target)
        t.daemon = True
        t.start()
        self.threads.append((key, t))

    def wait(self, deadline: float) -> Tuple[Dict[PoolKey, Facts], List[PoolKey]]:
        """Results finished by ``deadline`` (epoch seconds), and the keys still running."""
        for _key, t in self.threads:
            t.join(max(0.0, deadline - time.time()))
        return dict(self.results), [k for k, t in self.threads if t.is_alive()]


def extra_fact(name: str, spec: Facts) -> Facts:
    """A fact a plugin added: its command's rc and output, or its gatherer's JSON value (or the error)."""
    if "command" in spec:
        argv = [str(a) for a in spec["command"]]
        return run(argv, float(spec.get("timeout", 5.0)))
    namespace: Facts = {"__name__": "nova_fact_" + name}
    # Postponed annotations (3.7+): a gatherer annotated with newer types still runs on an older python3.
    flags = getattr(getattr(__future__, "annotations", None), "compiler_flag", 0)
    exec(compile(str(spec["python"]), "nova-fact-" + name, "exec", flags, True), namespace)
    value = namespace[str(spec["function"])]()
    json.dumps(value)  # a value that is not JSON data fails here, as this fact's error, not the whole run's
    return {"value": value}


def main() -> None:
    """Read the parameters, gather the facts, print them as one JSON line."""
    params: Facts = json.loads(sys.stdin.readline() or "{}")
    started = time.time()
    timeout = float(params.get("timeout", 2.0))
    user: str = params.get("user") or pwd.getpwuid(os.getuid()).pw_name
    facts: Facts = {"probe": "node_facts", "python": "{}.{}".format(*sys.version_info[:2]),
                    "whoami": pwd.getpwuid(os.geteuid()).pw_name}

    pool = Pool()
    # Network steps first: they are the slow ones and run while the file reads below happen.
    for name in params.get("names", []):
        pool.add(("name", name), resolve, name)
    proxy: Optional[Facts] = params.get("proxy")
    for name, port in params.get("endpoints", []):
        pool.add(("endpoint", name, port), endpoint, name, int(port), proxy, params.get("no_proxy", []), timeout)
    for url in params.get("http", []):
        pool.add(("http", url), http_ok, url, timeout)
    for b in params.get("binaries", []):
        pool.add(("binary", b), binary, b, max(timeout, 5.0))
    if params.get("sudo"):
        pool.add(("sudo",), run, ["sudo", "-n", "true"], max(timeout, 5.0))
    for name, spec in (params.get("extra") or {}).items():
        pool.add(("extra", name), extra_fact, name, spec)

    facts["hostname"] = socket.gethostname()
    facts["os_release"] = os_release()
    facts["account"] = account(user)
    facts["resolver"] = nameservers()
    facts["swaps"] = [ln.split()[0] for ln in (read_file("/proc/swaps").get("text") or "").splitlines()[1:]
                      if ln.strip()]
    facts["sysctl"] = {k: sysctl(k) for k in params.get("sysctls", [])}
    modules_text: str = read_file("/proc/modules").get("text") or ""
    loaded = {ln.split()[0] for ln in modules_text.splitlines() if ln.strip()}
    facts["modules"] = {m: (m in loaded or os.path.isdir("/sys/module/" + m)) for m in params.get("modules", [])}
    facts["dirs"] = {d: list_dir(d) for d in params.get("dirs", [])}

    # Files that may need root: try as ourselves, queue the refused ones for one sudo call.
    priv_stat: List[str] = []
    priv_read: List[str] = []
    priv_connect: List[str] = []
    stats = _gather([os.path.expanduser(p) for p in params.get("stat", [])], stat_path, priv_stat)
    facts["stat"] = stats
    reads = _gather(list(params.get("read", [])), lambda p: read_file(p, 4096), priv_read)
    facts["read"] = reads
    sockets: Dict[str, Facts] = {}
    facts["sockets"] = sockets
    for path in params.get("sockets", []):
        got = unix_connect(path, timeout)
        sockets[path] = got
        if got.get("errno") == errno.EACCES:
            priv_connect.append(path)

    done, late = pool.wait(started + float(params.get("budget", 4 * timeout + 2)))
    names: Dict[Union[str, int], Facts] = {k[1]: v for k, v in done.items() if k[0] == "name"}
    facts["names"] = names
    endpoints: Dict[str, Facts] = {f"{k[1]}:{k[2]}": v for k, v in done.items() if k[0] == "endpoint"}
    facts["endpoints"] = endpoints
    for k in late:
        if k[0] == "name":
            names[k[1]] = {"status": "unresolved", "error": "no answer from the resolver in time"}
        if k[0] == "endpoint":
            endpoints[f"{k[1]}:{k[2]}"] = {"status": "filtered", "error": "no result in time"}
    facts["http"] = {k[1]: v for k, v in done.items() if k[0] == "http"}
    facts["binaries"] = {k[1]: v for k, v in done.items() if k[0] == "binary"}
    extra: Dict[Union[str, int], Any] = {}
    for k in params.get("extra") or {}:
        got = done.get(("extra", k), {"error": "no result in time"})
        extra[k] = got["value"] if "value" in got and len(got) == 1 else got
    facts["extra"] = extra
    if params.get("sudo"):
        facts["sudo"] = done.get(("sudo",), {"rc": None, "err": "sudo -n true did not finish in time"})

    sudo_ok: bool = os.geteuid() == 0 or (facts.get("sudo") or {}).get("rc") == 0
    if os.geteuid() != 0 and (priv_stat or priv_read or priv_connect):
        if not params.get("sudo"):
            sudo_check = run(["sudo", "-n", "true"], max(timeout, 5.0))
            facts["sudo"] = sudo_check
            sudo_ok = sudo_check.get("rc") == 0
        facts["privileged"] = sudo_ok
        if sudo_ok:
            priv = {"stat": priv_stat, "read": priv_read, "connect": priv_connect, "timeout": timeout}
            argv = ["sudo", "-n", sys.executable, "-I", "-S", "-c", _PRIV, json.dumps(priv)]
            helper = run(argv, max(timeout, 5.0) + 5)
            try:
                answer: Facts = json.loads(helper["out"].strip().splitlines()[-1])
            except (ValueError, IndexError):
                answer = {}
                facts["privileged_error"] = helper["err"].strip()[-300:] or "no answer"
            stats.update(answer.get("stat", {}))
            reads.update(answer.get("read", {}))
            sockets.update(answer.get("connect", {}))
    facts["elapsed"] = round(time.time() - started, 3)
    # Framed: the controller reads only the line that starts with the run's marker, never a banner.
    sys.stdout.write(str(params.get("frame", "")) + " " + json.dumps(facts) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
    # A resolver or handshake stuck past its deadline must not keep the process (and the SSH session) alive.
    os._exit(0)
