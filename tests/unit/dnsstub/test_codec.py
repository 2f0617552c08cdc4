"""The hand-written DNS codec against dnspython: same reading of every generated message.

dnspython is the reference: messages are built with it (random names, including octets
that need escapes, every record type the lookups read, RRSIGs, SOA, OPT with Extended DNS
Errors), and what ``dnscodec.parse_response`` reads must equal what ``dns.message.from_wire``
reads. Queries go the other way: dnspython must read ours as the query we mean.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TLSA
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlspolicy.dnsstub import codec as dnscodec
from tlspolicy.dnsstub.codec import FormatError, build_query, encode_name, parse_response, read_name
from tlspolicy.dnsstub.data import AddressRecord, MxRecord, TlsaRecord, TxtRecord

LABEL = st.one_of(
    st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z]{1,8}", fullmatch=True),
    st.binary(min_size=1, max_size=12),  # octets that need \DDD or \. escapes
)
NAME = st.lists(LABEL, min_size=0, max_size=5).map(
    lambda labels: dns.name.Name(
        [*(lb.encode() if isinstance(lb, str) else lb for lb in labels), b""]
    )
)
SIG = base64.b64encode(bytes(64)).decode()


def _rdata(kind: str, draw: st.DrawFn) -> dns.rdata.Rdata:
    if kind == "A":
        return dns.rdata.from_text(
            "IN", "A", str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
        )
    if kind == "AAAA":
        return dns.rdata.from_text(
            "IN", "AAAA", str(ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1))))
        )
    if kind == "MX":
        return dns.rdata.from_text("IN", "MX", f"{draw(st.integers(0, 65535))} {draw(NAME)}")
    if kind == "CNAME":
        return dns.rdata.from_text("IN", "CNAME", draw(NAME).to_text())
    if kind == "TXT":
        strings = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=3))
        return dns.rdata.from_text(
            "IN", "TXT", " ".join('"' + "".join(f"\\{c:03d}" for c in s) + '"' for s in strings)
        )
    if kind == "TLSA":
        mtype = draw(st.sampled_from([0, 1, 2]))
        size = {0: draw(st.integers(1, 40)), 1: 32, 2: 64}[mtype]
        return dns.rdtypes.ANY.TLSA.TLSA(
            "IN", "TLSA", draw(st.integers(0, 3)), draw(st.integers(0, 1)), mtype, bytes(size)
        )  # type: ignore[no-untyped-call]
    return dns.rdata.from_text(
        "IN", "RRSIG", f"A 13 2 300 20270101000000 20260101000000 1 example. {SIG}"
    )


@st.composite
def messages(draw: st.DrawFn) -> dns.message.Message:
    qname, qtype = draw(NAME), draw(st.sampled_from(list(dnscodec.QTYPES)))
    query = dns.message.make_query(qname, qtype, want_dnssec=True)
    message = dns.message.make_response(query)
    message.id = draw(st.integers(0, 65535))
    if draw(st.booleans()):
        message.flags |= dns.flags.AD
    message.set_rcode(draw(st.sampled_from([0, 2, 3, 5, 16])))
    owners = [qname, *draw(st.lists(NAME, max_size=3))]
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["A", "AAAA", "MX", "CNAME", "TXT", "TLSA", "RRSIG"]))
        rrset = message.find_rrset(message.answer, draw(st.sampled_from(owners)), dns.rdataclass.IN,
                                   dns.rdatatype.from_text(kind),
                                   dns.rdatatype.A if kind == "RRSIG" else dns.rdatatype.NONE,
                                   create=True)  # fmt: skip
        rrset.add(_rdata(kind, draw), draw(st.integers(0, 2**31 - 1)))
    if draw(st.booleans()):
        soa = f"ns.example. host.example. 1 2 3 4 {draw(st.integers(0, 2**31 - 1))}"
        message.authority.append(
            dns.rrset.from_text(draw(NAME), draw(st.integers(0, 9999)), "IN", "SOA", soa)
        )
    if draw(st.booleans()):
        ede = [dns.edns.EDEOption(draw(st.integers(0, 30)), draw(st.text(max_size=20)) or None)]
        message.use_edns(0, dns.flags.DO, 1232, options=ede)
    return message


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _expected(rdata: dns.rdata.Rdata) -> object:
    kind = rdata.rdtype
    if kind in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return ipaddress.ip_address(rdata.address)  # type: ignore[attr-defined]
    if kind == dns.rdatatype.MX:
        exchange = rdata.exchange  # type: ignore[attr-defined]
        return MxRecord(rdata.preference, "" if exchange == dns.name.root else _text(exchange))  # type: ignore[attr-defined]
    if kind == dns.rdatatype.CNAME:
        return _text(rdata.target)  # type: ignore[attr-defined]
    if kind == dns.rdatatype.TXT:
        return TxtRecord(tuple(rdata.strings))  # type: ignore[attr-defined]
    return TlsaRecord(rdata.usage, rdata.selector, rdata.mtype, rdata.cert)  # type: ignore[attr-defined]


def _ours(item: object) -> object:
    return ipaddress.ip_address(item.address) if isinstance(item, AddressRecord) else item


@settings(max_examples=400, deadline=None)
@given(messages())
def test_parse_reads_what_dnspython_reads(message: dns.message.Message) -> None:
    wire = message.to_wire()
    reference = dns.message.from_wire(wire)
    ours = parse_response(wire)
    assert (ours.qid, ours.flags, ours.rcode) == (reference.id, reference.flags, reference.rcode())
    (question,) = reference.question
    assert ours.question == (_text(question.name) or ".", question.rdtype, question.rdclass)
    expected = {
        (_text(r.name) or ".", r.rdtype): (r.ttl, [_expected(rd) for rd in r])
        for r in reference.answer if r.rdtype != dns.rdatatype.RRSIG
    }  # fmt: skip
    got = {key: (r.ttl, [_ours(i) for i in r.items]) for key, r in ours.answer.items()}
    assert got == expected
    soa = next((r for r in reference.authority if r.rdtype == dns.rdatatype.SOA), None)
    assert ours.soa_ttl == (None if soa is None else min(soa.ttl, soa[0].minimum))  # type: ignore[attr-defined]
    assert ours.ede == [(int(o.code), o.text or "") for o in reference.extended_errors()]


@settings(max_examples=400, deadline=None)
@given(messages(), st.data())
def test_any_cut_or_flipped_octet_is_a_format_error_or_a_reading(
    message: dns.message.Message, data: st.DataObject
) -> None:
    wire = bytearray(message.to_wire())
    cut = data.draw(st.integers(0, len(wire)))
    where = data.draw(st.integers(0, len(wire) - 1))
    wire[where] = data.draw(st.integers(0, 255))
    for candidate in (bytes(wire[:cut]), bytes(wire)):
        with contextlib.suppress(FormatError):
            parse_response(candidate)


@pytest.mark.parametrize(
    ("sent", "read"), [(b"stale", "stale"), (b"stale\x00", "stale"), (b"\x00", ""), (b"", "")]
)
def test_ede_text_is_read_without_a_final_nul(sent: bytes, read: str) -> None:
    """RFC 8914 §2: EXTRA-TEXT is not NUL-terminated, but some servers send one (found by
    the property test above; dnspython drops it too)."""
    message = dns.message.make_response(dns.message.make_query("x.example", "A"))
    message.use_edns(0, 0, 1232, options=[dns.edns.GenericOption(15, b"\x00\x03" + sent)])
    assert parse_response(message.to_wire()).ede == [(3, read)]


def test_names_are_presentation_text_with_dnspython_escapes() -> None:
    for labels in ([b"Mail", b"Example"], [b"a.b", b"c"], [b"\x00\xff", b"x"], [b'"();@$\\']):
        name = dns.name.Name([*labels, b""])
        assert read_name(name.to_wire(), 0) == (_text(name), len(name.to_wire()))
    assert read_name(b"\x00", 0) == (".", 1)


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"\x01a\xc0\x00", "backwards"),  # points at itself: a loop
        (b"\x01a\xc0\x05\x00\x00", "backwards"),  # forwards
        (b"\x41" + b"a" * 65 + b"\x00", "label type"),
        (b"\x03abc", "past the end"),
        (b"\x3f" + b"a" * 63 + (b"\x3f" + b"b" * 63) * 3 + b"\x00", "255 octets"),
    ],
)
def test_bad_names_are_format_errors(wire: bytes, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        read_name(wire, 0)


def test_tlsa_data_that_does_not_fit_its_matching_type_is_kept() -> None:
    """dnspython refuses the whole message for a 5-octet SHA-256; this record is merely
    unusable (RFC 7672 §2.2), so the codec keeps it with the others."""
    owner = "_25._tcp.mx.example"
    good = b"\x03\x01\x01" + bytes(32)
    short = b"\x03\x01\x01" + bytes(5)
    header = struct.pack("!6H", 7, 0x8180 | dnscodec.AD, 1, 2, 0, 0) + encode_name(owner)
    records = b"".join(
        b"\xc0\x0c" + struct.pack("!HHIH", 52, 1, 300, len(d)) + d for d in (good, short)
    )
    wire = header + struct.pack("!HH", 52, 1) + records  # fmt: skip
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(wire)
    (rrset,) = parse_response(wire).answer.values()
    assert list(rrset.items) == [TlsaRecord(3, 1, 1, bytes(32)), TlsaRecord(3, 1, 1, bytes(5))]


@pytest.mark.parametrize(
    "extra",
    [
        b"\x00",  # trailing octet
        b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" * 2,  # two OPT records
    ],
    ids=["trailing", "two-opt"],
)
def test_malformed_framing_is_refused(extra: bytes) -> None:
    header = struct.pack("!6H", 1, 0x8180, 1, 0, 0, 2 if len(extra) > 1 else 0)
    wire = header + encode_name("x.example") + struct.pack("!HH", 1, 1) + extra
    with pytest.raises(FormatError):
        parse_response(wire)


@pytest.mark.parametrize("qtype", list(dnscodec.QTYPES))
def test_queries_read_back_as_meant(qtype: str) -> None:
    wire = build_query(0x1234, encode_name("_25._tcp.mx.example"), dnscodec.QTYPES[qtype], 1232)
    query = dns.message.from_wire(wire)
    assert query.id == 0x1234 and query.flags == dns.flags.RD | dns.flags.AD
    assert query.question[0].to_text() == f"_25._tcp.mx.example. IN {qtype}"
    assert (query.edns, query.payload, query.ednsflags) == (0, 1232, 0)
    assert not query.answer and not query.authority and not query.additional


def test_truncated_reply_is_read_to_its_question() -> None:
    query = dns.message.make_query("x.example", "TXT")
    response = dns.message.make_response(query)
    response.flags |= dns.flags.TC
    response.answer.append(
        dns.rrset.from_text("x.example.", 60, "IN", "TXT", '"' + "a" * 200 + '"')
    )
    cut = response.to_wire()[:60]  # fmt: skip
    read = parse_response(cut, question_only=True)
    assert read.truncated and read.question == ("x.example", 16, 1) and not read.answer
    with pytest.raises(FormatError):
        parse_response(cut)


def _chain_reply(hops: int, landing: bytes, records: int, rdtype: int = 1) -> bytes:
    """A reply whose first record's data is a name (``landing``) followed by a chain of
    pointers, each to the one before; every later record's owner points at the chain's
    end, so each owner is ``hops`` pointers away from its labels."""
    question = encode_name("x.example") + struct.pack("!HH", 1, 1)
    start = 12 + len(question) + 2 + 10  # the first record's data
    chain = bytearray(landing)
    target = start
    for _ in range(hops - 1):
        pointer = start + len(chain)
        chain += struct.pack("!H", 0xC000 | target)
        target = pointer
    carrier = b"\xc0\x0c" + struct.pack("!HHIH", 65280, 1, 60, len(chain)) + chain
    owner = struct.pack("!H", 0xC000 | target)
    data = bytes(4) if rdtype == 1 else b""
    others = (owner + struct.pack("!HHIH", rdtype, 1, 60, len(data)) + data) * records
    header = struct.pack("!6H", 1, 0x8180, 1, 1 + records, 0, 0)
    return header + question + carrier + others


def test_a_long_pointer_chain_is_malformed() -> None:
    """A 64 KB reply of 4,000 records whose owners point into an 8,000-pointer backward
    chain: refused at the first owner, after 17 hops, not after 32 million."""
    wire = _chain_reply(8000, b"\x01a\x00", 4000, rdtype=65280)
    assert 60_000 < len(wire) <= 65_535
    with pytest.raises(FormatError, match="longer than 16 hops"):
        parse_response(wire)


def test_chains_of_16_hops_are_read_as_dnspython_does() -> None:
    wire = _chain_reply(dnscodec.MAX_POINTER_HOPS, b"\x01a\x00", 1)
    assert list(parse_response(wire).answer) == [("a", 1)]
    assert dns.message.from_wire(wire).answer[1].name.to_text() == "a."
    with pytest.raises(FormatError, match="longer than 16 hops"):
        parse_response(_chain_reply(dnscodec.MAX_POINTER_HOPS + 1, b"\x01a\x00", 1))


def test_pointer_work_is_bounded_per_message() -> None:
    """Each owner within the hop limit, but each one 16 pointers and 100 labels away: the
    message as a whole reads too much through pointers and is malformed."""
    landing = b"\x01a" * 100 + b"\x00"
    assert parse_response(_chain_reply(16, landing, 100)).answer
    with pytest.raises(FormatError, match="too many compression pointers"):
        parse_response(_chain_reply(16, landing, 4000))


def test_an_extended_rcode_of_0x80_and_up_is_kept() -> None:
    """RFC 6891 §6.1.3: the OPT TTL's top octet is the rcode's upper eight bits; read
    through the TTL clamp of RFC 2181 §8, rcode 3843 (0xF03) read as NXDOMAIN (3)."""
    header = struct.pack("!6H", 1, 0x8183, 1, 0, 0, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0xF0 << 24, 0)
    wire = header + encode_name("x.example") + struct.pack("!HH", 1, 1) + opt
    assert parse_response(wire).rcode == 3843 == dns.message.from_wire(wire).rcode()
