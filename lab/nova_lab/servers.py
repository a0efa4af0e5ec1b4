"""The lab's server programs, one asyncio process per host: ``python -m nova_lab.servers KIND CONFIG``.

Kinds: ``tls`` (vendor endpoints or the Nova Universe server), ``proxy`` (HTTP CONNECT), ``lb`` (L4 TCP/UDP
balancer with HTTP healthchecks) and ``node`` (the services of an installed node). CONFIG is a JSON file the
lab writes. Fault switches are files under the lab's ``flags/`` folder, looked at on every connection, so
faults need no restart. Each program touches its ``ready`` file once every socket is bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from nova_lab import kubeapi

Handler = Callable[[str, str, dict[str, str]], Awaitable[tuple[int, str, bytes]]]
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_IDLE = 60.0
_TASKS: set[asyncio.Task[None]] = set()  # background tasks live as long as the program


def flag(cfg: dict[str, Any], name: str) -> bool:
    """Whether fault flag ``name`` is switched on."""
    return os.path.exists(os.path.join(cfg["flags"], name))


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A TLS server context for one certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def insecure_client_context() -> ssl.SSLContext:
    """A client context that skips verification: balancers' healthchecks and TLS re-origination."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    """Read one HTTP request line and headers; None on EOF or garbage."""
    try:
        line = await asyncio.wait_for(reader.readline(), _IDLE)
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            return None
        headers: dict[str, str] = {}
        while True:
            h = await asyncio.wait_for(reader.readline(), _IDLE)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return parts[0], parts[1], headers
    except (TimeoutError, ConnectionError, ssl.SSLError, ValueError):
        return None


