"""DNS messages on the wire, by hand: a query's octets and a response's records. No I/O.

Why not dnspython here: it builds a query in about 65 µs and parses a signed response in
about 200-280 µs on the benchmark machine (``bench/coldcpu.py``), most of a cold lookup's
CPU. This codec reads only what the lookups need, in a few µs, straight into plain values:

* Queries: RD and AD set, EDNS0 (RFC 6891) with the configured UDP size and the DO bit
  clear. The AD bit in a query asks a validating resolver for the AD bit of its answer
  without the signatures and denial records that DO would add (RFC 6840 §5.7; the lab's
  Unbound does, as the integration tests show): fewer octets and names to read. A
  resolver that ignored it would answer without AD, which the resolver self-check's
  secure canary reports as "not validating" (``selfcheck.py``).
* Responses: the header, the question (the transport matches it to the query), the
  answer section's A, AAAA, MX, CNAME, TXT and TLSA records (class IN; identical records
  merged and an RRset's TTL the lowest of its records, as RFC 2181 §5.2 asks), the first
  SOA of the authority section (negative TTL, RFC 2308 §5), and the OPT record's extended
  rcode and Extended DNS Errors (RFC 8914). Other records (RRSIG, NSEC, ...) are skipped
  by their length, unread.
* TLSA data of any length is kept: a record whose data does not fit its matching type
  is legal DNS that only makes that record unusable (RFC 7672 §2.2; ``dane/tlsa.py``).
* Anything malformed raises ``FormatError``: a name or record running past its end,
  label types other than plain and compression pointers, pointers that do not point
  strictly backwards (no loops), names over 255 octets, a second OPT, trailing octets.
* Compression is bounded, since a pointer lets a few octets stand for a whole name: at
  most ``MAX_POINTER_HOPS`` pointers per name (dnspython's limit too), and at most
  ``MAX_POINTER_WORK`` labels and pointers read through pointers in one message. Without
  the second bound a 64 KB reply of thousands of records, each owner a 16-hop chain
  landing on a long name, would cost tens of milliseconds of the event loop; an honest
  reply expands each pointer into a few labels and stays far below it. Beyond either
  bound the reply is malformed (``FormatError``), like any other broken reply.
* The OPT record's TTL field is read unclamped: its top octet is the extended rcode
  (RFC 6891 §6.1.3), and values of 0x80 and up would be lost to the RFC 2181 §8 clamp
  that applies to real TTLs.

Names come back as text in dnspython's presentation form (``\\DDD`` and ``\\.`` escapes),
lowercased, without the final dot; the root is ``"."``. ``tests/unit/dnsstub/test_codec.py``
checks all of this against dnspython on generated messages.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from tlspolicy.dnsstub.data import AddressRecord, MxRecord, Record, TlsaRecord, TxtRecord

QR = 0x8000
TC = 0x0200
RD = 0x0100
AD = 0x0020
OPCODE_MASK = 0x7800
CLASS_IN = 1
OPT = 41
SOA = 6
EDE_OPTION = 15  # RFC 8914

QTYPES = {"A": 1, "AAAA": 28, "MX": 15, "TXT": 16, "TLSA": 52, "CNAME": 5}
A, AAAA, MX, TXT, TLSA, CNAME = 1, 28, 15, 16, 52, 5

MAX_NAME_OCTETS = 255  # RFC 1035 §3.1, the root label included
MAX_TTL = 0x7FFFFFFF  # RFC 2181 §8: a TTL above this is treated as zero
# Compression pointers followed in one name; dnspython's from_wire stops at the same
# number (``dns.name.MAX_COMPRESSION_POINTER_CHAIN``). Real servers need two or three.
MAX_POINTER_HOPS = 16
# Labels and pointers read through compression pointers in one message. A full 64 KB
# reply holds at most about 5,400 records; at three labels a pointer, the expected
# expansion, it stays under this. A hostile reply hits it after a few hundred names.
MAX_POINTER_WORK = 16384
HEADER = struct.Struct("!6H")
RR_HEADER = struct.Struct("!HHIH")
_TYPE_CLASS = struct.Struct("!HH")
_UINT16 = struct.Struct("!H")
_UINT32 = struct.Struct("!I")

# Label octets printed as they are; the others are escaped (dnspython's ``_escapify``).
_PLAIN = bytes(c for c in range(0x21, 0x7F) if c not in b'"().;\\@$')
_SPECIAL = b'"().;\\@$'
_PLAIN_OR_DOT = _PLAIN + b"."
_TO_QUESTION = b"\xc0\x0c"  # a compression pointer to the question's name


class FormatError(ValueError):
    """The octets are not a well-formed DNS message (or not one this codec reads)."""


def encode_name(name: str) -> bytes:
    """A checked lowercase A-label name (``client.valid_name``) in wire form."""
    if not name or name == ".":
        return b"\x00"
    out = bytearray()
    for label in name.removesuffix(".").encode("ascii").split(b"."):
        out.append(len(label))
        out += label
    out.append(0)
    return bytes(out)


def build_query(qid: int, qname_wire: bytes, qtype: int, udp_size: int) -> bytes:
    """One question with RD and AD set and an OPT record (DO clear, see above)."""
    return b"".join(
        (
            HEADER.pack(qid, RD | AD, 1, 0, 0, 1),
            qname_wire,
            _TYPE_CLASS.pack(qtype, CLASS_IN),
            b"\x00",  # OPT owner: the root
            RR_HEADER.pack(OPT, udp_size, 0, 0),
        )
    )


@dataclass(slots=True)
class RRset:
    """The records of one owner and type in the answer section, merged."""

    owner: str
    rdtype: int
    ttl: int
    items: dict[Record | str, None] = field(default_factory=dict)  # an ordered set; str: CNAME


@dataclass(slots=True)
class Response:
    """What the lookups read of a response (see the module docstring)."""

    qid: int
    flags: int
    rcode: int  # with the OPT record's extended bits (RFC 6891 §6.1.3)
    question: tuple[str, int, int] | None  # (name, type, class); None when absent
    answer: dict[tuple[str, int], RRset] = field(default_factory=dict)
    soa_ttl: int | None = None  # min(SOA TTL, SOA MINIMUM) of the first authority SOA
    ede: list[tuple[int, str]] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TC)


class _Work:
    """What is left of one message's ``MAX_POINTER_WORK``."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_POINTER_WORK


