from __future__ import annotations

from tests.unit.check.helpers import Chain
from tlspolicy.check.danematch import check_domain, check_host
from tlspolicy.check.findings import Status
from tlspolicy.dane.result import DaneLevel, DaneResult, HostResult
from tlspolicy.dnsstub.data import TlsaRecord

HOST = "mx.example.com"
TLSA_NAME = f"_25._tcp.{HOST}"


def secure(records: int, usable: int) -> HostResult:
    return HostResult(HOST, "secure", TLSA_NAME, "secure", usable, records - usable, "")


def checks(findings):  # type: ignore[no-untyped-def]
    return [(f.check, f.status) for f in findings]


def test_danematch_matching_record_with_rollover_partner_is_ok() -> None:
    chain = Chain(HOST)
    records = [chain.ee_311(), TlsaRecord(3, 1, 1, b"\x07" * 32)]
    findings = check_host(secure(2, 2), records, chain.der)
    assert checks(findings) == [("dane.match", Status.OK)]
    assert "DANE-EE SPKI SHA2-256" in findings[0].message
    assert findings[0].evidence[0] == f"TLSA at {TLSA_NAME} (DNSSEC secure)"


def test_danematch_mismatch_is_an_error_and_single_record_a_warning() -> None:
    chain = Chain(HOST)
    findings = check_host(secure(1, 1), [TlsaRecord(3, 1, 1, b"\0" * 32)], chain.der)
    assert checks(findings) == [("dane.match", Status.ERROR), ("dane.rollover", Status.WARNING)]
    assert "deferred by every DANE sender" in findings[0].message


def test_danematch_dane_ta_record_matches_the_issuing_ca() -> None:
    chain = Chain(HOST)
    findings = check_host(secure(2, 2), [chain.ta_201(), chain.ee_311()], chain.der)
    assert checks(findings) == [("dane.match", Status.OK)]
    assert "DANE-TA" in findings[0].message


def test_danematch_unusable_records() -> None:
    chain = Chain(HOST)
    only_bad = [TlsaRecord(1, 1, 1, b"\0" * 32), TlsaRecord(3, 1, 1, b"\0" * 5)]
    findings = check_host(secure(2, 0), only_bad, chain.der)
    assert checks(findings) == [("dane.tlsa", Status.WARNING)]
    assert "TLS without authentication" in findings[0].message
    mixed = check_host(secure(2, 1), [chain.ee_311(), only_bad[0]], chain.der)
    assert checks(mixed) == [("dane.match", Status.OK), ("dane.tlsa", Status.WARNING)]
    assert "PKIX-EE" in mixed[1].message


def test_danematch_without_tls_session_is_skipped() -> None:
    chain = Chain(HOST)
    findings = check_host(secure(2, 2), [chain.ee_311(), chain.ta_201()], None)
    assert checks(findings) == [("dane.match", Status.SKIPPED)]


def test_danematch_lookup_states() -> None:
    error = HostResult(HOST, "secure", TLSA_NAME, "error", detail="servfail")
    assert checks(check_host(error, [], None)) == [("dane.tlsa", Status.ERROR)]
    insecure = HostResult(HOST, "secure", TLSA_NAME, "insecure", detail="not validated")
    assert checks(check_host(insecure, [TlsaRecord(3, 1, 1, b"\0" * 32)], None)) == [
        ("dane.tlsa", Status.WARNING)
    ]
    none = HostResult(HOST, "secure", TLSA_NAME, "none", detail="no TLSA records")
    assert checks(check_host(none, [], None)) == [("dane.tlsa", Status.OK)]


def test_danematch_domain_levels() -> None:
    def level(value: DaneLevel) -> Status:
        return check_domain(DaneResult(value, "why", 60)).status

    assert level(DaneLevel.DANE_ONLY) is Status.OK
    assert level(DaneLevel.DANE) is Status.WARNING
    assert level(DaneLevel.NONE) is Status.OK
    assert level(DaneLevel.TEMP) is Status.ERROR
