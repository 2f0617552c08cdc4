"""The reporter's decisions: schedule, rua look-up, retries, no duplicates (SQLite in tmp)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeDns
from tests.schemas import validate_report
from tests.unit.tlsrpt.helpers import MISMATCH, NO_POLICY_OK, datagram, sts_policy
from tlspolicy.dnsdata import TxtRecord
from tlspolicy.errors import DeliveryError
from tlspolicy.tlsrpt.aggregate import Batch
from tlspolicy.tlsrpt.datagram import parse_datagram
from tlspolicy.tlsrpt.reporter import DNS_URI, Reporter
from tlspolicy.tlsrpt.settings import TlsrptConfig
from tlspolicy.tlsrpt.sqlite_backend import SqliteReportStore

DAY_NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NEXT_DAY = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # after delay + spread
RUA = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://rpt.example.com/v1"
CONFIG = TlsrptConfig(reporter=True, submitter="mx.example.net", delay=60, spread=3600,
                      retry_min=300, retry_max=1200, retry_for=3600)  # fmt: skip


class Sinks:
    def __init__(self) -> None:
        self.mail: list[tuple[str, bytes]] = []
        self.https: list[tuple[str, bytes]] = []
        self.mail_error: str | None = None
        self.https_error: str | None = None

    async def send_mail(self, message: bytes, *, recipient: str, **kw: Any) -> None:
        if self.mail_error:
            raise DeliveryError("smtp", self.mail_error)
        self.mail.append((recipient, message))

    async def post_https(self, url: str, body: bytes, **kw: Any) -> None:
        if self.https_error:
            raise DeliveryError("http-status", self.https_error)
        self.https.append((url, body))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteReportStore]:
    s = SqliteReportStore(str(tmp_path / "tlsrpt.sqlite3"))
    await s.open()
    batch = Batch()
    for raw in [datagram(NO_POLICY_OK)] * 3 + [
        datagram(sts_policy(failed=True, details=[MISMATCH]))
    ]:
        batch.add(parse_datagram(raw), DAY_NOON)
    await s.add(batch)
    yield s
    await s.aclose()


def reporter(store: SqliteReportStore, dns: FakeDns, sinks: Sinks, clock: Clock,
             config: TlsrptConfig = CONFIG) -> Reporter:  # fmt: skip
    return Reporter(config, store, dns, clock=clock, send_mail=sinks.send_mail,
                    post_https=sinks.post_https)  # fmt: skip


def rua_dns(text: str = RUA) -> FakeDns:
    dns = FakeDns()
    dns.set("_smtp._tls.example.com", "TXT", [TxtRecord((text.encode(),))])
    return dns


async def test_reporter_waits_for_schedule_then_sends_once(store: SqliteReportStore) -> None:
    sinks, clock = Sinks(), Clock(DAY_NOON + timedelta(hours=12, seconds=30))
    rep = reporter(store, rua_dns(), sinks, clock)
    (skipped,) = await rep.run_once()
    assert skipped.outcome == "skipped" and "due at" in skipped.detail
    clock.now = NEXT_DAY
    sent = await rep.run_once()
    assert sorted(a.outcome for a in sent) == ["sent", "sent"]
    assert [r for r, _ in sinks.mail] == ["tlsrpt@example.com"]
    assert [u for u, _ in sinks.https] == ["https://rpt.example.com/v1"]
    clock.now = NEXT_DAY + timedelta(hours=2)
    assert await rep.run_once() == []  # never twice
    assert await reporter(store, rua_dns(), sinks, clock).run_once(force=True) == []
    assert len(sinks.mail) == len(sinks.https) == 1
    report = await rep.build(DAY_NOON.date(), "example.com")
    validate_report(report)


async def test_reporter_retries_failed_destination_with_backoff(store: SqliteReportStore) -> None:
    sinks, clock = Sinks(), Clock(NEXT_DAY)
    sinks.https_error = "503 busy"
    rep = reporter(store, rua_dns(), sinks, clock)
    outcomes = {a.uri: a.outcome for a in await rep.run_once()}
    assert outcomes == {"mailto:tlsrpt@example.com": "sent", "https://rpt.example.com/v1": "failed"}
    clock.now += timedelta(seconds=299)
    assert await rep.run_once() == []  # backoff not over
    sinks.https_error = None
    clock.now += timedelta(seconds=1)
    assert [(a.uri, a.outcome) for a in await rep.run_once()] == [
        ("https://rpt.example.com/v1", "sent")
    ]
    rows = {d.uri: d for d in await store.deliveries(DAY_NOON.date())}
    assert rows["https://rpt.example.com/v1"].attempts == 2
    assert rows["mailto:tlsrpt@example.com"].attempts == 1
    assert len(sinks.mail) == 1


async def test_reporter_gives_up_after_retry_window(store: SqliteReportStore) -> None:
    sinks, clock = Sinks(), Clock(NEXT_DAY)
    sinks.mail_error = sinks.https_error = "550 no"
    rep = reporter(store, rua_dns(), sinks, clock)
    outcomes: list[str] = []
    for _ in range(10):
        outcomes += [a.outcome for a in await rep.run_once()]
        clock.now += timedelta(seconds=1200)
    assert outcomes.count("gave-up") == 2
    states = {d.state for d in await store.deliveries(DAY_NOON.date())}
    assert states == {"failed"}


async def test_reporter_no_record_at_send_time_sends_nothing(store: SqliteReportStore) -> None:
    sinks = Sinks()
    rep = reporter(store, FakeDns(), sinks, Clock(NEXT_DAY))
    (attempt,) = await rep.run_once()
    assert (attempt.uri, attempt.outcome) == (DNS_URI, "gave-up")
    assert "no TLSRPT record" in attempt.detail
    (again,) = await rep.run_once()
    assert again.outcome == "skipped" and not sinks.mail


async def test_reporter_dns_failure_is_retried(store: SqliteReportStore) -> None:
    sinks, clock = Sinks(), Clock(NEXT_DAY)
    dns = FakeDns()
    dns.fail("_smtp._tls.example.com", "TXT")
    rep = reporter(store, dns, sinks, clock)
    (attempt,) = await rep.run_once()
    assert attempt.outcome == "failed" and "DNS lookup" in attempt.detail
    dns.set("_smtp._tls.example.com", "TXT", [TxtRecord((RUA.encode(),))])
    assert await rep.run_once() == []  # DNS backoff
    clock.now += timedelta(seconds=300)
    assert sorted(a.outcome for a in await rep.run_once()) == ["sent", "sent"]
    rows = {d.uri: d.state for d in await store.deliveries(DAY_NOON.date())}
    assert rows[DNS_URI] == "sent"


async def test_reporter_non_mailto_rua_does_not_crash(store: SqliteReportStore) -> None:
    sinks = Sinks()
    rep = reporter(
        store, rua_dns("v=TLSRPTv1; rua=http://insecure.example/"), sinks, Clock(NEXT_DAY)
    )
    (attempt,) = await rep.run_once()
    assert attempt.outcome == "gave-up" and "unsupported" in attempt.detail


async def test_reporter_options_suppress_and_only_with_failures(store: SqliteReportStore) -> None:
    sinks = Sinks()
    suppressed = replace(CONFIG, suppress=("example.com",))
    (attempt,) = await reporter(store, rua_dns(), sinks, Clock(NEXT_DAY), suppressed).run_once()
    assert attempt.detail == "suppressed"
    quiet = replace(CONFIG, only_with_failures=True)
    assert len(await reporter(store, rua_dns(), sinks, Clock(NEXT_DAY), quiet).run_once()) == 2


async def test_reporter_dry_run_sends_nothing(store: SqliteReportStore) -> None:
    sinks = Sinks()
    attempts = await reporter(store, rua_dns(), sinks, Clock(NEXT_DAY)).run_once(dry_run=True)
    assert [a.outcome for a in attempts] == ["dry-run", "dry-run"]
    assert not sinks.mail and not await store.deliveries(DAY_NOON.date())


async def test_reporter_today_is_never_sent(store: SqliteReportStore) -> None:
    rep = reporter(store, rua_dns(), Sinks(), Clock(DAY_NOON))
    assert await rep.run_once(day=DAY_NOON.date(), force=True) == []
