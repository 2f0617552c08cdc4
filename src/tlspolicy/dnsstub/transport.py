"""DNS on the wire: long-lived UDP sockets with query-ID matching, TCP on truncation.

Why: a fresh socket per query (bind, connect, close, a new selector registration) cost
more CPU than the query itself. Here each nameserver gets a small pool of connected UDP
sockets that live for many queries; replies are matched to queries by ID and question.
``dnscodec`` builds and reads the messages.

Spoofing resistance (RFC 5452): every query gets an unpredictable ID (``random_id``) that is
unique among the queries in flight on its socket; sockets are connected, so the kernel
delivers only datagrams from the nameserver's address and port (checked again here); a
socket is retired after ``MAX_QUERIES_PER_SOCKET`` queries or ``MAX_SOCKET_AGE_S`` seconds,
so the source port (chosen at random by the kernel) keeps changing, and queries are spread
over ``POOL_SIZE`` sockets. That reuse is for a resolver on loopback, where no off-host
sender can reach the socket; to any other address each query gets a fresh socket, so a
fresh random source port, as RFC 5452 §9.2 asks (``reuses_sockets``). A datagram that is
short, unparsable, for no query in flight or not an answer to that query's question is
dropped and the wait goes on: any host can send a datagram, and failing on the first one
would let it defer the mail. An error reply
without a question section (FORMERR, SERVFAIL, NOTIMP, REFUSED may come so) is matched by
the ID alone, 16 bits, so a forger could make a SERVFAIL into a verdict: it is counted
(``Transport.questionless_replies``) and dropped like the others, and the wait goes on.
If the time runs out with no other reply, the exchange fails as ``Mismatch`` (malformed,
so the next nameserver is asked), never as the rcode. An ICMP error (port unreachable)
fails the queries in flight on that socket at once: the server is not there.

A truncated reply (TC) is asked again over TCP with a new ID, in the same time budget.
Errors are raised as the types ``client._exchange`` translates: ``TimeoutError``,
``OSError``, ``EOFError``, ``Mismatch`` and ``dnscodec.FormatError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import secrets
import socket
import struct
from dataclasses import dataclass

from tlspolicy.dnsstub import codec as dnscodec
from tlspolicy.dnsstub.codec import FormatError, Response, build_query, parse_response

POOL_SIZE = 4  # sockets per nameserver in use at a time
MAX_QUERIES_PER_SOCKET = 500  # then a new socket (a new random source port)
MAX_SOCKET_AGE_S = 60.0
MAX_UDP_RESPONSE = 65535
_HEADER = 12  # octets of a DNS header; shorter datagrams are dropped unread

Question = tuple[str, int, int]  # (name, type, class), the name lowercase, as dnscodec reads


_IDS_PER_READ = 512
_ids: list[int] = []


def random_id() -> int:
    """A query ID from the OS CSPRNG (``secrets``), read 512 at a time: one system call
    per 512 queries instead of one per query."""
    if not _ids:
        _ids.extend(struct.unpack(f"!{_IDS_PER_READ}H", secrets.token_bytes(2 * _IDS_PER_READ)))
    return _ids.pop()


os.register_at_fork(after_in_child=_ids.clear)  # a worker never reuses its parent's IDs


class Mismatch(ValueError):
    """A TCP response that is not the answer to the query sent, or a UDP exchange that got
    only replies without a question section."""


@functools.lru_cache(maxsize=64)
def reuses_sockets(host: str) -> bool:
    """Whether queries to ``host`` share pooled sockets: only on loopback (see above)."""
    return ipaddress.ip_address(host).is_loopback


@dataclass(frozen=True, slots=True)
class Query:
    """A question to send: ``qname`` is checked lowercase text, ``wire_name`` its wire form."""

    qname: str
    wire_name: bytes
    qtype: int
    udp_size: int

    @property
    def question(self) -> Question:
        return (self.qname, self.qtype, dnscodec.CLASS_IN)

    def wire(self, qid: int) -> bytes:
        return build_query(qid, self.wire_name, self.qtype, self.udp_size)


def _answers(query: Query, response: Response) -> bool:
    """Is ``response`` (already matched by ID) an answer to ``query``'s question?

    One without a question section is not, whatever its rcode (see the module docstring).
    """
    if not response.flags & dnscodec.QR or response.flags & dnscodec.OPCODE_MASK:
        return False  # not a response, or not to a standard query (opcode 0)
    return response.question == query.question


class _Channel:
    """One connected, non-blocking UDP socket to one nameserver and its queries in flight."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, owner: Transport
    ) -> None:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        self.loop = loop
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.connect((host, port))  # binds a random ephemeral source port
            # As the kernel writes it, so a datagram's source compares without parsing.
            self.peer_host, self.peer_port = self.sock.getpeername()[:2]
        except OSError:
            self.sock.close()
            raise
        self.owner = owner
        self.pending: dict[int, tuple[Query, asyncio.Future[Response]]]
        self.pending = {}
        self.questionless: dict[int, int] = {}  # query ID -> rcode of a question-less reply
        self.used = 0
        self.born = loop.time()
        self.retired = False
        self.closed = False
        loop.add_reader(self.sock.fileno(), self._readable)

    def worn_out(self) -> bool:
        return self.used >= MAX_QUERIES_PER_SOCKET or self.loop.time() - self.born > (
            MAX_SOCKET_AGE_S
        )

    def send(self, query: Query) -> tuple[int, asyncio.Future[Response]]:
        qid = random_id()
        while qid in self.pending:
            qid = random_id()
        try:
            self.sock.send(query.wire(qid))
        except OSError:  # e.g. a queued ICMP error: this socket is done, the query failed
            self.retired = True
            if not self.pending:
                self.close()
            raise
        future: asyncio.Future[Response] = self.loop.create_future()
        self.pending[qid] = (query, future)
        self.used += 1
        return qid, future

    def done(self, qid: int) -> None:
        self.pending.pop(qid, None)
        self.questionless.pop(qid, None)
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
        if len(data) < _HEADER or source[1] != self.peer_port or source[0] != self.peer_host:
            return
        qid = struct.unpack_from("!H", data)[0]
        entry = self.pending.get(qid)
        if entry is None or entry[1].done():
            return
        query, future = entry
        # A truncated reply may end inside a record: only its question is needed (-> TCP).
        truncated = bool(data[2] & (dnscodec.TC >> 8))
        try:
            response = parse_response(data, question_only=truncated)
        except FormatError:
            return  # garbage with a live ID: wait for the real answer
        if _answers(query, response):
            future.set_result(response)
        elif response.question is None and response.flags & dnscodec.QR:
            self.owner.questionless_replies += 1
            self.questionless[qid] = response.rcode

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
        self.questionless_replies = 0  # error replies without a question, dropped

    def _channel(self, host: str, port: int) -> _Channel:
        """The next socket in turn; one that is retired or worn out is replaced when its
        turn comes (its queries in flight still get their answers), so a query looks at one
        socket, not at all of them."""
        if not reuses_sockets(host):
            channel = _Channel(self.loop, host, port, self)
            channel.retired = True  # closed after this one query (``done``)
            return channel
        pool = self._pools.get((host, port))
        if pool is None:
            pool = self._pools[(host, port)] = []
        if len(pool) < POOL_SIZE:
            pool.append(_Channel(self.loop, host, port, self))
            return pool[-1]
        self._turn = (self._turn + 1) % len(pool)
        channel = pool[self._turn]
        if channel.retired or channel.worn_out():
            channel.retired = True
            if not channel.pending:
                channel.close()
            channel = pool[self._turn] = _Channel(self.loop, host, port, self)
        return channel

    async def exchange(self, query: Query, host: str, port: int, budget_s: float) -> Response:
        """Ask ``host``:``port`` within ``budget_s`` seconds; TCP when the reply is truncated."""
        deadline = self.loop.time() + budget_s
        channel = self._channel(host, port)
        qid, future = channel.send(query)
        self.udp_queries += 1
        # A timer on the future, not asyncio.timeout: the same deadline for a fraction of
        # the cost, and nearly every query takes this path.
        timer = self.loop.call_at(deadline, _expire, future)
        try:
            response = await future
        except TimeoutError:
            rcode = channel.questionless.get(qid)
            if rcode is None:
                raise
            raise Mismatch(f"only a reply without a question section (rcode {rcode})") from None
        finally:
            timer.cancel()
            channel.done(qid)
        if response.truncated:
            self.tcp_queries += 1
            async with asyncio.timeout_at(deadline):
                return await _tcp_exchange(query, host, port)
        return response

    def close(self) -> None:
        for pool in self._pools.values():
            for channel in pool:
                channel.close()
        self._pools.clear()


def _expire(future: asyncio.Future[Response]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def _tcp_exchange(query: Query, host: str, port: int) -> Response:
    """One query on a new TCP connection (RFC 7766), with a new random ID."""
    qid = random_id()
    wire = query.wire(qid)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        data = await reader.readexactly(length)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    response = parse_response(data)  # a FormatError is the caller's "malformed"
    if response.qid != qid or not _answers(query, response):
        raise Mismatch("no answer to the query")
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


async def exchange(query: Query, host: str, port: int, budget_s: float) -> Response:
    """``transport().exchange``: what ``client.py`` calls for every query."""
    return await transport().exchange(query, host, port, budget_s)


def close() -> None:
    """Close the running loop's sockets (at shutdown); a later query opens new ones."""
    with contextlib.suppress(RuntimeError):
        found = _TRANSPORTS.pop(asyncio.get_running_loop(), None)
        if found is not None:
            found.close()
