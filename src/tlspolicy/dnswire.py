"""DNS messages from the wire, tolerant of TLSA data that does not fit its matching type.

dnspython refuses a whole response when one TLSA record's data length does not fit its
matching type (32 octets for SHA-256, 64 for SHA-512). Such data is legal DNS that only
makes that one record unusable (RFC 6698 §4.1 as used by RFC 7672 §2.2; Postfix's
``parse_tlsa_rr`` does the same), and refusing the response would turn a DANE domain into
TEMP for good. So responses are parsed with ``continue_on_error``; the TLSA records
dnspython refused are read again from the wire by ``answer_records`` and put back as
``GenericRdata``, which ``dnsclient`` turns into ``TlsaRecord`` values and ``dane/tlsa.py``
judges unusable. Any other parse error still fails the response. Nothing here changes
dnspython for anyone else.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TLSA
import dns.wire


def parse_message(wire: bytes, *, question_only: bool = False) -> dns.message.Message:
    """``dns.message.from_wire``, but a TLSA record with ill-fitting data is kept as
    ``GenericRdata`` instead of failing the message.

    Raises:
        dns.exception.DNSException: anything else dnspython refuses (as from_wire does).
    """
    message = dns.message.from_wire(
        wire, question_only=question_only, continue_on_error=not question_only
    )
    if not message.errors:
        return message
    refused = [r for r in answer_records(wire) if _refused_tlsa(*r)]
    if len(refused) != len(message.errors):
        raise message.errors[0].exception
    for owner, rdtype_value, rdclass_value, ttl, rdata in refused:
        rdtype = dns.rdatatype.RdataType(rdtype_value)
        rdclass = dns.rdataclass.RdataClass(rdclass_value)
        rrset = message.find_rrset(message.answer, owner, rdclass, rdtype, create=True)
        rrset.add(dns.rdata.GenericRdata(rdclass, rdtype, rdata), ttl)
    message.errors = []
    return message


def answer_records(wire: bytes) -> Iterator[tuple[dns.name.Name, int, int, int, bytes]]:
    """(owner, type, class, TTL, rdata) of each record of the answer section, read with no
    meaning given to the rdata (only the framing, which dnspython already accepted)."""
    parser = dns.wire.Parser(wire)
    _id, _flags, qdcount, ancount, _nscount, _arcount = parser.get_struct("!6H")
    for _ in range(qdcount):
        parser.get_name(decompress=True)
        parser.get_bytes(4)
    for _ in range(ancount):
        owner = parser.get_name(decompress=True)
        rdtype, rdclass, ttl, length = parser.get_struct("!HHIH")
        yield owner, rdtype, rdclass, ttl, parser.get_bytes(length)


def _refused_tlsa(
    _owner: dns.name.Name, rdtype: int, rdclass: int, _ttl: int, rdata: bytes
) -> bool:
    """A TLSA record whose only fault is data that does not fit its matching type."""
    if rdtype != dns.rdatatype.TLSA or len(rdata) < 3:
        return False
    try:
        dns.rdtypes.ANY.TLSA.TLSA(  # type: ignore[no-untyped-call]
            rdclass, rdtype, rdata[0], rdata[1], rdata[2], rdata[3:]
        )
    except ValueError:
        return True
    return False


def tlsa_fields(rdata: dns.rdata.Rdata) -> tuple[int, int, int, bytes] | None:
    """(usage, selector, matching type, data) of a TLSA rdata, parsed or kept generic."""
    if isinstance(rdata, dns.rdtypes.ANY.TLSA.TLSA):
        return rdata.usage, rdata.selector, rdata.mtype, rdata.cert
    if isinstance(rdata, dns.rdata.GenericRdata) and rdata.rdtype == dns.rdatatype.TLSA:
        raw = rdata.data
        if len(raw) >= 3:
            return raw[0], raw[1], raw[2], raw[3:]
    return None
