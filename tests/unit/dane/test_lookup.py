"""lookup_dane against FakeDns: every rule of the DANE discovery, one case each."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from tests.fakes import FakeDns
from tlspolicy.dane.lookup import lookup_dane
from tlspolicy.dane.result import DaneLevel, HostResult
from tlspolicy.dnsstub.data import AddressRecord, DnsAnswer, MxRecord, TlsaRecord
from tlspolicy.dnsstub.trace import Trace, recording
from tlspolicy.errors import DnsError

USABLE = TlsaRecord(3, 1, 1, bytes(32))
UNUSABLE = TlsaRecord(3, 1, 1, b"\xab\xcd")  # digest of the wrong length
PKIX_EE = TlsaRecord(1, 1, 1, bytes(32))
PKIX_TA = TlsaRecord(0, 0, 1, bytes(32))


def mx(dns: FakeDns, domain: str, *hosts: str, secure: bool = True, ttl: int = 3600) -> None:
    records = tuple(MxRecord(10 * (i + 1), h) for i, h in enumerate(hosts))
    dns.set(domain, "MX", records, secure=secure, ttl=ttl)


def host(
    dns: FakeDns,
    name: str,
    *tlsa: TlsaRecord,
    secure: bool = True,
    tlsa_secure: bool = True,
    ttl: int = 3600,
    tlsa_ttl: int = 3600,
) -> None:
    """An MX host with an A record and, when ``tlsa`` is given, a TLSA RRset."""
    dns.set(name, "A", [AddressRecord("192.0.2.1")], secure=secure, ttl=ttl)
    if tlsa:
        dns.set(f"_25._tcp.{name}", "TLSA", list(tlsa), secure=tlsa_secure, ttl=tlsa_ttl)


def tlsa_queries(dns: FakeDns) -> list[str]:
    return [name for name, rdtype in dns.queries if rdtype == "TLSA"]


# --- verdicts --------------------------------------------------------------------------


async def test_lookup_all_mx_with_usable_tlsa_is_dane_only() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx1.example.com", "mx2.example.com")
    host(dns, "mx1.example.com", USABLE)
    host(dns, "mx2.example.com", USABLE, UNUSABLE)
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.DANE_ONLY
    assert result.mx_secure is True
    assert result.reason == "usable TLSA at all 2 MX hosts"
    assert result.hosts[1] == HostResult(
        host="mx2.example.com",
        address_status="secure",
        tlsa_name="_25._tcp.mx2.example.com",
        tlsa_status="secure",
        usable=1,
        unusable=1,
        detail="1 usable TLSA records",
    )


async def test_lookup_mixed_hosts_is_dane() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx1.example.com", "mx2.example.com")
    host(dns, "mx1.example.com", USABLE)
    host(dns, "mx2.example.com")  # signed, validated NXDOMAIN for its TLSA name
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.DANE
    assert result.reason == "secure TLSA at 1 of 2 MX hosts, 1 usable"
    assert [h.tlsa_status for h in result.hosts] == ["secure", "none"]


async def test_lookup_insecure_mx_with_signed_host_is_dane() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.provider.net", secure=False)
    host(dns, "mx.provider.net", USABLE)
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.DANE
    assert result.mx_secure is False
    assert result.reason.endswith("; MX RRset not signed")


async def test_lookup_hosts_below_an_insecure_mx_owner_are_not_asked() -> None:
    # DNS economy: below an unsigned zone nothing is secure (RFC 4035 §4.3), so neither the
    # address nor (RFC 7672 §2.2.2) the TLSA of such hosts is looked up; a host elsewhere is.
    dns = FakeDns()
    mx(dns, "example.com", "mx1.example.com", "mx.provider.net", secure=False)
    host(dns, "mx1.example.com", USABLE)  # (impossible data: would be insecure)
    host(dns, "mx.provider.net", USABLE)
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.DANE
    assert [q for q in dns.queries if q[0].endswith("example.com")] == [("example.com", "MX")]
    assert result.hosts[0].address_status == "insecure"
    assert "unsigned zone" in result.hosts[0].detail
    assert tlsa_queries(dns) == ["_25._tcp.mx.provider.net"]


async def test_lookup_insecure_mx_through_cname_examines_every_host() -> None:
    dns = FakeDns()
    dns.set("example.com", "MX", [MxRecord(10, "mx1.example.com")], secure=False,
            cnames=(("example.com", "mail.example.net"),))  # fmt: skip
    host(dns, "mx1.example.com", USABLE)
    result = await lookup_dane("example.com", dns)
    assert ("mx1.example.com", "A") in dns.queries
    assert result.level is DaneLevel.DANE


async def test_lookup_unsigned_domain_is_none_without_tlsa_queries() -> None:
    dns = FakeDns(default_secure=False)
    mx(dns, "example.com", "mx1.example.com", "mx2.example.com", secure=False)
    host(dns, "mx1.example.com", secure=False)
    host(dns, "mx2.example.com", secure=False)
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.NONE
    assert result.reason == "no MX host in a signed zone; MX RRset not signed"
    assert [h.address_status for h in result.hosts] == ["insecure", "insecure"]
    assert tlsa_queries(dns) == []


@pytest.mark.parametrize(
    "records",
    [
        pytest.param((UNUSABLE,), id="malformed-digest"),
        pytest.param((TlsaRecord(3, 0, 0, b"\xab\xcd"),), id="malformed-full-cert"),
        pytest.param((PKIX_EE,), id="usage-1"),
        pytest.param((PKIX_TA,), id="usage-0"),
        pytest.param((PKIX_TA, PKIX_EE, UNUSABLE), id="several-unusable"),
    ],
)
async def test_lookup_only_unusable_tlsa_is_dane(records: tuple[TlsaRecord, ...]) -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    host(dns, "mx.example.com", *records)
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.DANE
    assert (result.hosts[0].usable, result.hosts[0].unusable) == (0, len(records))
    assert result.hosts[0].detail  # says why the records are unusable


async def test_lookup_insecure_tlsa_answer_means_host_not_dane() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    host(dns, "mx.example.com", USABLE, tlsa_secure=False)
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.NONE
    assert result.hosts[0].tlsa_status == "insecure"


async def test_lookup_host_without_address_is_not_dane() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx1.example.com", "gone.example.com")
    host(dns, "mx1.example.com", USABLE)
    result = await lookup_dane("example.com", dns)  # gone.example.com: NXDOMAIN
    assert result.level is DaneLevel.DANE
    assert result.hosts[1].address_status == "none"
    assert ("gone.example.com", "AAAA") not in dns.queries  # NXDOMAIN: no AAAA
    assert tlsa_queries(dns) == ["_25._tcp.mx1.example.com"]


async def test_lookup_aaaa_only_host_gets_tlsa() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    dns.set("mx.example.com", "A", [])  # secure NODATA
    dns.set("mx.example.com", "AAAA", [AddressRecord("2001:db8::25")])
    dns.set("_25._tcp.mx.example.com", "TLSA", [USABLE])
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.DANE_ONLY
    assert ("mx.example.com", "AAAA") in dns.queries


# --- CNAMEs ----------------------------------------------------------------------------


def cname_host(dns: FakeDns, alias: str, target: str, *, secure: bool = True) -> None:
    dns.set(alias, "A", [AddressRecord("192.0.2.9")], secure=secure, cnames=((alias, target),))


async def test_lookup_cname_host_uses_tlsa_at_target_first() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    cname_host(dns, "mx.example.com", "smtp.provider.net")
    dns.set("_25._tcp.smtp.provider.net", "TLSA", [USABLE])
    dns.set("_25._tcp.mx.example.com", "TLSA", [UNUSABLE])  # must not be consulted
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.DANE_ONLY
    assert result.hosts[0].tlsa_name == "_25._tcp.smtp.provider.net"
    assert tlsa_queries(dns) == ["_25._tcp.smtp.provider.net"]


async def test_lookup_cname_host_falls_back_to_initial_name() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    cname_host(dns, "mx.example.com", "smtp.provider.net")
    dns.set("_25._tcp.smtp.provider.net", "TLSA", [])  # secure NODATA at the target
    dns.set("_25._tcp.mx.example.com", "TLSA", [USABLE])
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.DANE_ONLY
    assert result.hosts[0].tlsa_name == "_25._tcp.mx.example.com"
    assert tlsa_queries(dns) == ["_25._tcp.smtp.provider.net", "_25._tcp.mx.example.com"]


async def test_lookup_cname_host_error_at_target_is_final() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    cname_host(dns, "mx.example.com", "smtp.provider.net")
    dns.fail("_25._tcp.smtp.provider.net", "TLSA")
    dns.set("_25._tcp.mx.example.com", "TLSA", [USABLE])
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.TEMP
    assert tlsa_queries(dns) == ["_25._tcp.smtp.provider.net"]


def alias_status(dns: FakeDns, alias: str, target: str, *, secure: bool) -> None:
    """The answer to a CNAME query for ``alias``: the first hop of the chain only."""
    dns.set(alias, "CNAME", [], secure=secure, cnames=((alias, target),))


async def test_lookup_insecure_address_without_cname_asks_no_cname_status() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    host(dns, "mx.example.com", USABLE, secure=False)
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.NONE
    assert ("mx.example.com", "CNAME") not in dns.queries
    assert tlsa_queries(dns) == []


@pytest.mark.parametrize(
    ("tlsa", "level", "tlsa_status"),
    [
        pytest.param((USABLE,), DaneLevel.DANE_ONLY, "secure", id="usable-at-initial-name"),
        pytest.param((UNUSABLE,), DaneLevel.DANE, "secure", id="unusable-at-initial-name"),
        pytest.param((), DaneLevel.NONE, "none", id="no-tlsa-at-initial-name"),
    ],
)
async def test_lookup_secure_alias_to_insecure_target_uses_initial_name(
    tlsa: tuple[TlsaRecord, ...], level: DaneLevel, tlsa_status: str
) -> None:
    # RFC 7672 §2.2.2: the chain turns insecure after a secure first CNAME, so the
    # initial name is the TLSA base domain (Postfix qname_secure).
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    cname_host(dns, "mx.example.com", "smtp.unsigned.net", secure=False)
    alias_status(dns, "mx.example.com", "smtp.unsigned.net", secure=True)
    dns.set("_25._tcp.mx.example.com", "TLSA", tlsa)
    dns.set("_25._tcp.smtp.unsigned.net", "TLSA", [USABLE])  # insecure zone: never asked
    result = await lookup_dane("example.com", dns)
    assert result.level is level
    if level is DaneLevel.NONE:
        assert result.reason == "no MX host has secure TLSA"
    assert tlsa_queries(dns) == ["_25._tcp.mx.example.com"]
    (found,) = result.hosts
    assert (found.address_status, found.tlsa_name, found.tlsa_status) == (
        "insecure",
        "_25._tcp.mx.example.com",
        tlsa_status,
    )
    assert found.detail.startswith("secure CNAME to insecure smtp.unsigned.net")


async def test_lookup_insecure_first_cname_gets_no_tlsa_lookup() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    cname_host(dns, "mx.example.com", "smtp.provider.net", secure=False)
    alias_status(dns, "mx.example.com", "smtp.provider.net", secure=False)
    dns.set("_25._tcp.mx.example.com", "TLSA", [USABLE])
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.NONE
    assert ("mx.example.com", "CNAME") in dns.queries
    assert tlsa_queries(dns) == []
    assert result.hosts[0].detail == "insecure CNAME to smtp.provider.net: no TLSA lookup"


async def test_lookup_cname_status_failure_is_temp() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    cname_host(dns, "mx.example.com", "smtp.unsigned.net", secure=False)
    dns.fail("mx.example.com", "CNAME")
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.TEMP
    assert result.reason == (
        "CNAME status lookup failed for mx.example.com: servfail (fake failure)"
    )
    assert tlsa_queries(dns) == []


async def test_lookup_cname_gone_between_queries_is_temp() -> None:
    # Postfix qname_secure: "no longer a CNAME" is a lookup error, not "insecure".
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    cname_host(dns, "mx.example.com", "smtp.unsigned.net", secure=False)
    dns.set("mx.example.com", "CNAME", [])  # secure NODATA: the alias is gone
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.TEMP
    assert result.reason == "CNAME status lookup failed for mx.example.com: no longer a CNAME"


async def test_lookup_cname_status_ttl_counts() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    cname_host(dns, "mx.example.com", "smtp.unsigned.net", secure=False)
    dns.set(
        "mx.example.com",
        "CNAME",
        [],
        secure=True,
        ttl=200,
        cnames=(("mx.example.com", "smtp.unsigned.net"),),
    )
    dns.set("_25._tcp.mx.example.com", "TLSA", [USABLE])
    result = await lookup_dane("example.com", dns)
    assert (result.level, result.ttl) == (DaneLevel.DANE_ONLY, 200)


# --- MX special cases ------------------------------------------------------------------


@pytest.mark.parametrize(
    "records",
    [
        pytest.param([MxRecord(0, "")], id="single-null-mx"),
        pytest.param([MxRecord(0, ""), MxRecord(10, "mx.example.com")], id="null-mx-and-host"),
    ],
)
async def test_lookup_null_mx_is_none_without_fallback(records: list[MxRecord]) -> None:
    dns = FakeDns()
    dns.set("example.com", "MX", tuple(records))
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.NONE
    assert result.reason.startswith("null MX")
    assert dns.queries == [("example.com", "MX")]


@pytest.mark.parametrize(
    ("mx_secure", "level"),
    [
        pytest.param(True, DaneLevel.DANE_ONLY, id="secure-nodata"),
        # The domain's own zone is unsigned: its address cannot be secure, so not asked.
        pytest.param(False, DaneLevel.NONE, id="insecure-nodata"),
    ],
)
async def test_lookup_implicit_mx(mx_secure: bool, level: DaneLevel) -> None:
    dns = FakeDns()
    dns.set("example.com", "MX", [], secure=mx_secure)
    host(dns, "example.com", USABLE)
    result = await lookup_dane("example.com", dns)
    assert result.level is level
    assert result.mx_secure is mx_secure
    assert [h.host for h in result.hosts] == ["example.com"]
    assert result.reason.endswith("(implicit MX)")


@pytest.mark.parametrize(
    "secure", [pytest.param(True, id="validated"), pytest.param(False, id="insecure")]
)
async def test_lookup_nxdomain_is_none(secure: bool) -> None:
    dns = FakeDns(default_secure=secure)
    result = await lookup_dane("nope.example", dns)
    assert result.level is DaneLevel.NONE
    assert "NXDOMAIN" in result.reason
    assert dns.queries == [("nope.example", "MX")]


@pytest.mark.parametrize(
    ("targets", "level", "reason"),
    [
        pytest.param(
            ["*.example.com", "mx.example.com"],
            DaneLevel.DANE_ONLY,
            "usable TLSA at all 1 MX hosts",
            id="wildcard-skipped",
        ),
        pytest.param(
            ["mail\\032x.example.com", "mx.example.com"],
            DaneLevel.DANE_ONLY,
            "usable TLSA at all 1 MX hosts",
            id="escaped-octet-skipped",
        ),
        pytest.param(
            ["mail\\@x.example.com"],
            DaneLevel.NONE,
            "no MX target is a valid host name",
            id="all-skipped",
        ),
    ],
)
async def test_lookup_mx_targets_that_are_not_host_names_are_skipped(
    targets: list[str], level: DaneLevel, reason: str
) -> None:
    # Postfix dns_get_rr drops such MX records (DNS_INVAL); they must not turn into
    # TEMP through a query the DNS client refuses to send.
    dns = FakeDns()
    mx(dns, "example.com", *targets)
    host(dns, "mx.example.com", USABLE)
    result = await lookup_dane("example.com", dns)
    assert (result.level, result.reason) == (level, reason)
    skipped = [h for h in result.hosts if h.address_status == "invalid"]
    assert [h.host for h in skipped] == [t for t in targets if t != "mx.example.com"]
    assert all(name == "mx.example.com" for name, rdtype in dns.queries if rdtype == "A")


async def test_lookup_dedupes_hosts_in_preference_order() -> None:
    dns = FakeDns()
    dns.set(
        "example.com",
        "MX",
        [
            MxRecord(20, "b.example.com"),
            MxRecord(5, "a.example.com"),
            MxRecord(30, "a.example.com"),
        ],
    )
    host(dns, "a.example.com", USABLE)
    host(dns, "b.example.com", USABLE)
    result = await lookup_dane("example.com", dns)
    assert [h.host for h in result.hosts] == ["a.example.com", "b.example.com"]
    assert dns.queries.count(("a.example.com", "A")) == 1


# --- failures --------------------------------------------------------------------------


async def test_lookup_mx_servfail_is_temp() -> None:
    dns = FakeDns()
    dns.fail("example.com", "MX")
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.TEMP
    assert result.ttl == 0
    assert result.reason == "MX lookup failed: servfail (fake failure)"


async def test_lookup_tlsa_servfail_for_one_host_is_temp() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx1.example.com", "mx2.example.com")
    host(dns, "mx1.example.com", USABLE)
    host(dns, "mx2.example.com")
    dns.fail("_25._tcp.mx2.example.com", "TLSA")
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.TEMP
    assert result.ttl == 0
    assert result.reason == "TLSA lookup failed for mx2.example.com: servfail (fake failure)"
    assert result.hosts[1].tlsa_status == "error"


async def test_lookup_temp_reason_is_brief_and_explanation_full() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    host(dns, "mx.example.com")
    dns.answers[("_25._tcp.mx.example.com", "TLSA")] = DnsError(
        "servfail",
        "EDE 6 DNSSEC Bogus: signature crypto failed from 127.0.0.1",
        name="_25._tcp.mx.example.com",
        rdtype="TLSA",
    )
    result = await lookup_dane("example.com", dns)
    assert result.reason == "TLSA lookup failed for mx.example.com: servfail (EDE 6 DNSSEC Bogus)"
    assert result.hosts[0].detail == (
        "servfail (EDE 6 DNSSEC Bogus: signature crypto failed from 127.0.0.1)"
    )


@pytest.mark.parametrize(
    ("fail", "kind"),
    [
        pytest.param(("mx2.example.com", "A"), "servfail", id="a-servfail"),
        pytest.param(("mx2.example.com", "A"), "timeout", id="a-timeout"),
        pytest.param(("mx2.example.com", "AAAA"), "servfail", id="aaaa-after-nodata"),
    ],
)
async def test_lookup_address_failure_is_temp(fail: tuple[str, str], kind: str) -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx1.example.com", "mx2.example.com")
    host(dns, "mx1.example.com", USABLE)
    dns.set("mx2.example.com", "A", [])  # NODATA, so AAAA is asked when A does not fail
    dns.fail(*fail, kind=kind)
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.TEMP
    assert result.reason.startswith(f"address lookup failed for mx2.example.com: {kind}")
    assert result.hosts[1].address_status == "error"


# --- TTL -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mx_ttl", "a_ttl", "tlsa_ttl", "expected"),
    [
        pytest.param(3600, 1200, 600, 600, id="min-of-answers"),
        pytest.param(3600, 90, 600, 180, id="clamped-up-to-min-ttl"),
        pytest.param(10**6, 10**6, 10**6, 86400, id="clamped-down-to-max-ttl"),
        pytest.param(0, 3600, 3600, 180, id="zero-ttl-dane-clamped"),
    ],
)
async def test_lookup_ttl_is_min_clamped(
    mx_ttl: int, a_ttl: int, tlsa_ttl: int, expected: int
) -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com", ttl=mx_ttl)
    host(dns, "mx.example.com", USABLE, ttl=a_ttl, tlsa_ttl=tlsa_ttl)
    result = await lookup_dane("example.com", dns)
    assert result.level is DaneLevel.DANE_ONLY
    assert result.ttl == expected


async def test_lookup_ttl_uses_given_clamps() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com", ttl=50)
    host(dns, "mx.example.com", USABLE)
    low = await lookup_dane("example.com", dns, min_ttl=60, max_ttl=100)
    mx(dns, "example.com", "mx.example.com", ttl=5000)
    high = await lookup_dane("example.com", dns, min_ttl=60, max_ttl=100)
    assert (low.ttl, high.ttl) == (60, 100)


async def test_lookup_ttl_includes_hosts_without_tlsa() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx1.example.com", "mx2.example.com")
    host(dns, "mx1.example.com", USABLE)
    host(dns, "mx2.example.com", secure=False, ttl=400)
    result = await lookup_dane("example.com", dns)
    assert (result.level, result.ttl) == (DaneLevel.DANE, 400)


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        pytest.param(0, 180, id="zero-is-clamped-not-negative-ttl"),
        pytest.param(600, 600, id="known-ttl-kept"),
        pytest.param(10, 180, id="known-ttl-clamped"),
    ],
)
async def test_lookup_none_ttl(ttl: int, expected: int) -> None:
    dns = FakeDns()
    dns.set("nope.example", "MX", [], rcode="NXDOMAIN", ttl=ttl)
    result = await lookup_dane("nope.example", dns)
    assert (result.level, result.ttl) == (DaneLevel.NONE, expected)


async def test_lookup_none_ttl_zero_uses_min_ttl_not_negative_ttl() -> None:
    # A resolver's cached record counted down to 0 is a real TTL: clamp it, do not stretch it.
    dns = FakeDns()
    dns.set("example.com", "MX", [MxRecord(0, "")], ttl=0)
    result = await lookup_dane("example.com", dns, min_ttl=120, negative_ttl=900)
    assert (result.level, result.ttl) == (DaneLevel.NONE, 120)


# --- concurrency and trace -------------------------------------------------------------


@dataclass
class SlowDns(FakeDns):
    """FakeDns that holds each query open briefly and records the peak of open queries."""

    in_flight: int = 0
    peak: int = 0

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return await super().query(name, rdtype)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("concurrency", [pytest.param(1, id="serial"), pytest.param(3, id="three")])
async def test_lookup_concurrency_bound_respected(concurrency: int) -> None:
    dns = SlowDns()
    hosts = [f"mx{i}.example.com" for i in range(10)]
    mx(dns, "example.com", *hosts)
    for name in hosts:
        host(dns, name, USABLE)
    result = await lookup_dane("example.com", dns, concurrency=concurrency)
    assert result.level is DaneLevel.DANE_ONLY
    assert dns.peak == concurrency


async def test_lookup_trace_has_queries_and_verdict() -> None:
    dns = FakeDns()
    mx(dns, "example.com", "mx.example.com")
    host(dns, "mx.example.com", USABLE)
    with recording(Trace()) as trace:
        await lookup_dane("example.com", dns)
    kinds = [(e.kind, e.name, e.detail) for e in trace.events]
    assert kinds[:3] == [
        ("dns", "example.com", "MX"),
        ("dns", "mx.example.com", "A"),
        ("dns", "_25._tcp.mx.example.com", "TLSA"),
    ]
    assert kinds[3][0] == "note"
    assert "dane-only" in trace.events[3].name
