"""Responses as answers: rcode, AD flag, CNAME chain, negative TTL, presentation."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from tlspolicy.dnsstub.answer import (
    EDE_NAMES,
    NONEXISTENT_NAME_TTL_S,
    check_rcode,
    nonexistent,
    presentation,
    to_answer,
)
from tlspolicy.dnsstub.codec import Response, parse_response
from tlspolicy.dnsstub.data import AddressRecord
from tlspolicy.errors import DnsError


def response(qname: str, rdtype: str, *, rcode: int = dns.rcode.NOERROR, ad: bool = True,
             answer: tuple[tuple[str, str, str], ...] = (),
             authority: tuple[tuple[str, str, str], ...] = ()) -> Response:  # fmt: skip
    message = dns.message.make_response(dns.message.make_query(qname, rdtype, want_dnssec=True))
    message.set_rcode(rcode)
    if ad:
        message.flags |= dns.flags.AD
    for section, rrs in ((message.answer, answer), (message.authority, authority)):
        for name, kind, text in rrs:
            section.append(dns.rrset.from_text(name, 300, "IN", kind, text))
    return parse_response(message.to_wire())


def test_cname_chain_to_the_records() -> None:
    msg = response(
        "mx.example.", "A",
        answer=(("mx.example.", "CNAME", "mail.provider."), ("mail.provider.", "A", "192.0.2.7")),
    )  # fmt: skip
    answer = to_answer(msg, "mx.example", "A")
    assert answer.cnames == (("mx.example", "mail.provider"),)
    assert answer.canonical_name == "mail.provider"
    assert answer.records == (AddressRecord("192.0.2.7"),) and answer.secure
    assert presentation(answer) == ["mx.example CNAME mail.provider", "192.0.2.7"]


def test_negative_answer_lives_for_the_soa_negative_ttl() -> None:
    soa = "ns.example. host.example. 1 3600 600 86400 120"
    msg = response("none.example.", "A", rcode=dns.rcode.NXDOMAIN, ad=False,
                   authority=(("example.", "SOA", soa),))  # fmt: skip
    answer = to_answer(msg, "none.example", "A")
    assert (answer.rcode, answer.secure, answer.ttl) == ("NXDOMAIN", False, 120)
    assert presentation(answer) == ["NXDOMAIN"]


@pytest.mark.parametrize(
    ("rcode", "kind"),
    [(dns.rcode.SERVFAIL, "servfail"), (dns.rcode.REFUSED, "refused"), (dns.rcode.NOTIMP, "other")],
)
def test_failing_rcodes_are_dns_errors(rcode: int, kind: str) -> None:
    with pytest.raises(DnsError) as info:
        check_rcode(response("x.example.", "A", rcode=rcode), "127.0.0.1", 53)
    assert info.value.kind == kind
    check_rcode(response("x.example.", "A", rcode=dns.rcode.NXDOMAIN), "127.0.0.1", 53)


def test_a_name_that_cannot_exist_is_a_certain_denial() -> None:
    answer = nonexistent("x" * 300, "TLSA")
    assert (answer.rcode, answer.secure, answer.ttl) == ("NXDOMAIN", True, NONEXISTENT_NAME_TTL_S)


def test_ede_names_are_dnspythons_codes_in_the_registrys_spelling() -> None:
    reference = [c.name.replace("_", " ").lower() for c in sorted(dns.edns.EDECode)]
    assert [name.lower() for name in EDE_NAMES[: len(reference)]] == reference
