"""DNS on the wire: long-lived UDP sockets with query-ID matching, TCP on truncation.

Why: a fresh socket per query (bind, connect, close, a new selector registration) cost
more CPU than the query itself. Here each nameserver gets a small pool of connected UDP
sockets that live for many queries; replies are matched to queries by ID. dnspython only
builds and parses messages (``dnsclient``).

Spoofing resistance (RFC 5452): every query gets an unpredictable ID (``secrets``) that is
unique among the queries in flight on its socket; sockets are connected, so the kernel
delivers only datagrams from the nameserver's address and port (checked again here); a
socket is retired after ``MAX_QUERIES_PER_SOCKET`` queries or ``MAX_SOCKET_AGE_S`` seconds,
so the source port (chosen at random by the kernel) keeps changing, and queries are spread
over ``POOL_SIZE`` sockets. A datagram that is short, unparsable, for no query in flight or
not an answer to that query's question is dropped and the wait goes on: any host can send
a datagram, and failing on the first one would let it defer the mail. An ICMP error (port
unreachable) fails the queries in flight on that socket at once: the server is not there.

A truncated reply (TC) is asked again over TCP with a new ID, in the same time budget.
Errors are raised as the types ``dnsclient._exchange`` translates: ``TimeoutError``,
``OSError``, ``EOFError``, ``dns.query.BadResponse`` and dnspython parse errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
import struct

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode

from tlspolicy.dnswire import parse_message

POOL_SIZE = 4  # sockets per nameserver in use at a time
MAX_QUERIES_PER_SOCKET = 500  # then a new socket (a new random source port)
MAX_SOCKET_AGE_S = 60.0
MAX_UDP_RESPONSE = 65535
_HEADER = 12  # octets of a DNS header; shorter datagrams are dropped unread
# rcodes whose responses may come without the question section (dnspython does the same).
_QUESTIONLESS_RCODES = frozenset(
    {dns.rcode.FORMERR, dns.rcode.SERVFAIL, dns.rcode.NOTIMP, dns.rcode.REFUSED}
)


def _answers(query: dns.message.Message, response: dns.message.Message) -> bool:
    """Is ``response`` (already matched by ID) an answer to ``query``'s question?"""
    if not response.flags & dns.flags.QR:
        return False
    if dns.opcode.from_flags(response.flags) != dns.opcode.from_flags(query.flags):
        return False
    if not response.question and response.rcode() in _QUESTIONLESS_RCODES:
        return True
    return bool(response.question == query.question)


