"""Probe many (address, port, protocol) destinations from this host at once; print one framed JSON line.

Sent by pytest-nova to a source host and run there with the host's own python3 (stdlib only, 3.6+).
Parameters: one JSON line on stdin after the script; the probes come in groups of one port (see :func:`batch`).
Probes run concurrently, at most ``concurrency`` in flight, each bounded by ``timeout``. A destination given as
a host name is resolved first, here (``unresolved`` if it does not resolve):

- tcp:  a non-blocking connect: ``open``, ``refused`` (RST or ICMP port unreachable), ``unreachable``, ``filtered``;
- udp:  a datagram carrying the run's token, resent twice; ``open`` when it comes back (the temporary echo
        listener), ``refused`` on ICMP port unreachable, ``silent`` when neither happens;
- icmp: an echo request (resent twice within the timeout) through an unprivileged ICMP socket (raw socket as
        root, else the ping binary);
- ipip: an IP protocol 4 packet whose inner packet carries the token (raw socket, root only); the receiver on the
        destination reports it, so the answer here is only ``sent``.

A probe that got no answer (``filtered``, or ``silent`` where the row asks for a retry: the destination's echo
listener is there) is not called dropped at once: with ``retries`` (``[[timeout factor, starts per second],
...]``) it is probed again with growing patience, each later pass paced to a few starts per second so the retries
cannot cause the loss they look for. Retries start as soon as a probe times out, while the rest of the batch
goes on, and only while they can end before ``budget`` seconds. ``passes`` in the answer counts the probes
started in each pass.

Nothing on the host is changed. The script exits early when its stdin closes (the controller went away) and at
the latest at ``deadline`` seconds.
"""
# ruff: noqa: UP006, UP035, UP045
# (typing.Dict, Optional: this file runs on the hosts' python3, which may be as old as 3.6)

import errno
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

INNER_PROTO = 253  # RFC 3692 experimental: no host stack acts on the inner packet
IPIP = 4
UDP_SENDS = 3  # datagrams (and ICMP echo requests) per probe, spread over its timeout
IPIP_SENDS = 2  # copies of each IPIP packet: one lost packet is no drop
Result = Tuple[str, str]


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))  # type: int
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ipv4_header(src: str, dst: str, proto: int, payload_len: int) -> bytes:
    """A minimal IPv4 header (no options) with its checksum."""
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:]


def errno_result(code: int) -> Result:
    """The verdict class of a socket error."""
    if code == errno.ECONNREFUSED:
        return "refused", os.strerror(code)
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
        return "unreachable", os.strerror(code)
    if code in (errno.EPERM, errno.EACCES):
        # A local firewall (nftables/iptables OUTPUT) refused the packet on this host.
        return "blocked", os.strerror(code)
    if code == errno.ETIMEDOUT:
        return "filtered", os.strerror(code)
    return "error", os.strerror(code)


class Probe:
    """One destination in flight."""

    def __init__(self, pid: str, address: str, port: Optional[int], proto: str, token: str,
                 retry: bool = False) -> None:
        self.id, self.address, self.port, self.proto, self.token = pid, address, port, proto, token
        self.retry = retry  # no answer is probed again (the runner knows the destination answers when open)
        self.attempt = 0  # 0: the first pass; n: the n-th retry
        self.timeout = 0.0
        self.sock = None  # type: Optional[socket.socket]
        self.deadline = 0.0
        self.next_send = 0.0
        self.sends = 0
        self.seq = 0
        self.raw_icmp = False
        self.packet = b""  # the ICMP echo request, resent as is


