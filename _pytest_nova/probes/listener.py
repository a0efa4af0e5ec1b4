"""Temporary listeners on a destination host for the firewall probes; they vanish when this script ends.

Sent by pytest-nova and run with the host's own python3 (stdlib only, 3.6+), under ``sudo -n`` where allowed
(ports below 1024, the IPIP receiver and naming the owner of a taken port need root). Parameters: one JSON line
on stdin after the script. For every requested free port it binds a TCP listener (the kernel's handshake answers
each probe; ``MIN_QUEUE`` says when connections are accepted and closed), or a UDP socket that echoes datagrams
carrying the run's magic word; a port already in use is reported with the process that holds it and left alone.
With ``ipip`` it also opens a raw IP protocol 4 socket and records the tokens of the probe packets that arrive (a
raw socket takes a copy of each packet; it binds nothing).

Prints one message ``{"ready": ...}``, then serves. Each ``seen`` line on stdin prints
``{"seen": [[source address, token], ...]}``; a ``probe {"script": ..., "params": ...}`` line runs this host's
own probe batch (``probes/portprobe.py``) in a thread and prints ``{"probed": answer}``. Every message is one
line, ``<frame> <json>``, ``frame`` being the marker of the parameters. The script exits, releasing everything,
when stdin closes (the SSH session ended: normal end, Ctrl-C or a lost connection), when its parent changes, or
after ``max_seconds``.
"""
# ruff: noqa: UP006, UP035, UP045
# (typing.Dict, Optional: this file runs on the hosts' python3, which may be as old as 3.6)

import errno
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

IPIP = 4
INNER_PROTO = 253
TCP_LISTEN = "0A"
HEX_PORT = 16


_TABLES = {}  # type: Dict[str, List[Tuple[int, str, str]]]