def read_name(wire: bytes, offset: int, work: _Work | None = None) -> tuple[str, int]:
    """The name at ``offset`` as text, and the offset just after it (pointers followed).

    ``work`` is the message's budget for reading through pointers (see the module
    docstring); without one, only this name's hops are bounded.
    """
    labels: list[bytes] = []
    size = len(wire)
    after = -1
    limit = offset  # a pointer must point before this: strictly backwards, so no loops
    octets = 1
    hops = 0
    direct = 0  # labels read before the first pointer: the message's octets pay for them
    while True:
        if offset >= size:
            raise FormatError("name runs past the end of the message")
        length = wire[offset]
        if length == 0:
            offset += 1
            break
        if length >= 0xC0:
            if offset + 1 >= size:
                raise FormatError("compression pointer runs past the end")
            target = ((length & 0x3F) << 8) | wire[offset + 1]
            if after < 0:
                after = offset + 2
                direct = len(labels)
            if target >= limit:
                raise FormatError("compression pointer does not point backwards")
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise FormatError("compression pointer chain longer than 16 hops")
            limit = offset = target
            continue
        if length > 63:
            raise FormatError("unknown label type")
        start = offset + 1
        offset = start + length
        if offset > size:
            raise FormatError("label runs past the end of the message")
        octets += length + 1
        if octets > MAX_NAME_OCTETS:
            raise FormatError("name longer than 255 octets")
        labels.append(wire[start:offset])
    if hops and work is not None:
        # Counted once the name is read: one name adds at most 16 hops and 127 labels.
        work.left -= hops + len(labels) - direct
        if work.left < 0:
            raise FormatError("names read through too many compression pointers")
    return _name_text(labels), (after if after >= 0 else offset)


