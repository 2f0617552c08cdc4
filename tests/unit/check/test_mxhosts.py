from __future__ import annotations

from tlspolicy.check.findings import Status
from tlspolicy.check.mxhosts import check_addresses, check_mx
from tlspolicy.dnsstub.data import AddressRecord, DnsAnswer, MxRecord, Record
from tlspolicy.errors import DnsError


def ans(
    name: str,
    rdtype: str,
    records: tuple[Record, ...] = (),
    *,
    secure: bool = True,
    rcode: str = "NOERROR",
    cnames: tuple[tuple[str, str], ...] = (),
) -> DnsAnswer:
    canonical = cnames[-1][1] if cnames else name
    return DnsAnswer(name, rdtype, rcode, secure, cnames, canonical, records, 300)


def test_mxhosts_mx_in_preference_order() -> None:
    answer = ans("d.example", "MX", (MxRecord(20, "b.d.example"), MxRecord(10, "a.d.example")))
    hosts, null, findings = check_mx("d.example", answer)
    assert (hosts, null) == (["a.d.example", "b.d.example"], False)
    assert [(f.status, f.message) for f in findings] == [(Status.OK, "2 MX hosts, DNSSEC secure")]
    assert findings[0].evidence[1:] == ("MX 10 a.d.example", "MX 20 b.d.example")


def test_mxhosts_special_cases() -> None:
    assert check_mx("d.example", ans("d.example", "MX", (MxRecord(0, ""),)))[:2] == ([], True)
    hosts, _, findings = check_mx("d.example", ans("d.example", "MX"))
    assert hosts == ["d.example"] and findings[0].status is Status.WARNING  # implicit MX
    _, _, gone = check_mx("d.example", ans("d.example", "MX", rcode="NXDOMAIN"))
    assert gone[0].status is Status.ERROR and "NXDOMAIN" in gone[0].message
    mixed = ans("d.example", "MX", (MxRecord(0, ""), MxRecord(10, "a.d.example")))
    assert check_mx("d.example", mixed)[2][0].status is Status.ERROR


def test_mxhosts_addresses_per_family_and_cname_warning() -> None:
    a = ans("mx.d.example", "A", (AddressRecord("192.0.2.1"),))
    aaaa = ans("mx.d.example", "AAAA", (AddressRecord("2001:db8::1"),), secure=False)
    addresses, findings = check_addresses("mx.d.example", a, aaaa)
    assert addresses == {"IPv4": ["192.0.2.1"], "IPv6": ["2001:db8::1"]}
    assert findings[0].message == "A 192.0.2.1 (secure); AAAA 2001:db8::1 (insecure)"
    alias = ans(
        "mx.d.example",
        "A",
        (AddressRecord("192.0.2.1"),),
        cnames=(("mx.d.example", "real.example"),),
    )
    _, warned = check_addresses("mx.d.example", alias, ans("mx.d.example", "AAAA"))
    assert [f.check for f in warned] == ["mx.address", "mx.cname"]
    assert warned[0].message.endswith("no AAAA")


def test_mxhosts_no_address_or_failure_is_an_error() -> None:
    _, none = check_addresses("h", ans("h", "A"), ans("h", "AAAA"))
    assert none[0].status is Status.ERROR and "no A or AAAA" in none[0].message
    _, failed = check_addresses("h", DnsError("servfail", "bogus"), ans("h", "AAAA"))
    assert failed[0].status is Status.ERROR and "A lookup failed: servfail" in failed[0].message