def _table(name: str) -> List[Tuple[int, str, str]]:
    """(local port, state, inode) of every socket in /proc/net/``name``, read once per run of this script.

    Reading such a file walks the kernel's whole socket hash table (about 40 ms of system time on a host with
    much memory, however few sockets it holds), so it is read once, not once per taken port.
    """
    if name not in _TABLES:
        rows = []
        try:
            with open("/proc/net/" + name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            lines = []
        for line in lines:
            cols = line.split()
            if len(cols) >= 10:
                rows.append((int(cols[1].rsplit(":", 1)[1], HEX_PORT), cols[3], cols[9]))
        _TABLES[name] = rows
    return _TABLES[name]


def owners_of(port: int, proto: str) -> List[str]:
    """Socket inodes bound to ``port`` (TCP: listening only), from /proc/net (IPv6 only if IPv4 has none)."""
    for name in (proto, proto + "6"):
        inodes = [inode for p, state, inode in _table(name)
                  if p == port and (proto != "tcp" or state == TCP_LISTEN)]
        if inodes:
            return inodes
    return []


def _netns(pid: str) -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _holder(pid: str, wanted: Set[str]) -> str:
    """``name (pid N)`` if process ``pid`` holds one of the sockets ``wanted``, else an empty string."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return ""
    for fd in fds:
        try:
            link = os.readlink(fd_dir + "/" + fd)
        except OSError:
            continue
        if link in wanted:
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                comm = "?"
            return f"{comm} (pid {pid})"
    return ""


def process_of(inodes: List[str]) -> str:
    """Who holds one of the sockets ``inodes``: ``name (pid N)``, the kernel, or an unknown process."""
    wanted = {f"socket:[{i}]" for i in inodes if i != "0"}
    if not inodes:
        return "unknown process"
    if wanted:
        # The holder is almost always in this network namespace: look there first (one readlink per process),
        # and through every other process's descriptors only if not found. Reading all descriptors of all
        # processes costs about 0.15 s of CPU per taken port on a machine with 1,500 processes.
        pids = [d for d in os.listdir("/proc") if d.isdigit()]
        here = _netns("self")
        near = [pid for pid in pids if here is not None and _netns(pid) == here]
        seen = set(near)
        for pid in near + [pid for pid in pids if pid not in seen]:
            holder = _holder(pid, wanted)
            if holder:
                return holder
    if os.geteuid() == 0:
        # Root sees every process's descriptors: a socket no process holds belongs to the kernel.
        return "the kernel (no process holds the socket: a VXLAN or other tunnel device)"
    return "unknown process (naming it needs root: sudo -n was refused)"


def unprivileged_port_start() -> int:
    """The lowest port an ordinary user may bind here."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 1024


def bind(address: str, port: int, proto: str) -> socket.socket:
    """A TCP listener or UDP socket on ``address`` (the probed one) or, if not local, on every address."""
    last = None  # type: Optional[OSError]
    for host in (address, "0.0.0.0"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        try:
            if proto == "tcp":
                # Lets the port be reused at once after an earlier run's connections (TIME_WAIT).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            if proto == "tcp":
                sock.listen(4096)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno != errno.EADDRNOTAVAIL:
                break
    raise last if last is not None else OSError(errno.EADDRNOTAVAIL, "no address to bind")


DRAIN = 64  # connections or datagrams served per readiness event, before the loop looks at the others
# A TCP port whose accept queue holds at least this many connections is not served one connection at a time:
# a probe is answered by the kernel's handshake alone, so connections wait in the queue, and the queue is
# emptied only when it is half full (looked at every QUEUE_CHECK seconds). Accepting and closing each probe's
# connection was most of what a listener cost its host. Below it (an old kernel's somaxconn of 128), every
# connection is accepted as it comes, so a full queue can never drop a probe.
MIN_QUEUE = 1024
QUEUE_CHECK = 0.5
TCP_INFO = getattr(socket, "TCP_INFO", None)


def queue_of(sock: socket.socket) -> Optional[Tuple[int, int]]:
    """(connections waiting to be accepted, the queue's capacity) of a listening TCP socket; None if unknown.

    For a listening socket, Linux's ``tcp_info`` carries them in ``tcpi_unacked`` and ``tcpi_sacked``.
    """
    if TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 32)
    except OSError:
        return None
    if len(info) < 32:
        return None
    waiting, capacity = struct.unpack_from("II", info, 24)
    return int(waiting), int(capacity)


class Listener:
    """The served sockets and the IPIP receiver."""

    def __init__(self, params: Dict[str, Any]) -> None:
        self.magic = str(params.get("magic", "nova-probe")).encode()
        self.sel = selectors.DefaultSelector()
        self.bound = []  # type: List[str]
        self.taken = {}  # type: Dict[str, str]
        self.failed = {}  # type: Dict[str, str]
        self.ipip = None  # type: Optional[str]
        self.seen = []  # type: List[Tuple[str, str]]
        self.queued = []  # type: List[socket.socket]  # TCP ports served by emptying their queue now and then
        address = str(params.get("address") or "0.0.0.0")
        for port, proto in params.get("ports", []):
            key = f"{port}/{proto}"
            try:
                sock = bind(address, int(port), proto)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    self.taken[key] = process_of(owners_of(int(port), proto))
                elif exc.errno == errno.EACCES and int(port) < unprivileged_port_start():
                    self.failed[key] = ("binding it needs root (net.ipv4.ip_unprivileged_port_start " +
                                        str(unprivileged_port_start()) + ")")
                else:
                    self.failed[key] = "cannot bind: " + os.strerror(exc.errno or 0)
                continue
            queue = queue_of(sock) if proto == "tcp" else None
            if queue is not None and queue[1] >= MIN_QUEUE:
                self.queued.append(sock)
            else:
                self.sel.register(sock, selectors.EVENT_READ, proto)
            self.bound.append(key)
        if params.get("ipip"):
            try:
                raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPIP)
                raw.setblocking(False)
                self.sel.register(raw, selectors.EVENT_READ, "ipip")
                self.ipip = "ready"
            except OSError as exc:
                reason = os.strerror(exc.errno or 0)
                self.ipip = f"no IPIP receiver: a raw socket for IP protocol 4 needs root ({reason})"
        self.wake_r, self.wake_w = os.pipe()
        self.sel.register(self.wake_r, selectors.EVENT_READ, "control")
        self.commands = []  # type: List[str]
        self.lock = threading.Lock()

    def ready(self) -> Dict[str, Any]:
        """The first line the controller reads."""
        return {"ready": True, "pid": os.getpid(), "uid": os.geteuid(), "bound": self.bound, "taken": self.taken,
                "failed": self.failed, "ipip": self.ipip}

    def serve(self, until: float, parent: int) -> None:
        """Serve until stdin closes, the parent changes or the time is up."""
        wait = QUEUE_CHECK if self.queued else 1.0
        look = time.monotonic() + wait
        while time.monotonic() < until and os.getppid() == parent:
            if self.queued and time.monotonic() >= look:
                look = time.monotonic() + QUEUE_CHECK
                self._empty_full_queues()
            for key, _ in self.sel.select(wait):
                kind = key.data
                if kind == "control":
                    if not self._control():
                        return
                    continue
                sock = key.fileobj
                if not isinstance(sock, socket.socket):  # only sockets are registered
                    continue
                self._drain(sock, kind)

    def _empty_full_queues(self) -> None:
        """Accept and close what waits on every queued TCP port whose queue is half full (or cannot be read)."""
        for sock in self.queued:
            queue = queue_of(sock)
            if queue is None or 2 * queue[0] >= queue[1]:
                while self._drain(sock, "tcp") == DRAIN:
                    pass

    def _drain(self, sock: socket.socket, kind: str) -> int:
        """Serve what is queued on ``sock``, up to ``DRAIN`` at a time; how many were served.

        Probes arrive in bursts: serving the queue saves a select call per connection or datagram.
        """
        for n in range(DRAIN):
            try:
                if kind == "tcp":
                    sock.accept()[0].close()
                elif kind == "udp":
                    data, peer = sock.recvfrom(2048)
                    if data.startswith(self.magic):
                        sock.sendto(data, peer)
                else:
                    self._ipip(sock.recvfrom(4096))
            except BlockingIOError:
                return n
            except OSError:
                continue
        return DRAIN

    def _ipip(self, packet: Tuple[bytes, Any]) -> None:
        data, peer = packet
        outer = (data[0] & 0x0F) * 4 if data else 0
        inner = data[outer:]
        if len(inner) < 20 or inner[9] != INNER_PROTO:
            return
        payload = inner[(inner[0] & 0x0F) * 4 :]
        if payload.startswith(self.magic + b" "):
            self.seen.append((peer[0], payload[len(self.magic) + 1 :].decode(errors="replace")))

    def _control(self) -> bool:
        data = os.read(self.wake_r, 4096)
        with self.lock:
            commands, self.commands = self.commands, []
        for command in commands:
            if command == "seen":
                emit({"seen": self.seen})
            elif command.startswith("probe "):
                threading.Thread(target=probe_here, args=(command[len("probe "):],), daemon=True).start()
        return b"x" not in data

    def command(self, line: Optional[str]) -> None:
        """Called from the stdin thread: queue a command, or (None) ask the loop to stop."""
        if line is not None:
            with self.lock:
                self.commands.append(line)
        os.write(self.wake_w, b"c" if line is not None else b"x")