class Prober:
    """A single-threaded event loop over non-blocking sockets (threads would cost far more at 500+ probes)."""

    def __init__(self, params: Dict[str, Any]) -> None:
        self.timeout = float(params["timeout"])
        self.limit = max(1, int(params.get("concurrency", 64)))
        # At most this many probes in flight to one destination: the batches of all sources run at once.
        self.per_target = max(1, int(params.get("per_target", 8)))
        self.in_flight = {}  # type: Dict[str, int]
        self.source = params.get("source_address") or ""
        self.magic = str(params.get("magic", "nova-probe")).encode()
        self.results = {}  # type: Dict[str, Result]
        self.sel = selectors.DefaultSelector()
        self.active = {}  # type: Dict[int, Probe]
        self.icmp_mode = self._icmp_mode()
        self.ipip_sock = None  # type: Optional[socket.socket]
        self.ipip_error = ""
        self.ping_threads = []  # type: List[threading.Thread]
        self.ping_slots = threading.BoundedSemaphore(16)
        self.lock = threading.Lock()
        self.seq = os.getpid() & 0x7FFF
        # Later passes: (timeout factor, starts per second); a retry starts only if it can end within the budget.
        self.retries = [(float(f), float(r)) for f, r in params.get("retries", [])]  # type: List[Tuple[float, float]]
        self.started = time.monotonic()
        self.budget = float(params.get("budget", 0)) or float("inf")
        self.passes = [0] * (1 + len(self.retries))
        self.again = [[] for _ in self.retries]  # type: List[List[Probe]]
        self.next_retry = [0.0] * len(self.retries)

    @staticmethod
    def _icmp_mode() -> str:
        for mode, kind in (("dgram", socket.SOCK_DGRAM), ("raw", socket.SOCK_RAW)):
            try:
                socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
                return mode
            except OSError:
                continue
        return "ping"

    def resolve(self, probes: List[Probe]) -> List[Probe]:
        """Give every probe an IPv4 address: a host name (the HTTP proxy) is resolved here, on the source, once.

        A name that does not resolve is that probe's result (``unresolved``); the others are returned.
        """
        found = {}  # type: Dict[str, Result]
        ready = []
        for p in probes:
            try:
                socket.inet_pton(socket.AF_INET, p.address)
                ready.append(p)
                continue
            except OSError:
                pass
            if p.address not in found:
                try:
                    infos = socket.getaddrinfo(p.address, None, socket.AF_INET, socket.SOCK_STREAM)
                    found[p.address] = ("ok", str(infos[0][4][0]))
                except (socket.gaierror, UnicodeError, IndexError) as exc:
                    found[p.address] = ("unresolved", getattr(exc, "strerror", None) or str(exc) or "no address")
            status, value = found[p.address]
            if status == "ok":
                p.address = value
                ready.append(p)
            else:
                self.results[p.id] = (status, value)
        return ready

    def run(self, probes: List[Probe]) -> Dict[str, Result]:
        """Probe everything, at most ``limit`` at a time; IPIP packets first, they need no waiting."""
        probes = self.resolve(probes)
        pending = [p for p in probes if p.proto == "ipip"] + [p for p in probes if p.proto != "ipip"]
        while pending or self.active or any(self.again):
            if len(self.active) < self.limit:
                self._start_retries()
                pending = self._start_some(pending)
            self._poll()
        for t in self.ping_threads:
            t.join()
        return self.results

    def _start_some(self, pending: List[Probe]) -> List[Probe]:
        """Start probes in order while slots are free, skipping destinations that have enough in flight."""
        waiting = []  # type: List[Probe]
        for i, p in enumerate(pending):
            if len(self.active) >= self.limit:
                return waiting + pending[i:]
            if self.in_flight.get(p.address, 0) >= self.per_target:
                waiting.append(p)
                continue
            self._start(p)
        return waiting

    def _start_retries(self) -> None:
        """Start the retries that are due: each pass at its own pace, later passes first (they waited longest)."""
        now = time.monotonic()
        for k in reversed(range(len(self.retries))):
            queue = self.again[k]
            while queue and now >= self.next_retry[k] and len(self.active) < self.limit:
                p = queue.pop(0)
                self.next_retry[k] = max(now, self.next_retry[k]) + 1.0 / self.retries[k][1]
                p.attempt = k + 1
                self._start(p)

    def _retried(self, p: Probe, result: Result) -> bool:
        """Queue ``p`` for its next pass if ``result`` is no answer and a retry may still end in time."""
        no_answer = result[0] == ("silent" if p.proto == "udp" else "filtered")
        if not (p.retry and no_answer and p.attempt < len(self.retries)):
            return False
        wait = self.timeout * self.retries[p.attempt][0]
        if time.monotonic() + wait > self.started + self.budget:
            return False
        p.sock, p.sends = None, 0
        self.again[p.attempt].append(p)
        return True

    def _finish(self, p: Probe, result: Result) -> None:
        if p.sock is not None and p.sock.fileno() in self.active:
            self.in_flight[p.address] = self.in_flight.get(p.address, 1) - 1
        if p.sock is not None:
            self.active.pop(p.sock.fileno(), None)
            try:
                self.sel.unregister(p.sock)
            except (KeyError, ValueError):
                pass
            p.sock.close()
        if self._retried(p, result):
            return
        with self.lock:
            self.results[p.id] = result

    def _start(self, p: Probe) -> None:
        now = time.monotonic()
        self.passes[p.attempt] += 1
        p.timeout = self.timeout * (self.retries[p.attempt - 1][0] if p.attempt else 1.0)
        p.deadline = now + p.timeout
        try:
            if p.proto == "tcp":
                self._start_tcp(p)
            elif p.proto == "udp":
                self._start_udp(p, now)
            elif p.proto == "icmp":
                self._start_icmp(p)
            elif p.proto == "ipip":
                self._send_ipip(p)
            else:
                self.results[p.id] = ("error", "unknown protocol " + p.proto)
        except OSError as exc:
            self._finish(p, errno_result(exc.errno or 0) if exc.errno else ("error", str(exc)))

    def _watch(self, p: Probe, sock: socket.socket, events: int) -> None:
        p.sock = sock
        self.active[sock.fileno()] = p
        self.in_flight[p.address] = self.in_flight.get(p.address, 0) + 1
        self.sel.register(sock, events, p)

    def _start_tcp(self, p: Probe) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        self._watch(p, sock, selectors.EVENT_WRITE)
        code = sock.connect_ex((p.address, int(p.port or 0)))
        if code not in (0, errno.EINPROGRESS):
            self._finish(p, errno_result(code))

    def _start_udp(self, p: Probe, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect((p.address, int(p.port or 0)))
        self._watch(p, sock, selectors.EVENT_READ)
        self._send_udp(p, now)

    def _send_udp(self, p: Probe, now: float) -> None:
        if p.sock is None:  # finished already
            return
        p.sends += 1
        p.next_send = now + p.timeout / UDP_SENDS
        try:
            p.sock.send(self.magic + b" " + p.token.encode())
        except OSError as exc:
            # An ICMP error from an earlier send surfaces here.
            self._finish(p, errno_result(exc.errno or 0))

    def _start_icmp(self, p: Probe) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        p.seq = self.seq
        if self.icmp_mode == "ping":
            self._start_ping(p)
            return
        kind = socket.SOCK_DGRAM if self.icmp_mode == "dgram" else socket.SOCK_RAW
        p.raw_icmp = kind == socket.SOCK_RAW
        sock = socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP)
        sock.setblocking(False)
        self._watch(p, sock, selectors.EVENT_READ)
        body = self.magic + b" " + p.token.encode()
        head = struct.pack("!BBHHH", 8, 0, 0, os.getpid() & 0xFFFF, p.seq)
        p.packet = head[:2] + struct.pack("!H", checksum(head + body)) + head[4:] + body
        self._send_icmp(p, time.monotonic())

    def _send_icmp(self, p: Probe, now: float) -> None:
        """(Re)send the echo request: like a UDP datagram, up to three times within the timeout."""
        if p.sock is None:  # finished already
            return
        p.sends += 1
        p.next_send = now + p.timeout / UDP_SENDS
        p.sock.sendto(p.packet, (p.address, 0))

    def _start_ping(self, p: Probe) -> None:
        def ping() -> None:
            with self.ping_slots:
                wait = str(max(1, round(self.timeout)))
                try:
                    rc = subprocess.call(
                        # -w: one echo a second until a reply or the deadline, so one lost packet is no drop.
                        ["ping", "-n", "-c", "1", "-w", wait, p.address],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                except OSError:
                    result = ("unprovable", no_icmp())
                else:
                    result = ("open", "echo reply") if rc == 0 else ("filtered", "no echo reply (ping)")
            with self.lock:
                self.results[p.id] = result

        thread = threading.Thread(target=ping, daemon=True)
        thread.start()
        self.ping_threads.append(thread)

    def _send_ipip(self, p: Probe) -> None:
        if self.ipip_sock is None and not self.ipip_error:
            try:
                self.ipip_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPIP)
            except OSError as exc:
                self.ipip_error = "no raw socket for IP protocol 4: " + os.strerror(exc.errno or 0)
        if self.ipip_sock is None:
            self.results[p.id] = ("error", self.ipip_error)
            return
        payload = self.magic + b" " + p.token.encode()
        inner = ipv4_header(self.source or "0.0.0.0", p.address, INNER_PROTO, len(payload)) + payload
        try:
            for _ in range(IPIP_SENDS):
                self.ipip_sock.sendto(inner, (p.address, 0))
            self.results[p.id] = ("sent", "")
        except OSError as exc:
            self.results[p.id] = errno_result(exc.errno or 0)

    def _poll(self) -> None:
        if not self.active:
            due = [self.next_retry[k] for k, queue in enumerate(self.again) if queue]
            if due:
                time.sleep(max(0.0, min(due) - time.monotonic()))
            return
        now = time.monotonic()
        wake = min(self._wake(p) for p in self.active.values())
        for k, queue in enumerate(self.again):
            if queue and len(self.active) < self.limit:
                wake = min(wake, self.next_retry[k])
        for key, _ in self.sel.select(max(0.0, wake - now)):
            p = key.data
            if p.sock is None or p.sock.fileno() not in self.active:
                continue
            if p.proto == "tcp":
                code = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                self._finish(p, ("open", "") if code == 0 else errno_result(code))
            elif p.proto == "udp":
                self._read_udp(p)
            elif p.proto == "icmp":
                self._read_icmp(p)
        now = time.monotonic()
        for p in list(self.active.values()):
            if now >= p.deadline:
                # A silent UDP probe names its local end: the destination's conntrack may hold its flow.
                self._finish(p, ("silent", self._local(p)) if p.proto == "udp" else ("filtered", ""))
            elif p.proto == "udp" and now >= p.next_send and p.sends < UDP_SENDS:
                self._send_udp(p, now)
            elif p.proto == "icmp" and now >= p.next_send and p.sends < UDP_SENDS:
                try:
                    self._send_icmp(p, now)
                except OSError as exc:
                    self._finish(p, errno_result(exc.errno or 0))

    @staticmethod
    def _local(p: Probe) -> str:
        try:
            address, port = p.sock.getsockname() if p.sock is not None else ("", 0)
            return f"{address}:{port}"
        except OSError:
            return ""

    @staticmethod
    def _wake(p: Probe) -> float:
        if p.proto in ("udp", "icmp") and p.sends < UDP_SENDS:
            return min(p.deadline, p.next_send)
        return p.deadline

    def _read_udp(self, p: Probe) -> None:
        if p.sock is None:  # finished already
            return
        try:
            data = p.sock.recv(2048)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self._finish(p, errno_result(exc.errno or 0))
            return
        # A real service may answer with anything: any datagram proves the path.
        self._finish(p, ("open", "echo" if data.endswith(p.token.encode()) else "answer"))

    def _read_icmp(self, p: Probe) -> None:
        if p.sock is None:  # finished already
            return
        try:
            data, peer = p.sock.recvfrom(4096)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self._finish(p, errno_result(exc.errno or 0))
            return
        if p.raw_icmp:
            # A raw socket sees every ICMP packet: keep only the echo reply from this target.
            if peer[0] != p.address or len(data) < 28:
                return
            data = data[(data[0] & 0x0F) * 4 :]
        if len(data) >= 8 and data[0] == 0 and struct.unpack("!H", data[6:8])[0] == p.seq:
            self._finish(p, ("open", ""))


