"""One socketmap connection: asyncio transport <-> ``SocketmapConnection`` <-> the answerer.

Requests are parsed as bytes arrive and answered strictly in order, one at a time (Postfix
never pipelines; other clients that do get their replies in order). Rules kept:

* Only framing errors close the connection (one log line). Every request that was framed
  gets exactly one reply: an exception while answering becomes ``TEMP internal error``
  (traceback logged once per kind, ``errorlog``) and the next request is answered.
* Memory per connection is bounded: at most ``MAX_PENDING_REQUESTS`` parsed requests wait;
  a client that does not read its replies fills the transport's write buffer past its high
  water mark, and then nothing more is read from it until the buffer drains. If it stays
  stuck for ``server.idle_timeout`` the connection is aborted.
* A connection may be closed for a newcomer at the cap (``evictable``) only when nothing is
  owed to it: no request parsed and unanswered, no reply waiting in the write buffer. Half a
  request does not protect it (Postfix writes a request in one go, and a client that
  stalls mid-request is the least useful one to keep).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from tlspolicy.config import ServerConfig
from tlspolicy.errors import ProtocolError
from tlspolicy.server.admission import ConnectionTable
from tlspolicy.socketmap.answer import temp
from tlspolicy.socketmap.connection import (
    NEED_DATA,
    LocalProtocolError,
    Request,
    SocketmapConnection,
    encode_reply,
)

log = logging.getLogger("tlspolicy.server")

# Parsed requests that may wait for an answer; past it nothing more is read from the client.
MAX_PENDING_REQUESTS = 64


Answerer = Callable[[str, str], Awaitable[str]]
# Optional synchronous fast path: the reply if it is known without waiting, else None.
QuickAnswerer = Callable[[str, str], str | None]
# The same by the raw bytes: one whole request netstring in, the reply netstring or None.
WireAnswerer = Callable[[bytes], bytes | None]


class ConnectionOwner(Protocol):
    """What a connection needs of the server that accepted it (``listeners.SocketmapServer``;
    a protocol here so that the two modules do not import each other)."""

    answer: Answerer
    answer_now: QuickAnswerer | None
    answer_wire: WireAnswerer | None
    config: ServerConfig
    connections: ConnectionTable[SocketmapProtocol]
    stopping: bool

    def admit(self, conn: SocketmapProtocol) -> bool: ...
    def forget(self, conn: SocketmapProtocol) -> None: ...
    def internal_error(self, exc: BaseException, request: Request) -> None: ...


class SocketmapProtocol(asyncio.Protocol):
    def __init__(self, server: ConnectionOwner) -> None:
        self.server = server
        self.conn = SocketmapConnection()
        self.pending: deque[Request] = deque()
        self.transport: asyncio.Transport | None = None
        self.worker: asyncio.Task[None] | None = None
        self.idle_handle: asyncio.TimerHandle | None = None
        self.peer = "?"
        self.closing = False
        self.reading_paused = False
        self.write_paused = False  # the client is not reading: the write buffer is full
        self.writable = asyncio.Event()
        self.writable.set()
        self.activity = 0  # requests and replies seen; the idle timer compares it
        self.idle_seen = 0

    # asyncio callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = _peer_name(self.transport)
        if not self.server.admit(self):
            self.closing = True
            self.transport.abort()
            return
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self.activity += 1
        self.server.connections.touch(self)
        # The hot path: one whole request whose reply is memoised, answered by its bytes.
        wire = self.server.answer_wire
        if (
            wire is not None
            and self.conn.idle
            and not self.pending
            and self.worker is None
            and not self.write_paused
            and self.transport is not None
        ):
            try:
                reply = wire(data)
            except Exception:  # the parsed path answers it (or says TEMP), and logs why
                reply = None
            if reply is not None:
                self.transport.write(reply)
                return
        self.conn.receive_data(data)
        self._parse()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._parse()
        self._finish_if_done()
        return True  # keep the write side open until pending replies are sent

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.forget(self)
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        self.closing = True
        self.pending.clear()
        self.writable.set()  # a worker waiting for the client to read must not wait forever

    def pause_writing(self) -> None:
        self.write_paused = True
        self.writable.clear()
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.writable.set()
        self.activity += 1
        self._update_reading()
        if not self.closing:
            self._parse()  # requests left in the buffer while the client was not reading
            self._finish_if_done()

    # work -------------------------------------------------------------------------------

    def _parse(self) -> None:
        quick = self.server.answer_now
        try:
            while not self.write_paused and len(self.pending) < MAX_PENDING_REQUESTS:
                request = self.conn.next_request()
                if request is None or request is NEED_DATA:
                    break
                assert isinstance(request, Request)
                # Answer at once when nothing is queued before it (replies stay in order).
                if quick is not None and not self.pending and self.worker is None:
                    reply = self._quick(request)
                    if reply is not None:
                        self._send(request, reply)
                        continue
                self.pending.append(request)
        except ProtocolError as exc:
            self._reject(str(exc))
            return
        if self.pending and self.worker is None and not self.closing:
            self.worker = asyncio.create_task(self._work())
        self._update_reading()

    def _quick(self, request: Request) -> str | None:
        assert self.server.answer_now is not None
        try:
            return self.server.answer_now(request.name, request.key)
        except Exception as exc:  # the async path answers it (or says TEMP)
            self.server.internal_error(exc, request)
            return None

    async def _work(self) -> None:
        transport = self.transport
        assert transport is not None
        try:
            while self.pending and not transport.is_closing():
                request = self.pending.popleft()
                if len(self.pending) < MAX_PENDING_REQUESTS // 2:
                    self._parse()  # refill from bytes left unparsed while the queue was full
                reply = await self._answer(request)
                if not self.writable.is_set():
                    await self.writable.wait()
                if transport.is_closing():
                    break
                self._send(request, reply)
        finally:
            self.worker = None
            self.activity += 1
            if self.closing or self.server.stopping:
                self.close()
            else:
                self._parse()
                self._finish_if_done()

    async def _answer(self, request: Request) -> str:
        try:
            return await self.server.answer(request.name, request.key)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this worker is being cancelled (shutdown): let it end
            # A task the answerer awaited was cancelled by someone else: a bug, not the
            # end of this connection.
            self.server.internal_error(exc, request)
            return temp("internal error")
        except Exception as exc:
            self.server.internal_error(exc, request)
            return temp("internal error")

    def _send(self, request: Request, reply: str) -> None:
        try:
            data = encode_reply(reply)
        except LocalProtocolError as exc:
            log.error("%s %r: cannot send reply: %s", request.name, request.key, exc)
            data = encode_reply(temp("reply could not be encoded"))
        except Exception as exc:
            self.server.internal_error(exc, request)
            data = encode_reply(temp("internal error"))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        self.activity += 1
        self.server.connections.touch(self)

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closing or transport.is_closing():
            return
        want_paused = self.write_paused or len(self.pending) >= MAX_PENDING_REQUESTS
        if want_paused and not self.reading_paused:
            transport.pause_reading()
            self.reading_paused = True
        elif not want_paused and self.reading_paused:
            transport.resume_reading()
            self.reading_paused = False

    def _finish_if_done(self) -> None:
        """Close after end of input once every request got its reply."""
        if (
            self.conn.at_eof
            and self.worker is None
            and not self.pending
            and not self.write_paused
            and not self.closing
        ):
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
        """An answer is being worked out."""
        return self.worker is not None

    @property
    def evictable(self) -> bool:
        """Nothing is owed to this client: it may be closed for a newcomer at the cap."""
        transport = self.transport
        return (
            self.worker is None
            and not self.pending
            and not self.write_paused
            and not self.closing
            and transport is not None
            and transport.get_write_buffer_size() == 0
        )

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
        if self.activity != self.idle_seen:
            self._arm_idle()
            return
        if self.write_paused:
            log.warning("closing socketmap connection from %s: replies not read", self.peer)
            self.closing = True
            if self.transport is not None:
                self.transport.abort()
            return
        if self.busy:
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
