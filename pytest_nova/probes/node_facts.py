"""Gather one host's facts in a single run: account, sudo, kernel, resolver, names, endpoints, node agents.

Runs on the checked host with python3 (3.6+, standard library only). The script arrives on stdin, followed by
one JSON line of parameters; it prints one JSON line. It changes nothing and writes no file: it only reads,
resolves and connects. Privileged reads (a sudoers drop-in behind a 0750 directory, product_uuid, a root-only
CRI socket) go through one ``sudo -n`` call, made only when an unprivileged attempt was refused.
Every step has its own timeout; name lookups and endpoint probes run in threads, so one slow endpoint costs
one timeout, not one per endpoint.
"""
# ruff: noqa: UP041
# (socket.timeout is not TimeoutError before 3.10; this file runs on the hosts' python3, maybe 3.6)

import errno
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
from urllib.request import ProxyHandler, build_opener

# Local health endpoints are fetched directly, whatever proxy the environment names.
_DIRECT = build_opener(ProxyHandler({}))

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
        out["stat"][p] = {"mode": mode, "uid": st.st_uid, "owner": owner, "type": kind}
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


def _err(exc):
    """A short description of an OSError."""
    return {"error": exc.strerror or str(exc), "errno": exc.errno}


def stat_path(path):
    """Mode, owner and type of ``path`` (not following a final symlink), or the error."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return _err(exc)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    kind = "file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "other"
    return {"mode": f"{stat.S_IMODE(st.st_mode):04o}", "uid": st.st_uid, "owner": owner, "type": kind}


def read_file(path, limit=65536):
    """The start of a text file, or the error."""
    try:
        with open(path, "rb") as fh:
            return {"text": fh.read(limit).decode("utf-8", "replace")}
    except OSError as exc:
        return _err(exc)


def run(argv, timeout):
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


def key_blobs(text):
    """The (type, base64 blob) of every key line in an authorized_keys text, options skipped."""
    keys = []
    for line in text.splitlines():
        parts = line.strip().split()
        if not parts or parts[0].startswith("#"):
            continue
        for i, part in enumerate(parts[:-1]):
            if part.startswith(("ssh-", "ecdsa-", "sk-")):
                keys.append(parts[i + 1])
                break
    return keys


def account(user):
    """The passwd entry of ``user``, its home, ~/.ssh and authorized_keys."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return {"exists": False}
    home = pw.pw_dir
    ssh_dir = os.path.join(home, ".ssh")
    keys_path = os.path.join(ssh_dir, "authorized_keys")
    facts = {"exists": True, "uid": pw.pw_uid, "shell": pw.pw_shell, "home": home,
             "home_is_dir": os.path.isdir(home), "ssh_dir": stat_path(ssh_dir),
             "authorized_keys": stat_path(keys_path), "authorized_keys_path": keys_path}
    text = read_file(keys_path)
    if "text" in text:
        facts["keys"] = key_blobs(text["text"])
    else:
        facts["keys_error"] = text
    return facts


def sysctl(key):
    """The value of a sysctl key from /proc/sys, or None when the key does not exist."""
    path = "/proc/sys/" + key.replace(".", "/")
    got = read_file(path)
    return got["text"].strip() if "text" in got else None


def nameservers():
    """The resolver's nameservers: /etc/resolv.conf, or systemd-resolved's upstream list behind 127.0.0.53."""
    def parse(path):
        got = read_file(path)
        if "text" not in got:
            return None
        return [ln.split()[1] for ln in got["text"].splitlines() if ln.strip().startswith("nameserver")
                and len(ln.split()) > 1]

    servers = parse("/etc/resolv.conf") or []
    result = {"resolv_conf": servers}
    if servers and all(s.startswith("127.0.0.5") for s in servers):
        upstream = parse("/run/systemd/resolve/resolv.conf")
        if upstream is not None:
            result["upstream"] = upstream
    return result


