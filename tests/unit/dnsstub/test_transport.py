"""dnstransport against a tiny UDP+TCP responder on 127.0.0.1 that answers as told."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from tlspolicy.dnsstub import codec as dnscodec
from tlspolicy.dnsstub import transport as dnstransport
from tlspolicy.dnsstub.codec import Response
from tlspolicy.dnsstub.data import AddressRecord
from tlspolicy.dnsstub.transport import Query, Transport

# (query, wire, source address) -> datagrams to send back (in this order) to the source.
Handler = Callable[[dns.message.Message, bytes, tuple[str, int]], list[bytes]]


def answer(query: dns.message.Message, address: str = "192.0.2.1", *, tc: bool = False) -> bytes:
    response = dns.message.make_response(query)
    if tc:
        response.flags |= dns.flags.TC
    else:
        response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", address))
    return response.to_wire()


class Responder:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.port = self.udp.getsockname()[1]
        self.sources: list[tuple[str, int]] = []
        self.ids: list[int] = []
        self.tcp_queries = 0
        self.tcp: asyncio.Server | None = None

    async def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.udp.fileno(), self._readable)
        self.tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)

    def _readable(self) -> None:
        wire, source = self.udp.recvfrom(65535)
        query = dns.message.from_wire(wire)
        self.sources.append(source)
        self.ids.append(query.id)
        for datagram in self.handler(query, wire, source):
            self.udp.sendto(datagram, source)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        query = dns.message.from_wire(await reader.readexactly(length))
        self.tcp_queries += 1
        reply = answer(query, "192.0.2.99")
        writer.write(struct.pack("!H", len(reply)) + reply)
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        asyncio.get_running_loop().remove_reader(self.udp.fileno())
        self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            await self.tcp.wait_closed()


@pytest.fixture
async def responder() -> AsyncIterator[Callable[[Handler], Any]]:
    started: list[Responder] = []

    async def start(handler: Handler) -> Responder:
        for _ in range(20):  # the TCP port of the same number may be taken
            server = Responder(handler)
            try:
                await server.start()
            except OSError:
                await server.stop()
                continue
            started.append(server)
            return server
        raise RuntimeError("no free port pair")

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    made = Transport(asyncio.get_running_loop())
    yield made
    made.close()


def query(name: str = "x.example") -> Query:
    return Query(name, dnscodec.encode_name(name), dnscodec.A, 1232)


def first_address(response: Response) -> str:
    (rrset,) = response.answer.values()
    (record,) = rrset.items
    assert isinstance(record, AddressRecord)
    return record.address


async def exchange(transport: Transport, server: Responder, q: Query) -> Any:
    return await transport.exchange(q, "127.0.0.1", server.port, 1.0)


async def test_answers_come_back_and_sockets_are_reused(
    transport: Transport, responder: Any
) -> None:
    server = await responder(lambda q, w, s: [answer(q)])
    for _ in range(20):
        assert first_address(await exchange(transport, server, query())) == "192.0.2.1"
    assert len(set(server.sources)) == dnstransport.POOL_SIZE  # 20 queries, 4 sockets


async def test_concurrent_replies_are_matched_by_id(
    transport: Transport, responder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dnstransport, "POOL_SIZE", 1)  # all three on one socket
    held: list[tuple[dns.message.Message, tuple[str, int]]] = []

    def hold_then_answer_in_reverse(q: dns.message.Message, w: bytes, s: Any) -> list[bytes]:
        held.append((q, s))
        if len(held) < 3:
            return []
        for old, source in reversed(held[:-1]):
            server.udp.sendto(answer(old, f"192.0.2.{len(old.question[0].name.to_text())}"), source)
        return [answer(q, f"192.0.2.{len(q.question[0].name.to_text())}")]

    server = await responder(hold_then_answer_in_reverse)
    names = ["a.example", "bb.example", "ccc.example"]
    results = await asyncio.gather(*(exchange(transport, server, query(n)) for n in names))
    assert [first_address(r) for r in results] == [f"192.0.2.{len(n) + 1}" for n in names]


def _forged(q: dns.message.Message, **change: Any) -> bytes:
    other = dns.message.make_query(change.get("name", q.question[0].name), "A")
    other.id = change.get("id", q.id)
    return answer(other, "203.0.113.66")


@pytest.mark.parametrize(
    "stray",
    [
        pytest.param(lambda q: _forged(q, id=(q.id + 1) % 65536), id="other-id"),
        pytest.param(lambda q: _forged(q, name="evil.example"), id="other-question"),
        pytest.param(lambda q: struct.pack("!H", q.id) + b"garbage-garbage", id="garbage"),
        pytest.param(lambda q: struct.pack("!H", q.id), id="short"),
        pytest.param(
            lambda q: dns.message.make_query("x.example", "A", id=q.id).to_wire(),
            id="not-a-response",
        ),
    ],
)
async def test_stray_datagrams_are_dropped_and_the_answer_still_counts(
    transport: Transport, responder: Any, stray: Callable[[dns.message.Message], bytes]
) -> None:
    server = await responder(lambda q, w, s: [stray(q), answer(q)])
    assert first_address(await exchange(transport, server, query())) == "192.0.2.1"


async def test_reply_from_another_port_is_not_accepted(
    transport: Transport, responder: Any
) -> None:
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forger.bind(("127.0.0.1", 0))

    def forge_then_stay_silent(q: dns.message.Message, w: bytes, source: Any) -> list[bytes]:
        forger.sendto(answer(q, "203.0.113.66"), source)  # right ID, wrong source port
        return []

    server = await responder(forge_then_stay_silent)
    with pytest.raises(TimeoutError):
        await transport.exchange(query(), "127.0.0.1", server.port, 0.3)
    forger.close()


async def test_truncated_reply_is_asked_again_over_tcp(
    transport: Transport, responder: Any
) -> None:
    server = await responder(lambda q, w, s: [answer(q, tc=True)[:40]])  # cut mid-record
    assert first_address(await exchange(transport, server, query())) == "192.0.2.99"
    assert server.tcp_queries == 1 and transport.tcp_queries == 1


async def test_silence_is_a_timeout_and_forgets_the_query(
    transport: Transport, responder: Any
) -> None:
    server = await responder(lambda q, w, s: [])
    with pytest.raises(TimeoutError):
        await transport.exchange(query(), "127.0.0.1", server.port, 0.2)
    assert all(not c.pending for pool in transport._pools.values() for c in pool)


async def test_closed_port_fails_fast_with_os_error(
    transport: Transport,
) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(OSError):  # ICMP port unreachable on the connected socket
        await transport.exchange(query(), "127.0.0.1", port, 5.0)


async def test_sockets_are_replaced_after_their_quota(
    transport: Transport, responder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dnstransport, "POOL_SIZE", 1)
    monkeypatch.setattr(dnstransport, "MAX_QUERIES_PER_SOCKET", 3)
    server = await responder(lambda q, w, s: [answer(q)])
    for _ in range(9):
        await exchange(transport, server, query())
    assert len(set(server.sources)) == 3  # a new source port every 3 queries


async def test_ids_are_random_and_unique_in_flight(
    transport: Transport, responder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dnstransport, "POOL_SIZE", 1)
    picks = iter([7, 7, 7, 9])
    monkeypatch.setattr(dnstransport, "random_id", lambda: next(picks))
    held: list[bytes] = []

    def answer_both_at_the_end(q: dns.message.Message, w: bytes, s: Any) -> list[bytes]:
        held.append(answer(q))
        return held if len(held) == 2 else []

    server = await responder(answer_both_at_the_end)
    await asyncio.gather(exchange(transport, server, query()), exchange(transport, server, query()))
    assert server.ids == [7, 9]  # the colliding second pick was drawn again


async def test_module_level_transport_is_per_loop_and_closable(
    transport: Transport, responder: Any
) -> None:
    server = await responder(lambda q, w, s: [answer(q)])
    response = await dnstransport.exchange(query(), "127.0.0.1", server.port, 1.0)
    assert first_address(response) == "192.0.2.1"
    assert dnstransport.transport() is dnstransport.transport()
    dnstransport.close()
    assert asyncio.get_running_loop() not in dnstransport._TRANSPORTS


def test_random_ids_come_from_the_csprng_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []

    def token_bytes(n: int) -> bytes:
        reads.append(n)
        return bytes(range(256)) * (n // 256)

    monkeypatch.setattr(dnstransport, "_ids", [])
    monkeypatch.setattr("tlspolicy.dnsstub.transport.secrets.token_bytes", token_bytes)
    drawn = [dnstransport.random_id() for _ in range(dnstransport._IDS_PER_READ + 1)]
    assert reads == [1024, 1024] and drawn[0] == 0xFEFF and drawn[1] == 0xFCFD


def _questionless(q: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    reply = dns.message.make_response(q)
    reply.set_rcode(rcode)
    reply.question = []
    return reply.to_wire()


async def test_a_questionless_servfail_is_no_verdict(transport: Transport, responder: Any) -> None:
    """Matched by the 16-bit ID alone, a forged SERVFAIL would defer the mail (TEMP): it is
    dropped and counted, and the real answer that follows counts."""
    server = await responder(lambda q, w, s: [_questionless(q, dns.rcode.SERVFAIL), answer(q)])
    assert first_address(await exchange(transport, server, query())) == "192.0.2.1"
    assert transport.questionless_replies == 1


@pytest.mark.parametrize("rcode", [dns.rcode.FORMERR, dns.rcode.SERVFAIL, dns.rcode.REFUSED])
async def test_only_a_questionless_reply_fails_the_exchange_at_its_deadline(
    transport: Transport, responder: Any, rcode: dns.rcode.Rcode
) -> None:
    server = await responder(lambda q, w, s: [_questionless(q, rcode)])
    with pytest.raises(dnstransport.Mismatch, match=f"rcode {int(rcode)}"):
        await transport.exchange(query(), "127.0.0.1", server.port, 0.2)
    assert transport.questionless_replies == 1


async def test_a_resolver_off_loopback_gets_a_fresh_socket_per_query(
    transport: Transport, responder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 5452 §9.2: a new random source port per query where off-host senders could
    guess; the responder stays on 127.0.0.1, taken for a remote address here."""
    made: list[dnstransport._Channel] = []

    class Counted(dnstransport._Channel):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(dnstransport, "reuses_sockets", lambda host: False)
    monkeypatch.setattr(dnstransport, "_Channel", Counted)
    server = await responder(lambda q, w, s: [answer(q)])
    for _ in range(12):
        assert first_address(await exchange(transport, server, query())) == "192.0.2.1"
        assert made[-1].closed  # its one query answered, its port given up
    assert len(made) == 12 and not transport._pools


def test_only_loopback_resolvers_share_sockets() -> None:
    assert dnstransport.reuses_sockets("127.0.0.1") and dnstransport.reuses_sockets("::1")
    assert not dnstransport.reuses_sockets("192.0.2.53")
    assert not dnstransport.reuses_sockets("2001:db8::53")