def no_icmp() -> str:
    """Why this host cannot send an ICMP echo request at all."""
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as f:
            low, high = f.read().split()[:2]
    except (OSError, ValueError):
        low, high = "?", "?"
    return ("no ICMP socket and no usable ping binary: an unprivileged ICMP socket needs the group " +
            str(os.getegid()) + " in net.ipv4.ping_group_range (" + low + " " + high + "), a raw one needs root")


def lifeline(stop_after: float) -> None:
    """Exit when stdin closes (the controller is gone) or the deadline passes."""

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.readline():
                pass
        except (OSError, ValueError):
            pass
        os._exit(3)

    def watch_clock() -> None:
        time.sleep(stop_after)
        os._exit(4)

    for target in (watch_stdin, watch_clock):
        threading.Thread(target=target, daemon=True).start()


def batch(params: Dict[str, Any]) -> List[Probe]:
    """The probes of ``groups``, ordered by destination, the destinations rotated by ``rotate``.

    A group is ``[port, protocol, retry, [address, ...]]``; ``retry`` is 0 or 1 for every address, or a list of
    one flag per address. Probe ``i`` is the ``i``-th address over all groups: the answer lists the results in
    that order. Grouping by destination and rotating (each source by its own offset) spreads the load of the
    batches running at once over the hosts instead of all hitting the first one together.
    """
    token = str(params.get("token", ""))
    probes = []  # type: List[Probe]
    for port, proto, retry, addresses in params["groups"]:
        for j, address in enumerate(addresses):
            i = len(probes)
            flag = retry[j] if isinstance(retry, list) else retry
            # An IPIP packet carries the source's token: the receiver reports it, the receiver is the target.
            probes.append(Probe(str(i), str(address), port, str(proto), token if proto == "ipip" else str(i),
                                bool(flag)))
    rank = {}  # type: Dict[str, int]
    for p in probes:
        rank.setdefault(p.address, len(rank))
    if rank:
        k, n = int(params.get("rotate", 0)) % len(rank), len(rank)
        probes.sort(key=lambda p: (rank[p.address] - k) % n)
    return probes


def answers(probes: List[Probe], results: Dict[str, Result]) -> List[Any]:
    """The results in probe-id order: the status word alone when there is no detail, and for every ``open``."""
    out = []  # type: List[Any]
    for i in range(len(probes)):
        status, detail = results.get(str(i), ("error", "not probed"))
        out.append([status, detail] if detail and status != "open" else status)
    return out


def probe(params: Dict[str, Any]) -> Dict[str, Any]:
    """Probe the batch of ``params``; the answer the controller reads.

    Also called by a destination's listener script (``probes/listener.py``), which runs its own host's batch
    in-process when the controller sends it this script and the parameters.
    """
    probes = batch(params)
    started = time.monotonic()
    prober = Prober(params)
    results = answers(probes, prober.run(list(probes)))
    return {"results": results, "passes": prober.passes, "seconds": round(time.monotonic() - started, 3),
            "uid": os.geteuid()}


def main() -> None:
    """Read the parameters, probe, print the results."""
    params = json.loads(sys.stdin.buffer.readline().decode())
    if params.get("lifeline"):
        lifeline(float(params.get("deadline", 300)))
    out = probe(params)
    # Framed: the controller reads only lines that start with the run's marker.
    sys.stdout.write(str(params.get("frame", "")) + " " + json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
