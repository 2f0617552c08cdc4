"""ResolverClient against a tiny in-process DNS responder on 127.0.0.1 (UDP + TCP).

Each test gives the responder a handler that crafts the reply for the query it got (or
``None`` to stay silent), so every classification path of the adapter runs over real
sockets and real dnspython parsing.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlspolicy.dnsstub.answer import MAX_CNAME_HOPS, NONEXISTENT_NAME_TTL_S
from tlspolicy.dnsstub.client import (
    ResolverClient,
    system_nameservers,
    trust_warnings,
    valid_name,
    well_formed_name,
)
from tlspolicy.dnsstub.data import AddressRecord, MxRecord, TlsaRecord, TxtRecord
from tlspolicy.dnsstub.trace import Trace, recording
from tlspolicy.errors import DnsError

Handler = Callable[[dns.message.Message, str], bytes | None]


@dataclass
class Responder:
    """A DNS server on 127.0.0.1: the handler gets (query, "udp"|"tcp") and returns wire bytes."""

    handler: Handler
    tcp: bool = True
    port: int = 0
    seen: list[tuple[dns.message.Message, str]] = field(default_factory=list)
    _udp: Any = None
    _tcp: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        responder = self

        class _Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                reply = responder._answer(data, "udp")
                if reply is not None:
                    self.transport.sendto(reply, addr)

        transport, _ = await loop.create_datagram_endpoint(_Udp, local_addr=("127.0.0.1", 0))
        self._udp = transport
        self.port = transport.get_extra_info("sockname")[1]
        if self.tcp:
            self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    def _answer(self, data: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(data)
        self.seen.append((query, transport))
        return self.handler(query, transport)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            reply = self._answer(await reader.readexactly(length), "tcp")
            if reply is not None:
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Responder]]]:
    started: list[Responder] = []

    async def _start(handler: Handler, *, tcp: bool = True) -> Responder:
        for _ in range(20):  # the TCP port may be taken; pick another UDP port then
            responder = Responder(handler, tcp=tcp)
            try:
                await responder.start()
            except OSError:
                await responder.stop()
                continue
            started.append(responder)
            return responder
        raise RuntimeError("no free port pair")

    yield _start
    for responder in started:
        await responder.stop()


def reply(
    query: dns.message.Message,
    *,
    rcode: int = dns.rcode.NOERROR,
    ad: bool = True,
    answer: tuple[tuple[str, int, str, str], ...] = (),
    authority: tuple[tuple[str, int, str, str], ...] = (),
    ede: tuple[int, str] | None = None,
    tc: bool = False,
) -> bytes:
    """Wire bytes answering ``query``; RRsets given as (name, ttl, rdtype, rdata text)."""
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if ad:
        response.flags |= dns.flags.AD
    else:
        response.flags &= ~dns.flags.AD
    if tc:
        response.flags |= dns.flags.TC
    for section, rrs in ((response.answer, answer), (response.authority, authority)):
        for name, ttl, rdtype, text in rrs:
            section.append(dns.rrset.from_text(name + ".", ttl, "IN", rdtype, text))
    if ede is not None:
        response.use_edns(0, payload=1232, options=[dns.edns.EDEOption(ede[0], ede[1])])
    return response.to_wire()


SOA = "ns.example. hostmaster.example. 1 3600 600 86400 {minimum}"


def client(*ports: int, timeout: float = 1.0) -> ResolverClient:
    return ResolverClient([("127.0.0.1", p) for p in ports], timeout=timeout)


# --- answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ad", "secure"),
    [pytest.param(True, True, id="ad-set"), pytest.param(False, False, id="ad-unset")],
)
async def test_query_secure_follows_ad_flag(serve, ad: bool, secure: bool) -> None:
    srv = await serve(lambda q, t: reply(q, ad=ad, answer=(("mx.example", 300, "A", "192.0.2.1"),)))
    answer = await client(srv.port).query("mx.example", "A")
    assert answer.secure is secure
    assert answer.rcode == "NOERROR"
    assert answer.records == (AddressRecord("192.0.2.1"),)
    assert answer.ttl == 300
    assert answer.canonical_name == "mx.example"
    assert answer.cnames == ()


async def test_query_sends_rd_ad_and_edns_payload_without_do(serve) -> None:
    srv = await serve(lambda q, t: reply(q))
    await ResolverClient([("127.0.0.1", srv.port)], timeout=1.0, udp_size=1400).query(
        "Example.COM", "MX"
    )
    query, transport = srv.seen[0]
    assert transport == "udp"
    assert not query.ednsflags & dns.flags.DO  # RFC 6840 §5.7: AD asks for AD, no RRSIGs
    assert query.flags & dns.flags.RD and query.flags & dns.flags.AD
    assert query.edns == 0
    assert query.payload == 1400
    assert query.question[0].name.to_text() == "example.com."


@pytest.mark.parametrize(
    ("rdtype", "rdata", "expected"),
    [
        pytest.param("MX", "10 MX1.Example.", MxRecord(10, "mx1.example"), id="mx-lowercase"),
        pytest.param("MX", "0 .", MxRecord(0, ""), id="null-mx"),
        pytest.param(
            "TLSA", "3 1 1 " + "ab" * 32, TlsaRecord(3, 1, 1, bytes([0xAB]) * 32), id="tlsa"
        ),
        pytest.param("TXT", '"v=STSv1; " "id=1"', TxtRecord((b"v=STSv1; ", b"id=1")), id="txt"),
        pytest.param("AAAA", "2001:db8::1", AddressRecord("2001:db8::1"), id="aaaa"),
    ],
)
async def test_query_converts_records(serve, rdtype: str, rdata: str, expected: object) -> None:
    srv = await serve(lambda q, t: reply(q, answer=(("d.example", 60, rdtype, rdata),)))
    answer = await client(srv.port).query("d.example", rdtype)
    assert answer.records == (expected,)


@pytest.mark.parametrize(
    ("soa_ttl", "minimum", "expected"),
    [
        pytest.param(600, 300, 300, id="soa-minimum-smaller"),
        pytest.param(100, 300, 100, id="soa-ttl-smaller"),
    ],
)
async def test_query_nxdomain_ttl_from_soa(
    serve, soa_ttl: int, minimum: int, expected: int
) -> None:
    soa = (("example", soa_ttl, "SOA", SOA.format(minimum=minimum)),)
    srv = await serve(lambda q, t: reply(q, rcode=dns.rcode.NXDOMAIN, authority=soa))
    answer = await client(srv.port).query("nope.example", "MX")
    assert (answer.rcode, answer.records, answer.ttl, answer.secure) == (
        "NXDOMAIN",
        (),
        expected,
        True,
    )
    assert answer.is_negative


async def test_query_negative_without_soa_has_ttl_zero(serve) -> None:
    srv = await serve(lambda q, t: reply(q, ad=False))
    answer = await client(srv.port).query("nodata.example", "TLSA")
    assert (answer.rcode, answer.records, answer.ttl, answer.secure) == ("NOERROR", (), 0, False)


# --- CNAME chains ----------------------------------------------------------------------


async def test_query_follows_cname_chain(serve) -> None:
    chain = (
        ("alias.example", 500, "CNAME", "mid.example."),
        ("mid.example", 200, "CNAME", "host.example."),
        ("host.example", 300, "A", "192.0.2.7"),
        ("other.example", 1, "A", "192.0.2.99"),  # off the chain: ignored
    )
    srv = await serve(lambda q, t: reply(q, answer=chain))
    answer = await client(srv.port).query("alias.example", "A")
    assert answer.cnames == (("alias.example", "mid.example"), ("mid.example", "host.example"))
    assert answer.canonical_name == "host.example"
    assert answer.records == (AddressRecord("192.0.2.7"),)
    assert answer.ttl == 200


async def test_query_cname_to_nodata_is_nodata_at_target(serve) -> None:
    chain = (("alias.example", 500, "CNAME", "host.example."),)
    soa = (("example", 900, "SOA", SOA.format(minimum=700)),)
    srv = await serve(lambda q, t: reply(q, answer=chain, authority=soa))
    answer = await client(srv.port).query("alias.example", "TLSA")
    assert answer.canonical_name == "host.example"
    assert answer.records == ()
    assert answer.rcode == "NOERROR"
    assert answer.ttl == 500
    assert len(srv.seen) == 1  # no re-query of the target


async def test_query_cname_rdtype_returns_one_hop(serve) -> None:
    chain = (("alias.example", 500, "CNAME", "host.example."),)
    srv = await serve(lambda q, t: reply(q, answer=chain))
    answer = await client(srv.port).query("alias.example", "CNAME")
    assert answer.cnames == (("alias.example", "host.example"),)
    assert answer.canonical_name == "host.example"


def _chain(hops: int) -> tuple[tuple[str, int, str, str], ...]:
    links = [(f"n{i}.example", 60, "CNAME", f"n{i + 1}.example.") for i in range(hops)]
    return (*links, (f"n{hops}.example", 60, "A", "192.0.2.1"))


@pytest.mark.parametrize(
    ("chain", "error"),
    [
        pytest.param(_chain(MAX_CNAME_HOPS), None, id="longest-allowed"),
        pytest.param(_chain(MAX_CNAME_HOPS + 1), "longer than", id="overlong"),
        pytest.param(
            (
                ("n0.example", 60, "CNAME", "n1.example."),
                ("n1.example", 60, "CNAME", "n0.example."),
            ),
            "loop",
            id="loop",
        ),
    ],
)
async def test_query_cname_chain_bounds(serve, chain, error: str | None) -> None:
    srv = await serve(lambda q, t: reply(q, answer=chain))
    if error is None:
        answer = await client(srv.port).query("n0.example", "A")
        assert len(answer.cnames) == MAX_CNAME_HOPS
        return
    with pytest.raises(DnsError) as caught:
        await client(srv.port).query("n0.example", "A")
    assert caught.value.kind == "malformed"
    assert error in caught.value.detail


# --- failures --------------------------------------------------------------------------


async def test_query_servfail_carries_ede_text(serve) -> None:
    srv = await serve(
        lambda q, t: reply(q, rcode=dns.rcode.SERVFAIL, ad=False, ede=(6, "sig\nexpired; key"))
    )
    with pytest.raises(DnsError) as caught:
        await client(srv.port).query("bogus.example", "MX")
    assert caught.value.kind == "servfail"
    assert caught.value.detail == "EDE 6 DNSSEC Bogus: sig?expired, key"
    assert (caught.value.name, caught.value.rdtype) == ("bogus.example", "MX")


@pytest.mark.parametrize(
    ("rcode", "kind"),
    [
        pytest.param(dns.rcode.SERVFAIL, "servfail", id="servfail"),
        pytest.param(dns.rcode.REFUSED, "refused", id="refused"),
        pytest.param(dns.rcode.NOTIMP, "other", id="notimp"),
        pytest.param(dns.rcode.FORMERR, "other", id="formerr"),
    ],
)
async def test_query_error_rcodes(serve, rcode: int, kind: str) -> None:
    srv = await serve(lambda q, t: reply(q, rcode=rcode, ad=False))
    with pytest.raises(DnsError) as caught:
        await client(srv.port).query("x.example", "A")
    assert caught.value.kind == kind


async def test_query_truncated_udp_falls_back_to_tcp(serve) -> None:
    def handler(q: dns.message.Message, transport: str) -> bytes:
        if transport == "udp":
            return reply(q, tc=True)
        return reply(q, answer=(("big.example", 60, "TXT", '"' + "x" * 200 + '"'),))

    srv = await serve(handler)
    answer = await client(srv.port).query("big.example", "TXT")
    assert [t for _, t in srv.seen] == ["udp", "tcp"]
    assert answer.records == (TxtRecord((b"x" * 200,)),)


async def test_query_tcp_refused_is_network_error(serve) -> None:
    srv = await serve(lambda q, t: reply(q, tc=True), tcp=False)
    with pytest.raises(DnsError) as caught:
        await client(srv.port).query("big.example", "TXT")
    assert caught.value.kind == "network"


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(lambda q, t: b"\x00\x01garbage", id="garbage"),
        pytest.param(
            lambda q, t: dns.message.make_response(
                dns.message.make_query("other.example", "A", id=(q.id + 1) % 65536)
            ).to_wire(),
            id="mismatched-id",
        ),
    ],
)
async def test_query_stray_response_is_ignored_until_the_timeout(serve, handler: Handler) -> None:
    # Garbage or another ID over UDP is dropped (anyone can send a datagram): the query
    # waits for its real answer, and without one it is a time-out (issue 15).
    srv = await serve(handler)
    with pytest.raises(DnsError) as caught:
        await client(srv.port).query("x.example", "A")
    assert caught.value.kind == "timeout"


async def test_query_silence_times_out_within_budget(serve) -> None:
    srv = await serve(lambda q, t: None)
    started = time.monotonic()
    with pytest.raises(DnsError) as caught:
        await client(srv.port, timeout=0.3).query("slow.example", "A")
    elapsed = time.monotonic() - started
    assert caught.value.kind == "timeout"
    assert 0.25 <= elapsed < 0.8


async def test_query_dead_first_server_leaves_time_for_second(serve) -> None:
    dead = await serve(lambda q, t: None)
    good = await serve(lambda q, t: reply(q, answer=(("x.example", 60, "A", "192.0.2.1"),)))
    started = time.monotonic()
    answer = await client(dead.port, good.port, timeout=1.0).query("x.example", "A")
    elapsed = time.monotonic() - started
    assert answer.records == (AddressRecord("192.0.2.1"),)
    assert len(dead.seen) == 1
    assert 0.4 <= elapsed < 0.95  # the dead server got half the budget, not all of it


@pytest.mark.parametrize(
    ("rcode", "kind"),
    [
        pytest.param(dns.rcode.SERVFAIL, "servfail", id="servfail"),
        pytest.param(dns.rcode.FORMERR, "other", id="formerr"),
    ],
)
async def test_query_servfail_is_final_not_asked_of_next_server(
    serve, rcode: int, kind: str
) -> None:
    # SERVFAIL is how a validating resolver says "bogus": the next server must not get a
    # chance to answer (it might not validate). Every listed server must validate.
    bad = await serve(lambda q, t: reply(q, rcode=rcode, ede=(6, "")))
    good = await serve(lambda q, t: reply(q, answer=(("x.example", 60, "A", "192.0.2.1"),)))
    with pytest.raises(DnsError) as caught:
        await client(bad.port, good.port).query("x.example", "A")
    assert caught.value.kind == kind
    assert (caught.value.name, caught.value.rdtype) == ("x.example", "A")
    assert good.seen == []


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(lambda q, t: reply(q, rcode=dns.rcode.REFUSED), id="refused"),
        pytest.param(lambda q, t: b"\x00\x01garbage", id="garbage"),
    ],
)
async def test_query_refused_or_garbage_moves_to_next_server(serve, handler: Handler) -> None:
    bad = await serve(handler)
    good = await serve(lambda q, t: reply(q, rcode=dns.rcode.NXDOMAIN))
    answer = await client(bad.port, good.port).query("x.example", "A")
    assert answer.rcode == "NXDOMAIN"
    assert len(good.seen) == 1


async def test_query_all_servers_fail_reports_most_telling_error(serve) -> None:
    dead = await serve(lambda q, t: None)
    refusing = await serve(lambda q, t: reply(q, rcode=dns.rcode.REFUSED))
    with pytest.raises(DnsError) as caught:
        await client(dead.port, refusing.port, timeout=0.4).query("x.example", "A")
    assert caught.value.kind == "refused"
    assert (caught.value.name, caught.value.rdtype) == ("x.example", "A")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a..example", id="empty-label"),
        pytest.param("a" * 64 + ".example", id="long-label"),
        pytest.param("_25._tcp." + "a" * 64 + ".example", id="long-label-far-too-long"),
        pytest.param("exa mple.com", id="space"),
        pytest.param("mail\\032x.example", id="escaped-octet"),
        pytest.param("bücher.example", id="u-label"),
        pytest.param("example.com\n", id="newline"),
    ],
)
async def test_query_invalid_name_is_malformed_without_sending(serve, name: str) -> None:
    srv = await serve(lambda q, t: reply(q))
    with pytest.raises(DnsError) as caught:
        await client(srv.port).query(name, "A")
    assert caught.value.kind == "malformed"
    assert srv.seen == []


# A 253-character name made of 63-octet labels: the longest a query can carry
# (255 octets on the wire, RFC 1035 §3.1).
LABEL_63 = "a" * 63
LONGEST_NAME = ".".join([LABEL_63, "b" * 63, "c" * 63, "d" * 58, "ex"])


def test__longest_name_is_253_characters() -> None:
    assert len(LONGEST_NAME) == 253


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        pytest.param("_25._tcp.mx.example", True, id="tlsa-owner"),
        pytest.param("xn--bcher-kva.example", True, id="a-label"),
        pytest.param(LABEL_63 + ".example", True, id="63-octet-label"),
        pytest.param(LONGEST_NAME, True, id="253-characters"),
        pytest.param(LONGEST_NAME + "x", False, id="254-characters"),
        pytest.param("-mx-.0.example", True, id="odd-but-sendable"),
        pytest.param("Example.com", False, id="uppercase"),
        pytest.param("example.com.", False, id="trailing-dot"),
    ],
)
def test_valid_name(name: str, valid: bool) -> None:
    assert valid_name(name) is valid


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(LABEL_63 + ".example", id="63-octet-label"),
        pytest.param(LONGEST_NAME, id="253-characters"),
        pytest.param("_25._tcp.-mx-.0.example", id="odd-but-sendable"),
        pytest.param(LABEL_63.upper() + ".Example.", id="case-and-trailing-dot"),
    ],
)
async def test_query_long_and_odd_names_are_sent(serve, name: str) -> None:
    wanted = name.lower().removesuffix(".")
    srv = await serve(lambda q, t: reply(q, answer=((wanted, 60, "A", "192.0.2.7"),)))
    answer = await client(srv.port).query(name, "A")
    assert answer.records == (AddressRecord("192.0.2.7"),)
    assert answer.qname == wanted
    assert srv.seen[0][0].question[0].name.to_text() == wanted + "."


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        pytest.param("_25._tcp." + LONGEST_NAME, "TLSA", id="tlsa-owner"),
        pytest.param("_mta-sts." + LONGEST_NAME, "TXT", id="mta-sts-owner"),
        pytest.param(LONGEST_NAME + ".x", "A", id="254-characters"),
    ],
)
async def test_query_name_too_long_to_exist_is_nxdomain_without_sending(
    serve, name: str, rdtype: str
) -> None:
    srv = await serve(lambda q, t: reply(q))
    with recording(Trace()) as trace:
        answer = await client(srv.port).query(name, rdtype)
    assert (answer.rcode, answer.records, answer.secure) == ("NXDOMAIN", (), True)
    assert answer.ttl == NONEXISTENT_NAME_TTL_S
    assert srv.seen == []
    (event,) = trace.events
    assert (event.name, event.detail, event.status) == (name, rdtype, "secure")
    assert event.data == ["NXDOMAIN (name longer than 255 octets, not sent)"]


async def test_query_trace_records_success_and_failure(serve) -> None:
    def handler(q: dns.message.Message, transport: str) -> bytes:
        if q.question[0].name.to_text() == "bad.example.":
            return reply(q, rcode=dns.rcode.REFUSED)
        return reply(q, answer=(("mx.example", 120, "MX", "10 a.example."),))

    srv = await serve(handler)
    dns_client = client(srv.port)
    with recording(Trace()) as trace:
        await dns_client.query("mx.example", "MX")
        with pytest.raises(DnsError):
            await dns_client.query("bad.example", "MX")
    await dns_client.query("mx.example", "MX")  # not recorded: no trace is current
    await dns_client.aclose()
    ok, failed = trace.events
    assert (ok.kind, ok.name, ok.detail, ok.status, ok.ttl) == (
        "dns",
        "mx.example",
        "MX",
        "secure",
        120,
    )
    assert ok.data == ["10 a.example"]
    assert ok.elapsed_ms is not None
    assert (failed.name, failed.status, failed.data[0]) == ("bad.example", "error", "refused")


def test_resolver_client_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ResolverClient([], timeout=1.0)
    with pytest.raises(ValueError):
        ResolverClient([("127.0.0.1", 53)], timeout=0)
    with pytest.raises(ValueError):
        ResolverClient([("localhost", 53)], timeout=1.0)


# --- resolv.conf -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n"
            "nameserver ::1\n",
            [("192.0.2.53", 53), ("fe80::1", 53), ("::1", 53)],
            id="v4-v6-scope",
        ),
        pytest.param("nameserver not-an-ip\nnameserver\n", [("127.0.0.1", 53)], id="invalid"),
        pytest.param("", [("127.0.0.1", 53)], id="empty"),
    ],
)
def test_system_nameservers(tmp_path: Path, text: str, expected: list[tuple[str, int]]) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(text)
    assert system_nameservers(str(path)) == expected


def test_system_nameservers_missing_file_falls_back(tmp_path: Path) -> None:
    assert system_nameservers(str(tmp_path / "missing")) == [("127.0.0.1", 53)]


async def test_query_keeps_tlsa_data_that_does_not_fit_its_matching_type(serve) -> None:
    good, odd = "ab" * 32, "cd" * 5

    def handler(q: dns.message.Message, transport: str) -> bytes:
        wire = reply(q, answer=(("_25._tcp.mx.example", 300, "TLSA", f"3 1 0 {odd}"),
                                ("_25._tcp.mx.example", 300, "TLSA", f"3 1 1 {good}")))  # fmt: skip
        # 3 1 0 takes any length; as 3 1 1 these 5 octets do not fit SHA-256.
        return wire.replace(
            b"\x03\x01\x00" + bytes.fromhex(odd), b"\x03\x01\x01" + bytes.fromhex(odd)
        )

    srv = await serve(handler)
    dns_client = client(srv.port)
    answer = await dns_client.query("_25._tcp.mx.example", "TLSA")
    await dns_client.aclose()
    assert answer.secure and answer.rcode == "NOERROR"
    assert sorted(answer.records, key=lambda r: r.data) == [  # type: ignore[union-attr]
        TlsaRecord(3, 1, 1, bytes.fromhex(good)),
        TlsaRecord(3, 1, 1, bytes.fromhex(odd)),
    ]


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet="ab_-.9Z\u00fc", max_size=80)
    | st.from_regex(r"[a-z]{60,66}(\.[a-z]{1,3}){0,2}")
)
def test_well_formed_name_is_lowercase_ldh_labels_of_1_to_63(name: str) -> None:
    labels = name.split(".")
    expected = bool(name) and all(
        0 < len(label) <= 63 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_-" for c in label)
        for label in labels
    )
    assert well_formed_name(name) is expected


def test_trust_warnings_name_remote_resolvers_and_the_fix(tmp_path: Path) -> None:
    """RFC 7672 §1.3: the AD bit is trusted only from a resolver on this host."""
    assert trust_warnings([("127.0.0.1", 53), ("::1", 53)], trust_remote=False) == []
    (warning,) = trust_warnings([("127.0.0.1", 53), ("192.0.2.53", 53)], trust_remote=False)
    assert warning.startswith("dns.nameservers: 192.0.2.53 is not on loopback")
    assert "dns.trust_remote_resolver: true" in warning
    assert trust_warnings([("192.0.2.53", 53)], trust_remote=True) == []
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 198.51.100.1\nnameserver 198.51.100.2\n")
    (warning,) = trust_warnings([], trust_remote=False, resolv_conf=str(resolv))
    assert warning.startswith(f"{resolv} names no resolver on loopback (198.51.100.1")
    assert "apt install unbound" in warning
