"""Tolerant parsing: a TLSA record whose data does not fit its matching type is kept (as
GenericRdata) instead of failing the whole response; nothing else is tolerated."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest

from tlspolicy.dnswire import answer_records, parse_message, tlsa_fields

OWNER = "_25._tcp.mx.example."
GOOD = bytes([0xAB]) * 32
OTHER = bytes([0xCD]) * 32


def response_with(*records: bytes) -> bytes:
    """A response with ``3 1 1`` TLSA records for ``records``; a record whose data starts
    with 0xCD then has its matching type changed to 2 (SHA-512: 64 octets expected)."""
    query = dns.message.make_query(OWNER, "TLSA", want_dnssec=True)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AD
    texts = [f"3 1 1 {data.hex()}" for data in records]
    response.answer.append(dns.rrset.from_text(OWNER, 300, "IN", "TLSA", *texts))
    wire = response.to_wire()
    return wire.replace(b"\x03\x01\x01" + OTHER, b"\x03\x01\x02" + OTHER)


def test_dnspython_alone_refuses_the_response() -> None:
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(response_with(GOOD, OTHER))


def test_the_ill_fitting_record_is_kept_and_the_good_one_parsed() -> None:
    message = parse_message(response_with(GOOD, OTHER))
    (rrset,) = message.answer
    fields = sorted(tlsa_fields(rdata) for rdata in rrset)  # type: ignore[type-var]
    assert fields == [(3, 1, 1, GOOD), (3, 1, 2, OTHER)]
    assert rrset.ttl == 300 and message.flags & dns.flags.AD
    kinds = {type(rdata).__name__ for rdata in rrset}
    assert kinds == {"TLSA", "GenericRdata"}


def test_only_ill_fitting_records() -> None:
    (rrset,) = parse_message(response_with(OTHER)).answer
    assert [tlsa_fields(rdata) for rdata in rrset] == [(3, 1, 2, OTHER)]


def test_well_formed_responses_are_unchanged() -> None:
    wire = response_with(GOOD)
    assert parse_message(wire) == dns.message.from_wire(wire)
    assert [(o.to_text(), t, ttl) for o, t, _c, ttl, _d in answer_records(wire)] == [
        (OWNER, dns.rdatatype.TLSA, 300)
    ]


def test_other_damage_still_fails() -> None:
    wire = response_with(GOOD, OTHER)
    # The good record's rdata length grows by one: the framing after it is broken.
    at = wire.index(b"\x00\x23\x03\x01\x01" + GOOD)
    broken = wire[:at] + b"\x00\x24" + wire[at + 2 :]
    with pytest.raises(dns.exception.DNSException):
        parse_message(broken)
