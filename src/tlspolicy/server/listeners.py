"""The socketmap listeners and the set of open connections.

One ``protocol.SocketmapProtocol`` per connection (parsing, answering in order, flow
control). Connections are bounded by ``max_connections``: at the cap the longest-idle
connection is closed for the newcomer, which is refused only when every connection is owed
a reply (``connections``). Idle ones are closed after ``idle_timeout``. ``stop()`` closes
the listeners, lets in-flight answers finish, then closes the remaining connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import socket
from collections.abc import Callable, Sequence
from typing import Any

from tlspolicy.config import ListenAddress, ServerConfig
from tlspolicy.errors import ConfigError
from tlspolicy.files import bind_unix, remove_stale_socket
from tlspolicy.metrics.sink import NULL_METRICS, MetricsSink
from tlspolicy.server.admission import Burst, ConnectionTable
from tlspolicy.server.errorlog import ErrorLog, error_kind
from tlspolicy.server.protocol import Answerer, QuickAnswerer, SocketmapProtocol, WireAnswerer
from tlspolicy.socketmap.connection import Request

# At stop, a connection without a request yet waits this long for its first one.
FIRST_REQUEST_WAIT_S = 1.0

log = logging.getLogger("tlspolicy.server")


class SocketmapServer:
    """Owns the listeners and the open connections."""

    def __init__(
        self,
        answer: Answerer,
        config: ServerConfig,
        *,
        answer_now: QuickAnswerer | None = None,
        answer_wire: WireAnswerer | None = None,
        on_connections: Callable[[int], None] | None = None,
        metrics: MetricsSink = NULL_METRICS,
    ) -> None:
        self.answer = answer
        self.answer_now = answer_now
        self.answer_wire = answer_wire
        self.config = config
        self.on_connections = on_connections
        self.metrics = metrics
        self.connections: ConnectionTable[SocketmapProtocol] = ConnectionTable()
        self.servers: list[asyncio.Server] = []
        self.stopping = False
        self.unix_paths: list[str] = []
        self._evictions = Burst()
        self._refusals = Burst()
        self._errors = ErrorLog()

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

    def _protocol(self) -> SocketmapProtocol:
        return SocketmapProtocol(self)

    def connections_changed(self) -> None:
        if self.on_connections is not None:
            self.on_connections(len(self.connections))

    def admit(self, conn: SocketmapProtocol) -> bool:
        """Take a new connection; at the cap close the longest-idle one for it, if any."""
        if len(self.connections) >= self.config.max_connections:
            victim = self.connections.longest_idle(lambda c: c.evictable)
            now = asyncio.get_running_loop().time()
            if victim is None:
                self.metrics.connection_limit("refused")
                if self._refusals.note(now):
                    log.warning(
                        "connection limit %d reached and every connection is busy: refusing "
                        "%s (and further newcomers in this burst)",
                        self.config.max_connections,
                        conn.peer,
                    )
                return False
            self.connections.discard(victim)
            victim.close()
            self.metrics.connection_limit("evicted")
            if self._evictions.note(now):
                log.warning(
                    "connection limit %d reached: closing the longest-idle connection (%s) "
                    "for %s, and so on for this burst (tlspolicy_connection_limit_total)",
                    self.config.max_connections,
                    victim.peer,
                    conn.peer,
                )
        self.connections.add(conn)
        self.connections_changed()
        return True

    def forget(self, conn: SocketmapProtocol) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.connections_changed()

    def internal_error(self, exc: BaseException, request: Request) -> None:
        """Log an unexpected error while answering: its traceback once per kind and window."""
        suppressed = self._errors.admit(error_kind(exc), asyncio.get_running_loop().time())
        if suppressed is None:
            return
        more = f" ({suppressed} more like it not logged)" if suppressed else ""
        log.error(
            "internal error answering %s %r: answered TEMP%s",
            request.name,
            request.key,
            more,
            exc_info=exc,
        )

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
        """A unix socket made with its final mode and owner (``tlspolicy.files``: no chmod
        or chown that a link planted in the socket's directory could redirect)."""
        loop = asyncio.get_running_loop()
        remove_stale_socket(path)
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        uid = pwd.getpwnam(self.config.socket_owner).pw_uid if self.config.socket_owner else -1
        gid = grp.getgrnam(self.config.socket_group).gr_gid if self.config.socket_group else -1
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            bind_unix(sock, path, self.config.socket_mode, uid, gid)
            server = await loop.create_unix_server(
                self._protocol, sock=sock, backlog=1024, start_serving=start_serving
            )
        except BaseException:
            sock.close()
            raise
        self.unix_paths.append(path)
        return server

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening, finish in-flight answers (up to ``grace`` s), close connections.

        An idle connection that has had requests is closed at once: its client retries on
        a new connection, as Postfix's socketmap client does once. A connection accepted
        without a request yet is most likely that retry, whose request is on its way: it
        gets up to ``FIRST_REQUEST_WAIT_S`` for one, else a restart would break the same
        lookup twice in a row (and Postfix would defer the mail)."""
        self.stopping = True
        for server in self.servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        fresh_until = loop.time() + min(grace, FIRST_REQUEST_WAIT_S)
        while loop.time() < deadline:
            fresh = loop.time() < fresh_until
            waiting = False
            for conn in list(self.connections):
                if conn.busy or (fresh and conn.activity == 0 and not conn.closing):
                    waiting = True
                else:
                    conn.close()
            if not waiting:
                break
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
