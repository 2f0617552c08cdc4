"""The socketmap listeners: asyncio transports <-> ``SocketmapConnection`` <-> the service.

One ``asyncio.Protocol`` per connection. Requests are parsed as bytes arrive and answered
strictly in order, one at a time (Postfix never pipelines; other clients that do get their
replies in order). Framing errors close only the offending connection, with one log line.
Connections are bounded; idle ones are closed after ``idle_timeout``. ``stop()`` closes the
listeners, lets in-flight answers finish, then closes the remaining connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import socket
import stat
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from tlspolicy.config import ListenAddress, ServerConfig
from tlspolicy.errors import ConfigError, ProtocolError
from tlspolicy.socketmap.answer import temp
from tlspolicy.socketmap.connection import (
    NEED_DATA,
    LocalProtocolError,
    Request,
    SocketmapConnection,
    encode_reply,
)

log = logging.getLogger("tlspolicy.server")

Answerer = Callable[[str, str], Awaitable[str]]
# Optional synchronous fast path: the reply if it is known without waiting, else None.
QuickAnswerer = Callable[[str, str], str | None]
# A client that keeps sending without reading replies is paused after this many requests.
MAX_PENDING_REQUESTS = 64


class _SocketmapProtocol(asyncio.Protocol):
    def __init__(self, server: SocketmapServer) -> None:
        self.server = server
        self.conn = SocketmapConnection()
        self.pending: deque[Request] = deque()
        self.transport: asyncio.Transport | None = None
        self.worker: asyncio.Task[None] | None = None
        self.idle_handle: asyncio.TimerHandle | None = None
        self.peer = "?"
        self.closing = False
        self.paused = False
        self.activity = 0  # requests and replies seen; the idle timer compares it
        self.idle_seen = 0

    # asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = _peer_name(self.transport)
        if len(self.server.connections) >= self.server.config.max_connections:
            self.server.note_overload(self.peer)
            self.transport.abort()
            return
        self.server.connections.add(self)
        self.server.connections_changed()
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._parse()
        self.activity += 1

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._parse()
        if self.worker is None and not self.closing:
            self.close()
        return True  # keep the write side open until pending replies are sent

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.server.connections_changed()
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        self.closing = True
        self.pending.clear()

    # work -------------------------------------------------------------------------------

    def _parse(self) -> None:
        quick = self.server.answer_now
        try:
            while True:
                request = self.conn.next_request()
                if request is None or request is NEED_DATA:
                    break
                assert isinstance(request, Request)
                # Answer at once when nothing is queued before it (replies stay in order).
                if quick is not None and not self.pending and self.worker is None:
                    reply = quick(request.name, request.key)
                    if reply is not None and self.transport is not None:
                        self.transport.write(encode_reply(reply))
                        continue
                self.pending.append(request)
        except ProtocolError as exc:
            self._reject(str(exc))
            return
        if self.pending and self.worker is None and not self.closing:
            self.worker = asyncio.create_task(self._work())
        if len(self.pending) > MAX_PENDING_REQUESTS and not self.paused and self.transport:
            self.transport.pause_reading()
            self.paused = True

    async def _work(self) -> None:
        assert self.transport is not None
        try:
            while self.pending and not self.transport.is_closing():
                request = self.pending.popleft()
                if self.paused and len(self.pending) < MAX_PENDING_REQUESTS // 2:
                    self.transport.resume_reading()
                    self.paused = False
                try:
                    reply = await self.server.answer(request.name, request.key)
                except ProtocolError as exc:
                    self._reject(str(exc))
                    return
                try:
                    data = encode_reply(reply)
                except LocalProtocolError as exc:
                    log.error("%s %s: cannot send reply: %s", request.name, request.key, exc)
                    data = encode_reply(temp("reply could not be encoded"))
                self.transport.write(data)
        finally:
            self.worker = None
            self.activity += 1
            if self.closing or self.server.stopping or self.conn.at_eof:
                self.close()

    def _reject(self, why: str) -> None:
        log.warning("closing socketmap connection from %s: %s", self.peer, why)
        self.pending.clear()
        self.close()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _arm_idle(self) -> None:
        # One timer per idle period, not per request: traffic only bumps ``activity``, and
        # the timer re-arms itself when it finds that something happened meanwhile.
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        if self.closing:
            return
        loop = asyncio.get_running_loop()
        self.idle_seen = self.activity
        self.idle_handle = loop.call_later(self.server.config.idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.busy or self.activity != self.idle_seen:
            self._arm_idle()
            return
        log.debug("closing idle socketmap connection from %s", self.peer)
        self.close()


def _peer_name(transport: asyncio.BaseTransport) -> str:
    peer: Any = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    sock = transport.get_extra_info("sockname")
    return f"unix:{sock}" if sock else "unix"


class SocketmapServer:
    """Owns the listeners and the open connections."""

    def __init__(
        self,
        answer: Answerer,
        config: ServerConfig,
        *,
        answer_now: QuickAnswerer | None = None,
        on_connections: Callable[[int], None] | None = None,
    ) -> None:
        self.answer = answer
        self.answer_now = answer_now
        self.config = config
        self.on_connections = on_connections
        self.connections: set[_SocketmapProtocol] = set()
        self.servers: list[asyncio.Server] = []
        self.stopping = False
        self.unix_paths: list[str] = []
        self._overload_logged = 0.0

    async def start(
        self,
        addresses: Sequence[ListenAddress] | None = None,
        *,
        sockets: Sequence[socket.socket] = (),
        start_serving: bool = True,
    ) -> list[str]:
        """Open the listeners (or adopt pre-bound sockets); returns their names.

        With ``start_serving=False`` the sockets are bound (e.g. before dropping root) but
        no connection is accepted until ``begin()``.
        """
        loop = asyncio.get_running_loop()
        names: list[str] = []
        for sock in sockets:
            server: asyncio.Server
            factory = self._protocol
            if sock.family == socket.AF_UNIX:
                server = await loop.create_unix_server(
                    factory, sock=sock, start_serving=start_serving
                )
            else:
                server = await loop.create_server(factory, sock=sock, start_serving=start_serving)
            self.servers.append(server)
            names.append(_sock_name(sock))
        for address in addresses if addresses is not None else self.config.listen:
            server = await self._listen(address, start_serving)
            self.servers.append(server)
            names.extend(_sock_name(s) for s in server.sockets)
        return names

    async def begin(self) -> None:
        """Accept connections on listeners bound with ``start_serving=False``."""
        for server in self.servers:
            await server.start_serving()

    @property
    def listening(self) -> bool:
        return bool(self.servers) and not self.stopping

    def _protocol(self) -> _SocketmapProtocol:
        return _SocketmapProtocol(self)

    def connections_changed(self) -> None:
        if self.on_connections is not None:
            self.on_connections(len(self.connections))

    async def _listen(self, address: ListenAddress, start_serving: bool) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        try:
            if address.kind == "unix":
                return await self._listen_unix(address.path, start_serving)
            host = None if address.host in ("*", "0.0.0.0") else address.host
            return await loop.create_server(
                self._protocol,
                host=host,
                port=address.port,
                reuse_address=True,
                backlog=1024,
                start_serving=start_serving,
            )
        except OSError as exc:
            raise ConfigError(
                f"server.listen: cannot listen on {address}: {exc.strerror or exc}"
            ) from None

    async def _listen_unix(self, path: str, start_serving: bool) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # a stale socket from an earlier run
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        server = await loop.create_unix_server(
            self._protocol, path=path, backlog=1024, start_serving=start_serving
        )
        self.unix_paths.append(path)
        os.chmod(path, self.config.socket_mode)
        uid = pwd.getpwnam(self.config.socket_owner).pw_uid if self.config.socket_owner else -1
        gid = grp.getgrnam(self.config.socket_group).gr_gid if self.config.socket_group else -1
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        return server

    def note_overload(self, peer: str) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._overload_logged > 10:
            self._overload_logged = now
            log.warning(
                "connection limit %d reached; refusing %s", self.config.max_connections, peer
            )

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening, finish in-flight answers (up to ``grace`` s), close connections."""
        self.stopping = True
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(c.busy for c in self.connections) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        for path in self.unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _sock_name(sock: Any) -> str:
    name = sock.getsockname()
    if isinstance(name, str | bytes):
        return f"unix:{name if isinstance(name, str) else name.decode()}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"