def resolve(name):
    """IPv4 addresses of ``name`` through the host's own resolver (nsswitch, resolv.conf)."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return {"status": "unresolved", "error": exc.strerror or str(exc)}
    return {"status": "ok", "addresses": sorted({i[4][0] for i in infos})}


def _no_proxy(name, patterns):
    for p in patterns:
        p = p.strip().lower()
        if not p:
            continue
        if p == "*" or name == p.lstrip(".") or name.endswith("." + p.lstrip(".")):
            return True
    return False


def _recv_headers(sock, limit=16384):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def endpoint(name, port, proxy, no_proxy, timeout):
    """TCP connect (through an HTTP proxy's CONNECT when set) and a verified TLS handshake to name:port."""
    res = {"name": name, "port": port}
    via_proxy = bool(proxy) and not _no_proxy(name, no_proxy)
    sock = None
    try:
        if via_proxy:
            res["via"] = f"{proxy['host']}:{proxy['port']}"
            try:
                sock = socket.create_connection((proxy["host"], proxy["port"]), timeout)
            except socket.gaierror as exc:
                res.update(status="proxy-unreachable", error=f"cannot resolve {proxy['host']}: {exc.strerror}")
                return res
            except socket.timeout:
                res.update(status="proxy-unreachable", error=f"timed out after {timeout:g} s")
                return res
            except OSError as exc:
                res.update(status="proxy-unreachable", error=exc.strerror or str(exc))
                return res
            target = f"{name}:{port}"
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            try:
                head = _recv_headers(sock)
            except socket.timeout:
                res.update(status="proxy-refused", error=f"no answer to CONNECT within {timeout:g} s")
                return res
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(None, 2)
            if len(parts) < 2 or parts[1] != "200":
                res.update(status="proxy-refused", error=line or "connection closed")
                return res
        else:
            addrs = resolve(name)
            if addrs["status"] != "ok":
                res.update(status="unresolved", error=addrs["error"])
                return res
            res["addresses"] = addrs["addresses"]
            last = None
            for addr in addrs["addresses"]:
                try:
                    sock = socket.create_connection((addr, port), timeout)
                    res["address"] = addr
                    break
                except socket.timeout:
                    last = ("filtered", f"no answer from {addr}:{port} within {timeout:g} s")
                except ConnectionRefusedError:
                    last = ("refused", f"{addr}:{port} refused the connection")
                except OSError as exc:
                    last = ("unreachable", f"{addr}:{port}: {exc.strerror or exc}")
            if sock is None:
                res.update(status=last[0], error=last[1])
                return res
        ctx = ssl.create_default_context()
        sock.settimeout(timeout)
        try:
            tls = ctx.wrap_socket(sock, server_hostname=name)
        except socket.timeout:
            res.update(status="tls-failed", error=f"TLS handshake timed out after {timeout:g} s")
            return res
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            # SSLCertVerificationError (3.7+) carries verify_message; 3.6 says CERTIFICATE_VERIFY_FAILED.
            message = getattr(exc, "verify_message", None)
            if message or isinstance(exc, ssl.CertificateError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
                res.update(status="untrusted", error=message or str(exc))
            else:
                res.update(status="tls-failed", error=str(exc))
            return res
        sock = tls
        cert = tls.getpeercert() or {}
        issuer = dict(x[0] for x in cert.get("issuer", ()) if x)
        res.update(status="ok", tls=tls.version(), issuer=issuer.get("commonName") or issuer.get("organizationName"))
        return res
    finally:
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def http_ok(url, timeout):
    """GET ``url`` (a local health endpoint); its status and the start of its body."""
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return {"status": resp.status, "body": resp.read(256).decode("utf-8", "replace")}
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        code = getattr(exc, "code", None)
        out = {"error": str(reason)}
        if code is not None:
            out["status"] = code
        return out


def unix_connect(path, timeout):
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


def binary(name, timeout):
    """Where ``name`` is and whether it prints a version."""
    path = None
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


def list_dir(path):
    """Names in a directory, or the error."""
    try:
        return {"entries": sorted(os.listdir(path))}
    except OSError as exc:
        return _err(exc)


class Pool:
    """Run callables in threads; collect what finished by a deadline (threads are daemons: no hang at exit)."""

    def __init__(self):
        self.results = {}
        self.threads = []

    def add(self, key, fn, *args):
        """Start ``fn(*args)``; its result is stored under ``key``."""
        def target():
            try:
                self.results[key] = fn(*args)
            except Exception as exc:  # a fact that cannot be read is reported, never a crash
                self.results[key] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}

        t = threading.Thread(target=target)
        t.daemon = True
        t.start()
        self.threads.append((key, t))

    def wait(self, deadline):
        """Results finished by ``deadline`` (epoch seconds), and the keys still running."""
        for _key, t in self.threads:
            t.join(max(0.0, deadline - time.time()))
        return dict(self.results), [k for k, t in self.threads if t.is_alive()]


def main():
    """Read the parameters, gather the facts, print them as one JSON line."""
    params = json.loads(sys.stdin.readline() or "{}")
    started = time.time()
    timeout = float(params.get("timeout", 2.0))
    user = params.get("user") or pwd.getpwuid(os.getuid()).pw_name
    facts = {"probe": "node_facts", "python": "{}.{}".format(*sys.version_info[:2]),
             "whoami": pwd.getpwuid(os.geteuid()).pw_name}

    pool = Pool()
    # Network steps first: they are the slow ones and run while the file reads below happen.
    for name in params.get("names", []):
        pool.add(("name", name), resolve, name)
    proxy = params.get("proxy")
    for name, port in params.get("endpoints", []):
        pool.add(("endpoint", name, port), endpoint, name, int(port), proxy, params.get("no_proxy", []), timeout)
    for url in params.get("http", []):
        pool.add(("http", url), http_ok, url, timeout)
    for b in params.get("binaries", []):
        pool.add(("binary", b), binary, b, max(timeout, 5.0))
    if params.get("sudo"):
        pool.add(("sudo",), run, ["sudo", "-n", "true"], max(timeout, 5.0))

    facts["hostname"] = socket.gethostname()
    facts["account"] = account(user)
    facts["resolver"] = nameservers()
    facts["swaps"] = [ln.split()[0] for ln in (read_file("/proc/swaps").get("text") or "").splitlines()[1:]
                      if ln.strip()]
    facts["sysctl"] = {k: sysctl(k) for k in params.get("sysctls", [])}
    modules_text = read_file("/proc/modules").get("text") or ""
    loaded = {ln.split()[0] for ln in modules_text.splitlines() if ln.strip()}
    facts["modules"] = {m: (m in loaded or os.path.isdir("/sys/module/" + m)) for m in params.get("modules", [])}
    facts["dirs"] = {d: list_dir(d) for d in params.get("dirs", [])}

    # Files that may need root: try as ourselves, queue the refused ones for one sudo call.
    priv = {"stat": [], "read": [], "connect": [], "timeout": timeout}
    facts["stat"] = {}
    for path in params.get("stat", []):
        path = os.path.expanduser(path)
        got = stat_path(path)
        facts["stat"][path] = got
        if got.get("errno") == errno.EACCES:
            priv["stat"].append(path)
    facts["read"] = {}
    for path in params.get("read", []):
        got = read_file(path, 4096)
        facts["read"][path] = got
        if got.get("errno") == errno.EACCES:
            priv["read"].append(path)
    facts["sockets"] = {}
    for path in params.get("sockets", []):
        got = unix_connect(path, timeout)
        facts["sockets"][path] = got
        if got.get("errno") == errno.EACCES:
            priv["connect"].append(path)

    done, late = pool.wait(started + float(params.get("budget", 4 * timeout + 2)))
    facts["names"] = {k[1]: v for k, v in done.items() if k[0] == "name"}
    facts["endpoints"] = {f"{k[1]}:{k[2]}": v for k, v in done.items() if k[0] == "endpoint"}
    for k in late:
        if k[0] == "name":
            facts["names"][k[1]] = {"status": "unresolved", "error": "no answer from the resolver in time"}
        if k[0] == "endpoint":
            facts["endpoints"][f"{k[1]}:{k[2]}"] = {"status": "filtered", "error": "no result in time"}
    facts["http"] = {k[1]: v for k, v in done.items() if k[0] == "http"}
    facts["binaries"] = {k[1]: v for k, v in done.items() if k[0] == "binary"}
    if params.get("sudo"):
        facts["sudo"] = done.get(("sudo",), {"rc": None, "err": "sudo -n true did not finish in time"})

    sudo_ok = os.geteuid() == 0 or (facts.get("sudo") or {}).get("rc") == 0
    if os.geteuid() != 0 and (priv["stat"] or priv["read"] or priv["connect"]):
        if not params.get("sudo"):
            facts["sudo"] = run(["sudo", "-n", "true"], max(timeout, 5.0))
            sudo_ok = facts["sudo"].get("rc") == 0
        facts["privileged"] = sudo_ok
        if sudo_ok:
            got = run(["sudo", "-n", sys.executable, "-c", _PRIV, json.dumps(priv)], max(timeout, 5.0) + 5)
            try:
                answer = json.loads(got["out"].strip().splitlines()[-1])
            except (ValueError, IndexError):
                answer = {}
                facts["privileged_error"] = got["err"].strip()[-300:] or "no answer"
            facts["stat"].update(answer.get("stat", {}))
            facts["read"].update(answer.get("read", {}))
            facts["sockets"].update(answer.get("connect", {}))
    facts["elapsed"] = round(time.time() - started, 3)
    sys.stdout.write(json.dumps(facts) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
    # A resolver or handshake stuck past its deadline must not keep the process (and the SSH session) alive.
    os._exit(0)