async def http_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    """Serve requests on one connection (keep-alive) until the client closes it."""
    try:
        while True:
            head = await read_head(reader)
            if head is None:
                break
            method, target, headers = head
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            code, ctype, body = await handler(method, target, headers)
            writer.write(
                f"HTTP/1.1 {code} {_REASONS.get(code, 'Unknown')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
        pass
    finally:
        await close(writer)


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a stream, ignoring errors of an already broken connection."""
    with contextlib.suppress(Exception):
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 2)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes one way until EOF, then half-close."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, ssl.SSLError, OSError):
        pass


async def splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    """Copy both ways between two connections, then close both."""
    try:
        await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))
    finally:
        await close(a[1])
        await close(b[1])


def ready(cfg: dict[str, Any]) -> None:
    """Tell the lab every socket is bound."""
    Path(cfg["ready"]).write_text(str(os.getpid()))


# --- vendor endpoints and Nova Universe -------------------------------------------------------------------


async def serve_tls(cfg: dict[str, Any]) -> None:
    """HTTPS on every (address, port) of ``listen``; presents the rogue certificate while the flag is on."""
    good = server_context(cfg["cert"], cfg["key"])
    rogue = server_context(cfg["rogue_cert"], cfg["rogue_key"])

    def pick(sslobj: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        if flag(cfg, cfg["rogue_flag"]):
            sslobj.context = rogue

    good.sni_callback = pick
    files: dict[str, str] = cfg.get("files", {})

    async def handler(method: str, target: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if path in files:
            return 200, "application/x-x509-ca-cert", Path(files[path]).read_bytes()
        body = {"service": cfg["name"], "host": headers.get("host", ""), "path": path}
        return 200, "application/json", json.dumps(body).encode()

    for addr, port in cfg["listen"]:
        await asyncio.start_server(lambda r, w: http_session(r, w, handler), addr, port, ssl=good,
                                   reuse_address=True, backlog=1024)


# --- HTTP CONNECT proxy -----------------------------------------------------------------------------------


async def serve_proxy(cfg: dict[str, Any]) -> None:
    """An HTTP proxy that only tunnels (CONNECT), resolving names through the lab DNS.

    While the ``deny_flag`` file exists it answers CONNECT to the ``deny`` names with 403 (the proxy-deny fault).
    """

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if head is None:
            await close(writer)
            return
        method, target, _ = head
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            await close(writer)
            return
        host, _, port = target.rpartition(":")
        if host.strip("[]").lower() in cfg.get("deny", ()) and flag(cfg, cfg.get("deny_flag", "proxy-deny")):
            # The proxy-deny fault: an ACL that does not allow these destinations.
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await close(writer)
            return
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), 10)
        except TimeoutError:
            writer.write(b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n")
            await close(writer)
            return
        except (OSError, ValueError):
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await close(writer)
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await splice((reader, writer), upstream)

    await asyncio.start_server(session, cfg["address"], cfg["port"], reuse_address=True, backlog=1024)


# --- L4 load balancer -------------------------------------------------------------------------------------


class Pool:
    """The backends of one frontend, with their health as the last healthcheck saw it."""

    def __init__(self, backends: list[tuple[str, int]], health: dict[str, Any] | None,
                 on_checked: Callable[[], None] = lambda: None) -> None:
        self.backends = backends
        self.health = health
        self.healthy = set(range(len(backends))) if health is None else set()
        self.checked_since = 0.0  # wall-clock start of the last finished round of healthchecks
        self._on_checked = on_checked
        self._rr = itertools.count()

    def order(self) -> list[tuple[str, int]]:
        """Backends to try, healthy ones first (all of them when none is healthy: fail open)."""
        start = next(self._rr)
        idx = [(start + i) % len(self.backends) for i in range(len(self.backends))]
        good = [i for i in idx if i in self.healthy]
        return [self.backends[i] for i in (good or idx)]

    async def check_forever(self) -> None:
        """Each second: HTTP(S) GET the health path of every backend, or (scheme ``tcp``) connect to its port."""
        assert self.health is not None
        h = self.health
        ctx = insecure_client_context() if h["scheme"] == "https" else None
        while True:
            started = time.time()
            results = await asyncio.gather(*(self._probe(b[0], h["port"], h.get("path"), ctx) for b in self.backends))
            self.healthy = {i for i, ok in enumerate(results) if ok}
            self.checked_since = started
            self._on_checked()
            await asyncio.sleep(1)

    @staticmethod
    async def _probe(addr: str, port: int, path: str | None, ctx: ssl.SSLContext | None) -> bool:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(addr, port, ssl=ctx), 1)
        except (OSError, TimeoutError, ssl.SSLError):
            return False
        if path is None:  # a TCP check: accepting the connection is healthy
            await close(w)
            return True
        try:
            w.write(f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode())
            line = await asyncio.wait_for(r.readline(), 1)
            return line.split()[1:2] == [b"200"]
        except (OSError, TimeoutError, ssl.SSLError, IndexError):
            return False
        finally:
            await close(w)


async def serve_lb(cfg: dict[str, Any]) -> None:
    """Every frontend of ``cfg``: TCP passthrough (or TLS termination while its flag is on) and UDP."""
    loop = asyncio.get_running_loop()
    checked = Path(cfg["ready"]).with_suffix(".checked")
    pools: list[Pool] = []

    def write_checked() -> None:
        # When every frontend's healthchecks last began a full round: state seen then is in effect now.
        since = min((p.checked_since for p in pools if p.health is not None), default=0.0)
        tmp = checked.with_suffix(".tmp")
        tmp.write_text(repr(since))
        tmp.replace(checked)

    for fe in cfg["frontends"]:
        pool = Pool([(a, p) for a, p in fe["backends"]], fe.get("health"), write_checked)
        pools.append(pool)
        if pool.health is not None:
            _TASKS.add(loop.create_task(pool.check_forever()))
        if fe["proto"] == "udp":
            await loop.create_datagram_endpoint(lambda p=pool: UdpForwarder(p),  # type: ignore[misc]
                                                local_addr=(cfg["address"], fe["port"]), reuse_port=True)
            continue
        term = fe.get("terminate")
        inner: tuple[str, int] | None = None
        if term:
            # TLS termination is a second listener on loopback; the frontend hands raw connections to it
            # while the flag is on, so one socket serves both behaviours.
            inner = ("127.0.0.1", 20000 + fe["port"])
            term_ctx = server_context(term["cert"], term["key"])

            async def terminated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                 pool: Pool = pool) -> None:
                await _forward((reader, writer), pool.order(), insecure_client_context())

            await asyncio.start_server(terminated, *inner, ssl=term_ctx, reuse_address=True, backlog=1024)

        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pool: Pool = pool,
                          term: dict[str, Any] | None = term, inner: tuple[str, int] | None = inner) -> None:
            if term is not None and inner is not None and flag(cfg, term["flag"]):
                await _forward((reader, writer), [inner], None)
            else:
                await _forward((reader, writer), pool.order(), None)

        await asyncio.start_server(session, cfg["address"], fe["port"], reuse_address=True, backlog=1024)


async def _forward(client: tuple[asyncio.StreamReader, asyncio.StreamWriter], targets: list[tuple[str, int]],
                   ctx: ssl.SSLContext | None) -> None:
    """Connect to the first target that answers and splice; close the client when none does."""
    for addr, port in targets:
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(addr, port, ssl=ctx), 2)
        except (OSError, TimeoutError, ssl.SSLError):
            continue
        await splice(client, upstream)
        return
    await close(client[1])


class UdpForwarder(asyncio.DatagramProtocol):
    """Relays each datagram to a backend and the first answer back to the client."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:  # noqa: D102
        asyncio.get_running_loop().create_task(self._relay(data, addr))

    async def _relay(self, data: bytes, client: tuple[str | Any, int]) -> None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()

        class Once(asyncio.DatagramProtocol):
            def datagram_received(self, d: bytes, _a: tuple[str | Any, int]) -> None:
                if not answer.done():
                    answer.set_result(d)

        backend = self.pool.order()[0]
        transport, _ = await loop.create_datagram_endpoint(Once, remote_addr=backend)
        try:
            transport.sendto(data)
            reply = await asyncio.wait_for(answer, 3)
            if self.transport is not None:
                self.transport.sendto(reply, client)
        except (TimeoutError, OSError):
            pass
        finally:
            transport.close()


# --- an installed node ------------------------------------------------------------------------------------


class Echo(asyncio.DatagramProtocol):
    """UDP echo: the VXLAN ports of an installed node answer what they get."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:  # noqa: D102
        self.transport.sendto(data, addr)


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept a connection and keep it open until the client closes it (generic TCP acceptor)."""
    with contextlib.suppress(Exception):
        while await asyncio.wait_for(reader.read(4096), _IDLE):
            pass
    await close(writer)


async def serve_node(cfg: dict[str, Any]) -> None:
    """The listeners of an installed node: its role's ports, healthchecks, kubelet, containerd, API."""
    health_flag = cfg["health_flag"]

    def health(path: str) -> Handler:
        async def handler(method: str, target: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
            if target.split("?", 1)[0] != path:
                return 404, "text/plain", b"default backend - 404\n"
            if flag(cfg, health_flag):
                return 503, "text/plain", b"unhealthy\n"
            return 200, "text/plain", b"ok"
        return handler

    async def kubelet(method: str, target: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        return (200, "text/plain", b"ok") if target.startswith("/healthz") else (404, "text/plain", b"")

    for port in cfg["tcp"]:
        await asyncio.start_server(hold, "0.0.0.0", port, reuse_address=True, backlog=1024)
    loop = asyncio.get_running_loop()
    for port in cfg["udp"]:
        await loop.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", port))
    for item in cfg["http"]:
        ctx = server_context(item["cert"], item["key"]) if item.get("cert") else None
        await asyncio.start_server(functools.partial(http_session, handler=health(item["path"])), "0.0.0.0",
                                   item["port"], ssl=ctx, reuse_address=True, backlog=1024)
    await asyncio.start_server(lambda r, w: http_session(r, w, kubelet), "127.0.0.1", 10248, reuse_address=True)
    sock = cfg["containerd_socket"]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock)
    await asyncio.start_unix_server(hold, sock)
    api = cfg.get("kubeapi")
    if api:
        await _serve_kubeapi(cfg, api, health("/readyz"))


async def _serve_kubeapi(cfg: dict[str, Any], api: dict[str, Any], readyz: Handler) -> None:
    cluster_file = Path(api["cluster"])

    async def handler(method: str, target: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if path in ("/readyz", "/livez", "/healthz"):
            return await readyz(method, path, headers)
        if headers.get("authorization") != f"Bearer {api['token']}":
            body = kubeapi.status(401, "Unauthorized", "Unauthorized")
            return 401, "application/json", kubeapi.dumps(body)
        if method != "GET":
            return 405, "application/json", kubeapi.dumps(kubeapi.status(405, "MethodNotAllowed", method))
        flags = set(os.listdir(cfg["flags"]))
        notready = {f.removeprefix("notready-") for f in flags if f.startswith("notready-")}
        missing = {f.removeprefix("missing-") for f in flags if f.startswith("missing-")}
        cluster = json.loads(cluster_file.read_text())["nodes"]
        code, body = kubeapi.route(path, headers.get("accept", ""), cluster, notready, missing,
                                   f"{api['address']}:6443")
        return code, "application/json", kubeapi.dumps(body)

    ctx = server_context(api["cert"], api["key"])
    await asyncio.start_server(lambda r, w: http_session(r, w, handler), "0.0.0.0", 6443, ssl=ctx,
                               reuse_address=True, backlog=1024)


_KINDS: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
    "tls": serve_tls, "proxy": serve_proxy, "lb": serve_lb, "node": serve_node,
}


async def _main(kind: str, cfg: dict[str, Any]) -> None:
    await _KINDS[kind](cfg)
    ready(cfg)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """Run server ``KIND`` with the JSON config file ``CONFIG`` until killed."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in _KINDS:
        print(f"usage: python -m nova_lab.servers {{{','.join(_KINDS)}}} CONFIG", file=sys.stderr)
        return 2
    cfg = json.loads(Path(args[1]).read_text())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args[0], cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