class _Channel:
    """One connected, non-blocking UDP socket to one nameserver and its queries in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        self.loop = loop
        self.peer = (ipaddress.ip_address(host), port)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.connect((host, port))  # binds a random ephemeral source port
        except OSError:
            self.sock.close()
            raise
        self.pending: dict[int, tuple[dns.message.Message, asyncio.Future[dns.message.Message]]]
        self.pending = {}
        self.used = 0
        self.born = loop.time()
        self.retired = False
        self.closed = False
        loop.add_reader(self.sock.fileno(), self._readable)

    def worn_out(self) -> bool:
        return self.used >= MAX_QUERIES_PER_SOCKET or self.loop.time() - self.born > (
            MAX_SOCKET_AGE_S
        )

    def send(
        self, query: dns.message.Message, wire: bytes
    ) -> tuple[int, asyncio.Future[dns.message.Message]]:
        qid = secrets.randbits(16)
        while qid in self.pending:
            qid = secrets.randbits(16)
        try:
            self.sock.send(struct.pack("!H", qid) + wire[2:])
        except OSError:  # e.g. a queued ICMP error: this socket is done, the query failed
            self.retired = True
            if not self.pending:
                self.close()
            raise
        future: asyncio.Future[dns.message.Message] = self.loop.create_future()
        self.pending[qid] = (query, future)
        self.used += 1
        return qid, future

    def done(self, qid: int) -> None:
        self.pending.pop(qid, None)
        if self.retired and not self.pending:
            self.close()

    def _readable(self) -> None:
        for _ in range(64):  # bounded: a flood must not starve the event loop
            try:
                data, source = self.sock.recvfrom(MAX_UDP_RESPONSE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP unreachable and the like, on a connected socket
                self._fail_all(exc)
                return
            self._datagram(data, source)

    def _datagram(self, data: bytes, source: tuple[str, int] | tuple[str, int, int, int]) -> None:
        if len(data) < _HEADER or (ipaddress.ip_address(source[0]), source[1]) != self.peer:
            return
        entry = self.pending.get(struct.unpack_from("!H", data)[0])
        if entry is None or entry[1].done():
            return
        query, future = entry
        # A truncated reply may end inside a record: only its question is needed (-> TCP).
        truncated = bool(data[2] & (dns.flags.TC >> 8))
        try:
            response = parse_message(data, question_only=truncated)
        except (dns.exception.DNSException, ValueError):
            return  # garbage with a live ID: wait for the real answer
        if _answers(query, response):
            future.set_result(response)

    def _fail_all(self, exc: OSError) -> None:
        self.retired = True
        for _query, future in self.pending.values():
            if not future.done():
                future.set_exception(OSError(exc.errno, exc.strerror))
        if not self.pending:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.loop.is_closed():
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for _query, future in self.pending.values():
            if not future.done() and not self.loop.is_closed():
                future.set_exception(OSError("DNS transport closed"))
        self.pending.clear()


class Transport:
    """The sockets of one event loop, per nameserver; ``exchange`` is all callers need."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pools: dict[tuple[str, int], list[_Channel]] = {}
        self._turn = 0
        self.udp_queries = 0
        self.tcp_queries = 0

    def _channel(self, host: str, port: int) -> _Channel:
        pool = self._pools.setdefault((host, port), [])
        for channel in [c for c in pool if c.retired or c.worn_out()]:
            pool.remove(channel)
            channel.retired = True
            if not channel.pending:
                channel.close()
        if len(pool) < POOL_SIZE:
            pool.append(_Channel(self.loop, host, port))
            return pool[-1]
        self._turn = (self._turn + 1) % len(pool)
        return pool[self._turn]

    async def exchange(
        self, query: dns.message.Message, host: str, port: int, budget_s: float
    ) -> dns.message.Message:
        """Ask ``host``:``port`` within ``budget_s`` seconds; TCP when the reply is truncated."""
        async with asyncio.timeout(budget_s):
            wire = query.to_wire()
            channel = self._channel(host, port)
            qid, future = channel.send(query, wire)
            self.udp_queries += 1
            try:
                response = await future
            finally:
                channel.done(qid)
            if response.flags & dns.flags.TC:
                self.tcp_queries += 1
                return await _tcp_exchange(query, wire, host, port)
            return response

    def close(self) -> None:
        for pool in self._pools.values():
            for channel in pool:
                channel.close()
        self._pools.clear()


async def _tcp_exchange(
    query: dns.message.Message, wire: bytes, host: str, port: int
) -> dns.message.Message:
    """One query on a new TCP connection (RFC 7766), with a new random ID."""
    qid = secrets.randbits(16)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack("!HH", len(wire), qid) + wire[2:])
        await writer.drain()
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        data = await reader.readexactly(length)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    response = parse_message(data)  # a parse error is the caller's "malformed"
    if response.id != qid or not _answers(query, response):
        raise dns.query.BadResponse("no answer to the query")  # type: ignore[no-untyped-call]
    return response


_TRANSPORTS: dict[asyncio.AbstractEventLoop, Transport] = {}


def transport() -> Transport:
    """The running loop's transport (made on first use; those of closed loops are freed)."""
    loop = asyncio.get_running_loop()
    found = _TRANSPORTS.get(loop)
    if found is None:
        for old in [lp for lp in _TRANSPORTS if lp.is_closed()]:
            _TRANSPORTS.pop(old).close()
        found = _TRANSPORTS[loop] = Transport(loop)
    return found


async def exchange(
    query: dns.message.Message, host: str, port: int, budget_s: float
) -> dns.message.Message:
    """``transport().exchange``: what ``dnsclient`` calls for every query."""
    return await transport().exchange(query, host, port, budget_s)


def close() -> None:
    """Close the running loop's sockets (at shutdown); a later query opens new ones."""
    with contextlib.suppress(RuntimeError):
        found = _TRANSPORTS.pop(asyncio.get_running_loop(), None)
        if found is not None:
            found.close()
