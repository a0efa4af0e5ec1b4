"""The Lab: boots, changes and tears down a Nova-like cluster made of namespaces on this machine."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nova_lab import dns, faults, hosts, inventory, pki
from nova_lab.addresses import DOMAIN, UNIVERSE_NAMES, VENDOR_NAMES, Host, LabSpec, plan
from nova_lab.kubeapi import K8S_VERSION
from nova_lab.netns import LabError, in_host, in_netns, ip_batch, nft_sync, run
from nova_lab.state import (
    Records,
    proc_start_time,
    read_json,
    registry_lock,
    state_dir,
    used_indexes,
    write_json,
)

T = TypeVar("T")
R = TypeVar("R")
_POOL = 16
_NFT_TABLE = "novalab"
_ALL_TCP = (179, 4240, 4244, 9100, 9962, 10249, 10250)
# As in a real cluster, some documented ports have a service on one node only (the Hubble relay, the operator's
# metrics): the others leave them free, open in the firewall but with nothing listening.
_FIRST_MASTER_TCP = (4245, 9963)
_ROLE_TCP = {"master": (2379, 2380, 8200, 8201, 10257, 10259), "infra": (8443,), "ingress": (8443, 10254)}
_UDP = (8472,)  # the overlay uses VXLAN on 8472 (Cilium's default); 4789 stays free, as on a real cluster


def _pmap(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(_POOL, len(items))) as pool:
        return list(pool.map(fn, items))


def _listening(pid: int, proto: str, port: int) -> bool:
    """Whether the network namespace of ``pid`` has a socket bound to ``port`` (from /proc, no process)."""
    want = f":{port:04X}"
    try:
        lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        f = line.split()
        if f[1].endswith(want) and (proto == "udp" or f[3] == "0A"):
            return True
    return False


# An installed node's kernel side: a VXLAN device holding 4789 (as a Calico-VXLAN or flannel node's does: the
# kernel answers no datagram) and connection tracking on, as kube-proxy's and Cilium's rulesets switch it on (a
# rule that only counts invalid packets: it registers conntrack and changes no verdict).
_KERNEL_ON = ("ip link del nova-vxlan 2>/dev/null; ip link add nova-vxlan type vxlan id 4789 dstport 4789 dev eth0 "
              "nolearning && ip link set nova-vxlan up; nft delete table inet novalab-kube 2>/dev/null; "
              "nft 'add table inet novalab-kube; add chain inet novalab-kube input { type filter hook input priority "
              "-10; policy accept; }; add rule inet novalab-kube input ct state invalid counter'")
# Removes what _node_files_on adds when installed mode is switched off.
_NODE_FILES_OFF = ("umount /usr/local/bin 2>/dev/null; rm -rf /etc/cni; ip link del nova-vxlan 2>/dev/null; "
                   "nft delete table inet novalab-kube 2>/dev/null; true")
_CNI_CONFIG = '{"cniVersion": "1.0.0", "name": "nova-lab", "plugins": [{"type": "bridge"}]}'


class Lab:
    """A running lab. Create with ``Lab.up(spec)``, find a running one with ``Lab.attach(name)``."""

    def __init__(self, spec: LabSpec, index: int, state: Path) -> None:
        self.spec = spec
        self.index = index
        self.state_dir = state
        self.plan = plan(spec, index)
        self.records = Records(state / "records.jsonl")
        self.timings: dict[str, float] = {}
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    # --- names and paths ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The lab's name."""
        return self.spec.name

    @property
    def hosts(self) -> dict[str, Host]:
        """Every host by name (``.address``, ``.role``, ``.roles``, ``.kind``)."""
        return {h.name: h for h in self.plan}

    @property
    def inventory_path(self) -> Path:
        """The inventory file (format v1) describing this lab."""
        return self.state_dir / "inventory.yaml"

    @property
    def kubeconfig_path(self) -> Path:
        """The kubeconfig of the lab's Kubernetes API stand-in (answers in installed mode)."""
        return self.state_dir / "kubeconfig"

    @property
    def bridge(self) -> str:
        """The root-namespace bridge joining the lab's hosts."""
        return f"nlab{self.index}"

    def netns(self, host: str) -> str:
        """The network namespace name of ``host``."""
        return f"{self.name}-{host}"

    def _host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise LabError(f"lab {self.name!r} has no host {name!r}") from None

    # --- persistent state -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """lab.json, read and written under a lock (the CLI and a test session may change it at once)."""
        with open(self.state_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            data: dict[str, Any] = read_json(self.state_dir / "lab.json", {})
            yield data
            write_json(self.state_dir / "lab.json", data)

    def _data(self) -> dict[str, Any]:
        data: dict[str, Any] = read_json(self.state_dir / "lab.json", {})
        return data

    def _pid(self, key: str) -> int | None:
        entry = self._data().get("pids", {}).get(key)
        if entry and proc_start_time(entry[0]) == entry[1]:
            return int(entry[0])
        return None

    def holder(self, host: str) -> int:
        """The pid holding the namespaces of full host ``host``."""
        pid = self._pid(f"holder:{host}")
        if pid is None:
            raise LabError(f"host {host!r} of lab {self.name!r} is not running")
        return pid

    # --- processes ------------------------------------------------------------------------------------

    def _spawn(self, key: str, argv: Sequence[str], log: str, pipe: bool = False) -> subprocess.Popen[bytes]:
        with open(self.state_dir / "logs" / log, "ab") as fh:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if pipe else fh, stderr=fh,
                start_new_session=True, cwd="/",
            )
        start = proc_start_time(proc.pid)
        self.records.add("pid", pid=proc.pid, start=start, key=key)
        self._procs[proc.pid] = proc
        with self._locked() as data:
            data.setdefault("pids", {})[key] = [proc.pid, start]
        return proc

    def _stop(self, key: str) -> None:
        pid = self._pid(key)
        with self._locked() as data:
            data.get("pids", {}).pop(key, None)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        proc = self._procs.pop(pid, None)
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            return
        deadline = time.monotonic() + 5
        while proc_start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def _wait(self, what: str, ok: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise LabError(f"lab {self.name!r}: {what} not ready after {timeout:g}s (logs: {self.state_dir}/logs)")
            time.sleep(0.05)

    # --- boot -----------------------------------------------------------------------------------------

    @classmethod
    def up(cls, spec: LabSpec) -> Lab:
        """Boot a lab; on any failure (or Ctrl-C) tear down what was made and re-raise."""
        spec.validate()
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, mounts, sshd)")
        state = state_dir(spec.name)
        with registry_lock():
            if (state / "records.jsonl").exists():
                raise LabError(f"lab {spec.name!r} exists already; run: nova-lab down --name {spec.name}")
            shutil.rmtree(state, ignore_errors=True)
            used = used_indexes()
            if spec.index is not None and spec.index in used:
                raise LabError(f"lab index {spec.index} is used by another lab")
            index = spec.index if spec.index is not None else min(set(range(32)) - used, default=-1)
            if index < 0:
                raise LabError("all 32 lab address ranges are in use")
            state.mkdir(parents=True)
            (state / "index").write_text(str(index))
            (state / "records.jsonl").touch()
        lab = cls(dataclasses.replace(spec, index=index), index, state)
        try:
            lab._build()
        except BaseException:
            with contextlib.suppress(Exception):
                lab.down()
            raise
        return lab

    @classmethod
    def attach(cls, name: str) -> Lab:
        """The running lab ``name``, from its state directory."""
        data = read_json(state_dir(name) / "lab.json", None)
        if not data:
            raise LabError(f"no lab named {name!r} is up")
        spec = data["spec"]
        spec["modules"] = tuple(spec["modules"])
        return cls(LabSpec(**spec), int(data["index"]), state_dir(name))

    def _build(self) -> None:
        t0 = time.monotonic()
        sd = self.state_dir
        for d in ("hosts", "logs", "servers", "flags", "pki", "run", "dns", "layer"):
            (sd / d).mkdir(parents=True, exist_ok=True)
        write_json(sd / "lab.json", {"spec": dataclasses.asdict(self.spec), "index": self.index,
                                     "pids": {}, "installed": False, "token": secrets.token_hex(24),
                                     "faults": [], "nft_hosts": []})
        full = [h for h in self.plan if h.is_full]
        with ThreadPoolExecutor(max_workers=4) as pool:
            f_pki = pool.submit(self._make_pki)
            f_net = pool.submit(self._make_network)
            f_key = pool.submit(hosts.keygen, sd / "id_nova", f"nova-installer@{self.name}-lab")
            lab_hosts = "".join(f"{h.address}\t{h.name}\n" for h in self.plan)
            host_keys = _pmap(lambda h: hosts.prepare_host_dir(sd / "hosts" / h.name, h, lab_hosts), full)
            certs = f_pki.result()
            f_key.result()
            self.timings["keys+pki"] = time.monotonic() - t0
            cas = [(certs[n].cert, pki.fingerprint_name(certs[n].cert)) for n in ("lab-ca", "universe-ca")]
            hosts.build_layer(sd / "layer", sd / "id_nova.pub", cas, self._resolv_conf())
            self.timings["layer"] = time.monotonic() - t0
            f_net.result()
            self.timings["network"] = time.monotonic() - t0
        (sd / "id_nova").chmod(0o600)
        (sd / "known_hosts").write_text(inventory.known_hosts(list(zip(full, host_keys, strict=True))))
        self._write_files()
        _pmap(self._start_host, full)
        self.timings["hosts"] = time.monotonic() - t0
        self._start_services()
        self._wait("sshd", lambda: all(_listening(self.holder(h.name), "tcp", 22) for h in full))
        self.timings["up"] = time.monotonic() - t0
        if self.spec.installed:
            self.set_installed(True)
            self.timings["installed"] = time.monotonic() - t0

    def _resolv_conf(self) -> str:
        d1, d2 = self.hosts["dns-1"].address, self.hosts["dns-2"].address
        return f"search {DOMAIN}\nnameserver {d1}\nnameserver {d2}\noptions timeout:2 attempts:2\n"

    def _make_pki(self) -> dict[str, pki.KeyPair]:
        h = self.hosts
        addrs = [x.address for x in self.plan if x.kind in ("service", "lb")]
        masters = [x.address for x in self.plan if "master" in x.roles]
        web = [x.address for x in self.plan if set(x.roles) & {"infra", "ingress", "worker"}]
        leaves: dict[str, tuple[str, list[str]]] = {
            "rogue": ("rogue-ca", [*VENDOR_NAMES, *UNIVERSE_NAMES, *addrs]),
            "api": ("lab-ca", ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                               "kubernetes.default.svc.cluster.local", f"api.{DOMAIN}", "localhost",
                               h["lb-api"].address, "127.0.0.1", *masters]),
            "ingress": ("lab-ca", [f"*.{DOMAIN}", DOMAIN, h["lb-infra"].address, h["lb-ingress"].address, *web]),
            "lb-api": ("lab-ca", ["nova-api-lb", h["lb-api"].address]),
        }
        if "vendor" in h:
            leaves["vendor"] = ("lab-ca", [*VENDOR_NAMES, h["vendor"].address])
        if "universe" in h:
            leaves["universe"] = ("universe-ca", [*UNIVERSE_NAMES, h["universe"].address])
        return pki.build(self.state_dir / "pki", leaves)

    def _make_network(self) -> None:
        """Namespaces, bridge and veth pairs in two ``ip -batch`` runs, then each namespace's addresses."""
        for h in self.plan:
            self.records.add("netns", name=self.netns(h.name))
        self.records.add("link", name=self.bridge)
        for h in self.plan:
            self.records.add("link", name=f"nl{self.index}-{h.number}")
        ip_batch([f"netns add {self.netns(h.name)}" for h in self.plan])
        lines = [f"link add {self.bridge} type bridge", f"link set {self.bridge} up"]
        for h in self.plan:
            veth = f"nl{self.index}-{h.number}"
            lines += [f"link add {veth} type veth peer name eth0 address {h.mac} netns {self.netns(h.name)}",
                      f"link set {veth} master {self.bridge} up"]
        ip_batch(lines)
        (self.state_dir / "neigh.batch").write_text("\n".join(hosts.neighbour_lines(self.plan)) + "\n")
        neigh = self.state_dir / "neigh.batch"
        # Full hosts configure their network from their holder; the others right here.
        _pmap(lambda h: run(in_netns(self.netns(h.name), ["sh", "-ec", hosts.net_script(h, neigh)])),
              [h for h in self.plan if not h.is_full])

    def _start_host(self, h: Host) -> None:
        hdir = self.state_dir / "hosts" / h.name
        script = hosts.holder_script(h, hdir, self.state_dir / "layer", self.state_dir / "neigh.batch")
        argv = ["nsenter", f"--net=/run/netns/{self.netns(h.name)}", "unshare", "--mount", "--uts",
                "--propagation", "private", "sh", "-ec", script]
        proc = self._spawn(f"holder:{h.name}", argv, f"{h.name}.holder.log", pipe=True)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else b""
        proc.stdout.close()
        if line.strip() != b"ready":
            log = (self.state_dir / "logs" / f"{h.name}.holder.log").read_text().strip().splitlines()
            raise LabError(f"host {h.name} did not start: {log[-1] if log else 'no output'}")
        self._start_sshd(h.name)

    def _start_sshd(self, host: str, extra: Sequence[str] = ()) -> None:
        log = self.state_dir / "logs" / f"{host}.sshd.log"
        self._spawn(f"sshd:{host}", in_host(self.holder(host), hosts.sshd_argv(log, extra)), f"{host}.sshd.out")

    def _write_files(self) -> None:
        sd = self.state_dir
        data = self._data()
        api = self.hosts["lb-api"].address
        write_json(sd / "cluster.json", {"nodes": [{"name": h.name, "address": h.address, "roles": list(h.roles)}
                                                   for h in self.plan if h.kind == "node"]})
        kube = inventory.kubeconfig(f"https://{api}:6443", sd / "pki/lab-ca.crt", data["token"])
        self.kubeconfig_path.write_text(yaml.safe_dump(kube, sort_keys=False))
        self.kubeconfig_path.chmod(0o600)
        inv = inventory.inventory(self.spec, self.plan, sd, self.kubeconfig_path)
        inventory.write_inventory(self.inventory_path, inv, self.spec)
        # `ip netns exec` bind-mounts these over /etc: the runner gets the lab resolver and trust store.
        runner_etc = Path("/etc/netns") / self.netns("nova-ctl")
        self.records.add("etc-netns", path=str(runner_etc))
        runner_etc.mkdir(parents=True, exist_ok=True)
        (runner_etc / "resolv.conf").write_text(self._resolv_conf())
        run(["cp", "-a", "/etc/ssl", str(runner_etc / "ssl")])
        run(["cp", "-a", f"{sd}/layer/etc/ssl/.", str(runner_etc / "ssl")])
        if "proxy" in self.hosts:
            proxy_etc = Path("/etc/netns") / self.netns("proxy")
            self.records.add("etc-netns", path=str(proxy_etc))
            proxy_etc.mkdir(parents=True, exist_ok=True)
            (proxy_etc / "resolv.conf").write_text(self._resolv_conf())

    def _server(self, key: str, host: str, kind: str, cfg: dict[str, Any]) -> Path:
        """Start server program ``kind`` in ``host`` (a service/lb namespace, or a full host)."""
        sd = self.state_dir
        ready_file = sd / "run" / f"{key.replace(':', '-')}.ready"
        ready_file.unlink(missing_ok=True)
        cfg_file = sd / "servers" / f"{key.replace(':', '-')}.json"
        write_json(cfg_file, {**cfg, "flags": str(sd / "flags"), "ready": str(ready_file)})
        argv = ["env", f"PYTHONPATH={self._server_code()}", sys.executable, "-m", "nova_lab.servers", kind,
                str(cfg_file)]
        h = self._host(host)
        argv = in_host(self.holder(host), argv) if h.is_full else in_netns(self.netns(host), argv)
        self._spawn(key, argv, f"{key.replace(':', '-')}.log")
        return ready_file

    def _server_code(self) -> Path:
        """A folder holding the server programs' package, visible inside every host.

        A full host mounts a tmpfs over /tmp, so a checkout (or an editable install) under /tmp is invisible
        there: the servers run from a copy in the lab's state folder instead.
        """
        code = self.state_dir / "py"
        if not (code / "nova_lab").is_dir():
            # Agents start in parallel: each copies to a folder of its own, the first rename wins.
            staging = code / f".nova_lab.{os.getpid()}.{secrets.token_hex(4)}"
            shutil.copytree(Path(__file__).resolve().parent, staging, ignore=shutil.ignore_patterns("__pycache__"))
            try:
                staging.rename(code / "nova_lab")
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
        return code

    def _start_services(self) -> None:
        sd, h = self.state_dir, self.hosts
        pk = sd / "pki"
        self._sync_dns(reload=False)
        for name in ("dns-1", "dns-2"):
            argv = dns.dnsmasq_argv(h[name].address, sd / "dns/records.hosts", sd / "logs" / f"{name}.queries.log")
            self._spawn(f"dnsmasq:{name}", in_netns(self.netns(name), argv), f"{name}.log")
        ready: list[Path] = []
        rogue = {"rogue_cert": str(pk / "rogue.crt"), "rogue_key": str(pk / "rogue.key")}
        if "vendor" in h:
            a = h["vendor"].address
            ready.append(self._server("server:vendor", "vendor", "tls", {
                "name": "vendor", "listen": [[a, 443], [a, 8140]], "cert": str(pk / "vendor.crt"),
                "key": str(pk / "vendor.key"), "rogue_flag": "untrusted-ca-vendor", **rogue}))
        if "universe" in h:
            ready.append(self._server("server:universe", "universe", "tls", {
                "name": "universe", "listen": [[h["universe"].address, 443]], "cert": str(pk / "universe.crt"),
                "key": str(pk / "universe.key"), "rogue_flag": "untrusted-ca-universe", **rogue,
                "files": {"/ca/ca.crt": str(pk / "universe-ca.crt")}}))
        if "proxy" in h:
            ready.append(self._server("server:proxy", "proxy", "proxy",
                                      {"address": h["proxy"].address, "port": 3128, "deny_flag": "proxy-deny",
                                       "deny": list(VENDOR_NAMES)}))
        for lb, cfg in self._balancers().items():
            ready.append(self._server(f"lb:{lb}", lb, "lb", cfg))
        self._sync_nft()
        self._wait("DNS servers", lambda: all(
            _listening(pid, "udp", 53) for n in ("dns-1", "dns-2") if (pid := self._pid(f"dnsmasq:{n}"))))
        self._wait("servers", lambda: all(p.exists() for p in ready))

    def _balancers(self) -> dict[str, dict[str, Any]]:
        pk = self.state_dir / "pki"
        masters = [h.address for h in self.plan if "master" in h.roles]
        infra = [h.address for h in self.plan if "infra" in h.roles]
        ingress = [h.address for h in self.plan if "ingress" in h.roles] or [
            h.address for h in self.plan if "worker" in h.roles]

        def fe(port: int, backends: list[str], health: dict[str, Any] | None, proto: str = "tcp") -> dict[str, Any]:
            return {"port": port, "proto": proto, "backends": [[a, port] for a in backends], "health": health}

        def web(backends: list[str]) -> list[dict[str, Any]]:
            return [fe(80, backends, {"scheme": "http", "path": "/healthz", "port": 80}),
                    fe(443, backends, {"scheme": "https", "path": "/healthz", "port": 443})]

        api = fe(6443, masters, {"scheme": "https", "path": "/readyz", "port": 6443})
        # DNS backends are checked like HAProxy's default check: a TCP connect to 53 (UDP follows that health).
        dns_health = {"scheme": "tcp", "port": 53}
        api["terminate"] = {"cert": str(pk / "lb-api.crt"), "key": str(pk / "lb-api.key"),
                            "flag": "tls-terminate-api"}
        return {
            "lb-api": {"address": self.hosts["lb-api"].address, "frontends": [api]},
            "lb-infra": {"address": self.hosts["lb-infra"].address,
                         "frontends": [*web(infra), fe(53, infra, dns_health), fe(53, infra, dns_health, "udp")]},
            "lb-ingress": {"address": self.hosts["lb-ingress"].address, "frontends": web(ingress)},
        }

    # --- using the lab --------------------------------------------------------------------------------

    def host_cmd(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run as root inside ``host``'s namespaces."""
        h = self._host(host)
        return in_host(self.holder(host), argv) if h.is_full else in_netns(self.netns(host), argv)

    def exec(self, host: str, cmd: str | Sequence[str], check: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` (a shell string or argv) as root inside ``host``'s namespaces."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return run(self.host_cmd(host, argv), check=check, timeout=timeout)

    def runner_cmd(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run inside nova-ctl's namespace (the runner, with the lab resolver)."""
        return in_netns(self.netns("nova-ctl"), argv)

    def wait_healthchecks(self, timeout: float = 30) -> None:
        """Wait until every balancer has run a whole round of backend healthchecks begun after this call.

        Call it after changing a backend (a fault): from then on the balancers route by the new health.
        """
        since = time.time()
        files = [p.with_suffix(".checked") for p in (self.state_dir / "run").glob("lb-*.ready")]

        def checked() -> bool:
            try:
                return all(float(f.read_text()) > since for f in files)
            except (FileNotFoundError, ValueError):
                return False

        self._wait("balancer healthchecks", checked, timeout)

    def sshd_logins(self, host: str) -> int:
        """How many public-key logins ``host``'s sshd has accepted."""
        try:
            text = (self.state_dir / "logs" / f"{self._host(host).name}.sshd.log").read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return text.count("Accepted publickey")

    @property
    def installed(self) -> bool:
        """Whether the lab is in installed (post-install) mode."""
        return bool(self._data().get("installed"))

    def set_installed(self, on: bool) -> None:
        """Switch the post-install services (API, ingress healthz, role ports, kubelet, ...) on or off."""
        nodes = [h for h in self.plan if h.kind == "node"]
        if not on:
            _pmap(lambda h: self._stop(f"agent:{h.name}"), nodes)
            _pmap(lambda h: self.exec(h.name, _NODE_FILES_OFF, check=False), nodes)
            _pmap(lambda h: self._stop(f"dns53:{h.name}"), [h for h in nodes if "infra" in h.roles])
            with self._locked() as data:
                data["installed"] = False
            return
        ready = _pmap(self._start_agent, [h for h in nodes if self._pid(f"agent:{h.name}") is None])
        node_files = self._node_files_on()  # written once: the hosts copy the same files in parallel
        _pmap(lambda h: self.exec(h.name, node_files), nodes)
        for h in nodes:
            if "infra" in h.roles and self._pid(f"dns53:{h.name}") is None:
                log = self.state_dir / "logs" / f"{h.name}.dns.queries.log"
                argv = dns.dnsmasq_argv(h.address, self.state_dir / "dns/records.hosts", log)
                self._spawn(f"dns53:{h.name}", in_host(self.holder(h.name), argv), f"{h.name}.dns.log")
        self._wait("installed-mode services", lambda: all(p.exists() for p in ready), timeout=60)
        with self._locked() as data:
            data["installed"] = True

    def _node_files_on(self) -> str:
        """What an installed node has on disk: kubelet and kubeadm on the PATH, a CNI network config.

        The stand-in binaries only print their version; they live in a tmpfs over /usr/local/bin of the host's
        own mount namespace, so the machine's /usr/local/bin is untouched.
        """
        bin_dir = self.state_dir / "node-bin"
        bin_dir.mkdir(exist_ok=True)
        for name, answer in (("kubelet", f"Kubernetes {K8S_VERSION}"), ("kubeadm", K8S_VERSION)):
            path = bin_dir / name
            path.write_text(f"#!/bin/sh\necho '{answer}'\n")
            path.chmod(0o755)
        return (f"mountpoint -q /usr/local/bin || mount -t tmpfs -o mode=0755 nova-bin /usr/local/bin; "
                f"cp -p {bin_dir}/kubelet {bin_dir}/kubeadm /usr/local/bin/; mkdir -p /etc/cni/net.d; "
                f"printf '%s\\n' '{_CNI_CONFIG}' > /etc/cni/net.d/10-nova-lab.conflist; {_KERNEL_ON}")

    def _start_agent(self, h: Host) -> Path:
        pk = self.state_dir / "pki"
        tcp = set(_ALL_TCP)
        web_roles = {"infra", "ingress"} if self.spec.ingress else {"infra", "ingress", "worker"}
        for r in h.roles:
            tcp |= set(_ROLE_TCP.get("ingress" if r in web_roles and r != "infra" else r, ()))
        tcp |= self._catalog_ports(h)
        first_master = min((x.name for x in self.hosts.values() if "master" in x.roles), default=None)
        if h.name != first_master:
            tcp -= set(_FIRST_MASTER_TCP)
        http: list[dict[str, Any]] = []
        if set(h.roles) & web_roles:
            http = [{"port": 80, "path": "/healthz"},
                    {"port": 443, "path": "/healthz", "cert": str(pk / "ingress.crt"), "key": str(pk / "ingress.key")}]
        kubeapi = None
        if "master" in h.roles:
            kubeapi = {"cert": str(pk / "api.crt"), "key": str(pk / "api.key"), "token": self._data()["token"],
                       "cluster": str(self.state_dir / "cluster.json"), "address": self.hosts["lb-api"].address}
        taken = {22, 53, 80, 443, 6443, 10248}
        cfg = {"tcp": sorted(tcp - taken), "udp": list(_UDP), "http": http, "kubeapi": kubeapi,
               "health_flag": f"health503-{h.name}", "containerd_socket": hosts.CONTAINERD_SOCKET}
        return self._server(f"agent:{h.name}", h.name, "node", cfg)

    def _catalog_ports(self, h: Host) -> set[int]:
        """TCP ports the catalog's firewall rows send to ``h``'s roles (beyond the built-in table)."""
        sel = {"masters": "master", "infra": "infra", "ingress": "ingress", "workers": "worker"}
        out: set[int] = set()
        with contextlib.suppress(Exception):  # the catalog is optional for the lab
            from _pytest_nova.catalog import load_catalog

            for r in load_catalog().by_area("firewall"):
                if r.protocol != "tcp" or not r.port:
                    continue
                if any(t == "nodes" or sel.get(t) in h.roles for t in r.targets):
                    out.add(int(r.port))
        return out

    # --- faults ---------------------------------------------------------------------------------------

    def active_faults(self) -> list[faults.Fault]:
        """The faults switched on, in the order they were applied."""
        return [faults.Fault(e["kind"], tuple((k, v) for k, v in e["params"])) for e in self._data().get("faults", [])]

    def apply(self, fault: faults.Fault | str, **params: object) -> faults.Fault:
        """Switch ``fault`` on (a no-op when it is on already); returns the resolved Fault."""
        f = self._check(faults.resolve(fault, **params))
        if any(e["key"] == f.key for e in self._data().get("faults", [])):
            return f
        # Host edits run outside the lock: they may start or stop processes, which take it too.
        undo = self._host_fault(f, True, {}) if f.kind in faults.HOST_KINDS else {}
        with self._locked() as data:
            data["faults"].append({"key": f.key, "kind": f.kind, "params": list(f.params), "undo": undo})
        self._sync(f.kind)
        return f

    def revert(self, fault: faults.Fault | str, **params: object) -> None:
        """Switch ``fault`` off (a no-op when it is not on)."""
        f = faults.resolve(fault, **params)
        entry = next((e for e in self._data().get("faults", []) if e["key"] == f.key), None)
        if entry is None:
            return
        if f.kind in faults.HOST_KINDS:
            self._host_fault(f, False, entry["undo"])
        with self._locked() as data:
            data["faults"] = [e for e in data["faults"] if e["key"] != f.key]
        self._sync(f.kind)

    @contextlib.contextmanager
    def fault(self, fault: faults.Fault | str, **params: object) -> Iterator[faults.Fault]:
        """Apply ``fault`` for the duration of the ``with`` block."""
        f = self.apply(fault, **params)
        try:
            yield f
        finally:
            self.revert(f)

    def _check(self, f: faults.Fault) -> faults.Fault:
        p = dict(f.params)
        try:
            for key in ("source", "destination"):
                if key in p:
                    if not faults.select(p[key], self.plan):
                        raise LabError(f"fault {f.key}: {key} {p[key]!r} selects no host")
        except ValueError as exc:
            raise LabError(f"fault {f.key}: {exc}") from None
        for key in ("host", "node"):
            if key in p and p[key] not in self.hosts:
                raise LabError(f"fault {f.key}: lab {self.name!r} has no host {p[key]!r}")
        if f.kind == "proxy-deny" and "proxy" not in self.hosts:
            raise LabError(f"fault {f.key}: lab {self.name!r} has no HTTP proxy (boot it with proxy=True)")
        if f.kind in faults.HOST_KINDS and not self.hosts[p["host"]].is_full:
            raise LabError(f"fault {f.key}: {p['host']} is not a cluster host or workstation")
        return f

    def _host_fault(self, f: faults.Fault, on: bool, undo: dict[str, str]) -> dict[str, str]:
        """Make (``on``) or undo one host-editing fault; returns what is needed to undo it."""
        host = f["host"]
        if f.kind == "sshd-down":
            if on:
                self._stop(f"sshd:{host}")
            else:
                self._start_sshd(host)
                self._wait(f"sshd of {host}", lambda: _listening(self.holder(host), "tcp", 22))
            return {}
        if f.kind == "noisy-shell":
            rc = f"{hosts.HOME}/.bashrc"
            if on:
                old = self.exec(host, f"cat {rc} 2>/dev/null || true").stdout
                banner = shlex.quote(f["text"])
                # At the top, before the usual "not interactive: return", as corporate banners are.
                new = f"echo {banner}\necho {banner} >&2\n{old}"
                run(in_host(self.holder(host), ["sh", "-c", f"cat > {rc}; chown {hosts.USER}: {rc}"]), input=new)
                return {"bashrc": old}
            run(in_host(self.holder(host), ["sh", "-c", f"cat > {rc}"]), input=undo["bashrc"])
            return {}
        if f.kind == "sshd-limits":
            self._stop(f"sshd:{host}")
            extra = (["-o", f"MaxSessions={int(f['max_sessions'])}", "-o", f"MaxStartups={int(f['max_startups'])}"]
                     if on else [])
            self._start_sshd(host, extra)
            self._wait(f"sshd of {host}", lambda: _listening(self.holder(host), "tcp", 22))
            return {}
        if f.kind == "no-icmp":
            if on:
                old = self.exec(host, "cat /proc/sys/net/ipv4/ping_group_range").stdout.strip()
                self.exec(host, "echo '1 0' > /proc/sys/net/ipv4/ping_group_range; for p in /usr/bin/ping /bin/ping;"
                                " do [ -e $p ] && mount --bind /dev/null $p; done; true")
                return {"range": old}
            self.exec(host, f"echo {shlex.quote(undo['range'])} > /proc/sys/net/ipv4/ping_group_range; "
                            "for p in /usr/bin/ping /bin/ping; do umount $p 2>/dev/null; done; true")
            return {}
        if f.kind == "sudoers-missing":
            if on:
                self.exec(host, f"rm -f {hosts.SUDOERS_FILE}")
            else:
                self.exec(host, f"umask 0337; printf '%s' '{hosts.SUDOERS_LINE}' > {hosts.SUDOERS_FILE}; "
                                f"chmod 0440 {hosts.SUDOERS_FILE}")
            return {}
        if f.kind == "universe-ca-missing":
            certs = "/etc/ssl/certs"
            if on:
                # The Universe CA is the second of the layer's CAs (nova-lab-1.pem, its hash link, the bundle).
                ca = self.state_dir / "pki" / "universe-ca.crt"
                self.exec(host, f"cp -a {certs} {certs}.nova-fault && find {certs} -lname nova-lab-1.pem -delete && "
                                f"rm -f {certs}/nova-lab-1.pem && python3 -c \"import sys; p = sys.argv[1]; "
                                f"t = open(p).read().replace(open(sys.argv[2]).read(), ''); open(p, 'w').write(t)\" "
                                f"{certs}/ca-certificates.crt {ca}")
            else:
                self.exec(host, f"rm -rf {certs} && mv {certs}.nova-fault {certs}")
            return {}
        if f.kind in ("sudo-limited", "sudo-elsewhere"):
            restore = (f"rm -f {hosts.CLOUD_INIT_SUDOERS}; umask 0337; printf '%s' '{hosts.SUDOERS_LINE}' > "
                       f"{hosts.SUDOERS_FILE}; chmod 0440 {hosts.SUDOERS_FILE}")
            if not on:
                self.exec(host, restore)
            elif f.kind == "sudo-limited":
                self.exec(host, f"umask 0337; printf '%s ALL=(ALL) NOPASSWD: /usr/bin/true, /usr/bin/id\\n' "
                                f"{hosts.USER} > {hosts.SUDOERS_FILE}")
            else:
                # As cloud-init writes it for a user with sudo: ALL=(ALL) NOPASSWD:ALL.
                self.exec(host, f"umask 0337; rm -f {hosts.SUDOERS_FILE}; printf '# Created by cloud-init v. "
                                f"23.4\\n\\n# User rules for {hosts.USER}\\n{hosts.USER} ALL=(ALL) NOPASSWD:ALL"
                                f"\\n' > {hosts.CLOUD_INIT_SUDOERS}")
            return {}
        if f.kind == "wrong-mode":
            if on:
                old = self.exec(host, ["stat", "-c", "%a", f["path"]]).stdout.strip()
                self.exec(host, ["chmod", f["mode"], f["path"]])
                return {"mode": old}
            self.exec(host, ["chmod", undo["mode"], f["path"]])
            return {}
        if f.kind == "wrong-shell":
            if on:
                old = self.exec(host, ["getent", "passwd", hosts.USER]).stdout.strip().split(":")[-1]
                self.exec(host, ["usermod", "-s", f["shell"], hosts.USER])
                return {"shell": old}
            self.exec(host, ["usermod", "-s", undo["shell"], hosts.USER])
            return {}
        if f.kind == "public-resolver":
            if on:
                old = self.exec(host, ["cat", "/etc/resolv.conf"]).stdout
                self.exec(host, f"printf 'nameserver {f['nameserver']}\\n' > /etc/resolv.conf")
                return {"resolv": old}
            run(in_host(self.holder(host), ["sh", "-c", "cat > /etc/resolv.conf"]), input=undo["resolv"])
            return {}
        if f.kind == "docs-literal":
            if on:
                # Account 1 step 2 and account 2 step 2 of the docs, as they are written (umask 022 as on a stock
                # host); the key arrives on stdin where the docs have ~/.ssh/id_nova.pub on the machine.
                script = (f"umask 022\nrm -rf {hosts.HOME}/.ssh {hosts.SUDOERS_FILE}\n"
                          f"cat << EOF > {hosts.SUDOERS_FILE}\n{hosts.SUDOERS_LINE}EOF\n"
                          f"runuser -u {hosts.USER} -- sh -c 'umask 022; cd; mkdir ~/.ssh && "
                          "cat >> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys'\n")
                key = (self.state_dir / "id_nova.pub").read_text()
                run(self.host_cmd(host, ["sh", "-ec", script]), input=key)
            else:
                self.exec(host, f"chmod 0700 {hosts.HOME}/.ssh && chmod 0440 {hosts.SUDOERS_FILE}")
            return {}
        if f.kind == "ip-forward-off":
            if on:
                old = self.exec(host, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()
                self.exec(host, ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
                return {"value": old}
            self.exec(host, ["sysctl", "-qw", f"net.ipv4.ip_forward={undo['value']}"])
            return {}
        if f.kind == "cni-missing":
            if on:
                self.exec(host, "mkdir -p /etc/cni/net.d.nova-fault && mv /etc/cni/net.d/* /etc/cni/net.d.nova-fault/")
            else:
                self.exec(host, "mv /etc/cni/net.d.nova-fault/* /etc/cni/net.d/ && rmdir /etc/cni/net.d.nova-fault")
            return {}
        raise LabError(f"unknown host fault {f.kind}")

    def _sync(self, kind: str) -> None:
        if kind in faults.DNS_KINDS:
            self._sync_dns()
        elif kind in faults.NFT_KINDS:
            self._sync_nft()
        elif kind in faults.FLAG_KINDS:
            self._sync_flags()

    def _sync_dns(self, reload: bool = True) -> None:
        base = dns.lab_records(self.spec, self.plan)
        records = faults.dns_records(base, self.active_faults(), DOMAIN, self.plan)
        write_json(self.state_dir / "dns/records.json", records)
        target = self.state_dir / "dns/records.hosts"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(dns.hosts_file(records))
        tmp.replace(target)
        if reload:
            logs = {"dnsmasq:dns-1": "dns-1.queries.log", "dnsmasq:dns-2": "dns-2.queries.log",
                    **{f"dns53:{h.name}": f"{h.name}.dns.queries.log" for h in self.plan}}
            line = f"read {target} "

            def reads(log: str) -> int:
                try:
                    return (self.state_dir / "logs" / log).read_text(errors="replace").count(line)
                except FileNotFoundError:
                    return 0

            running = {key: log for key, log in logs.items() if self._pid(key)}
            before = {key: reads(log) for key, log in running.items()}
            for key in running:
                pid = self._pid(key)
                if pid:
                    os.kill(pid, signal.SIGHUP)
            # dnsmasq re-reads the file after SIGHUP in its own time, and logs each read.
            self._wait("DNS records reloaded", lambda: all(reads(log) > before[k] for k, log in running.items()),
                       timeout=10)

    def _sync_nft(self) -> None:
        base: dict[str, list[str]] = {}
        if self.spec.proxy:
            # Proxy mode: the "internet" only talks to the proxy.
            base["vendor"] = [f"ip saddr != {self.hosts['proxy'].address} tcp dport {{ 443, 8140 }} drop"]
        rules = faults.nft_rules(self.active_faults(), self.plan, base)
        with self._locked() as data:
            previous = set(data.get("nft_hosts", []))
            data["nft_hosts"] = sorted(rules)
        for host in sorted(previous | set(rules)):
            body = ""
            if rules.get(host):
                body = ("chain input {\n type filter hook input priority 0; policy accept;\n "
                        + "\n ".join(rules[host]) + "\n}")
            nft_sync(self.netns(host), _NFT_TABLE, body)

    def _sync_flags(self) -> None:
        servers = [s for s in ("vendor", "universe") if s in self.hosts]
        want = faults.flags(self.active_faults(), servers)
        folder = self.state_dir / "flags"
        for f in folder.iterdir():
            if f.name not in want:
                f.unlink()
        for name in want:
            (folder / name).touch()

    # --- status and teardown --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A summary: hosts, processes alive, mode and active faults."""
        data = self._data()
        pids = data.get("pids", {})
        alive = sum(1 for pid, start in pids.values() if proc_start_time(pid) == start)
        return {"name": self.name, "index": self.index, "state_dir": str(self.state_dir),
                "inventory": str(self.inventory_path), "mode": self.spec.mode, "proxy": self.spec.proxy,
                "installed": bool(data.get("installed")), "hosts": len(self.plan),
                "processes": f"{alive}/{len(pids)} alive", "faults": [e["key"] for e in data.get("faults", [])]}

    def down(self) -> None:
        """Tear the lab down: every recorded process, namespace, link and file."""
        for proc in self._procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        teardown(self.name)
        for proc in self._procs.values():
            with contextlib.suppress(Exception):
                proc.wait(5)
        self._procs.clear()


def _ancestors() -> set[int]:
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def teardown(name: str) -> dict[str, int]:
    """Remove everything lab ``name`` recorded, from the records alone (works from a fresh process).

    Processes are killed by recorded pid (checked against their start time), then any process still
    inside one of the lab's network namespaces (ssh sessions, sudo, ...) is killed by namespace; never
    by process name. Returns counts of what was removed.
    """
    sd = state_dir(name)
    recs = Records(sd / "records.jsonl").read()
    counts = {"processes": 0, "netns": 0, "links": 0}
    pids = [(int(r["pid"]), r["start"]) for r in recs if r["kind"] == "pid"]
    alive = [pid for pid, start in pids if start is not None and proc_start_time(pid) == start]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    counts["processes"] += len(alive)
    names = list(dict.fromkeys(r["name"] for r in recs if r["kind"] == "netns"))
    present = [n for n in names if Path(f"/run/netns/{n}").exists()]
    inodes = set()
    for n in present:
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f"/run/netns/{n}").st_ino)
    if inodes:
        keep = _ancestors()
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) in keep:
                continue
            try:
                if os.stat(d / "ns/net").st_ino in inodes:
                    os.kill(int(d.name), signal.SIGKILL)
                    counts["processes"] += 1
            except (OSError, ProcessLookupError):
                continue
    deadline = time.monotonic() + 5
    while any(proc_start_time(p) is not None for p in alive) and time.monotonic() < deadline:
        time.sleep(0.02)
    if present:
        ip_batch([f"netns del {n}" for n in present], check=False)
        counts["netns"] = len(present)
    links = list(dict.fromkeys(r["name"] for r in recs if r["kind"] == "link"))
    existing = set(os.listdir("/sys/class/net"))
    gone = [ln for ln in reversed(links) if ln in existing]
    if gone:
        ip_batch([f"link del {ln}" for ln in gone], check=False)
        counts["links"] = len(gone)
    for r in recs:
        if r["kind"] == "etc-netns":
            shutil.rmtree(r["path"], ignore_errors=True)
    shutil.rmtree(sd, ignore_errors=True)
    return counts
