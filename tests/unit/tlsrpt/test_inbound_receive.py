"""Receiving reports into the SQLite store: mail with DKIM, bodies, duplicates, explanation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import dkim
import pytest

from tests.fakes import FakeDns
from tests.lab.dkimkey import DkimTestKey
from tests.unit.tlsrpt.inbound_vectors import (
    OUR_DAY,
    OUR_DOMAIN,
    OUR_SUBMITTER,
    RFC8460_EXAMPLE,
    gz,
    our_mail,
    our_report,
    sys4_reporter,
)
from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.errors import DnsError
from tlspolicy.tlsrpt.inbound import Kind, Transport, Verdict
from tlspolicy.tlsrpt.inbound_explain import explain, render
from tlspolicy.tlsrpt.inbound_mail import find_report
from tlspolicy.tlsrpt.inbound_receive import receive_body, receive_mail
from tlspolicy.tlsrpt.sqlite_backend import SqliteReportStore

NOW = 1_780_500_000.0  # 2026-06-03


@pytest.fixture(scope="module")
def key() -> DkimTestKey:
    return DkimTestKey("tlsrpt", OUR_SUBMITTER)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteReportStore]:
    s = SqliteReportStore(str(tmp_path / "tlsrpt.sqlite3"))
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()


def dns_with(key: DkimTestKey) -> FakeDns:
    dns = FakeDns()
    record = key.record
    dns.set(key.name.decode().removesuffix("."), "TXT", [TxtRecord((record[:200], record[200:]))])
    return dns


async def test_inbound_signed_mail_of_our_reporter_is_stored_once(
    store: SqliteReportStore, key: DkimTestKey
) -> None:
    mail = our_mail(our_report(), key)
    dns = dns_with(key)
    first = await receive_mail(mail, store, dns, now=NOW)
    again = await receive_mail(mail, store, dns, now=NOW)
    assert (first.verdict, again.verdict) == (Verdict.ACCEPTED, Verdict.DUPLICATE)
    assert dns.queries == [("tlsrpt._domainkey.sender.example", "TXT")] * 2
    policies = await store.received_policies(OUR_DAY)
    assert [(p.successful, p.failed) for p in policies] == [(90, 10)]
    events = await store.inbound_events(0, 10)
    assert [(e.transport, e.verdict) for e in events] == [
        ("mail", "accepted"),
        ("mail", "duplicate"),
    ]


async def test_inbound_unsigned_and_wrongly_signed_mail_is_not_counted(
    store: SqliteReportStore, key: DkimTestKey
) -> None:
    dns = dns_with(key)
    unsigned = await receive_mail(our_mail(our_report(), None), store, dns, now=NOW)
    other = DkimTestKey("tlsrpt", OUR_SUBMITTER)  # same name, another key: does not verify
    forged = await receive_mail(our_mail(our_report(rid="b@x"), other), store, dns, now=NOW)
    stranger = DkimTestKey("tlsrpt", "stranger.example")  # valid, but not the reporting domain
    dns.set("tlsrpt._domainkey.stranger.example", "TXT", [TxtRecord((stranger.record,))])
    by_other = await receive_mail(our_mail(our_report(rid="c@x"), stranger), store, dns, now=NOW)
    assert [r.verdict for r in (unsigned, forged, by_other)] == [Verdict.UNSIGNED] * 3
    assert "no DKIM signature by sender.example" in unsigned.reason
    assert "does not verify" in forged.reason or "signature" in forged.reason
    assert "signed by stranger.example" in by_other.reason
    assert await store.received_policies(OUR_DAY) == []
    assert ("tlsrpt._domainkey.stranger.example", "TXT") not in dns.queries


async def test_inbound_tampered_signed_mail_is_not_counted(
    store: SqliteReportStore, key: DkimTestKey
) -> None:
    mail = our_mail(our_report(), key).replace(b"Subject: Report", b"Subject: Rep0rt")
    result = await receive_mail(mail, store, dns_with(key), now=NOW)
    assert result.verdict == Verdict.UNSIGNED


async def test_inbound_dns_failure_is_temporary(store: SqliteReportStore, key: DkimTestKey) -> None:
    dns = FakeDns()
    dns.fail("tlsrpt._domainkey.sender.example", "TXT")
    with pytest.raises(DnsError):
        await receive_mail(our_mail(our_report(), key), store, dns, now=NOW)


async def test_inbound_strict_mode_wants_s_tlsrpt(
    store: SqliteReportStore, key: DkimTestKey
) -> None:
    dns = FakeDns()
    plain = key.record.replace(b"s=tlsrpt; ", b"")
    dns.set("tlsrpt._domainkey.sender.example", "TXT", [TxtRecord((plain,))])
    mail = our_mail(our_report(), key)
    assert (await receive_mail(mail, store, dns, now=NOW, strict=True)).verdict == Verdict.UNSIGNED
    assert (await receive_mail(mail, store, dns, now=NOW)).verdict == Verdict.ACCEPTED


async def test_inbound_sys4_mail_signed_by_its_mta_is_stored(
    store: SqliteReportStore, tmp_path: Path
) -> None:
    sys4 = sys4_reporter(tmp_path)
    key = DkimTestKey("mail", "sys4.example")
    signed = dkim.sign(sys4.mail, b"mail", b"sys4.example", key.pem, linesep=b"\r\n") + sys4.mail
    dns = FakeDns()
    dns.set("mail._domainkey.sys4.example", "TXT", [TxtRecord((key.record,))])
    result = await receive_mail(signed, store, dns, now=NOW)
    assert result.verdict == Verdict.ACCEPTED
    assert find_report(signed).kind is Kind.GZIP
    via_https = await receive_body(
        sys4.gzipped, Kind.GZIP, store, transport=Transport.HTTPS, now=NOW
    )
    assert via_https.verdict == Verdict.DUPLICATE  # the same report, another way in
    assert [(p.successful, p.failed) for p in await store.received_policies(OUR_DAY)] == [(45, 5)]


async def test_inbound_bodies_and_a_mail_without_a_report(store: SqliteReportStore) -> None:
    rfc = json.dumps(RFC8460_EXAMPLE).encode()
    assert (
        await receive_body(rfc, Kind.JSON, store, transport=Transport.FILE, now=NOW)
    ).verdict == Verdict.ACCEPTED
    again = await receive_body(
        gz(RFC8460_EXAMPLE), Kind.GZIP, store, transport=Transport.HTTPS, now=NOW
    )
    assert again.verdict == Verdict.DUPLICATE
    bad = await receive_body(b"{}", Kind.JSON, store, transport=Transport.FILE, now=NOW)
    assert bad.verdict == Verdict.INVALID
    plain = b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n"
    assert (await receive_mail(plain, store, FakeDns(), now=NOW)).verdict == Verdict.NOT_REPORT
    events = [(e.transport, e.verdict) for e in await store.inbound_events(0, 100)]
    assert events == [
        ("file", "accepted"),
        ("https", "duplicate"),
        ("file", "invalid"),
        ("mail", "not-report"),
    ]


async def test_inbound_retention_purges_old_reports(store: SqliteReportStore) -> None:
    rfc = json.dumps(RFC8460_EXAMPLE).encode()
    await receive_body(rfc, Kind.JSON, store, transport=Transport.FILE, now=NOW)
    assert await store.purge_inbound_before(NOW) == 0
    assert await store.purge_inbound_before(NOW + 1) == 1
    assert await store.received_policies(date(2016, 1, 1)) == []
    assert await store.received_failures(date(2016, 1, 1)) == []
    assert (
        await receive_body(rfc, Kind.JSON, store, transport=Transport.FILE, now=NOW)
    ).verdict == Verdict.ACCEPTED


async def test_inbound_explanation_has_exact_totals_and_the_fix_first(
    store: SqliteReportStore, tmp_path: Path
) -> None:
    for rid in ("one", "two"):
        body = gz(our_report(rid=f"{rid}@sender.example"))
        await receive_body(body, Kind.GZIP, store, transport=Transport.HTTPS, now=NOW)
    sys4 = sys4_reporter(tmp_path)
    await receive_body(sys4.gzipped, Kind.GZIP, store, transport=Transport.HTTPS, now=NOW)
    since = date(2026, 5, 27)
    result = explain(
        await store.received_policies(since, OUR_DOMAIN),
        await store.received_failures(since, OUR_DOMAIN),
        since=since,
    )
    (domain,) = result["domains"]
    assert (domain["successful"], domain["failed"]) == (2 * 90 + 45, 2 * 10 + 5)
    (day,) = domain["days"]
    assert day["by_result_type"] == {"certificate-expired": 19, "certificate-host-mismatch": 6}
    assert day["by_organization"] == {"Sender Org": 20, "sys4 test": 5}
    assert day["by_mx_host"] == {"mx2.rcpt.example": 19, "mx.rcpt.example": 6}
    assert domain["fix_first"].startswith(
        "certificate-expired on mx2.rcpt.example, reported by 2 organizations since Tuesday"
    )
    assert "fix first: certificate-expired" in render(result)
