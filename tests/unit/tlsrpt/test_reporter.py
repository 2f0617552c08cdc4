"""The reporter's decisions: schedule, rua look-up, retries, no duplicates (SQLite in tmp)."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeDns
from tests.schemas import validate_report
from tests.unit.tlsrpt.helpers import MISMATCH, NO_POLICY_OK, datagram, sts_policy
from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.errors import DeliveryError
from tlspolicy.tlsrpt.aggregate import Batch
from tlspolicy.tlsrpt.datagram import parse_datagram
from tlspolicy.tlsrpt.reporter import DNS_URI, Reporter
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


async def add_sessions(store: SqliteReportStore, *raws: bytes) -> None:
    batch = Batch()
    for raw in raws:
        batch.add(parse_datagram(raw), DAY_NOON)
    await store.add(batch)


class Exploding(Sinks):
    """A sink whose library raises what it was never expected to (aiosmtplib's ValueError
    for a NUL in an address, idna's UnicodeError): only that destination fails."""

    async def send_mail(self, message: bytes, *, recipient: str, **kw: Any) -> None:
        if recipient.startswith("boom"):
            raise ValueError("address contains a NUL")
        await super().send_mail(message, recipient=recipient, **kw)

    async def post_https(self, url: str, body: bytes, **kw: Any) -> None:
        if "boom" in url:
            raise UnicodeError("label too long")
        await super().post_https(url, body, **kw)


async def test_reporter_unexpected_error_is_one_failed_attempt(store: SqliteReportStore) -> None:
    sinks, clock = Exploding(), Clock(NEXT_DAY)
    rua = "v=TLSRPTv1; rua=mailto:boom@example.com,https://boom.example/,mailto:ok@example.com"
    rep = reporter(store, rua_dns(rua), sinks, clock)
    outcomes = {a.uri: (a.outcome, a.detail) for a in await rep.run_once()}
    assert outcomes["mailto:ok@example.com"] == ("sent", "")
    assert outcomes["mailto:boom@example.com"][0] == "failed"
    assert "ValueError" in outcomes["mailto:boom@example.com"][1]
    assert outcomes["https://boom.example/"][0] == "failed"
    rows = {d.uri: d for d in await store.deliveries(DAY_NOON.date())}
    assert rows["mailto:boom@example.com"].state == "waiting"
    assert rows["mailto:boom@example.com"].attempts == 1


async def test_reporter_run_survives_what_a_pass_raises(
    store: SqliteReportStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rep = reporter(store, rua_dns(), Sinks(), Clock(NEXT_DAY), replace(CONFIG, check_interval=0.01))
    passes = 0

    async def broken(**kw: Any) -> list[Any]:
        nonlocal passes
        passes += 1
        if passes >= 3:
            raise asyncio.CancelledError
        raise KeyError("unexpected")

    monkeypatch.setattr(rep, "run_once", broken)
    with pytest.raises(asyncio.CancelledError):
        await rep.run()
    assert passes == 3
    assert "this pass failed" in caplog.text and "KeyError" in caplog.text


async def test_reporter_one_hostile_domain_does_not_delay_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A domain whose destinations never answer costs its own deadline, nothing else."""
    monkeypatch.setattr("tlspolicy.tlsrpt.reporter.DOMAIN_DEADLINE_S", 0.3)
    store = SqliteReportStore(str(tmp_path / "t.sqlite3"))
    await store.open()
    batch = Batch()
    for name in ("aaa-slow.example", "good.example"):
        batch.add(parse_datagram(datagram(NO_POLICY_OK, domain=name)), DAY_NOON)
    await store.add(batch)
    dns = FakeDns()
    slow = ",".join(f"https://h{i}.slow.example/" for i in range(10))
    dns.set(
        "_smtp._tls.aaa-slow.example", "TXT", [TxtRecord((f"v=TLSRPTv1; rua={slow}".encode(),))]
    )
    dns.set(
        "_smtp._tls.good.example", "TXT", [TxtRecord((b"v=TLSRPTv1; rua=mailto:r@good.example",))]
    )

    class Hanging(Sinks):
        async def post_https(self, url: str, body: bytes, **kw: Any) -> None:
            await asyncio.Event().wait()

    sinks = Hanging()
    try:
        attempts = await reporter(store, dns, sinks, Clock(NEXT_DAY)).run_once()
    finally:
        await store.aclose()
    assert [r for r, _ in sinks.mail] == ["r@good.example"]
    slow_outcomes = {a.outcome for a in attempts if a.domain == "aaa-slow.example"}
    assert slow_outcomes == {"failed"}
    assert all(
        "ran out" in a.detail or "in time" in a.detail
        for a in attempts
        if a.domain == "aaa-slow.example"
    )


async def test_reporter_sends_to_at_most_the_capped_destinations(store: SqliteReportStore) -> None:
    sinks = Sinks()
    many = ",".join(f"mailto:r{i}@d{i}.example" for i in range(4000))
    attempts = await reporter(
        store, rua_dns(f"v=TLSRPTv1; rua={many}"), sinks, Clock(NEXT_DAY)
    ).run_once()
    assert len(attempts) == len(sinks.mail) == 10


async def test_reporter_refuses_ports_the_operator_did_not_allow(
    store: SqliteReportStore, tmp_path: Path
) -> None:
    sinks = Sinks()
    rua = "v=TLSRPTv1; rua=https://r.example.com:6379/x,https://r.example.com/ok"
    attempts = await reporter(store, rua_dns(rua), sinks, Clock(NEXT_DAY)).run_once()
    outcomes = {a.uri: a.outcome for a in attempts}
    assert outcomes == {
        "https://r.example.com:6379/x": "gave-up",
        "https://r.example.com/ok": "sent",
    }
    assert [u for u, _ in sinks.https] == ["https://r.example.com/ok"]
    allowed = replace(CONFIG, https_ports=(443, 6379))
    other_store = SqliteReportStore(str(tmp_path / "other.sqlite3"))
    await other_store.open()
    await add_sessions(other_store, datagram(NO_POLICY_OK))
    other = Sinks()
    try:
        await reporter(other_store, rua_dns(rua), other, Clock(NEXT_DAY), allowed).run_once()
    finally:
        await other_store.aclose()
    assert sorted(u for u, _ in other.https) == [
        "https://r.example.com/ok",
        "https://r.example.com:6379/x",
    ]


async def test_reporter_retries_the_frozen_report_and_counts_late_sessions(
    store: SqliteReportStore, caplog: pytest.LogCaptureFixture
) -> None:
    sinks, clock = Sinks(), Clock(NEXT_DAY)
    sinks.https_error = "503 busy"
    rep = reporter(store, rua_dns(), sinks, clock)
    await rep.run_once()
    assert len(sinks.mail) == 1 and sinks.https == []
    await add_sessions(store, datagram(NO_POLICY_OK), datagram(NO_POLICY_OK))
    sinks.https_error = None
    clock.now += timedelta(seconds=300)
    await rep.run_once()
    (_, posted) = sinks.https[0]
    frozen = await store.frozen(DAY_NOON.date(), "example.com")
    assert frozen is not None and posted == frozen.body
    report = json.loads(gzip.decompress(posted))
    assert sum(p["summary"]["total-successful-session-count"] for p in report["policies"]) == 3
    assert frozen.late == 2 and "2 sessions for example.com" in caplog.text
    assert report == await rep.build(DAY_NOON.date(), "example.com")


async def test_reporter_two_stores_give_distinct_report_ids(tmp_path: Path) -> None:
    ids = []
    for name in ("a", "b"):
        s = SqliteReportStore(str(tmp_path / f"{name}.sqlite3"))
        await s.open()
        await add_sessions(s, datagram(NO_POLICY_OK))
        sinks = Sinks()
        await reporter(s, rua_dns(), sinks, Clock(NEXT_DAY)).run_once()
        ids.append(json.loads(gzip.decompress(sinks.https[0][1]))["report-id"])
        again = await s.instance()
        await s.aclose()
        s2 = SqliteReportStore(str(tmp_path / f"{name}.sqlite3"))
        await s2.open()
        assert await s2.instance() == again  # stable per store
        await s2.aclose()
    assert ids[0] != ids[1]
    assert all(i.startswith("20261201.example.com.") and i.endswith("@mx.example.net") for i in ids)