def _name_text(labels: list[bytes]) -> str:
    if not labels:
        return "."
    joined = b".".join(labels)
    if not joined.translate(None, _PLAIN_OR_DOT) and joined.count(b".") == len(labels) - 1:
        return joined.decode("ascii").lower()
    return ".".join(_escaped(label) for label in labels).lower()


def _escaped(label: bytes) -> str:
    return "".join(
        "\\" + chr(c) if c in _SPECIAL else chr(c) if 0x20 < c < 0x7F else f"\\{c:03d}"
        for c in label
    )


def parse_response(wire: bytes, *, question_only: bool = False) -> Response:
    """Read a response; ``question_only`` stops after the question (a truncated reply).

    Raises:
        FormatError: the message is malformed (see the module docstring).
    """
    if len(wire) < HEADER.size:
        raise FormatError("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(wire)
    if qdcount > 1:
        raise FormatError("more than one question")
    response = Response(qid=qid, flags=flags, rcode=flags & 0x000F, question=None)
    offset = HEADER.size
    qname: str | None = None
    work = _Work()
    if qdcount:
        qname, offset = read_name(wire, offset, work)
        if offset + 4 > len(wire):
            raise FormatError("question runs past the end of the message")
        qtype, qclass = _TYPE_CLASS.unpack_from(wire, offset)
        offset += 4
        response.question = (qname, qtype, qclass)
    if question_only:
        return response
    offset = _answer_section(wire, offset, ancount, response, qname, work=work)
    offset = _authority_section(wire, offset, nscount, response, qname, work=work)
    offset = _additional_section(wire, offset, arcount, response, qname, work=work)
    if offset != len(wire):
        raise FormatError("trailing octets after the message")
    return response


def _record_header(
    wire: bytes, offset: int, qname: str | None, work: _Work
) -> tuple[str, int, int, int, int, int]:
    """(owner, type, class, TTL, rdata start, rdata end) of the record at ``offset``.

    The TTL is the raw field: the callers clamp real TTLs (``MAX_TTL``), and the OPT
    record's holds the extended rcode (RFC 6891 §6.1.3), read unclamped.
    Most owners are a pointer to the question's name (offset 12, already read as ``qname``):
    that one is taken as read, the commonest name in a response for one comparison.
    """
    if qname is not None and wire[offset : offset + 2] == _TO_QUESTION:
        owner = qname
        offset += 2
    else:
        owner, offset = read_name(wire, offset, work)
    if offset + RR_HEADER.size > len(wire):
        raise FormatError("record header runs past the end of the message")
    rdtype, rdclass, ttl, rdlength = RR_HEADER.unpack_from(wire, offset)
    start = offset + RR_HEADER.size
    end = start + rdlength
    if end > len(wire):
        raise FormatError("record data runs past the end of the message")
    return owner, rdtype, rdclass, ttl, start, end


def _answer_section(
    wire: bytes, offset: int, count: int, response: Response, qname: str | None, *, work: _Work
) -> int:
    for _ in range(count):
        owner, rdtype, rdclass, ttl, start, end = _record_header(wire, offset, qname, work)
        offset = end
        if rdtype == OPT:
            raise FormatError("OPT record outside the additional section")
        if rdclass != CLASS_IN or rdtype not in _READERS:
            continue
        if ttl > MAX_TTL:
            ttl = 0
        item = _READERS[rdtype](wire, start, end, work)
        rrset = response.answer.get((owner, rdtype))
        if rrset is None:
            response.answer[(owner, rdtype)] = RRset(owner, rdtype, ttl, {item: None})
        else:
            rrset.ttl = min(rrset.ttl, ttl)
            rrset.items[item] = None
    return offset


def _authority_section(
    wire: bytes, offset: int, count: int, response: Response, qname: str | None, *, work: _Work
) -> int:
    for _ in range(count):
        _owner, rdtype, _rdclass, ttl, start, end = _record_header(wire, offset, qname, work)
        offset = end
        if rdtype == OPT:
            raise FormatError("OPT record outside the additional section")
        if rdtype == SOA and response.soa_ttl is None:
            if ttl > MAX_TTL:
                ttl = 0
            response.soa_ttl = min(ttl, _soa_minimum(wire, start, end, work))
    return offset


def _additional_section(
    wire: bytes, offset: int, count: int, response: Response, qname: str | None, *, work: _Work
) -> int:
    seen_opt = False
    for _ in range(count):
        owner, rdtype, _rdclass, ttl, start, end = _record_header(wire, offset, qname, work)
        offset = end
        if rdtype != OPT:
            continue
        if seen_opt or owner != ".":
            raise FormatError("a second OPT record, or one not owned by the root")
        seen_opt = True
        response.rcode |= ((ttl >> 24) & 0xFF) << 4
        response.ede = _ede_options(wire, start, end)
    return offset


def _ede_options(wire: bytes, start: int, end: int) -> list[tuple[int, str]]:
    found = []
    while start < end:
        if start + 4 > end:
            raise FormatError("EDNS option runs past its record")
        code, length = _TYPE_CLASS.unpack_from(wire, start)
        start += 4
        if start + length > end:
            raise FormatError("EDNS option runs past its record")
        if code == EDE_OPTION:
            if length < 2:
                raise FormatError("Extended DNS Error shorter than its info-code")
            info = _UINT16.unpack_from(wire, start)[0]
            raw = wire[start + 2 : start + length]
            # Some servers end EXTRA-TEXT with a NUL (RFC 8914 §2 says it is not
            # terminated; dnspython drops such a NUL too): not part of the text.
            text = raw.removesuffix(b"\x00").decode("utf-8", errors="replace")
            found.append((info, text))
        start += length
    return found


def _soa_minimum(wire: bytes, start: int, end: int, work: _Work) -> int:
    _mname, offset = read_name(wire, start, work)
    _rname, offset = read_name(wire, offset, work)
    if offset + 20 != end:
        raise FormatError("SOA record of the wrong length")
    return int(_UINT32.unpack_from(wire, offset + 16)[0])


def _a(wire: bytes, start: int, end: int, _work: _Work) -> AddressRecord:
    if end - start != 4:
        raise FormatError("A record of the wrong length")
    a, b, c, d = wire[start:end]
    return AddressRecord(f"{a}.{b}.{c}.{d}")


def _aaaa(wire: bytes, start: int, end: int, _work: _Work) -> AddressRecord:
    if end - start != 16:
        raise FormatError("AAAA record of the wrong length")
    return AddressRecord(ipaddress.IPv6Address(wire[start:end]).compressed)


def _mx(wire: bytes, start: int, end: int, work: _Work) -> MxRecord:
    if end - start < 3:
        raise FormatError("MX record too short")
    exchange, after = read_name(wire, start + 2, work)
    if after != end:
        raise FormatError("MX record of the wrong length")
    # The null MX (RFC 7505) has the root as its exchange: "" in ``MxRecord``.
    return MxRecord(_UINT16.unpack_from(wire, start)[0], "" if exchange == "." else exchange)


def _cname(wire: bytes, start: int, end: int, work: _Work) -> str:
    target, after = read_name(wire, start, work)
    if after != end:
        raise FormatError("CNAME record of the wrong length")
    return target


def _txt(wire: bytes, start: int, end: int, _work: _Work) -> TxtRecord:
    strings = []
    while start < end:
        length = wire[start]
        start += 1 + length
        if start > end:
            raise FormatError("TXT string runs past its record")
        strings.append(wire[start - length : start])
    if not strings:
        raise FormatError("TXT record without a string")
    return TxtRecord(tuple(strings))


def _tlsa(wire: bytes, start: int, end: int, _work: _Work) -> TlsaRecord:
    if end - start < 3:
        raise FormatError("TLSA record too short")
    return TlsaRecord(wire[start], wire[start + 1], wire[start + 2], wire[start + 3 : end])


_READERS: dict[int, Callable[[bytes, int, int, _Work], Record | str]] = {
    A: _a, AAAA: _aaaa, MX: _mx, CNAME: _cname, TXT: _txt, TLSA: _tlsa
}  # fmt: skip