FRAME = [""]  # the run's frame marker, from the parameters
EMITTING = threading.Lock()  # the serving loop and a probing thread both print messages


def emit(obj: Dict[str, Any]) -> None:
    """Print one message: the frame marker and one JSON line (the controller ignores every other line)."""
    line = FRAME[0] + " " + json.dumps(obj) + "\n"
    with EMITTING:
        sys.stdout.write(line)
        sys.stdout.flush()


def probe_here(payload: str) -> None:
    """Run this host's own probe batch in this process: ``{"script": portprobe's text, "params": ...}``.

    Prints ``{"probed": answer}``, or ``{"probed": null, "error": ...}``. It spares the host a second session, a
    second ``sudo`` and a second interpreter: the listener already runs with the privileges the batch needs.
    """
    try:
        request = json.loads(payload)
        space = {"__name__": "nova_portprobe"}  # type: Dict[str, Any]
        exec(compile(str(request["script"]), "nova-portprobe", "exec"), space)
        answer = space["probe"](request["params"])
    except Exception as exc:  # any failure is reported: the controller then probes on its own
        emit({"probed": None, "error": type(exc).__name__ + ": " + str(exc)})
        return
    emit({"probed": answer})


def main() -> None:
    """Bind, report, serve, and release everything on the way out."""
    parent = os.getppid()
    params = json.loads(sys.stdin.buffer.readline().decode())
    FRAME[0] = str(params.get("frame", ""))
    listener = Listener(params)
    emit(listener.ready())

    def read_stdin() -> None:
        try:
            for raw in iter(sys.stdin.buffer.readline, b""):
                listener.command(raw.decode(errors="replace").strip())
        except (OSError, ValueError):
            pass
        listener.command(None)

    threading.Thread(target=read_stdin, daemon=True).start()
    try:
        listener.serve(time.monotonic() + float(params.get("max_seconds", 600)), parent)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
    # Process exit closes every socket; nothing else was created. At once: the stdin thread may still be blocked
    # in a read (the time ran out), and the interpreter's shutdown would wait for it or abort on its lock.
    sys.stdout.flush()
    os._exit(0)
